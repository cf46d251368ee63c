"""Monitoring for the risk team: stability, data feeds, overrides and the challenger in shadow."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from api.http.deps import RISK_ROLES, require
from api.http.errors import ProblemError, retry_after
from api.keys import Principal
from api.monitoring import shadow
from api.monitoring.config import ThresholdsError, load_thresholds
from api.monitoring.reports import ReportCache
from api.monitoring.samples import SampleError, parse_spec
from api.quoting.versions import VersionsError

router = APIRouter(prefix="/v1/monitoring", tags=["monitoring"])

RiskTeam = require(*RISK_ROLES)
SPEC_PATTERN = (r"^(champion|quotes|quotes:\d{4}-\d{2}-\d{2}:\d{4}-\d{2}-\d{2}|\d{4}-\d{2}-\d{2}"
                r"|job:[0-9a-f-]{36})$")
SPEC_HELP = ("champion (its development sample), YYYY-MM-DD (the store's population then), quotes or "
             "quotes:FROM:TO, job:<batch job id> (a finished pre-credit run)")


def _field_error(field: str, message: str) -> ProblemError:
    return ProblemError(422, message, errors=[{"field": field, "message": message}])


def _thresholds():  # noqa: ANN202
    try:
        return load_thresholds()
    except ThresholdsError as error:
        raise ProblemError(503, f"the monitoring thresholds cannot be read: {error}") from None


def _reports(request: Request) -> ReportCache:
    state = request.app.state
    if getattr(state, "monitoring_reports", None) is None:
        state.monitoring_reports = ReportCache()
    return state.monitoring_reports


@router.get("", summary="Monitoring report: PSI, data-feed health, overrides, challenger; alerts",
            responses={202: {"description": "the report is being computed: retry after Retry-After seconds"},
                       422: {"description": "a sample option is invalid"}})
def monitoring(request: Request,
               reference: Annotated[str, Query(pattern=SPEC_PATTERN, description=SPEC_HELP)] = "champion",
               current: Annotated[str, Query(pattern=SPEC_PATTERN, description=SPEC_HELP)] = "quotes",
               principal: Principal = Depends(RiskTeam)) -> Any:
    """The latest report of these samples (200), or 202 while it is computed in the background (a region's
    report takes longer than a request may)."""
    try:
        report = _reports(request).get(request.app.state.quoting, reference, current)
    except ThresholdsError as error:
        raise ProblemError(503, f"the monitoring thresholds cannot be read: {error}") from None
    except SampleError as error:
        raise _field_error(error.field, error.message) from None
    except VersionsError as error:
        raise _field_error("current" if error.field == "as_of" else error.field, error.message) from None
    except ProblemError:
        raise
    except Exception as error:  # noqa: BLE001 - found while computing in the background (the store down, ...)
        raise ProblemError(503, f"the monitoring report could not be computed; retry later: {error}",
                           headers=retry_after()) from None
    if report is None:
        return JSONResponse({"status": "computing", "reference": reference, "current": current}, status_code=202,
                            headers=retry_after())
    return report


DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"


def _day(text: str | None, field: str) -> dt.date | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise _field_error(field, f"{text!r} is not a date (YYYY-MM-DD)") from None


@router.get("/shadow", summary="Challenger models in shadow against the champion, over recent quotes",
            responses={422: {"description": "an invalid date"}})
def shadow_comparison(request: Request,
                      since: Annotated[str | None, Query(pattern=DATE_PATTERN,
                                                         description="first day, YYYY-MM-DD (default: the recent "
                                                                     "window, settings.monitoring_quote_days)")]
                      = None,
                      until: Annotated[str | None, Query(pattern=DATE_PATTERN,
                                                         description="last day, YYYY-MM-DD (default today)")] = None,
                      principal: Principal = Depends(RiskTeam)) -> dict[str, Any]:
    window = parse_spec("quotes", "since")
    first, last = _day(since, "since") or window.since, _day(until, "until") or window.until
    assert first is not None and last is not None
    if first > last:
        raise _field_error("since", f"since {first} is after until {last}")
    return shadow.compare(request.app.state.engine, first, last, _thresholds())
