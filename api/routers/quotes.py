"""Quotes: create (stored before it is answered), read, replay."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api import audit
from api.deps import ALL_ROLES, require
from api.diff import differences
from api.errors import ProblemError
from api.keys import Principal, Role
from api.metrics import QUOTES
from api.quoting import QuotingService, compute_quotes, platform_body
from api.snapshot import canonical_json
from api.tables import quotes
from features import uscc

router = APIRouter(prefix="/v1/quotes", tags=["quotes"])

EXAMPLE_CODE = "91330302000000000G"


class QuoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"credit_code": EXAMPLE_CODE, "products": ["tax_credit", "per_mu"], "requested_amount_cny": 3_000_000,
         "purpose": "working capital", "consent_ref": "AUTH-2026-000123"}]})

    credit_code: str = Field(description="unified social credit code (统一社会信用代码), 18 characters",
                             min_length=1, max_length=64)
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


@router.post("", status_code=201, response_model=QuoteResponse, summary="Quote every (or some) products",
             responses={404: {"description": "unknown enterprise"}, 409: {"description": "idempotency conflict"},
                        422: {"description": "invalid request"}})
def create_quote(
    body: QuoteRequest,
    request: Request,
    response: Response,
    principal: Principal = Depends(QuoteCreators),
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=128)] = None,
) -> dict[str, Any]:
    service = _service(request)
    products, as_of = _check_request(body, principal, service)
    request_json = canonical_json(body.model_dump(mode="json"))
    engine = service.engine
    if idempotency_key:
        with engine.connect() as conn:
            previous = _stored(conn, principal.key_id, idempotency_key)
        if previous is not None:
            return _replayed(previous, request_json, response, principal, service)

    row, versions = service.inputs(body.credit_code, as_of)
    if row.empty:
        raise _field_error(404, "credit_code", f"enterprise {body.credit_code} is not in the store as of {as_of}")
    computed = compute_quotes(versions, row, products, body.requested_amount_cny)
    created = dt.datetime.now(dt.UTC)
    valid_days = min(q["expiry_days"] for q in computed["quotes"])
    quote_id = str(uuid.uuid4())
    full = {"quote_id": quote_id, "credit_code": body.credit_code, "as_of": as_of.isoformat(),
            "created_at": created.isoformat(), "expires_at": (created + dt.timedelta(days=valid_days)).isoformat(),
            "consent_ref": body.consent_ref, **computed}
    sent = _visible(full, principal, service)
    snapshot = service.snapshot(row, as_of, versions)
    full_json = canonical_json(full)
    try:
        with engine.begin() as conn:
            conn.execute(quotes.insert().values(
                quote_id=quote_id, credit_code=body.credit_code, as_of=as_of, created_at=created,
                expires_at=created + dt.timedelta(days=valid_days), api_key_id=principal.key_id,
                role=principal.role.value, consent_ref=body.consent_ref, idempotency_key=idempotency_key,
                request_json=request_json, snapshot_json=canonical_json(snapshot), response_json=full_json,
                response_sha256=hashlib.sha256(full_json.encode("utf-8")).hexdigest()))
            audit.append(conn, principal.name, "quote.create", f"quote:{quote_id}",
                         {"credit_code": body.credit_code, "role": principal.role.value,
                          "consent_ref": body.consent_ref, "products": products,
                          "model_version": versions.model_version, "source_as_of": snapshot["source_as_of"]})
    except sa.exc.IntegrityError:
        # A concurrent retry with the same Idempotency-Key won the race: answer with its result.
        with engine.connect() as conn:
            previous = _stored(conn, principal.key_id, idempotency_key) if idempotency_key else None
        if previous is None:
            raise
        return _replayed(previous, request_json, response, principal, service)
    except sa.exc.SQLAlchemyError as error:
        raise ProblemError(503, "the quote could not be stored, so it was not issued; retry later") from error
    for q in computed["quotes"]:
        QUOTES.labels(q["product"], str(q["eligible"]).lower()).inc()
    response.headers["Location"] = f"/v1/quotes/{quote_id}"
    return sent


def _replayed(previous: sa.Row, request_json: str, response: Response, principal: Principal,
              service: QuotingService) -> dict[str, Any]:
    if previous.request_json != request_json:
        raise ProblemError(409, "this Idempotency-Key was already used with a different request body",
                           errors=[{"field": "Idempotency-Key", "message": "reused with a different body"}])
    response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/v1/quotes/{previous.quote_id}"
    return _visible(json.loads(previous.response_json), principal, service)


def _load(request: Request, quote_id: str, principal: Principal) -> sa.Row:
    with _service(request).engine.connect() as conn:
        row = conn.execute(sa.select(quotes).where(quotes.c.quote_id == quote_id)).first()
    # A platform key sees only its own quotes; to it, others' quotes do not exist.
    if row is None or (principal.role is Role.platform and row.api_key_id != principal.key_id):
        raise ProblemError(404, f"quote {quote_id} not found")
    return row


@router.get("/{quote_id}", response_model=QuoteResponse, summary="A stored quote, as issued")
def get_quote(quote_id: str, request: Request,
              principal: Principal = Depends(QuoteReaders)) -> dict[str, Any]:
    row = _load(request, quote_id, principal)
    return _visible(json.loads(row.response_json), principal, _service(request))


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
