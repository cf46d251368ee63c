"""Audit-log verification."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from api.http.deps import require
from api.keys import Principal, Role
from features.store import audit

router = APIRouter(prefix="/v1/audit", tags=["audit"])


class AuditVerification(BaseModel):
    ok: bool
    rows: int
    problems: list[str]


@router.get("/verify", response_model=AuditVerification, summary="Verify the audit hash chain")
def verify_audit(request: Request,
                 principal: Principal = Depends(require(Role.admin, Role.risk_approver))) -> AuditVerification:
    with request.app.state.engine.connect() as conn:
        result = audit.verify(conn)
    return AuditVerification(**result.as_json())
