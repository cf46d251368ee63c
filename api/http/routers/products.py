"""Product versions under maker-checker, and what-if simulations. See docs/governance.md.

    GET  /v1/products/versions[?code=]                 every version and its status today      risk roles
    POST /v1/products/versions                         draft a version (a definition as JSON)  risk_analyst, admin
    GET  /v1/products/versions/{id}                    one version with its definition         risk roles
    GET  /v1/products/versions/{id}/diff[?against=]    what it changes (active or a version)   risk roles
    POST /v1/products/versions/{id}/submit             submit a draft                          risk_analyst, admin
    POST /v1/products/versions/{id}/approve | /reject  decide (never the submitter)            risk_approver
    POST /v1/products/simulations                      start a what-if simulation (202)        risk roles
    GET  /v1/products/simulations/{simulation_id}[/report]    poll it (progress, summary), its HTML   risk roles

Loan officers and the platform have no access (403).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path as FilePath
from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.http.deps import RISK_ROLES, require
from api.http.errors import ProblemError
from api.keys import Principal, Role
from api.quoting.versions import VersionsError, check_as_of
from api.workbench.jobs import SimulationRunner
from api.workbench.store import ProductVersionError, ProductVersions
from products.catalogue import DefinitionError, parse_definition

router = APIRouter(prefix="/v1/products", tags=["product versions"])
DRAFT_ROLES = (Role.risk_analyst, Role.admin)
DECIDE_ROLES = (Role.risk_approver,)
VersionId = Path(..., ge=1, le=2**31 - 1, description="a product version's id")
SimulationId = Path(..., min_length=1, max_length=64, description="a simulation's id")
_runner_lock = threading.Lock()


class DraftBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    definition: dict[str, Any] = Field(..., description="the product definition (the YAML file's content as JSON)")
    note: str | None = Field(None, max_length=2000, description="what changes and why")


class DecisionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, max_length=2000, description="why (recorded)")


class RejectBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(..., min_length=1, max_length=2000, description="why (recorded)")


class SimulationBody(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"version_id": 3}]})

    version_id: int | None = Field(None, ge=1, le=2**31 - 1, description="a stored version (draft or later)")
    definition: dict[str, Any] | None = Field(None, description="or a definition not stored yet")
    as_of: dt.date | None = Field(None, description="the population as of this date (default today)")

    @model_validator(mode="after")
    def _one_draft(self) -> SimulationBody:
        if (self.version_id is None) == (self.definition is None):
            raise ValueError("give exactly one of version_id or definition")
        return self


class SimulationView(BaseModel):
    job_id: str
    status: Literal["queued", "running", "succeeded", "failed"]
    requested_by: str
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    progress: dict[str, int | None] = Field(description="rows_done, rows_total")
    summary: dict[str, Any] | None = None
    report_url: str | None = None
    error: str | None = None


def _store(request: Request) -> ProductVersions:
    return ProductVersions(request.app.state.engine)


def _problem(error: ProductVersionError) -> ProblemError:
    errors = [{"field": error.field, "message": error.message}] if error.field else None
    return ProblemError(error.status, error.message, errors=errors)


def _definition(data: dict[str, Any], field: str) -> Any:
    try:
        return parse_definition(data, field)
    except DefinitionError as error:
        raise ProblemError(422, "the product definition is not valid; see errors for each path; 产品配置有误",
                           errors=[{"field": f"{field}.{path}" if path else field, "message": message}
                                   for path, message in error.issues]) from None


def _record(request: Request, version_id: int) -> dict[str, Any]:
    entries = {e["id"]: e for e in _store(request).history() if e["id"] is not None}
    return entries[version_id]


@router.get("/versions", summary="Every product version (seeds and the store's) with its status today")
def list_versions(request: Request, code: str | None = Query(None, min_length=1, max_length=64),
                  principal: Principal = Depends(require(*RISK_ROLES))) -> list[dict[str, Any]]:
    return _store(request).history(code)


@router.post("/versions", status_code=201, summary="Draft a product version")
def draft_version(body: DraftBody, request: Request, response: Response,
                  principal: Principal = Depends(require(*DRAFT_ROLES))) -> dict[str, Any]:
    definition = _definition(body.definition, "definition")
    try:
        record = _store(request).draft(definition, principal.name, body.note)
    except ProductVersionError as error:
        raise _problem(error) from None
    response.headers["Location"] = f"{router.prefix}/versions/{record.id}"
    return record.to_json()


@router.get("/versions/{version_id}", summary="One product version with its definition")
def get_version(request: Request, version_id: int = VersionId,
                principal: Principal = Depends(require(*RISK_ROLES))) -> dict[str, Any]:
    store = _store(request)
    try:
        store.get(version_id)
        definition = store.definition(version_id)
    except ProductVersionError as error:
        raise _problem(error) from None
    return {**_record(request, version_id), "definition": definition.model_dump(mode="json")}


@router.get("/versions/{version_id}/diff", summary="What a version changes, path by path")
def diff_version(request: Request, version_id: int = VersionId,
                 against: str = Query("active", min_length=1, max_length=16,
                                      description="`active` (in force today) or a version id"),
                 principal: Principal = Depends(require(*RISK_ROLES))) -> dict[str, Any]:
    try:
        return _store(request).diff(version_id, against)
    except ProductVersionError as error:
        raise _problem(error) from None


@router.post("/versions/{version_id}/submit", summary="Submit a draft for approval by another person")
def submit_version(request: Request, version_id: int = VersionId,
                   principal: Principal = Depends(require(*DRAFT_ROLES))) -> dict[str, Any]:
    try:
        _store(request).submit(version_id, principal.name)
    except ProductVersionError as error:
        raise _problem(error) from None
    return _record(request, version_id)


@router.post("/versions/{version_id}/approve", summary="Approve a submitted version (never your own)")
def approve_version(request: Request, body: DecisionBody | None = None, version_id: int = VersionId,
                    principal: Principal = Depends(require(*DECIDE_ROLES))) -> dict[str, Any]:
    try:
        _store(request).approve(version_id, principal.name, body.reason if body else None)
    except ProductVersionError as error:
        raise _problem(error) from None
    return _record(request, version_id)


@router.post("/versions/{version_id}/reject", summary="Reject a draft or submitted version, with a reason")
def reject_version(body: RejectBody, request: Request, version_id: int = VersionId,
                   principal: Principal = Depends(require(*DECIDE_ROLES))) -> dict[str, Any]:
    try:
        _store(request).reject(version_id, principal.name, body.reason)
    except ProductVersionError as error:
        raise _problem(error) from None
    return _record(request, version_id)


# ------------------------------------------------------------------------------------- simulations


def _runner(request: Request) -> SimulationRunner:
    with _runner_lock:
        runner = getattr(request.app.state, "simulations", None)
        if runner is None:
            from features.settings import get_settings

            runner = SimulationRunner(request.app.state.engine, request.app.state.models_dir,
                                      get_settings().resolved_batch_dir / "simulations")
            request.app.state.simulations = runner
        return runner


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return value.replace(tzinfo=dt.UTC) if value is not None and value.tzinfo is None else value


def _view(row: Any) -> SimulationView:
    return SimulationView(
        job_id=row.job_id, status=row.status, requested_by=row.requested_by, created_at=_utc(row.created_at),
        started_at=_utc(row.started_at), finished_at=_utc(row.finished_at),
        progress={"rows_done": row.rows_done, "rows_total": row.rows_total},
        summary=json.loads(row.summary_json) if row.summary_json else None,
        report_url=f"{router.prefix}/simulations/{row.job_id}/report" if row.status == "succeeded" else None,
        error=row.error)


def _job(request: Request, job_id: str) -> Any:
    row = _runner(request).get(job_id)
    if row is None:
        raise ProblemError(404, f"no simulation {job_id}; 无此模拟任务")
    return row


@router.post("/simulations", status_code=202, response_model=SimulationView,
             summary="Start a what-if simulation: the population under a draft and under the active version")
def start_simulation(body: SimulationBody, request: Request, response: Response,
                     principal: Principal = Depends(require(*RISK_ROLES))) -> SimulationView:
    as_of = body.as_of or dt.date.today()
    try:
        check_as_of(as_of)
    except VersionsError as error:
        raise ProblemError(422, error.message, errors=[{"field": error.field, "message": error.message}]) from None
    job: dict[str, Any] = {"as_of": as_of.isoformat()}
    if body.version_id is not None:
        try:
            _store(request).get(body.version_id)
        except ProductVersionError as error:
            raise ProblemError(422, error.message, errors=[{"field": "version_id", "message": error.message}]) from None
        job["version_id"] = body.version_id
    else:
        job["definition"] = _definition(body.definition or {}, "definition").model_dump(mode="json")
    job_id = _runner(request).submit(job, principal.name)
    response.headers["Location"] = f"{router.prefix}/simulations/{job_id}"
    return _view(_job(request, job_id))


@router.get("/simulations/{simulation_id}", response_model=SimulationView,
            summary="A simulation's progress and summary")
def get_simulation(request: Request, simulation_id: str = SimulationId,
                   principal: Principal = Depends(require(*RISK_ROLES))) -> SimulationView:
    return _view(_job(request, simulation_id))


@router.get("/simulations/{simulation_id}/report", response_class=HTMLResponse,
            summary="A finished simulation's report")
def simulation_report(request: Request, simulation_id: str = SimulationId,
                      principal: Principal = Depends(require(*RISK_ROLES))) -> HTMLResponse:
    job_id = simulation_id
    row = _job(request, job_id)
    if row.status != "succeeded":
        raise ProblemError(409, f"simulation {job_id} is {row.status}; the report is ready once it has succeeded")
    path = FilePath(row.report_path)
    if not path.is_file():
        raise ProblemError(410, f"the report of simulation {job_id} is no longer on the server")
    return HTMLResponse(path.read_text(encoding="utf-8"))
