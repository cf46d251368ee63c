"""Products (the definitions in force) and risk models (the registry), read-only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from api.http.deps import ALL_ROLES, RISK_ROLES, require
from api.http.errors import ProblemError
from api.keys import Principal

router = APIRouter(prefix="/v1", tags=["catalogue"])

AnyRole = require(*ALL_ROLES)
RiskRoles = require(*RISK_ROLES)


def _summary(code: str, plan: Any) -> dict[str, Any]:
    d = plan.definition
    return {"code": code, "name": d.name.model_dump(), "version": plan.version,
            "effective_date": str(d.effective_date) if getattr(d, "effective_date", None) else None}


@router.get("/products", summary="Products in force, with versions")
def list_products(request: Request, principal: Principal = Depends(AnyRole)) -> list[dict[str, Any]]:
    versions = request.app.state.quoting.versions
    return [_summary(c, p) for c, p in versions.plans.items()]


@router.get("/products/{code}", summary="One product definition in force")
def get_product(code: str, request: Request, principal: Principal = Depends(AnyRole)) -> dict[str, Any]:
    versions = request.app.state.quoting.versions
    plan = versions.plans.get(code)
    if plan is None:
        raise ProblemError(404, f"unknown product {code!r}; known: {', '.join(versions.plans)}")
    return {**_summary(code, plan), "sha256": versions.definition_sha[code],
            "definition": plan.definition.model_dump(mode="json")}


@router.get("/models", summary="Risk models in the registry, with stages")
def list_models(request: Request, principal: Principal = Depends(RiskRoles)) -> list[dict[str, Any]]:
    from training.registry import Registry

    registry = Registry(request.app.state.engine, request.app.state.models_dir)
    return [m.summary() for m in registry.list()]
