"""Quote bytes from parts: the one place a quote's JSON is framed, for the bank's staff and for the platform.

A quote body (`quote_body`) is split into parts (`split`): per product its quote serialised as the bank reads
it and, when asked for, as the platform reads it (`api.visibility.platform_quote`, the one output filter), the
fields the best offer is chosen from, and the risk block. `assemble` frames a quote from parts: the header
fields of this quote (id, times, consent reference), the fragments in the requested order, the best offer
among them and the risk block. Every issued quote goes through it: a computed one from its freshly split body,
a bank or platform quote without a requested amount from the parts rendered ahead per date state and firm
(`render_firm`, in the background). The bytes are those `fast_json` gives the whole body (tested for every
firm, product subset and order, both views): orjson sorts keys at every level, so a nested object serialised
alone is the same bytes as inside its parent, and the body's keys sort as `as_of ... quote_id` < `quotes` <
`risk`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from api.quoting.body import best_offer, quote_body
from api.quoting.snapshot import fast_json
from api.quoting.versions import Versions
from api.visibility import platform_best_offer, platform_quote, platform_risk, platform_risk_reasons
from scoring import ProductResult

# The fields `best_offer`, the quote metrics and the shadow scorer read of a product's quote.
OFFER_FIELDS = ("product", "product_name", "eligible", "limit_cny", "rate", "all_in_cost", "grade", "tier",
                "expiry_days")

Narrowing = Mapping[str, tuple[str, ...] | list[str] | None]  # product -> its platform_fields


@dataclass(frozen=True, slots=True)
class Parts:
    """A quote body's parts, serialised: what `assemble` frames a quote from."""

    fragments: Mapping[str, bytes]  # product -> its quote object, the bank's view
    offers: Mapping[str, dict[str, Any]]  # product -> the OFFER_FIELDS its quote has
    risk: dict[str, Any] | None
    risk_json: bytes
    # the platform's view (empty when not asked for): product -> its quote object; the fields it shows of each
    # product (the best offer is narrowed to them); the risk block
    platform: Mapping[str, bytes]
    platform_fields: Mapping[str, frozenset[str]]
    platform_risk_json: bytes


_FIELD_SETS: dict[frozenset[str], frozenset[str]] = {}  # the few distinct sets, one object each


def _shared(fields: frozenset[str]) -> frozenset[str]:
    """One object per distinct set of field names: a set per product per rendered firm would cost kilobytes."""
    if len(_FIELD_SETS) > 1024:  # never expected: the sets depend on the products' definitions only
        _FIELD_SETS.clear()
    return _FIELD_SETS.setdefault(fields, fields)


def split(body: Mapping[str, Any], narrowing: Narrowing | None = None) -> Parts:
    """The parts of a quote body (`quote_body`'s `quotes` and `risk`); with `narrowing`, the platform's view too."""
    fragments = {}
    offers = {}
    platform = {}
    shown = {}
    # a computed body holds one list of the firm's factors in every product's quote: worded once (the list is
    # kept beside its texts, so that its id is not reused meanwhile)
    reasons: dict[int, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}

    def risk_reasons(factors: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if id(factors) not in reasons:
            reasons[id(factors)] = (factors, platform_risk_reasons(factors))
        return reasons[id(factors)][1]

    for quote in body["quotes"]:
        code = quote["product"]
        fragments[code] = fast_json(quote)
        offers[code] = {k: quote[k] for k in OFFER_FIELDS if k in quote}
        if narrowing is not None:
            view = platform_quote(narrowing, quote, risk_reasons)
            platform[code] = fast_json(view)
            shown[code] = _shared(frozenset(view))
    risk = body["risk"]
    return Parts(fragments, offers, risk, fast_json(risk), platform, shown,
                 fast_json(platform_risk(risk)) if narrowing is not None else b"")


@dataclass(frozen=True, slots=True)
class Rendered:
    """One firm's quote parts under one state, for a request without a requested amount."""

    parts: Parts
    snapshot_json: bytes
    source_as_of: dict[str, str]

    def has(self, products: Sequence[str], platform: bool) -> bool:
        """Whether these products' quotes (in the platform's view too, when `platform`) are here."""
        fragments = self.parts.platform if platform else self.parts.fragments
        return all(p in fragments for p in products)


def render_firm(versions: Versions, results: Mapping[str, ProductResult], i: int, risk: dict[str, Any] | None,
                snapshot: dict[str, Any], snapshot_json: bytes, narrowing: Narrowing | None) -> Rendered:
    """Row `i`'s parts: every product of `versions` rendered by `quote_body`, as a computed quote is;
    `snapshot_json` is `fast_json(snapshot)`; `narrowing` the platform's (None: the bank's view only)."""
    body = quote_body(versions, results, i, risk, list(versions.plans), None)
    return Rendered(split(body, narrowing), snapshot_json, snapshot["source_as_of"])


class StoredSnapshot(Mapping[str, Any]):
    """A rendered quote's input snapshot: its sources' dates at hand (the audit row's), the rest read back from
    the stored JSON only when asked for (the shadow scorer, for a quote whose population is gone)."""

    def __init__(self, rendered: Rendered) -> None:
        self._rendered = rendered
        self._parsed: dict[str, Any] | None = None

    def _all(self) -> dict[str, Any]:
        if self._parsed is None:
            self._parsed = orjson.loads(self._rendered.snapshot_json)
        return self._parsed

    def __getitem__(self, key: str) -> Any:
        return self._rendered.source_as_of if key == "source_as_of" else self._all()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


@dataclass(frozen=True, slots=True)
class Assembled:
    """A quote framed from parts: its bytes (the bank's view, stored) and what the caller is sent."""

    body: bytes
    sent: bytes  # `body`, or the platform's view of it
    expires: dt.datetime
    summary: dict[str, Any]  # header fields, model version, risk, and per product its OFFER_FIELDS


def _frame(head: dict[str, Any], fragments: list[bytes], risk_json: bytes) -> bytes:
    front = fast_json(head)  # every key sorts before "quotes" and "risk"
    return b"".join((front[:-1], b',"quotes":[', b",".join(fragments), b'],"risk":', risk_json, b"}"))


def assemble(parts: Parts, products: Sequence[str], model_version: str | None, head: dict[str, Any],
             created: dt.datetime, requested_amount: float | None = None, platform: bool = False) -> Assembled:
    """The full quote's bytes: `head` (quote_id, credit_code, as_of, created_at, consent_ref; expires_at is
    added here) + the products' fragments in the given order + their best offer + the risk block; with
    `platform`, `sent` is the platform's view (the parts must have it: `split` with a narrowing)."""
    offers = [parts.offers[p] for p in products]
    expires = created + dt.timedelta(days=min(o["expiry_days"] for o in offers))
    best = best_offer(offers, requested_amount)
    head = {**head, "expires_at": expires.isoformat(), "best_offer": best, "model_version": model_version}
    body = _frame(head, [parts.fragments[p] for p in products], parts.risk_json)
    sent = body
    if platform:
        narrowed = {**head, "best_offer": None if best is None else
                    platform_best_offer(best, parts.platform_fields[best["product"]])}
        sent = _frame(narrowed, [parts.platform[p] for p in products], parts.platform_risk_json)
    return Assembled(body, sent, expires, {**head, "quotes": offers, "risk": parts.risk})


def platform_json(narrowing: Narrowing, body: Mapping[str, Any]) -> bytes:
    """The platform's view of a stored quote body (its parsed JSON), framed as when it was issued."""
    parts = split(body, narrowing)
    head = {k: v for k, v in body.items() if k not in ("quotes", "risk")}
    assert max(head) < "quotes", "a quote body's header fields sort before its quotes"
    best = head.get("best_offer")
    head["best_offer"] = None if best is None else platform_best_offer(best, parts.platform_fields[best["product"]])
    return _frame(head, [parts.platform[q["product"]] for q in body["quotes"]], parts.platform_risk_json)
