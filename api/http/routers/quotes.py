"""Quotes: create (stored before it is answered), read, replay."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import anyio
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import BaseModel, ConfigDict, ValidationError

from api.http.deps import ALL_ROLES, bearer, cached_principal, get_principal, require
from api.http.errors import ProblemError
from api.http.quote_flow import QuoteRequest, answer, issue_checked, lookup, order_of, replayed
from api.keys import Principal, Role
from api.monitoring import overrides
from api.quoting.diff import differences
from api.quoting.issuing import QuoteWrite
from api.quoting.service import QuotingService
from api.quoting.snapshot import fast_json
from api.quoting.versions import VersionsError
from api.tables import quotes
from features.store import audit

router = APIRouter(prefix="/v1/quotes", tags=["quotes"])


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


MAX_IDEMPOTENCY_KEY = 128  # both readers of the header: FastAPI's (`IdempotencyKey`) and `_plain_arguments`
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=MAX_IDEMPOTENCY_KEY)]


async def _any_role(request: Request,
                   credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Principal:
    """`require(*ALL_ROLES)` without a threadpool hop when the key is in api.http.deps' per-process cache."""
    if credentials is not None and credentials.credentials:
        cached = cached_principal(request, credentials.credentials)
        if cached is not None:
            return cached
    return await anyio.to_thread.run_sync(get_principal, request, credentials)


async def create_quote(body: QuoteRequest, request: Request, principal: Principal = Depends(_any_role),
                       idempotency_key: IdempotencyKey = None) -> Response:
    """The quote is computed on the event loop when its date's population is in memory (array takes), else
    in a thread (reading the store must not block the loop); it is committed by the writer thread (awaited
    without a thread of its own) before the response is sent."""
    service = _service(request)
    order = order_of(body, principal, service, idempotency_key)
    if idempotency_key:
        previous = await anyio.to_thread.run_sync(lookup, service, principal, idempotency_key)
        if previous is not None:
            return replayed(previous, order, service)
    if service.prepared(order.as_of):
        issued = issue_checked(service, order)
    else:
        issued = await anyio.to_thread.run_sync(issue_checked, service, order)
    future = service.writer.submit(QuoteWrite(issued), getattr(request.state, "deadline", None))
    try:
        # The writer thread commits; the event loop serves others meanwhile. Shielded: the writer's future is
        # never cancelled from here (a request given up on must not disturb the writer).
        await asyncio.shield(asyncio.wrap_future(future))
    except Exception as error:  # noqa: BLE001 - turned into the response below
        return await anyio.to_thread.run_sync(answer, service, issued, error, request.app.state)
    return answer(service, issued, None, request.app.state)


def _plain_arguments(request: Request, body: bytes) -> tuple[QuoteRequest, Principal, str | None] | None:
    """`create_quote`'s arguments when the request is the usual one, read without FastAPI's dependency solving
    (~10% of a quote's CPU time): a JSON body that is a valid QuoteRequest (validated as FastAPI does:
    `json.loads`, then the model in Python mode), a Bearer key in this process's cache, at most one valid
    Idempotency-Key. None for anything else: FastAPI's own handler then answers, with its field-level errors."""
    headers = request.headers
    content_type = headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        return None
    keys = headers.getlist("idempotency-key")
    if len(keys) > 1 or (keys and len(keys[0]) > MAX_IDEMPOTENCY_KEY):
        return None
    authorization = headers.get("authorization")
    scheme, credentials = get_authorization_scheme_param(authorization)
    if not (authorization and scheme and credentials) or scheme.lower() != "bearer":
        return None
    principal = cached_principal(request, credentials)
    if principal is None:
        return None
    try:
        value = json.loads(body)
        quote_request = QuoteRequest.model_validate(value) if isinstance(value, dict) else None
    except (ValueError, ValidationError):  # JSON syntax (JSONDecodeError is a ValueError) or a field
        return None
    return None if quote_request is None else (quote_request, principal, keys[0] if keys else None)


class QuoteRoute(APIRoute):
    """`POST /v1/quotes`: the usual request goes straight to the endpoint (`_plain_arguments`); any other is
    handled by FastAPI's own handler, so its answers (401, 422 and their messages) are FastAPI's. The route is
    declared as any other, so the OpenAPI document is unchanged."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def quote_handler(request: Request) -> Response:
            arguments = _plain_arguments(request, await request.body())  # the body is kept for `handler`
            if arguments is None:
                return await handler(request)
            body, principal, idempotency_key = arguments
            return await create_quote(body, request, principal, idempotency_key)

        return quote_handler


router.add_api_route("", create_quote, methods=["POST"], status_code=201, response_model=QuoteResponse,
                     summary="Quote every (or some) products", route_class_override=QuoteRoute,
                     responses={404: {"description": "unknown enterprise"},
                                409: {"description": "idempotency conflict"}, 422: {"description": "invalid request"}})


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
