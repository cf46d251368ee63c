"""Quotes: create (stored before it is answered), read, replay."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any

import anyio
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.http.deps import ALL_ROLES, CREDIT_CODE_SCHEMA, bearer, get_principal, require
from api.http.errors import ProblemError
from api.http.metrics import QUOTES
from api.keys import Principal, Role
from api.quoting.diff import differences
from api.quoting.service import QuotingService, platform_body
from api.quoting.snapshot import canonical_json, fast_json
from api.tables import quotes
from features import uscc
from features.store import audit

router = APIRouter(prefix="/v1/quotes", tags=["quotes"])

EXAMPLE_CODE = "91330302000000000G"


class QuoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"credit_code": EXAMPLE_CODE, "products": ["tax_credit", "per_mu"], "requested_amount_cny": 3_000_000,
         "purpose": "working capital", "consent_ref": "AUTH-2026-000123"}]})

    credit_code: str = Field(description="unified social credit code (统一社会信用代码), 18 characters",
                             min_length=1, max_length=64, json_schema_extra=CREDIT_CODE_SCHEMA)
    products: list[str] | None = Field(None, description="product codes; default all", max_length=20)
    requested_amount_cny: float | None = Field(None, gt=0, le=1e9, description="requested amount (CNY)")
    purpose: str | None = Field(None, max_length=200)
    consent_ref: str | None = Field(None, min_length=1, max_length=128,
                                    description="the enterprise's data-use consent reference (授权编号)")
    as_of: dt.date | None = Field(None, description="data as of this date (default today); not in the future")

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


QuoteCreators = require(*ALL_ROLES)
QuoteReaders = require(*ALL_ROLES)
Replayers = require(Role.loan_officer, Role.risk_analyst, Role.risk_approver, Role.admin)


def _service(request: Request) -> QuotingService:
    return request.app.state.quoting


def _field_error(status: int, field: str, message: str) -> ProblemError:
    return ProblemError(status, message, errors=[{"field": field, "message": message}])


def _check_request(body: QuoteRequest, principal: Principal, service: QuotingService) -> tuple[list[str], dt.date]:
    if principal.role is Role.platform and not body.consent_ref:
        raise _field_error(422, "consent_ref", "the platform role must send the enterprise's consent reference")
    known = service.products
    products = list(dict.fromkeys(body.products)) if body.products else known
    unknown = [p for p in products if p not in known]
    if unknown:
        raise _field_error(422, "products", f"unknown product(s): {', '.join(unknown)}; known: {', '.join(known)}")
    today = dt.date.today()
    as_of = body.as_of or today
    if as_of > today:
        raise _field_error(422, "as_of", f"as_of {as_of} is in the future")
    return products, as_of


def _stored(conn: sa.Connection, key_id: int, idempotency_key: str) -> sa.Row | None:
    return conn.execute(sa.select(quotes).where(quotes.c.api_key_id == key_id,
                                                quotes.c.idempotency_key == idempotency_key)).first()


def _visible(body: dict[str, Any], principal: Principal, service: QuotingService) -> dict[str, Any]:
    return platform_body(service.versions, body) if principal.role is Role.platform else body


@dataclass
class _Issued:
    """A computed quote, serialised, ready to be stored and then sent."""

    values: dict[str, Any]  # the `quotes` row
    full: dict[str, Any]
    sent: bytes
    products: list[str]
    versions: Any
    snapshot: dict[str, Any]


def _json_response(content: bytes, quote_id: str, status: int = 201, replayed: bool = False) -> Response:
    # Sent as bytes: the body was serialised once (for storage) and is not validated again on the way out.
    headers = {"Location": f"/v1/quotes/{quote_id}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(content, status_code=status, media_type="application/json", headers=headers)


def _issue(service: QuotingService, body: QuoteRequest, principal: Principal, products: list[str],
           as_of: dt.date, request_json: str, idempotency_key: str | None) -> _Issued:
    """Compute and serialise a quote (CPU only, no database writes)."""
    computed = service.quote(body.credit_code, as_of, products, body.requested_amount_cny)
    if computed is None:
        raise _field_error(404, "credit_code", f"enterprise {body.credit_code} is not in the store as of {as_of}")
    quote_body, snapshot, versions = computed
    created = dt.datetime.now(dt.UTC)
    expires = created + dt.timedelta(days=min(q["expiry_days"] for q in quote_body["quotes"]))
    quote_id = str(uuid.uuid4())
    full = {"quote_id": quote_id, "credit_code": body.credit_code, "as_of": as_of.isoformat(),
            "created_at": created.isoformat(), "expires_at": expires.isoformat(),
            "consent_ref": body.consent_ref, **quote_body}
    full_json = fast_json(full)
    sent = fast_json(platform_body(versions, full)) if principal.role is Role.platform else full_json
    values = dict(quote_id=quote_id, credit_code=body.credit_code, as_of=as_of, created_at=created,
                  expires_at=expires, api_key_id=principal.key_id, role=principal.role.value,
                  consent_ref=body.consent_ref, idempotency_key=idempotency_key, request_json=request_json,
                  snapshot_json=fast_json(snapshot).decode("utf-8"), response_json=full_json.decode("utf-8"),
                  response_sha256=hashlib.sha256(full_json).hexdigest())
    return _Issued(values, full, sent, products, versions, snapshot)


INSERT_QUOTE = quotes.insert()  # one statement object: compiled once, values bound per quote


def _writes(issued: _Issued, principal: Principal) -> Callable[[sa.Connection], None]:
    values = issued.values

    def write(conn: sa.Connection) -> None:
        # The quote row first: on SQLite its INSERT takes the write lock before the audit head is read.
        conn.execute(INSERT_QUOTE, values)
        audit.append(conn, principal.name, "quote.create", f"quote:{values['quote_id']}",
                     {"credit_code": values["credit_code"], "role": principal.role.value,
                      "consent_ref": values["consent_ref"], "products": issued.products,
                      "model_version": issued.versions.model_version,
                      "source_as_of": issued.snapshot["source_as_of"]})

    return write


def _answer(service: QuotingService, issued: _Issued, principal: Principal, error: BaseException | None) -> Response:
    """The response once the quote's transaction has ended: the quote, or why it was not issued."""
    values = issued.values
    if isinstance(error, sa.exc.IntegrityError):
        # A concurrent retry with the same Idempotency-Key won the race: answer with its result.
        key = values["idempotency_key"]
        previous = _lookup(service, principal, key) if key else None
        if previous is None:
            raise error
        return _replayed(previous, values["request_json"], principal, service)
    if isinstance(error, sa.exc.SQLAlchemyError):
        raise ProblemError(503, "the quote could not be stored, so it was not issued; retry later") from error
    if error is not None:
        raise error
    for q in issued.full["quotes"]:
        QUOTES.labels(q["product"], "true" if q["eligible"] else "false").inc()
    return _json_response(issued.sent, values["quote_id"])


def _store(service: QuotingService, issued: _Issued, principal: Principal) -> Response:
    """Commit the quote and its audit row (grouped with concurrent quotes), then answer with it."""
    future = service.writer.submit(_writes(issued, principal))
    return _answer(service, issued, principal, future.exception())


def _lookup(service: QuotingService, principal: Principal, idempotency_key: str) -> sa.Row | None:
    with service.engine.connect() as conn:
        return _stored(conn, principal.key_id, idempotency_key)


IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=128)]
CREATE = dict(status_code=201, response_model=QuoteResponse, summary="Quote every (or some) products",
              responses={404: {"description": "unknown enterprise"}, 409: {"description": "idempotency conflict"},
                         422: {"description": "invalid request"}})


def _prepared(request: Request, body: QuoteRequest, principal: Principal, idempotency_key: str | None
              ) -> tuple[QuotingService, dt.date, str, Callable[[], _Issued]]:
    """Checks shared by both routes: the service, the as-of date, the canonical request and the issuing call."""
    service = _service(request)
    products, as_of = _check_request(body, principal, service)
    request_json = canonical_json(body.model_dump(mode="json"))
    return service, as_of, request_json, partial(_issue, service, body, principal, products, as_of, request_json,
                                                 idempotency_key)


def create_quote(body: QuoteRequest, request: Request, principal: Principal = Depends(QuoteCreators),
                 idempotency_key: IdempotencyKey = None) -> Response:
    """Threadpool route: the whole quote (compute, then commit) runs in one worker thread."""
    service, _as_of, request_json, issue = _prepared(request, body, principal, idempotency_key)
    if idempotency_key:
        previous = _lookup(service, principal, idempotency_key)
        if previous is not None:
            return _replayed(previous, request_json, principal, service)
    return _store(service, issue(), principal)


async def _any_role(request: Request,
                   credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Principal:
    """`require(*ALL_ROLES)` without a threadpool hop when the key is in api.http.deps' per-process cache."""
    if credentials is not None:
        cached = request.app.state.key_cache.get(credentials.credentials)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
    return await anyio.to_thread.run_sync(get_principal, request, credentials)


async def create_quote_async(body: QuoteRequest, request: Request, principal: Principal = Depends(_any_role),
                             idempotency_key: IdempotencyKey = None) -> Response:
    """Async route: the computation runs on the event loop, database reads in a thread, the commit in the
    writer thread (awaited without a thread of its own)."""
    service, as_of, request_json, issue = _prepared(request, body, principal, idempotency_key)
    if idempotency_key:
        previous = await anyio.to_thread.run_sync(_lookup, service, principal, idempotency_key)
        if previous is not None:
            return _replayed(previous, request_json, principal, service)
    # today's quote is array lookups on the loop; another date reads the store, which must not block it
    issued = issue() if as_of == dt.date.today() else await anyio.to_thread.run_sync(issue)
    future = service.writer.submit(_writes(issued, principal))
    try:
        await asyncio.wrap_future(future)  # the writer thread commits; the event loop serves others meanwhile
    except Exception as error:  # noqa: BLE001 - turned into the response below
        return await anyio.to_thread.run_sync(_answer, service, issued, principal, error)
    return _answer(service, issued, principal, None)


# Which route serves POST /v1/quotes; INDEXLOAN_QUOTE_MODE=thread|async overrides it (for bench/http.py).
# Async is the default. bench/http.py at 04:04-04:07 UTC (20,000 enterprises, 8 s a cell, load average
# 1.4-2.3), threadpool route vs async route, quotes/s (p50 / p99 ms; server CPU ms per quote):
#   1 worker,  1 conn:   143 (6.5 / 21; 6.5)   vs 400 (2.2 / 6.0; 2.3)
#   1 worker, 32 conns:  188 (150 / 349; 5.3)  vs 311 (86 / 239; 3.2)
#   2 workers, 1 conn:   158 (6.1 / 12; 5.9)   vs 314 (2.9 / 7.0; 3.0)
#   2 workers, 32 conns: 272 (99 / 298; 5.2)   vs 563 (45 / 194; 2.7)
# The async route has no threadpool hops for its dependencies and endpoint, and awaits the writer
# thread's group commit instead of blocking a pool thread on it.
QUOTE_MODE = os.environ.get("INDEXLOAN_QUOTE_MODE", "async")
router.post("", **CREATE)(create_quote_async if QUOTE_MODE == "async" else create_quote)


def _replayed(previous: sa.Row, request_json: str, principal: Principal, service: QuotingService) -> Response:
    if previous.request_json != request_json:
        raise ProblemError(409, "this Idempotency-Key was already used with a different request body",
                           errors=[{"field": "Idempotency-Key", "message": "reused with a different body"}])
    if principal.role is Role.platform:
        content = fast_json(platform_body(service.versions, json.loads(previous.response_json)))
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
        content = fast_json(_visible(json.loads(row.response_json), principal, _service(request)))
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
    except (KeyError, FileNotFoundError) as error:
        raise ProblemError(409, f"the versions this quote used are no longer available: {error}") from error
    before = {k: stored[k] for k in ("quotes", "best_offer", "model_version", "risk")}
    after = {k: recomputed[k] for k in ("quotes", "best_offer", "model_version", "risk")}
    diff = differences(before, after)
    with service.engine.begin() as conn:
        audit.append(conn, principal.name, "quote.replay", f"quote:{quote_id}",
                     {"against": against, "identical": not diff})
    return {"quote_id": quote_id, "against": against, "identical": not diff, "differences": diff,
            "quotes": recomputed["quotes"]}
