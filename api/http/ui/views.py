"""What a page shows of a quote body: the summary rows and one card per product, in one language.

Formatting only. Every number comes from the stored body (as the role's view of it holds it); the
definition is read only for labels (dimension and indicator names), each dimension's maximum points and
the service promise's contact days. A field the role's view does not hold is not shown."""

from __future__ import annotations

import datetime as dt
from typing import Any

from markupsafe import Markup

from api.http.ui import charts
from api.http.ui.i18n import cny, pct, pick
from products.schema import ProductDefinition

DIRECTION = {"at_least": "≥", "at_most": "≤", "below": "<", "equal": "="}


def contact_deadline(issued: dt.date, days: int, working_days: bool) -> dt.date:
    """The date by which the bank promises contact: calendar days, or working days (Monday to Friday)."""
    if not working_days:
        return issued + dt.timedelta(days=days)
    day, left = issued, days
    while left > 0:
        day += dt.timedelta(days=1)
        if day.weekday() < 5:
            left -= 1
    return day


def _value(value: Any, unit: str | None) -> str:
    if isinstance(value, bool):
        return "✓" if value else "✗"
    if isinstance(value, int | float):
        text = f"{value:,.4f}".rstrip("0").rstrip(".") if isinstance(value, float) else f"{value:,}"
        return f"{text} {unit}" if unit else text
    return "—" if value is None else str(value)


def _money(item: dict[str, Any] | None, lang: str) -> str | None:
    if item is None:
        return None
    yearly = "每年" if lang == "zh" else "a year"
    return f"{pct(item.get('pct'))} · {cny(item.get('cny'), lang)} {yearly}"


def _indicator_names(definition: ProductDefinition | None, lang: str) -> dict[str, str]:
    if definition is None:
        return {}
    return {ind.code: pick(ind.name.model_dump(), lang) for _, _, ind in definition.indicators()}


def _dimension_chart(q: dict[str, Any], definition: ProductDefinition | None, lang: str, title: str) -> Markup:
    dims = q.get("dimensions")
    if not dims or definition is None:
        return Markup("")
    bars = []
    for code, points in dims.items():
        dim = definition.dimensions.get(code)
        if dim is None:
            continue
        bars.append(charts.Bar(pick(dim.name.model_dump(), lang), points, sum(i.weight for i in dim.indicators)))
    return charts.dimension_bars(bars, title)


def _shap_chart(q: dict[str, Any], risk: dict[str, Any] | None, lang: str, t: dict[str, str]) -> Markup:
    factors = q.get("risk_factors")
    if not factors or not risk or risk.get("base_value") is None or risk.get("raw_score") is None:
        return Markup("")
    if any("contribution" not in f for f in factors):
        return Markup("")
    steps = [charts.Step(pick(f, lang), f["contribution"]) for f in factors]
    others = "其他因素" if lang == "zh" else "Other factors"
    return charts.shap_waterfall(risk["base_value"], steps, risk["raw_score"],
                                 (t["shap_base"], others, t["shap_score"]), t["shap"])


def _next_grade(q: dict[str, Any], names: dict[str, str], lang: str) -> dict[str, Any] | None:
    nxt = q.get("next_grade")
    if nxt is None:
        return None
    changes = [{"name": pick(c.get("name"), lang) or names.get(c["indicator"], c["indicator"]),
                "from": _value(c.get("from"), c.get("unit")),
                "to": f"{DIRECTION.get(c.get('direction'), '→')} {_value(c.get('to'), c.get('unit'))}",
                "gain": c.get("points_gain")} for c in nxt.get("changes", [])]
    combined = [{"name": names.get(c["indicator"], c["indicator"]), "gain": c.get("points_gain")}
                for c in nxt.get("combined", [])]
    return {"grade": nxt.get("grade"), "needed": nxt.get("points_needed"), "reachable": nxt.get("reachable"),
            "changes": changes, "combined": combined}


def card(q: dict[str, Any], body: dict[str, Any], definition: ProductDefinition | None, lang: str,
         t: dict[str, str]) -> dict[str, Any]:
    reasons = [pick(r, lang) for r in q.get("reasons", [])]
    lost = [pick(r, lang) for r in q.get("top_reasons", [])]
    main = reasons[0] if reasons else (lost[0] if lost else None)
    view: dict[str, Any] = {
        "product": q["product"], "name": pick(q.get("product_name"), lang), "version": q.get("product_version"),
        "eligible": bool(q.get("eligible")), "main_reason": main, "other_reasons": reasons[1:],
        "points_lost": lost, "notes": [pick(n, lang) for n in q.get("notes", [])],
        "best": (body.get("best_offer") or {}).get("product") == q["product"],
        "grade": q.get("grade"), "tier": q.get("tier"),
        "index": None if q.get("index") is None else f"{q['index']:.2f} / {q.get('scale', 100)}",
        "limit": cny(q.get("limit_cny"), lang) if "limit_cny" in q else None,
        "rate": pct(q.get("rate")) if "rate" in q else None,
        "rate_band": None, "fee": _money(q.get("guarantee_fee"), lang), "subsidy": _money(q.get("subsidy"), lang),
        "all_in": _money(q.get("all_in_cost"), lang),
        "pd": None if q.get("pd") is None else f"{q['pd'] * 100:.3f}%",
        "promise": pick(q.get("service_promise"), lang), "contact_by": None,
        "within_limit": q.get("requested_within_limit"),
        "dims_chart": _dimension_chart(q, definition, lang, t["dimensions"]),
        "shap_chart": _shap_chart(q, body.get("risk"), lang, t),
        "next_grade": _next_grade(q, _indicator_names(definition, lang), lang),
    }
    band = q.get("rate_band")
    if band and q.get("rate") is not None and None not in band:
        view["rate_band"] = f"{pct(band[0])} – {pct(band[1])}"
        view["band_chart"] = charts.rate_band(band[0], band[1], q["rate"], t["rate_band"])
    service = definition.service if definition is not None else None
    if service is not None and service.contact_days is not None and view["promise"] and body.get("created_at"):
        issued = dt.datetime.fromisoformat(body["created_at"]).date()
        view["contact_by"] = contact_deadline(issued, service.contact_days, service.working_days).isoformat()
    return view


def summary_rows(body: dict[str, Any], lang: str) -> list[dict[str, Any]]:
    best = (body.get("best_offer") or {}).get("product")
    return [{"product": q["product"], "name": pick(q.get("product_name"), lang), "eligible": bool(q.get("eligible")),
             "grade": q.get("grade") or "—", "limit": cny(q.get("limit_cny"), lang),
             "rate": pct(q.get("rate")), "all_in": pct((q.get("all_in_cost") or {}).get("pct")),
             "best": q["product"] == best} for q in body["quotes"]]


def definition_of(definitions: list[ProductDefinition], code: str, version: str | None
                  ) -> ProductDefinition | None:
    """The definition a quote names (code and version), for its labels and maximum points."""
    return next((d for d in definitions if d.code == code and d.version == version), None)
