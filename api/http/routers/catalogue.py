"""Products (the definitions in force) and risk models (the registry), read-only."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Depends, Request

from api.http.deps import ALL_ROLES, RISK_ROLES, require
from api.http.errors import ProblemError
from api.keys import Principal
from api.quoting.versions import definition_sha, definitions_in_force
from products.schema import ProductDefinition

router = APIRouter(prefix="/v1", tags=["catalogue"])

AnyRole = require(*ALL_ROLES)
RiskRoles = require(*RISK_ROLES)


def _summary(d: ProductDefinition) -> dict[str, Any]:
    return {"code": d.code, "name": d.name.model_dump(), "version": d.version,
            "effective_date": d.effective_date.isoformat()}


def _in_force(request: Request) -> dict[str, ProductDefinition]:
    """The definitions in force today (the ones today's quotes use)."""
    return definitions_in_force(request.app.state.quoting.definitions, dt.date.today())


@router.get("/products", summary="Products in force today, with versions")
def list_products(request: Request, principal: Principal = Depends(AnyRole)) -> list[dict[str, Any]]:
    return [_summary(d) for d in _in_force(request).values()]


@router.get("/products/{code}", summary="One product definition in force today")
def get_product(code: str, request: Request, principal: Principal = Depends(AnyRole)) -> dict[str, Any]:
    in_force = _in_force(request)
    d = in_force.get(code)
    if d is None:
        raise ProblemError(404, f"unknown product {code!r}; in force today: {', '.join(in_force)}")
    return {**_summary(d), "sha256": definition_sha(d), "definition": d.model_dump(mode="json")}


@router.get("/models", summary="Risk models in the registry, with stages")
def list_models(request: Request, principal: Principal = Depends(RiskRoles)) -> list[dict[str, Any]]:
    from training.registry import Registry

    registry = Registry(request.app.state.engine, request.app.state.models_dir)
    return [m.summary() for m in registry.list()]
