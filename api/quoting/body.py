"""A quote body from engine results: every product's quote, the best offer, the risk assessment, as the
bank's staff may read it; and the view of it the financial service platform may receive. Both views come
from the one output filter, `api.visibility`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from api.quoting.versions import Versions
from api.visibility import PLATFORM_FIELDS, quote_view, risk_factor
from products.policy import default_calendar
from products.visibility import Audience
from scoring import ProductResult, quote_dict
from scoring.deadlines import service_deadlines

RISK_FACTORS = 5  # SHAP risk factors shown per quote
__all__ = ["PLATFORM_FIELDS", "RISK_FACTORS", "best_offer", "quote_body"]


def best_offer(quotes: list[dict[str, Any]], requested_amount: float | None) -> dict[str, Any] | None:
    """The cheapest eligible offer covering the requested amount; else the largest eligible limit."""
    offers = [q for q in quotes if q.get("eligible") and q.get("limit_cny", 0) > 0]
    if not offers:
        return None
    covering = [q for q in offers if requested_amount is None or q["limit_cny"] >= requested_amount]
    if covering:
        chosen = min(covering, key=lambda q: ((q.get("all_in_cost") or {}).get("pct") or 99.0, -q["limit_cny"]))
    else:
        chosen = max(offers, key=lambda q: q["limit_cny"])
    return {k: chosen.get(k) for k in ("product", "product_name", "limit_cny", "rate", "all_in_cost", "grade", "tier")}


def quote_body(versions: Versions, results: Mapping[str, ProductResult], i: int, risk: dict[str, Any] | None,
               products: list[str], requested_amount: float | None) -> dict[str, Any]:
    """The quote body for row `i` of engine results (and its risk assessment), products in the given order."""
    quotes = []
    factors = [risk_factor(f, Audience.bank) for f in risk["risk_factors"]] if risk else []  # once per firm
    for code in products:
        quote = quote_view(quote_dict(results[code], i))  # what is stored: the bank's view (usable, not visible)
        quote["model_version"] = versions.model_version
        quote["risk_factors"] = factors
        # "contact within 2 working days" as a date, counted from the quote's as-of date (offers only)
        quote["service_deadlines"] = service_deadlines(results[code].plan.definition.service, versions.as_of,
                                                       default_calendar()) if quote["eligible"] else None
        if requested_amount is not None and quote["eligible"]:
            quote["requested_within_limit"] = requested_amount <= quote["limit_cny"]
        quotes.append(quote)
    return {
        "quotes": quotes,
        "best_offer": best_offer(quotes, requested_amount),
        "model_version": versions.model_version,
        "risk": None if risk is None else {k: risk[k] for k in ("pd", "raw_score", "base_value")},
    }
