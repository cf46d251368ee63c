"""Monitoring for the risk team: stability, data feeds, overrides and the challenger in shadow."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from api.http.deps import RISK_ROLES, require
from api.http.errors import ProblemError
from api.keys import Principal
from api.monitoring import gauges, shadow
from api.monitoring.config import ThresholdsError, load_thresholds
from api.monitoring.report import build_report
from api.monitoring.samples import SampleError, parse_spec
from api.quoting.versions import VersionsError

router = APIRouter(prefix="/v1/monitoring", tags=["monitoring"])

RiskTeam = require(*RISK_ROLES)
SPEC_PATTERN = r"^(champion|quotes|quotes:\d{4}-\d{2}-\d{2}:\d{4}-\d{2}-\d{2}|\d{4}-\d{2}-\d{2})$"
SPEC_HELP = "champion (its development sample), YYYY-MM-DD (the store's population then), quotes or quotes:FROM:TO"


def _field_error(field: str, message: str) -> ProblemError:
    return ProblemError(422, message, errors=[{"field": field, "message": message}])


def _thresholds():  # noqa: ANN202
    try:
        return load_thresholds()
    except ThresholdsError as error:
        raise ProblemError(503, f"the monitoring thresholds cannot be read: {error}") from None


@router.get("", summary="Monitoring report: PSI, data-feed health, overrides, challenger; alerts")
def monitoring(request: Request,
               reference: Annotated[str, Query(pattern=SPEC_PATTERN, description=SPEC_HELP)] = "champion",
               current: Annotated[str, Query(pattern=SPEC_PATTERN, description=SPEC_HELP)] = "quotes",
               principal: Principal = Depends(RiskTeam)) -> dict[str, Any]:
    thresholds = _thresholds()
    try:
        report = build_report(request.app.state.quoting, reference, current, thresholds)
    except SampleError as error:
        raise _field_error(error.field, error.message) from None
    except VersionsError as error:
        raise _field_error("current" if error.field == "as_of" else error.field, error.message) from None
    gauges.publish(report)
    return report


@router.get("/shadow", summary="Challenger models in shadow against the champion, over recent quotes")
def shadow_comparison(request: Request,
                      since: Annotated[dt.date | None, Query(description="first day (default: the recent window)")]
                      = None,
                      until: Annotated[dt.date | None, Query(description="last day (default today)")] = None,
                      principal: Principal = Depends(RiskTeam)) -> dict[str, Any]:
    window = parse_spec("quotes", "since")
    since, until = since or window.since, until or window.until
    assert since is not None and until is not None
    if since > until:
        raise _field_error("since", f"since {since} is after until {until}")
    return shadow.compare(request.app.state.engine, since, until, _thresholds())
