"""Liveness, readiness and Prometheus metrics (no authentication)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from api.http.errors import ProblemError
from api.http.metrics import exposition
from api.quoting.versions import VersionsError

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: database reachable, products loaded")
def readyz(request: Request) -> dict:
    try:
        with request.app.state.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as error:
        raise ProblemError(503, f"database not reachable: {type(error).__name__}") from error
    try:
        versions = request.app.state.quoting.state(dt.date.today()).versions
    except VersionsError as error:
        raise ProblemError(503, f"no quotes can be given today: {error.message}") from error
    return {"status": "ready", "products": sorted(versions.products), "model_version": versions.model_version}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics() -> Response:
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)
