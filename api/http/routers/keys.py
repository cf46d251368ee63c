"""API keys over the API: revocation (admins only), effective at once in every worker on this machine."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.http.deps import require
from api.http.errors import ProblemError
from api.http.limits import bump_key_epoch
from api.keys import KeyOperationError, Principal, Role, revoke_key
from features.validation import NONBLANK_SAFE_TEXT_PATTERN, text_problem

router = APIRouter(prefix="/v1/keys", tags=["keys"])
Admins = require(Role.admin)


class RevokeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"key_id": 12, "reason": "the platform's key leaked in a support ticket"}]})

    key_id: int = Field(ge=1, le=2**31 - 1, description="the key's id (`indexloan keys list`)")
    reason: str = Field(min_length=1, max_length=200, description="why (recorded in the audit log)",
                        json_schema_extra={"pattern": NONBLANK_SAFE_TEXT_PATTERN})

    @field_validator("key_id", mode="before")
    @classmethod
    def _a_number(cls, value: object) -> object:
        if isinstance(value, bool | str):  # JSON true is not 1, "12" is not a number
            raise ValueError("must be a number (the key's id)")
        return value

    @field_validator("reason")
    @classmethod
    def _plain_text(cls, value: str) -> str:
        value = value.strip()
        problem = text_problem(value, 200) if value else "must not be blank"
        if problem:
            raise ValueError(problem)
        return value


class RevokedKey(BaseModel):
    id: int
    name: str
    role: str
    revoked_at: str


def _revoke(request: Request, body: RevokeRequest, principal: Principal) -> dict:
    engine = request.app.state.engine
    try:
        revoked = revoke_key(engine, body.key_id, principal.name, body.reason)
    except KeyOperationError as error:
        status = 404 if "no API key" in str(error) else 409
        raise ProblemError(status, str(error), errors=[{"field": "key_id", "message": str(error)}]) from None
    bump_key_epoch(engine.url.render_as_string(hide_password=False))  # every worker forgets its cached keys
    request.app.state.key_cache.clear()
    return revoked


@router.post("/revoke", response_model=RevokedKey, summary="Revoke an API key (admins): refused at once by every "
             "worker", responses={404: {"description": "unknown key"}, 409: {"description": "already revoked"}})
async def revoke(body: RevokeRequest, request: Request, principal: Principal = Depends(Admins)) -> dict:
    return await anyio.to_thread.run_sync(_revoke, request, body, principal)
