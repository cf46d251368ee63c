"""JSON-ready quotes from engine results (formatting only; the numbers are already decided).

This is the one place that loops, and only over the enterprises being returned to a caller.
Points, rates and fees are integers in the engine (cents of a point, basis points), so every number
printed here is exact to two decimals and the points add up to the index. Texts come from the rules
of `scoring.texts`, the same the batch's columnar view (`scoring.columnar`) renders with.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

import numpy as np

from products.fields import feature_catalogue
from scoring.engine import ProductResult, ReasonSpec
from scoring.plan import Plan
from scoring.texts import json_number, points_lost_spec, reason_parts, render_reason, row_values


def _num(x: float) -> float | int:
    return int(x) if float(x).is_integer() else float(x)


def _cents(c: int | np.integer) -> float:
    return round(int(c) / 100, 2)


def _cents_list(c: np.ndarray) -> list[float]:
    # int64 cents / 100 is the double nearest to the two-decimal value: what `_cents` rounds to
    return (c / 100).tolist()


@lru_cache(maxsize=256)
def _indicator_codes(plan: Plan) -> tuple[str, ...]:
    return tuple(ind.code for ind in plan.indicators)


def _pct(bp: int | np.integer) -> float | None:
    return None if bp < 0 else round(int(bp) / 100, 2)


def _reason(r: ProductResult, spec: ReasonSpec, i: int) -> dict[str, Any]:
    parts = reason_parts(r.plan, spec)
    return {"code": spec.code, "kind": spec.kind, **dict(spec.params),
            **render_reason(parts, row_values(r, parts, i))}


def _display_value(r: ProductResult, j: int, value: float) -> Any:
    ind = r.plan.indicators[j]
    if not np.isfinite(value):
        return json_number(value)  # None when missing, the infinity text (e.g. growth over a zero base)
    if ind.kind == "categorical":
        return ind.choices[int(value)]
    if ind.kind == "flag":
        return bool(value > 0.5)
    return _num(round(float(value), 10))  # a threshold the engine computed: drop binary noise (0.30000000000000004)


def _next_grade(r: ProductResult, i: int) -> dict[str, Any] | None:
    plan = r.plan
    e = r.explanation
    if e.next_grade[i] < 0:
        return None
    changes = []
    for j in e.option_order[i]:
        if j < 0:
            continue
        ind = plan.indicators[j]
        to = _display_value(r, j, e.option_to[i, j])
        if ind.kind == "bins" and not ind.higher_is_better:
            direction = "below"
        elif ind.kind in ("categorical", "flag"):
            direction = "equal"
        else:
            direction = "at_least" if ind.higher_is_better else "at_most"
        changes.append({
            "indicator": ind.code, "name": ind.name.model_dump(), "field": ind.field,
            "from": _display_value(r, j, r.columns.values[ind.field][i]), "to": to, "direction": direction,
            "unit": ind.unit, "points_gain": _cents(e.option_gain_cents[i, j]),
        })
    combined = []
    if not changes and e.reachable[i]:
        # no single change suffices: the indicators with most room, in turn, until the gap is closed
        room = [(int(plan.max_cents[j] - r.points_cents[i, j]), j) for j, ind in enumerate(plan.indicators)
                if ind.changeable and plan.max_cents[j] > r.points_cents[i, j]
                and not np.isnan(r.columns.values[ind.field][i])]
        left = int(e.needed_cents[i])
        for gain, j in sorted(room, key=lambda t: (-t[0], t[1])):
            if left <= 0:
                break
            take = min(gain, left)
            combined.append({"indicator": plan.indicators[j].code, "points_gain": _cents(take)})
            left -= take
    return {
        "grade": plan.grades[e.next_grade[i]],
        "points_needed": _cents(e.needed_cents[i]),
        "reachable": bool(e.reachable[i]),
        "changes": changes,
        "combined": combined,
        "supply": _supply(r, i),
    }


def _option(r: ProductResult, i: int, k: int, limit: int) -> dict[str, Any]:
    opt = r.plan.options[k]
    lo, hi, rate, fee, sub, all_in = (int(x) for x in r.option_terms[i, k])
    offer = bool(r.eligible[i]) and rate >= 0
    fee_pct, sub_pct, all_pct = _pct(fee), _pct(sub), _pct(all_in)
    return {
        "code": opt.code, "option_name": opt.name.model_dump(),
        "rate_band": [_pct(lo), _pct(hi)] if offer else None,
        "rate": _pct(rate) if offer else None,
        "guarantee_fee": {"pct": fee_pct, "cny": round(limit * fee_pct / 100, 2) if fee_pct else 0.0},
        "subsidy": {"pct": sub_pct, "cny": round(limit * sub_pct / 100, 2) if sub_pct else 0.0},
        "all_in_cost": {"pct": all_pct, "cny": round(limit * all_pct / 100, 2)} if offer and all_pct is not None
        else None,
    }
def _supply(r: ProductResult, i: int) -> list[dict[str, Any]]:
    """"Supply the missing data": each source whose absence left an indicator short of its maximum."""
    catalogue = feature_catalogue()
    wanted: list[str] = []
    for j, ind in enumerate(r.plan.indicators):
        if np.isnan(r.columns.values[ind.field][i]) and r.points_cents[i, j] < r.plan.max_cents[j]:
            wanted += [s for s in catalogue[ind.field].sources if s not in wanted]
    return [_reason(r, ReasonSpec("SUPPLY_SOURCE", "info", (("source", s),)), i) for s in wanted]


def _bound_by(r: ProductResult, i: int) -> dict[str, Any] | None:
    """The limit base that bound the limit and its amount (None when a cap bound it)."""
    j = int(r.binding_base[i])
    if j < 0:
        return None
    base = r.plan.bases[j]
    return {"base": base.code, "name": base.name.model_dump(), "amount_cny": int(r.binding_cny[i])}


def quote_dict(r: ProductResult, i: int) -> dict[str, Any]:
    """One product's quote for row `i`, JSON-ready."""
    plan = r.plan
    d = plan.definition
    flagged = [r.reason_specs[k] for k in np.flatnonzero(r.reason_flags[i])]
    reasons = [_reason(r, s, i) for s in flagged if s.kind == "decline"]
    notes = [_reason(r, s, i) for s in flagged if s.kind == "info"]
    grade = plan.grades[r.grade[i]]
    seg = plan.segment_labels[r.segment[i]] if plan.segment_field and r.segment[i] >= 0 else None
    eligible = bool(r.eligible[i])
    limit = int(r.limit_cny[i])
    fee_pct, sub_pct, all_in = _pct(r.fee_bp[i]), _pct(r.subsidy_bp[i]), _pct(r.all_in_bp[i])
    top = []
    for j in r.explanation.top_reasons[i]:
        if j < 0:
            continue
        ind = plan.indicators[j]
        top.append({**_reason(r, points_lost_spec(ind.code), i), "points": _cents(r.points_cents[i, j]),
                    "max": _cents(ind.weight_cents)})
    quote: dict[str, Any] = {
        "product": plan.code,
        "product_name": d.name.model_dump(),
        "product_version": plan.version,
        "eligible": eligible,
        "reasons": reasons,
        "notes": notes,
        "gates": {g.code: bool(r.gate_passed[i, gi]) for gi, g in enumerate(plan.gates)},
        "index": _cents(r.index_cents[i]),
        "scale": _num(d.scale),
        "points": dict(zip(_indicator_codes(plan), _cents_list(r.points_cents[i]), strict=True)),
        "dimensions": dict(zip(plan.dimension_codes, _cents_list(r.dimension_cents[i]), strict=True)),
        "grade": grade,
        "grade_source": "official" if r.grade_official[i] else "index",
        "segment": seg,
        "tier": f"{seg}/{grade}" if seg else grade,
        "limit_cny": limit,
        "limit_bound_by": _bound_by(r, i),
        "rate_band": [_pct(r.rate_lo_bp[i]), _pct(r.rate_hi_bp[i])] if eligible else None,
        "rate": _pct(r.rate_bp[i]) if eligible else None,
        "reference_rate": {"name": plan.reference_rate_name, "pct": plan.reference_rate_pct},
        "guarantee_fee": {"pct": fee_pct, "cny": round(limit * fee_pct / 100, 2) if fee_pct else 0.0},
        "subsidy": {"pct": sub_pct, "cny": round(limit * sub_pct / 100, 2) if sub_pct else 0.0},
        "all_in_cost": ({"pct": all_in, "cny": round(limit * all_in / 100, 2)} if eligible and all_in is not None
                        else None),
        "pd": None if np.isnan(r.pd[i]) else float(r.pd[i]),
        "max_pd": plan.max_pd,
        "top_reasons": top,
        "next_grade": _next_grade(r, i),
        "service_promise": d.service.promise.model_dump(),
        "expiry_days": d.quote_valid_days,
    }
    quote["collateral"] = plan.options[0].code
    if len(plan.options) > 1:  # each way to take the loan with its own floor, fee and all-in cost
        quote["collateral_options"] = [_option(r, i, k, limit) for k in range(len(plan.options))]
    if d.risk_compensation is not None:
        quote["risk_compensation"] = {"loss_share": d.risk_compensation.loss_share,
                                      "cap_share_of_balance": d.risk_compensation.cap_share_of_balance}
    if d.service.green_channel:
        quote["green_channel_up_to_cny"] = limit
    if d.overlay is not None:
        quote["rate_band"] = quote["rate"] = None  # no offer of its own: it adjusts its base products'
        quote["overlay_on"] = _overlay_terms(r, i)
    if r.overlays:
        quote["base_terms"] = _terms(r.overlays[0].before, i, r.fee_bp[i], eligible)
        quote["overlays"] = [_applied(o, i) for o in r.overlays]
    return quote


def _terms(t: Any, i: int, fee_bp: int, eligible: bool) -> dict[str, Any]:
    """A product's offer before its overlays (`scoring.engine.BaseTerms`, row `i`)."""
    limit = int(t.limit_cny[i])
    all_in = _pct(t.all_in_bp[i])
    return {"limit_cny": limit,
            "rate_band": [_pct(t.rate_lo_bp[i]), _pct(t.rate_hi_bp[i])] if eligible else None,
            "rate": _pct(t.rate_bp[i]) if eligible else None,
            "subsidy": {"pct": _pct(t.subsidy_bp[i]) if eligible else None},
            "all_in_cost": {"pct": all_in, "cny": round(limit * all_in / 100, 2)} if eligible and all_in else None,
            "guarantee_fee": {"pct": _pct(fee_bp) if eligible else None}}


def _overlay_terms(r: ProductResult, i: int) -> dict[str, Any]:
    """What an overlay does for this enterprise: its base products and, where it qualifies, its terms."""
    rule = r.plan.definition.overlay
    grade = r.plan.grades[r.grade[i]]
    qualifies = bool(r.eligible[i])
    return {"base_products": list(rule.base_products),
            "limit_uplift": rule.limit_uplift_by_grade.get(grade, 1.0) if qualifies else 1.0,
            "rate_cut_bp": rule.rate_cut_bp_by_grade.get(grade, 0) if qualifies else 0,
            "max_limit_uplift": rule.max_limit_uplift, "max_rate_cut_bp": rule.max_rate_cut_bp,
            "min_rate_pct": rule.min_rate_pct, "max_limit_cny": rule.max_limit_cny}


def _applied(o: Any, i: int) -> dict[str, Any]:
    """One overlay on a product's quote (`scoring.engine.AppliedOverlay`, row `i`)."""
    ov = o.result
    reasons = [r for r in quote_dict(ov, i)["reasons"]] if not ov.eligible[i] else []
    return {"product": o.code, "product_name": ov.plan.definition.name.model_dump(),
            "product_version": ov.plan.version, "qualifies": bool(ov.eligible[i]),
            "index": _cents(ov.index_cents[i]), "grade": ov.plan.grades[ov.grade[i]],
            "applied": bool(o.applied[i]), "limit_uplift": float(o.uplift[i]),
            "rate_cut_bp": int(o.rate_cut_bp[i]), "reasons": reasons}


def enterprise_quotes(results: Mapping[str, ProductResult], rows: Iterator[int] | None = None
                      ) -> Iterator[dict[str, Any]]:
    """One `{"credit_code", "quotes": [...]}` object per enterprise (row), products in plan order."""
    first = next(iter(results.values()))
    for i in rows if rows is not None else range(first.n):
        yield {"credit_code": str(first.index[i]), "quotes": [quote_dict(r, i) for r in results.values()]}
