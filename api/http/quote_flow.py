"""Ordering, issuing and answering a quote: one path for `POST /v1/quotes` and the console's quote form.

The request is checked against the versions in force (field-level 422s), the quote issued (404 for an
unknown enterprise), and once its transaction has ended `answer` turns the outcome into the response: the
quote, the first quote of a concurrent retry under the same Idempotency-Key, or a 503 when it was not stored.
"""

from __future__ import annotations

import datetime as dt
import json

import sqlalchemy as sa
from fastapi import Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.http import errors, logs
from api.http.deps import CREDIT_CODE_SCHEMA
from api.http.errors import ProblemError
from api.http.metrics import QUOTES
from api.http.routers.health import WriteOutcomes
from api.keys import Principal, Role
from api.quoting.issuing import Issued, QuoteOrder, UnknownEnterpriseError, issue, stored
from api.quoting.service import QuotingService
from api.quoting.snapshot import canonical_json
from api.quoting.versions import VersionsError
from features import uscc
from features.validation import SAFE_TEXT_PATTERN, text_problem

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


def field_error(status: int, field: str, message: str) -> ProblemError:
    return ProblemError(status, message, errors=[{"field": field, "message": message}])


def order_of(body: QuoteRequest, principal: Principal, service: QuotingService, idempotency_key: str | None
           ) -> QuoteOrder:
    """The request checked against the versions in force on its as-of date (field-level 422s)."""
    if principal.role is Role.platform and not body.consent_ref:
        raise field_error(422, "consent_ref", "the platform role must send the enterprise's consent reference")
    as_of = body.as_of or dt.date.today()
    try:
        products = service.products_for(as_of, body.products)
    except VersionsError as error:
        raise field_error(422, error.field, error.message) from None
    return QuoteOrder(body.credit_code, as_of, products, body.requested_amount_cny, body.consent_ref,
                      canonical_json(body.model_dump(mode="json")), idempotency_key, principal)


def issue_checked(service: QuotingService, order: QuoteOrder) -> Issued:
    try:
        return issue(service, order)
    except VersionsError as error:  # e.g. no reference rate in force on that date
        raise field_error(422, error.field, error.message) from None
    except UnknownEnterpriseError as error:
        raise field_error(404, "credit_code", str(error)) from None


def json_response(content: bytes, quote_id: str, status: int = 201, replayed: bool = False) -> Response:
    # Sent as bytes: the body was serialised once (for storage) and is not validated again on the way out.
    headers = {"Location": f"/v1/quotes/{quote_id}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(content, status_code=status, media_type="application/json", headers=headers)


def answer(service: QuotingService, issued: Issued, error: BaseException | None, state: object = None) -> Response:
    """The response once the quote's transaction has ended: the quote, or why it was not issued."""
    values = issued.values
    if isinstance(error, sa.exc.IntegrityError):
        # A concurrent retry with the same Idempotency-Key won the race: answer with its result.
        key = values["idempotency_key"]
        previous = lookup(service, issued.order.principal, key) if key else None
        if previous is None:
            raise error
        return replayed(previous, issued.order, service)
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
    return json_response(issued.sent, values["quote_id"])


def lookup(service: QuotingService, principal: Principal, idempotency_key: str) -> sa.Row | None:
    with service.engine.connect() as conn:
        return stored(conn, principal.key_id, idempotency_key)


def replayed(previous: sa.Row, order: QuoteOrder, service: QuotingService) -> Response:
    if previous.request_json != order.request_json:
        raise ProblemError(409, "this Idempotency-Key was already used with a different request body",
                           errors=[{"field": "Idempotency-Key", "message": "reused with a different body"}])
    if order.principal.role is Role.platform:
        content = service.platform_json(json.loads(previous.response_json), previous.as_of)
    else:
        content = previous.response_json.encode("utf-8")
    return json_response(content, previous.quote_id, replayed=True)
