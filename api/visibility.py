"""The one output filter: what each role may read of a quote, a profile, a batch file or a log line.

The rule is `products.visibility.shows(audience, field)` (declared per field in `features.sources`);
this module applies it to every output, so no route, page, file or log line decides on its own:

- quotes (`quote_body` stores the bank's view; `platform_view` narrows it for the platform): next-grade
  hints carry the firm's value only when the reader may see it and get a zh/en text worded without it
  otherwise; risk factors whose input may not be seen lose their value and are worded without it;
- the platform's view is a whitelist of result fields (`PLATFORM_FIELDS`), risk factors worded without
  any value, and no indicator values, points, gates or SHAP inputs;
- the enterprise profile (`profile_fields`) lists only fields the reader may see, the rest by name;
- batch files render their risk-factor texts for `BATCH_AUDIENCE` (`scoring.columnar`);
- log lines (`redact_values`, from `api.http.logs.redact`) lose any number written beside a field name.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

from api.keys import Role
from products.catalogue import common_reasons
from products.visibility import Audience, shows, withheld
from scoring.risk_texts import reason_for
from scoring.texts import number_text, render

BATCH_AUDIENCE = Audience.bank  # pre-credit files are read by the risk team (api/http/routers/batch.py)

# What the financial service platform may receive ("usable but not visible"): scores, grades, tiers,
# offers and reason texts. Never indicator values, points per indicator, gates or SHAP inputs.
PLATFORM_FIELDS = (
    "product", "product_name", "product_version", "eligible", "reasons", "index", "scale", "grade", "tier",
    "segment", "limit_cny", "rate_band", "rate", "guarantee_fee", "subsidy", "all_in_cost", "pd", "model_version",
    "service_promise", "service_deadlines", "expiry_days", "requested_within_limit", "green_channel_up_to_cny",
    "risk_reasons", "collateral", "collateral_options", "base_terms", "overlays", "overlay_on",
)
ALWAYS_FOR_PLATFORM = ("product", "product_name", "product_version", "eligible", "reasons")


def audience_for(role: Role) -> Audience:
    return Audience.platform if role is Role.platform else Audience.bank


# ------------------------------------------------------------------ hints


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "是/yes" if value else "否/no"
    if isinstance(value, int | float):
        return number_text(value)
    return str(value)


HINT_CODES = {"at_least": "HINT_AT_LEAST", "at_most": "HINT_AT_MOST", "below": "HINT_BELOW", "equal": "HINT_EQUAL"}


def hint_text(change: Mapping[str, Any], audience: Audience, missing: bool) -> dict[str, str]:
    """zh/en of one next-grade change, with the firm's value only when `audience` may read it."""
    if missing:
        code = "HINT_SUPPLY_DATA"
    else:
        code = HINT_CODES[change["direction"]] + ("" if shows(audience, change["field"]) else "_WITHHELD")
    name = change.get("name") or {}
    params = {"name_zh": name.get("zh", change["indicator"]), "name_en": name.get("en", change["indicator"]),
              "to": _shown(change["to"]), "gain": number_text(change.get("points_gain")),
              "now": "" if missing or change.get("from") is None else _shown(change["from"])}
    return {"code": code, **render(common_reasons()[code], params)}


def _next_grade(next_grade: dict[str, Any] | None, audience: Audience) -> dict[str, Any] | None:
    if next_grade is None:
        return None
    changes = []
    for change in next_grade.get("changes", []):
        c = dict(change)
        missing = c.get("from") is None and not c.get("withheld", False)
        if not shows(audience, c["field"]):
            c["from"], c["withheld"] = None, True
        c["text"] = hint_text(c, audience, missing)
        changes.append(c)
    return {**next_grade, "changes": changes}


# ------------------------------------------------------------------ risk factors


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def risk_factor(factor: Mapping[str, Any], audience: Audience) -> dict[str, Any]:
    """A risk factor as `audience` may read it: its value and text only when the model input is visible."""
    f = dict(factor)
    missing = _missing(f.get("value")) and not f.get("withheld", False)
    hidden = not missing and not shows(audience, f["feature"])
    # the text is rendered again from the factor, so a stored text never outlives the rule; a hidden value
    # is not printed by its wording, so any non-missing stand-in will do
    value = None if missing else 0.0 if hidden else f["value"]
    f.update(reason_for(f["feature"], value, f["contribution"], audience))
    if hidden:
        f["value"], f["withheld"] = None, True
    return f


# ------------------------------------------------------------------ quote bodies


def quote_view(quote: dict[str, Any], audience: Audience = Audience.bank) -> dict[str, Any]:
    """One product's quote for the bank's staff (what is stored and sent to every role but the platform)."""
    out = dict(quote)
    if "next_grade" in out:
        out["next_grade"] = _next_grade(out["next_grade"], audience)
    if "risk_factors" in out:
        out["risk_factors"] = [risk_factor(f, audience) for f in out["risk_factors"]]
    return out


def _texts(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: item[k] for k in ("code", "zh", "en") if k in item} for item in items]


def platform_quote(narrowing: Mapping[str, tuple[str, ...] | list[str] | None], quote: dict[str, Any],
                   risk_reasons: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None = None
                   ) -> dict[str, Any]:
    """The platform's view of one product's quote: the whitelist, narrowed further by the product's
    `platform_fields` (`narrowing`: product code -> its platform_fields, None = the whole whitelist); risk
    factors as texts worded without any value (`risk_reasons`: a memo of `platform_risk_reasons`)."""
    narrowed = narrowing.get(quote["product"])
    allowed = [f for f in PLATFORM_FIELDS if narrowed is None or f in narrowed or f in ALWAYS_FOR_PLATFORM]
    view = {k: quote[k] for k in allowed if k in quote}
    view["reasons"] = _texts(quote.get("reasons", []))
    if "risk_reasons" in allowed:
        view["risk_reasons"] = (risk_reasons or platform_risk_reasons)(quote.get("risk_factors", []))
    return view


def platform_risk_reasons(factors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return _texts([risk_factor(f, Audience.platform) for f in factors])


def platform_best_offer(best: dict[str, Any] | None, shown: Mapping[str, Any]) -> dict[str, Any] | None:
    """The best offer as the platform sees it: only the fields it sees of that product's quote (`shown`)."""
    return None if best is None else {k: v for k, v in best.items() if k in shown}


def platform_risk(risk: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if risk is None else {"pd": risk.get("pd")}


def platform_view(narrowing: Mapping[str, tuple[str, ...] | list[str] | None], body: dict[str, Any]
                  ) -> dict[str, Any]:
    """The platform's view of a quote body: each product's `platform_quote`, the best offer and the risk
    block narrowed to what it may see."""
    rendered: dict[str, list[dict[str, Any]]] = {}  # the firm's factors are the same in every product's quote

    def risk_reasons(factors: list[dict[str, Any]]) -> list[dict[str, Any]]:
        key = repr([(f["feature"], f.get("value"), f["contribution"], f.get("withheld")) for f in factors])
        if key not in rendered:
            rendered[key] = platform_risk_reasons(factors)
        return rendered[key]

    quotes = [platform_quote(narrowing, quote, risk_reasons) for quote in body["quotes"]]
    best = body.get("best_offer")
    if best is not None:
        best = platform_best_offer(best, next((q for q in quotes if q["product"] == best["product"]), {}))
    return {**body, "quotes": quotes, "best_offer": best, "risk": platform_risk(body.get("risk"))}


# ------------------------------------------------------------------ profile


def profile_fields(source: str, row: Mapping[str, Any], names: list[str], audience: Audience
                   ) -> tuple[dict[str, Any], list[str]]:
    """(the fields of a source record `audience` may read, the names of those withheld)."""
    shown = {n: row[n] for n in names if shows(audience, f"{source}.{n}")}
    return shown, [n for n in names if n not in shown]


# ------------------------------------------------------------------ logs


@cache
def _log_pattern() -> re.Pattern[str]:
    names = sorted({n.split(".", 1)[-1] for n in withheld(Audience.log)}, key=len, reverse=True)
    alternatives = "|".join(re.escape(n) for n in names)
    # `name=1,234.5`, `name: -3e4`, `"name": 12` (also with the source prefix): the number goes
    return re.compile(rf"(\b(?:{alternatives})\b[\"']?\s*[:=]\s*[\"']?)-?\d[\d,_]*(?:\.\d+)?(?:[eE][+-]?\d+)?")


def redact_values(text: str) -> str:
    """A log line without the values of catalogued fields (the log audience reads no raw value)."""
    return _log_pattern().sub(r"\1[withheld]", text)
