"""Quotes: create (stored before it is answered), read, replay."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Annotated, Any

import anyio
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.http import errors, logs
from api.http.deps import ALL_ROLES, CREDIT_CODE_SCHEMA, bearer, cached_principal, get_principal, require
from api.http.errors import ProblemError
from api.http.metrics import QUOTES
from api.http.routers.health import WriteOutcomes
from api.keys import Principal, Role
from api.monitoring import overrides
from api.quoting.diff import differences
from api.quoting.issuing import Issued, QuoteOrder, UnknownEnterpriseError, issue, stored, writes
from api.quoting.service import QuotingService
from api.quoting.snapshot import canonical_json, fast_json
from api.quoting.versions import VersionsError
from api.tables import quotes
from features import uscc
from features.store import audit
from features.validation import SAFE_TEXT_PATTERN, text_problem

router = APIRouter(prefix="/v1/quotes", tags=["quotes"])

EXAMPLE_CODE = "91330302000000000G"


class QuoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"credit_code": EXAMPLE_CODE, "products": ["tax_credit", "per_mu"], "requested_amount_cny": 3_000_000,
         "purpose": "working capital", "consent_ref": "AUTH-2026-000123"}]})

    credit_code: str = Field(description="unified social credit code (统一社会信用代码), 18 characters",
                             min_length=1, max_length=64, json_schema_extra=CREDIT_CODE_SCHEMA)
    products: list[str] | None = Field(None, description="product codes; default all", max_length=20)
    # strict: a number only (JSON true is not 1, "3000000" is not a number)
    requested_amount_cny: float | None = Field(None, gt=0, le=1e9, strict=True, description="requested amount (CNY)")
    purpose: str | None = Field(None, max_length=200, description="free text, one line, no control or "
                                "bidirectional-formatting characters", json_schema_extra={"pattern": SAFE_TEXT_PATTERN})
    consent_ref: str | None = Field(None, min_length=1, max_length=128,
                                    description="the enterprise's data-use consent reference (授权编号)",
                                    json_schema_extra={"pattern": SAFE_TEXT_PATTERN})
    as_of: dt.date | None = Field(None, description="data as of this date (default today); not in the future")

    @field_validator("purpose", "consent_ref")
    @classmethod
    def _plain_text(cls, value: str | None) -> str | None:
        if value is None:
            return None
        problem = text_problem(value, 200)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("credit_code")
    @classmethod
    def _valid_code(cls, value: str) -> str:
        reason = uscc.problem(value)
        if reason:
            raise ValueError(f"invalid unified social credit code: {reason}")
        return value


class QuoteResponse(BaseModel):
    model_config = ConfigDict(extra="allow")

    quote_id: str
    credit_code: str
    as_of: dt.date
    created_at: dt.datetime
    expires_at: dt.datetime
    quotes: list[dict[str, Any]]
    best_offer: dict[str, Any] | None
    model_version: str | None


class ReplayResponse(BaseModel):
    quote_id: str
    against: str
    identical: bool
    differences: list[dict[str, Any]]
    quotes: list[dict[str, Any]]


QuoteReaders = require(*ALL_ROLES)
Replayers = require(Role.loan_officer, Role.risk_analyst, Role.risk_approver, Role.admin)


def _service(request: Request) -> QuotingService:
    return request.app.state.quoting


def _field_error(status: int, field: str, message: str) -> ProblemError:
    return ProblemError(status, message, errors=[{"field": field, "message": message}])


def _order(body: QuoteRequest, principal: Principal, service: QuotingService, idempotency_key: str | None
           ) -> QuoteOrder:
    """The request checked against the versions in force on its as-of date (field-level 422s)."""
    if principal.role is Role.platform and not body.consent_ref:
        raise _field_error(422, "consent_ref", "the platform role must send the enterprise's consent reference")
    as_of = body.as_of or dt.date.today()
    try:
        products = service.products_for(as_of, body.products)
    except VersionsError as error:
        raise _field_error(422, error.field, error.message) from None
    return QuoteOrder(body.credit_code, as_of, products, body.requested_amount_cny, body.consent_ref,
                      canonical_json(body.model_dump(mode="json")), idempotency_key, principal)


def _issue(service: QuotingService, order: QuoteOrder) -> Issued:
    try:
        return issue(service, order)
    except VersionsError as error:  # e.g. no reference rate in force on that date
        raise _field_error(422, error.field, error.message) from None
    except UnknownEnterpriseError as error:
        raise _field_error(404, "credit_code", str(error)) from None


def _json_response(content: bytes, quote_id: str, status: int = 201, replayed: bool = False) -> Response:
    # Sent as bytes: the body was serialised once (for storage) and is not validated again on the way out.
    headers = {"Location": f"/v1/quotes/{quote_id}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(content, status_code=status, media_type="application/json", headers=headers)


def _answer(service: QuotingService, issued: Issued, error: BaseException | None, state: object = None) -> Response:
    """The response once the quote's transaction has ended: the quote, or why it was not issued."""
    values = issued.values
    if isinstance(error, sa.exc.IntegrityError):
        # A concurrent retry with the same Idempotency-Key won the race: answer with its result.
        key = values["idempotency_key"]
        previous = _lookup(service, issued.order.principal, key) if key else None
        if previous is None:
            raise error
        return _replayed(previous, issued.order, service)
    if isinstance(error, errors.STORE_ERRORS):
        WriteOutcomes.failed(state, error)  # /readyz says not ready until a write succeeds again
        problem = errors.store_unavailable(error)
        raise ProblemError(503, "the quote could not be stored, so it was not issued; retry later",
                           title=problem.title, headers=problem.headers) from None
    if error is not None:
        raise error
    WriteOutcomes.succeeded(state)
    logs.STORE.success()
    for q in issued.full["quotes"]:
        QUOTES.labels(q["product"], "true" if q["eligible"] else "false").inc()
    return _json_response(issued.sent, values["quote_id"])


def _lookup(service: QuotingService, principal: Principal, idempotency_key: str) -> sa.Row | None:
    with service.engine.connect() as conn:
        return stored(conn, principal.key_id, idempotency_key)


IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=128)]


async def _any_role(request: Request,
                   credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Principal:
    """`require(*ALL_ROLES)` without a threadpool hop when the key is in api.http.deps' per-process cache."""
    if credentials is not None and credentials.credentials:
        cached = cached_principal(request, credentials.credentials)
        if cached is not None:
            return cached
    return await anyio.to_thread.run_sync(get_principal, request, credentials)


@router.post("", status_code=201, response_model=QuoteResponse, summary="Quote every (or some) products",
             responses={404: {"description": "unknown enterprise"}, 409: {"description": "idempotency conflict"},
                        422: {"description": "invalid request"}})
async def create_quote(body: QuoteRequest, request: Request, principal: Principal = Depends(_any_role),
                       idempotency_key: IdempotencyKey = None) -> Response:
    """The quote is computed on the event loop when its date's population is in memory (array takes), else
    in a thread (reading the store must not block the loop); it is committed by the writer thread (awaited
    without a thread of its own) before the response is sent."""
    service = _service(request)
    order = _order(body, principal, service, idempotency_key)
    if idempotency_key:
        previous = await anyio.to_thread.run_sync(_lookup, service, principal, idempotency_key)
        if previous is not None:
            return _replayed(previous, order, service)
    if service.prepared(order.as_of):
        issued = _issue(service, order)
    else:
        issued = await anyio.to_thread.run_sync(_issue, service, order)
    future = service.writer.submit(writes(issued), getattr(request.state, "deadline", None))
    try:
        # The writer thread commits; the event loop serves others meanwhile. Shielded: the writer's future is
        # never cancelled from here (a request given up on must not disturb the writer).
        await asyncio.shield(asyncio.wrap_future(future))
    except Exception as error:  # noqa: BLE001 - turned into the response below
        return await anyio.to_thread.run_sync(_answer, service, issued, error, request.app.state)
    return _answer(service, issued, None, request.app.state)


def _replayed(previous: sa.Row, order: QuoteOrder, service: QuotingService) -> Response:
    if previous.request_json != order.request_json:
        raise ProblemError(409, "this Idempotency-Key was already used with a different request body",
                           errors=[{"field": "Idempotency-Key", "message": "reused with a different body"}])
    if order.principal.role is Role.platform:
        content = service.platform_json(json.loads(previous.response_json), previous.as_of)
    else:
        content = previous.response_json.encode("utf-8")
    return _json_response(content, previous.quote_id, replayed=True)


def _load(request: Request, quote_id: str, principal: Principal) -> sa.Row:
    with _service(request).engine.connect() as conn:
        row = conn.execute(sa.select(quotes).where(quotes.c.quote_id == quote_id)).first()
    # A platform key sees only its own quotes; to it, others' quotes do not exist.
    if row is None or (principal.role is Role.platform and row.api_key_id != principal.key_id):
        raise ProblemError(404, f"quote {quote_id} not found")
    return row


@router.get("/{quote_id}", response_model=QuoteResponse, summary="A stored quote, as issued")
def get_quote(quote_id: str, request: Request,
              principal: Principal = Depends(QuoteReaders)) -> Response:
    row = _load(request, quote_id, principal)
    if principal.role is Role.platform:
        content = _service(request).platform_json(json.loads(row.response_json), row.as_of)
    elif found := overrides.for_quote(request.app.state.engine, quote_id):  # officers' overrides, beside it
        content = fast_json({**json.loads(row.response_json), "overrides": found})
    else:
        content = row.response_json.encode("utf-8")  # exactly the stored (and first sent) bytes
    return Response(content, media_type="application/json")


@router.get("/{quote_id}/replay", response_model=ReplayResponse,
            summary="Recompute a stored quote from its snapshot (identical) or under today's versions")
def replay_quote(quote_id: str, request: Request,
                 against: Annotated[str, Query(pattern="^(stored|current)$")] = "stored",
                 principal: Principal = Depends(Replayers)) -> dict[str, Any]:
    row = _load(request, quote_id, principal)
    stored = json.loads(row.response_json)
    snapshot = json.loads(row.snapshot_json)
    req = json.loads(row.request_json)
    products = [q["product"] for q in stored["quotes"]]
    service = _service(request)
    try:
        recomputed = service.replay(row.credit_code, snapshot, products, req.get("requested_amount_cny"),
                                    current=against == "current")
    except (KeyError, FileNotFoundError, VersionsError) as error:
        raise ProblemError(409, f"the versions this quote used are no longer available: {error}") from error
    before = {k: stored[k] for k in ("quotes", "best_offer", "model_version", "risk")}
    after = {k: recomputed[k] for k in ("quotes", "best_offer", "model_version", "risk")}
    diff = differences(before, after)
    with service.engine.begin() as conn:
        audit.append(conn, principal.name, "quote.replay", f"quote:{quote_id}",
                     {"against": against, "identical": not diff})
    return {"quote_id": quote_id, "against": against, "identical": not diff, "differences": diff,
            "quotes": recomputed["quotes"]}
