"""Liveness, readiness and Prometheus metrics (no authentication).

`/healthz` and `/metrics` run on the event loop and touch neither the database nor the model, so they
answer while either is down (or while every worker thread waits on a hung database). `/readyz` is ready
only when the store can be written now (a write probe, and the last quote write did not fail), today's
versions can be built and the champion model (if any) loads verified.
"""

from __future__ import annotations

import datetime as dt
import time

import anyio
import sqlalchemy as sa
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from api.http import errors, logs
from api.http.errors import ProblemError
from api.http.lifecycle import unavailable
from api.http.metrics import exposition
from api.quoting.versions import VersionsError
from training.errors import ArtifactIntegrityError

router = APIRouter(tags=["health"])

WRITE_FAILURE_MEMORY_SECONDS = 60.0  # a failed quote write keeps /readyz not-ready this long, unless one succeeds
# (in any worker: the outcomes are shared through the runtime directory)


class WriteOutcomes:
    """The last quote write's outcome (set by the quote route): in the files the workers share when the app
    has them (app.state.limits.writes), else in this process."""

    failed_at: float | None = None
    cause: str = ""

    @classmethod
    def failed(cls, state: object, error: BaseException) -> None:
        cls.failed_at, cls.cause = time.monotonic(), logs.describe(error)
        limits = getattr(state, "limits", None)
        if limits is not None:
            limits.writes.failed()

    @classmethod
    def succeeded(cls, state: object) -> None:
        if cls.failed_at is not None:
            cls.failed_at = None
        limits = getattr(state, "limits", None)
        if limits is not None:
            limits.writes.succeeded()

    @classmethod
    def failing_since(cls, state: object) -> float | None:
        limits = getattr(state, "limits", None)
        return limits.writes.failing_since() if limits is not None else cls.failed_at


def _not_ready(detail: str) -> ProblemError:
    return ProblemError(503, detail, title="Not ready", headers=errors.retry_after())


def _probe_write(engine: sa.Engine) -> None:
    """Take the store's write lock (SQLite) or a transaction id (PostgreSQL) and roll back: fails when the
    store is read-only, immutable, unreachable or locked past the timeout."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            conn.exec_driver_sql("ROLLBACK")
        else:
            with conn.begin():
                conn.execute(sa.text("SELECT txid_current()"))
                conn.rollback()


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict:
    return {"status": "ok"}


def _readiness(request: Request) -> dict:
    quoting = request.app.state.quoting
    try:
        _probe_write(request.app.state.engine)
    except errors.STORE_ERRORS as error:
        logs.STORE.failure(error)
        raise _not_ready(f"the store cannot be written: {logs.describe(error)}") from None
    failed_at = WriteOutcomes.failing_since(request.app.state)
    if failed_at is not None and time.monotonic() - failed_at < WRITE_FAILURE_MEMORY_SECONDS:
        raise _not_ready("the last quote could not be stored" + (f": {WriteOutcomes.cause}" if WriteOutcomes.cause
                                                                  else ""))
    if unavailable(quoting):
        raise quoting.problem()
    try:
        versions = quoting.state(dt.date.today()).versions
        model = quoting.model()  # the champion now (a new one may have been promoted since the state was built)
    except VersionsError as error:
        raise _not_ready(f"no quotes can be given today: {error.message}") from error
    except ArtifactIntegrityError as error:
        raise errors.model_unavailable(error) from None
    logs.STORE.success()
    logs.MODEL.success()
    return {"status": "ready", "products": sorted(versions.products), "model_version": versions.model_version,
            "champion": None if model is None else model.model_version,
            "quotes_rendered": quoting.rendered_share(dt.date.today())}


@router.get("/readyz", summary="Readiness: the store writable, today's versions and the champion model loaded")
async def readyz(request: Request) -> dict:
    return await anyio.to_thread.run_sync(_readiness, request)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics() -> Response:
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)
