"""A quote body from engine results: every product's quote, the best offer, the risk assessment;
and the view of it the financial service platform may receive."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from api.quoting.versions import Versions
from products.policy import default_calendar
from scoring import ProductResult, quote_dict
from scoring.deadlines import service_deadlines

RISK_FACTORS = 5  # SHAP risk factors shown per quote


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
    for code in products:
        quote = quote_dict(results[code], i)
        quote["model_version"] = versions.model_version
        quote["risk_factors"] = risk["risk_factors"] if risk else []
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


# What the financial service platform may receive ("usable but not visible"): scores, grades, tiers,
# offers and reason texts. Never indicator values, points per indicator, gates or SHAP inputs.
PLATFORM_FIELDS = (
    "product", "product_name", "product_version", "eligible", "reasons", "index", "scale", "grade", "tier",
    "segment", "limit_cny", "rate_band", "rate", "guarantee_fee", "subsidy", "all_in_cost", "pd", "model_version",
    "service_promise", "service_deadlines", "expiry_days", "requested_within_limit", "green_channel_up_to_cny",
    "risk_reasons", "collateral", "collateral_options", "base_terms", "overlays", "overlay_on",
)
ALWAYS_FOR_PLATFORM = ("product", "product_name", "product_version", "eligible", "reasons")


def _texts(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: item[k] for k in ("code", "zh", "en") if k in item} for item in items]


def platform_body(narrowing: Mapping[str, tuple[str, ...] | list[str] | None], body: dict[str, Any]
                  ) -> dict[str, Any]:
    """The platform's view of a quote body: a whitelist, narrowed further by each product's
    `platform_fields` (`narrowing`: product code -> its platform_fields, None = the whole whitelist)."""
    quotes = []
    for quote in body["quotes"]:
        narrowed = narrowing.get(quote["product"])
        allowed = [f for f in PLATFORM_FIELDS if narrowed is None or f in narrowed or f in ALWAYS_FOR_PLATFORM]
        view = {k: quote[k] for k in allowed if k in quote}
        view["reasons"] = _texts(quote.get("reasons", []))
        if "risk_reasons" in allowed:
            view["risk_reasons"] = _texts(quote.get("risk_factors", []))
        quotes.append(view)
    best = body.get("best_offer")
    if best is not None:
        shown = next((q for q in quotes if q["product"] == best["product"]), {})
        best = {k: v for k, v in best.items() if k in shown}
    risk = body.get("risk")
    return {**body, "quotes": quotes, "best_offer": best, "risk": None if risk is None else {"pd": risk.get("pd")}}
