"""Quote parts rendered ahead: what is a pure function of (firm data, versions) becomes bytes once per state.

A quote body for the default request (no requested amount) is, per product, the same JSON under one date's
state however often it is asked for; so are the risk block and the input snapshot. `render_firm` produces
them with the very functions a computed quote goes through (`quote_body`, `fast_json`, the population's
snapshot), and `assemble` puts a quote together from them: the header fields of this quote (id, times,
consent reference), the fragments in the requested order, and the best offer among them. The bytes are
those `fast_json` gives the computed body (tested for every firm, product subset and order): orjson sorts
keys at every level, so a nested object serialised alone is the same bytes as inside its parent, and the
body's keys sort as `as_of ... quote_id` < `quotes` < `risk`.
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
from scoring import ProductResult

# The fields `best_offer`, the quote metrics and the shadow scorer read of a product's quote.
OFFER_FIELDS = ("product", "product_name", "eligible", "limit_cny", "rate", "all_in_cost", "grade", "tier",
                "expiry_days")


@dataclass(frozen=True, slots=True)
class Rendered:
    """One firm's quote parts under one state, for a request without a requested amount."""

    fragments: Mapping[str, bytes]  # product -> its quote object, serialised
    offers: Mapping[str, dict[str, Any]]  # product -> the OFFER_FIELDS its quote has
    risk: dict[str, Any] | None
    risk_json: bytes
    snapshot_json: bytes
    source_as_of: dict[str, str]


def render_firm(versions: Versions, results: Mapping[str, ProductResult], i: int, risk: dict[str, Any] | None,
                snapshot: dict[str, Any], snapshot_json: bytes) -> Rendered:
    """Row `i`'s parts: every product of `versions` rendered by `quote_body`, as a computed quote is;
    `snapshot_json` is `fast_json(snapshot)`."""
    body = quote_body(versions, results, i, risk, list(versions.plans), None)
    fragments = {}
    offers = {}
    for quote in body["quotes"]:
        fragments[quote["product"]] = fast_json(quote)
        offers[quote["product"]] = {k: quote[k] for k in OFFER_FIELDS if k in quote}
    return Rendered(fragments, offers, body["risk"], fast_json(body["risk"]), snapshot_json,
                    snapshot["source_as_of"])


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
    """A quote put together from rendered parts: its bytes and what the service reads of it."""

    body: bytes
    expires: dt.datetime
    summary: dict[str, Any]  # header fields, model version, risk, and per product its OFFER_FIELDS


def assemble(rendered: Rendered, products: Sequence[str], model_version: str | None, head: dict[str, Any],
             created: dt.datetime) -> Assembled:
    """The full quote's bytes: `head` (quote_id, credit_code, as_of, created_at, consent_ref; expires_at is
    added here) + the products' fragments in the given order + their best offer + the risk block."""
    offers = [rendered.offers[p] for p in products]
    expires = created + dt.timedelta(days=min(o["expiry_days"] for o in offers))
    head = {**head, "expires_at": expires.isoformat(), "best_offer": best_offer(offers, None),
            "model_version": model_version}
    front = fast_json(head)  # every key sorts before "quotes" and "risk"
    fragments = rendered.fragments
    body = b"".join((front[:-1], b',"quotes":[', b",".join([fragments[p] for p in products]), b'],"risk":',
                     rendered.risk_json, b"}"))
    return Assembled(body, expires, {**head, "quotes": offers, "risk": rendered.risk})
