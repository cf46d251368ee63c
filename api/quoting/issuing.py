"""Issuing a quote: compute and serialise it (CPU only), then the statements that store it with its audit row.

A quote is committed (in the writer thread's group transaction) before its response is sent, so every
answer the caller sees is stored, audited and replayable.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa

from api.keys import Principal, Role
from api.quoting.prerender import Assembled, Parts, StoredSnapshot, assemble, split
from api.quoting.service import Quoter
from api.quoting.snapshot import fast_json
from api.quoting.versions import Versions
from api.tables import quotes
from features.store import audit


class UnknownEnterpriseError(LookupError):
    """The enterprise has no data in the store as of the quote's date."""


@dataclass(frozen=True)
class QuoteOrder:
    """A checked request: who asks, for which enterprise, date and products."""

    credit_code: str
    as_of: dt.date
    products: list[str]
    requested_amount: float | None
    consent_ref: str | None
    request_json: str  # the canonical request (idempotency compares it)
    idempotency_key: str | None
    principal: Principal


class ShadowSink(Protocol):
    """Takes issued quotes to score them with challenger models off the hot path (api.monitoring.shadow)."""

    def offer(self, issued: list[Issued]) -> None: ...

    def drain(self, conn: sa.Connection) -> None: ...


@dataclass(frozen=True)
class Issued:
    """A computed quote, serialised, ready to be stored and then sent."""

    values: dict[str, Any]  # the `quotes` row
    # the quote as a dict: the whole body when computed; when assembled from rendered parts, its header fields,
    # model version, risk block and per product the fields `prerender.OFFER_FIELDS` (what metrics and the
    # shadow scorer read)
    full: dict[str, Any]
    sent: bytes  # the response body for the caller's role
    order: QuoteOrder
    versions: Versions
    snapshot: Mapping[str, Any]
    shadow: ShadowSink | None = None  # the service's challenger scorer, when it has one
    population: Any = None  # with a shadow: the Population the quote was taken from (its rows, for the scorer)


def issue(quoter: Quoter, order: QuoteOrder) -> Issued:
    """Compute and serialise a quote (no database writes). UnknownEnterpriseError when not in the store.

    A quote without a requested amount is assembled from the parts rendered ahead for its state
    (`api.quoting.prerender`) when its firm's are ready; otherwise it is computed, split into parts and
    assembled the same way: the same bytes either way, for the bank's roles and for the platform."""
    platform = order.principal.role is Role.platform
    shadow = getattr(quoter, "shadow", None)  # set by the HTTP service (api.http.lifecycle); the CLI has none
    if order.requested_amount is None:
        state = quoter.state(order.as_of)
        rendered = state.population.rendered(order.credit_code)
        if rendered is not None and rendered.has(order.products, platform):
            quote, created, quote_id = _assemble(order, rendered.parts, state.versions.model_version, platform)
            values = _row(order, quote_id, created, quote.expires, rendered.snapshot_json, quote.body)
            return Issued(values, quote.summary, quote.sent, order, state.versions, StoredSnapshot(rendered), shadow,
                          state.population if shadow is not None else None)
    computed = quoter.quote(order.credit_code, order.as_of, order.products, order.requested_amount)
    if computed is None:
        raise UnknownEnterpriseError(f"enterprise {order.credit_code} is not in the store as of {order.as_of}")
    body, snapshot, versions = computed
    parts = split(body, quoter.platform_narrowing(order.as_of) if platform else None)
    quote, created, quote_id = _assemble(order, parts, versions.model_version, platform)
    head = quote.summary
    full = {**{k: head[k] for k in HEADER_FIELDS}, **body}  # the whole body, every field of each quote
    values = _row(order, quote_id, created, quote.expires, fast_json(snapshot), quote.body)
    population = None
    if shadow is not None:
        state = quoter.state(order.as_of)  # in memory: the quote has just used it
        population = state.population if state.versions is versions else None
    return Issued(values, full, quote.sent, order, versions, snapshot, shadow, population)


def _assemble(order: QuoteOrder, parts: Parts, model_version: str | None, platform: bool
              ) -> tuple[Assembled, dt.datetime, str]:
    created = dt.datetime.now(dt.UTC)
    quote_id = str(uuid.uuid4())
    head = {"quote_id": quote_id, "credit_code": order.credit_code, "as_of": order.as_of.isoformat(),
            "created_at": created.isoformat(), "consent_ref": order.consent_ref}
    return assemble(parts, order.products, model_version, head, created, order.requested_amount, platform), \
        created, quote_id


def _row(order: QuoteOrder, quote_id: str, created: dt.datetime, expires: dt.datetime, snapshot_json: bytes,
         body: bytes) -> dict[str, Any]:
    """The `quotes` row of an issued quote, computed or assembled: one place for what is stored."""
    principal = order.principal
    return dict(quote_id=quote_id, credit_code=order.credit_code, as_of=order.as_of, created_at=created,
                expires_at=expires, api_key_id=principal.key_id, role=principal.role.value,
                consent_ref=order.consent_ref, idempotency_key=order.idempotency_key,
                request_json=order.request_json, snapshot_json=snapshot_json.decode("utf-8"),
                response_json=body.decode("utf-8"), response_sha256=hashlib.sha256(body).hexdigest())


HEADER_FIELDS = ("quote_id", "credit_code", "as_of", "created_at", "expires_at", "consent_ref")
INSERT_QUOTE = quotes.insert()  # one statement object: compiled once, values bound per quote


@dataclass(frozen=True, slots=True)
class QuoteWrite:
    """The statements that store one issued quote and its audit row, run in the writer's transaction; the group
    writer runs neighbouring ones together (`together`)."""

    issued: Issued

    def __call__(self, conn: sa.Connection) -> None:
        store_quotes(conn, [self.issued])

    @staticmethod
    def together(conn: sa.Connection, group: list[QuoteWrite]) -> None:
        store_quotes(conn, [w.issued for w in group])


def store_quotes(conn: sa.Connection, group: list[Issued]) -> None:
    """Store issued quotes, each with its audit row, in the caller's transaction: one statement per table for
    the whole group (a statement costs more than its rows), the audit rows chained in the group's order."""
    # The quote rows first: on SQLite their INSERT takes the write lock before the audit head is read.
    conn.execute(INSERT_QUOTE, [issued.values for issued in group])
    audit.append_many(conn, [_audit_entry(issued) for issued in group])
    shadows: dict[int, tuple[ShadowSink, list[Issued]]] = {}
    for issued in group:
        if issued.shadow is not None:
            shadows.setdefault(id(issued.shadow), (issued.shadow, []))[1].append(issued)
    for shadow, offered in shadows.values():
        shadow.offer(offered)  # one queue put; scored in the background
        shadow.drain(conn)  # challenger rows scored earlier ride in this transaction


def _audit_entry(issued: Issued) -> audit.Entry:
    values = issued.values
    principal = issued.order.principal
    return (principal.name, "quote.create", f"quote:{values['quote_id']}",
            {"credit_code": values["credit_code"], "role": principal.role.value, "consent_ref": values["consent_ref"],
             "products": issued.order.products, "model_version": issued.versions.model_version,
             "source_as_of": issued.snapshot["source_as_of"]})


def stored(conn: sa.Connection, key_id: int, idempotency_key: str) -> sa.Row | None:
    """The quote a key already issued under an Idempotency-Key, if any."""
    return conn.execute(sa.select(quotes).where(quotes.c.api_key_id == key_id,
                                                quotes.c.idempotency_key == idempotency_key)).first()
