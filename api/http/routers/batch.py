"""Whole-region pre-credit jobs: start (queued for a batch worker process, within quotas), follow, cancel,
download. Risk roles only; a job is cancelled by the key that started it or an admin."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.http.deps import RISK_ROLES, require
from api.http.errors import ProblemError
from api.keys import Principal, Role
from api.precredit.jobs import JobRefused, JobRunner, JobStateError, PrecreditRequest
from api.quoting.versions import VersionsError, in_force
from features.store import audit

router = APIRouter(prefix="/v1/batch/precredit", tags=["batch"])
MEDIA_TYPES = {"parquet": "application/vnd.apache.parquet", "csv": "text/csv; charset=utf-8"}


class PrecreditBody(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"as_of": "2026-06-30", "products": ["tax_credit", "per_mu"], "reasons": 3, "format": "parquet"}]})

    as_of: dt.date | None = Field(None, description="features and rates as of this date (default today); "
                                                    "not in the future")
    products: list[str] | None = Field(None, min_length=1, max_length=20, description="product codes; default all")
    reasons: int = Field(0, ge=0, le=10, description="top-K explanations per row (0 = none, fastest)")
    format: Literal["parquet", "csv"] = "parquet"
    partitions: int | None = Field(None, ge=1, le=10_000, description="default one per 100,000 enterprises")

    @field_validator("reasons", "partitions", mode="before")
    @classmethod
    def _whole_number(cls, value: Any) -> Any:
        # JSON numbers only (2 and 2.0 alike); pydantic would also take true or "3"
        if isinstance(value, bool) or not isinstance(value, int | float | None):
            raise ValueError("must be a whole number")
        return value

    @field_validator("as_of", mode="before")
    @classmethod
    def _date_text(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, str | dt.date):  # 0 is not a date (pydantic would say 1970)
            raise ValueError("as_of must be a date YYYY-MM-DD")
        return value


class JobProgress(BaseModel):
    partitions_done: int
    partitions_total: int | None


class JobView(BaseModel):
    job_id: str
    kind: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    requested_by: str
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    request: dict[str, Any]
    progress: JobProgress
    result_url: str | None = None
    result_sha256: str | None = None
    result_rows: int | None = None
    summary: dict[str, Any] | None = None
    error: str | None = None
    cancel_requested_by: str | None = Field(None, description="set once a cancel was asked for; a running job "
                                                               "stops after its partition in progress")
    retries: int = Field(0, description="times the job was taken over after its worker stopped")


def _runner(request: Request) -> JobRunner:
    return request.app.state.batch_jobs


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands timestamps back without their zone; they were stored in UTC."""
    return value.replace(tzinfo=dt.UTC) if value is not None and value.tzinfo is None else value


def _view(row: Any) -> JobView:
    done = row.status == "succeeded"
    return JobView(
        job_id=row.job_id, kind=row.kind, status=row.status, requested_by=row.requested_by,
        created_at=_utc(row.created_at), started_at=_utc(row.started_at), finished_at=_utc(row.finished_at),
        request=json.loads(row.request_json),
        progress=JobProgress(partitions_done=row.partitions_done, partitions_total=row.partitions_total),
        result_url=f"{router.prefix}/{row.job_id}/result" if done else None,
        result_sha256=row.result_sha256, result_rows=row.result_rows,
        summary=json.loads(row.summary_json) if row.summary_json else None, error=row.error,
        cancel_requested_by=row.cancel_requested_by, retries=row.retries,
    )


def _job(request: Request, job_id: str) -> Any:
    row = _runner(request).get(job_id)
    if row is None:
        raise ProblemError(404, f"no batch job {job_id}")
    return row


@router.post("", status_code=202, response_model=JobView, summary="Start a whole-region pre-credit run",
             responses={429: {"description": "a quota of this key is used up (Retry-After)"},
                        503: {"description": "the batch queue is full (Retry-After)"}})
def start_precredit(body: PrecreditBody, request: Request, response: Response,
                    principal: Principal = Depends(require(*RISK_ROLES))) -> JobView:
    as_of = body.as_of or dt.date.today()
    try:  # the checks of every entry point: refused now with the field at fault, not later as a failed job
        products = list(in_force(as_of, body.products, request.app.state.quoting.definitions)[0])
    except VersionsError as error:
        raise ProblemError(422, error.message, errors=[{"field": error.field, "message": error.message}]) from None
    job = PrecreditRequest(as_of, products if body.products else None, body.reasons, body.format, "local",
                           body.partitions)
    try:
        job_id = _runner(request).submit(job, principal.key_id, principal.name)
    except JobRefused as refused:
        quota = refused.status == 429
        raise ProblemError(refused.status, str(refused), title="Batch quota exceeded" if quota else "Batch queue full",
                           headers={"Retry-After": str(refused.retry_after)},
                           errors=[{"field": "quota" if quota else "queue", "message": str(refused)}]) from None
    response.headers["Location"] = f"{router.prefix}/{job_id}"
    return _view(_job(request, job_id))


@router.get("/{job_id}", response_model=JobView, summary="A pre-credit job's status, progress and summary")
def get_precredit(job_id: str, request: Request, principal: Principal = Depends(require(*RISK_ROLES))) -> JobView:
    return _view(_job(request, job_id))


@router.get("/{job_id}/result", summary="Download a finished job's output file",
            responses={200: {"content": {MEDIA_TYPES["parquet"]: {}, "text/csv": {}}}})
def download_precredit(job_id: str, request: Request,
                       principal: Principal = Depends(require(*RISK_ROLES))) -> FileResponse:
    row = _job(request, job_id)
    if row.status != "succeeded":
        raise ProblemError(409, f"job {job_id} is {row.status}; the result is available once it has succeeded")
    path = Path(row.result_path)
    if not path.is_file():
        raise ProblemError(410, f"the result file of job {job_id} is no longer on the server")
    fmt = json.loads(row.request_json)["format"]
    with request.app.state.engine.begin() as conn:
        audit.append(conn, principal.name, "batch.precredit.download", f"batch:{job_id}",
                     {"sha256": row.result_sha256, "rows": row.result_rows})
    as_of = json.loads(row.request_json)["as_of"]
    return FileResponse(path, media_type=MEDIA_TYPES[fmt], filename=f"precredit-{as_of}-{job_id[:8]}.{fmt}",
                        headers={"X-Content-SHA256": row.result_sha256 or ""})


@router.post("/{job_id}/cancel", response_model=JobView, summary="Cancel a queued or running job (its owner or an "
             "admin); nothing of its output is kept", responses={409: {"description": "the job has finished"}})
def cancel_precredit(job_id: str, request: Request,
                     principal: Principal = Depends(require(*RISK_ROLES))) -> JobView:
    row = _job(request, job_id)
    if row.api_key_id != principal.key_id and principal.role is not Role.admin:
        raise ProblemError(403, "only the key that started a batch job, or an admin, may cancel it / "
                                "只有发起该批量任务的密钥或管理员可以取消它")
    try:
        return _view(_runner(request).cancel(job_id, principal.name))
    except JobStateError as error:
        raise ProblemError(409, str(error)) from None
