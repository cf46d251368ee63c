"""Loan officers' overrides of a quote's amount or rate: checked against the product's policy bounds (the very
definition the quote used), stored beside the quote with their audit row, and monitored per officer and product.

The quote itself (row, body, hash) never changes: an override is a separate record that GET /v1/quotes/{id}
shows with the quote."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from api.monitoring.config import Thresholds
from api.monitoring.tables import quote_overrides
from api.tables import config_blobs, quotes
from features.store import audit
from features.validation import text_problem
from products.catalogue import parse_definition
from products.schema import ProductDefinition

MAX_REASON = 500


class OverrideError(ValueError):
    """Refused override: the field at fault and why, in English and Chinese."""

    def __init__(self, field: str, en: str, zh: str) -> None:
        super().__init__(en)
        self.field, self.en, self.zh = field, en, zh


@dataclass(frozen=True)
class OverrideRequest:
    product: str | None
    amount_cny: float | None
    rate: float | None  # annual %
    reason: str | None


def _definition(conn: sa.Connection, snapshot: dict[str, Any], product: str) -> ProductDefinition:
    """The definition the quote was computed with (by content hash, as replay finds it)."""
    digest = snapshot["versions"]["products"][product]["sha256"]
    body = conn.execute(sa.select(config_blobs.c.body_json).where(config_blobs.c.sha256 == digest)).scalar()
    if body is None:
        raise OverrideError("product", f"the definition of {product} this quote used is not stored",
                            f"该报价所用的产品{product}定义未保存")
    return parse_definition(json.loads(body))


def check(request: OverrideRequest, quote: dict[str, Any], definition_of) -> dict[str, Any]:  # noqa: ANN001
    """The values to store, or OverrideError naming the field (reason, product, amount_cny, rate)."""
    reason = (request.reason or "").strip()
    if not reason:
        raise OverrideError("reason", "a reason is required for an override", "人工调整必须填写原因")
    problem = text_problem(reason, MAX_REASON)
    if problem:
        raise OverrideError("reason", f"the reason {problem}", f"原因不符合要求：{problem}")
    products = {q["product"]: q for q in quote["quotes"]}
    if not request.product or request.product not in products:
        raise OverrideError("product", f"the quote has no product {request.product!r}; it has "
                            f"{', '.join(products)}", f"该报价不含产品{request.product!r}")
    if request.amount_cny is None and request.rate is None:
        raise OverrideError("amount_cny", "an override changes the amount (amount_cny), the rate (rate), or both",
                            "人工调整须修改金额（amount_cny）或利率（rate）")
    d: ProductDefinition = definition_of(request.product)
    if request.amount_cny is not None and not d.limit.min_cny <= request.amount_cny <= d.limit.max_cny:
        raise OverrideError("amount_cny", f"amount {request.amount_cny:,.0f} CNY is outside {d.code}'s policy "
                            f"bounds {d.limit.min_cny:,.0f} to {d.limit.max_cny:,.0f} CNY",
                            f"金额{request.amount_cny:,.0f}元超出{d.code}政策范围"
                            f"{d.limit.min_cny:,.0f}至{d.limit.max_cny:,.0f}元")
    if request.rate is not None and not d.rate.floor <= request.rate <= d.rate.ceiling:
        raise OverrideError("rate", f"rate {request.rate:g}% is outside {d.code}'s policy bounds "
                            f"{d.rate.floor:g}% to {d.rate.ceiling:g}%",
                            f"利率{request.rate:g}%超出{d.code}政策范围{d.rate.floor:g}%至{d.rate.ceiling:g}%")
    q = products[request.product]
    return {"product": request.product, "quoted_limit_cny": float(q["limit_cny"]), "amount_cny": request.amount_cny,
            "quoted_rate": q["rate"], "rate": request.rate, "reason": reason}


def record(engine: sa.Engine, quote_id: str, officer: str, api_key_id: int, request: OverrideRequest
           ) -> dict[str, Any]:
    """Check and store one override with its audit row (one transaction; nothing written when refused)."""
    with engine.begin() as conn:
        row = conn.execute(sa.select(quotes.c.response_json, quotes.c.snapshot_json)
                           .where(quotes.c.quote_id == quote_id)).first()
        if row is None:
            raise LookupError(f"quote {quote_id} not found")
        snapshot = json.loads(row.snapshot_json)
        values = check(request, json.loads(row.response_json), lambda p: _definition(conn, snapshot, p))
        created = dt.datetime.now(dt.UTC)
        new_id = conn.execute(quote_overrides.insert().values(
            quote_id=quote_id, officer=officer, api_key_id=api_key_id, created_at=created, **values)
        ).inserted_primary_key[0]
        audit.append(conn, officer, "quote.override", f"quote:{quote_id}",
                     {"override_id": new_id, **{k: values[k] for k in ("product", "quoted_limit_cny", "amount_cny",
                                                                       "quoted_rate", "rate", "reason")}})
    return {"id": new_id, "quote_id": quote_id, "officer": officer, "created_at": created.isoformat(), **values}


def _json(r: sa.Row) -> dict[str, Any]:
    created = r.created_at if r.created_at.tzinfo else r.created_at.replace(tzinfo=dt.UTC)
    return {"id": r.id, "quote_id": r.quote_id, "officer": r.officer, "created_at": created.isoformat(),
            "product": r.product, "quoted_limit_cny": r.quoted_limit_cny, "amount_cny": r.amount_cny,
            "quoted_rate": r.quoted_rate, "rate": r.rate, "reason": r.reason}


def for_quote(engine: sa.Engine, quote_id: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(quote_overrides).where(quote_overrides.c.quote_id == quote_id)
                            .order_by(quote_overrides.c.id)).all()
    return [_json(r) for r in rows]


def rates(engine: sa.Engine, since: dt.date, until: dt.date, thresholds: Thresholds) -> dict[str, Any]:
    """Per officer (the name of the key that overrode) and product: quotes that key issued, quotes
    overridden, share; an alert where the share exceeds the threshold over enough quotes."""
    start = dt.datetime.combine(since, dt.time(), dt.UTC)
    end = dt.datetime.combine(until + dt.timedelta(days=1), dt.time(), dt.UTC)
    with engine.connect() as conn:
        overridden = conn.execute(
            sa.select(quote_overrides.c.officer, quote_overrides.c.api_key_id, quote_overrides.c.product,
                      sa.func.count(sa.distinct(quote_overrides.c.quote_id)).label("n"))
            .select_from(quote_overrides.join(quotes, quotes.c.quote_id == quote_overrides.c.quote_id))
            .where(quotes.c.created_at >= start, quotes.c.created_at < end)
            .group_by(quote_overrides.c.officer, quote_overrides.c.api_key_id, quote_overrides.c.product)).all()
        issued = dict(conn.execute(
            sa.select(quotes.c.api_key_id, sa.func.count()).where(quotes.c.created_at >= start,
                                                                  quotes.c.created_at < end)
            .group_by(quotes.c.api_key_id)).all())
    limits = thresholds.overrides
    rows, alerts = [], []
    for officer, key_id, product, n in sorted(overridden, key=lambda r: (r.officer, r.product)):
        total = int(issued.get(key_id, 0))
        share = n / total if total else 1.0
        rows.append({"officer": officer, "product": product, "quotes": total, "overrides": int(n), "share": share})
        if total >= limits.min_quotes and share > limits.max_share:
            alerts.append({"kind": "overrides", "level": "alert", "subject": f"officer:{officer}:{product}",
                           "figures": {"officer": officer, "product": product, "quotes": total, "overrides": int(n),
                                       "share": share, "max_share": limits.max_share},
                           "en": f"officer {officer} overrode {n} of {total} quotes for {product} ({share:.1%}; "
                                 f"at most {limits.max_share:.0%})",
                           "zh": f"客户经理{officer}对{product}的{total}笔报价中人工调整{n}笔（{share:.1%}，"
                                 f"上限{limits.max_share:.0%}）"})
    return {"since": since.isoformat(), "until": until.isoformat(), "rows": rows, "alerts": alerts}
