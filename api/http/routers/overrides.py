"""Loan officers' overrides of a quote's amount or rate (a reason is mandatory; policy bounds apply)."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from api.http.deps import require
from api.http.errors import ProblemError
from api.keys import Principal, Role
from api.monitoring import overrides

router = APIRouter(prefix="/v1/quotes", tags=["quotes"])

Officers = require(Role.loan_officer)


class OverrideBody(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"product": "tech_innovation", "amount_cny": 3_000_000, "rate": 3.45,
         "reason": "collateral offered by the owner; approved by branch head"}]})

    product: str | None = Field(None, max_length=64, description="the quoted product to override")
    amount_cny: float | None = Field(None, strict=True, description="the new amount (CNY), within the product's "
                                     "policy bounds (limit.min_cny to limit.max_cny)")
    rate: float | None = Field(None, strict=True, description="the new annual rate (%), within the product's "
                               "rate floor and ceiling")
    reason: str | None = Field(None, max_length=2000, description="why (mandatory), one line of text")


@router.post("/{quote_id}/overrides", status_code=201, summary="Override a quote's amount or rate, with a reason",
             responses={404: {"description": "unknown quote"}, 422: {"description": "missing reason or out of "
                                                                                     "policy bounds"}})
async def create_override(quote_id: str, body: OverrideBody, request: Request,
                          principal: Principal = Depends(Officers)) -> dict[str, Any]:
    wanted = overrides.OverrideRequest(body.product, body.amount_cny, body.rate, body.reason)
    try:
        return await anyio.to_thread.run_sync(overrides.record, request.app.state.engine, quote_id, principal.name,
                                              principal.key_id, wanted)
    except LookupError:
        raise ProblemError(404, f"quote {quote_id} not found") from None
    except overrides.OverrideError as error:
        raise ProblemError(422, f"{error.en} / {error.zh}",
                           errors=[{"field": error.field, "message": error.en, "message_zh": error.zh}]) from None
