"""JSON-ready quotes from engine results (formatting only; the numbers are already decided).

This is the one place that loops, and only over the enterprises being returned to a caller.
Points, rates and fees are integers in the engine (cents of a point, basis points), so every number
printed here is exact to two decimals and the points add up to the index.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import lru_cache
from string import Formatter
from typing import Any

import numpy as np

from features.sources import SOURCES
from products.catalogue import common_reasons
from products.schema import Text
from scoring.engine import ProductResult, ReasonSpec
from scoring.plan import Plan


class _Blank(dict):
    def __missing__(self, key: str) -> str:  # an unknown placeholder prints as itself
        return "{" + key + "}"


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


def _source_names(src: str) -> dict[str, str]:
    spec = SOURCES.get(src)
    return {"source_zh": spec.provider_zh if spec else src, "source_en": src.replace("_", " ")}


def reason_text(code: str, params: Mapping[str, str], extra: Mapping[str, Text] | None = None) -> dict[str, str]:
    text = (extra or {}).get(code) or common_reasons().get(code)
    if text is None:
        return {"zh": code, "en": code}
    values = _Blank(params)
    return {"zh": text.zh.format_map(values), "en": text.en.format_map(values)}


_DYNAMIC = ("points", "grade", "pd")  # placeholders whose values differ between enterprises


@lru_cache(maxsize=8192)  # per (plan, reason): plans hash by identity and are few
def _reason_parts(plan: Plan, spec: ReasonSpec
                  ) -> tuple[dict[str, str], int | None, Text | None, frozenset[str], dict[str, str] | None]:
    """The enterprise-independent part of a reason: its parameters, the indicator it names, its text
    template and which per-enterprise placeholders that template uses."""
    params: dict[str, str] = dict(spec.params)
    if "source" in params:
        params.update(_source_names(params["source"]))
    j = None
    if "indicator" in params:
        j = next(j for j, ind in enumerate(plan.indicators) if ind.code == params["indicator"])
        ind = plan.indicators[j]
        params.update(indicator_zh=ind.name.zh, indicator_en=ind.name.en, max=f"{_cents(ind.weight_cents):g}")
    if "base" in params:
        b = next(b for b in plan.bases if b.code == params["base"])
        params.update(base_zh=b.name.zh, base_en=b.name.en)
    params.update(eligible="/".join(plan.definition.grading.eligible), max_pd=f"{plan.max_pd:.2%}")
    text = plan.reasons.get(spec.code) or common_reasons().get(spec.code)
    used = set()
    if text is not None:
        used = {name for template in (text.zh, text.en) for _, name, _, _ in Formatter().parse(template) if name}
    dynamic = frozenset(used.intersection(_DYNAMIC))
    fixed = None  # the texts themselves when no placeholder depends on the enterprise
    if text is None:
        fixed = {"zh": spec.code, "en": spec.code}
    elif not dynamic:
        fixed = {"zh": text.zh.format_map(_Blank(params)), "en": text.en.format_map(_Blank(params))}
    return params, j, text, dynamic, fixed


def _reason(r: ProductResult, spec: ReasonSpec, i: int) -> dict[str, Any]:
    params, j, text, dynamic, fixed = _reason_parts(r.plan, spec)
    head = {"code": spec.code, "kind": spec.kind, **params_public(spec)}
    if fixed is not None:
        return {**head, **fixed}
    params = dict(params)
    if j is not None:
        params["points"] = f"{_cents(r.points_cents[i, j]):g}"
    params["grade"] = r.plan.grades[r.grade[i]]
    if not np.isnan(r.pd[i]):
        params["pd"] = f"{r.pd[i]:.2%}"
    values = _Blank(params)
    return {**head, "zh": text.zh.format_map(values), "en": text.en.format_map(values)}


def params_public(spec: ReasonSpec) -> dict[str, str]:
    return dict(spec.params)


def _display_value(r: ProductResult, j: int, value: float) -> Any:
    ind = r.plan.indicators[j]
    if np.isnan(value):
        return None
    if np.isinf(value):
        return repr(float(value))  # e.g. growth over a zero base; JSON has no infinity
    if ind.kind == "categorical":
        return ind.choices[int(value)]
    if ind.kind == "flag":
        return bool(value > 0.5)
    return _num(round(float(value), 10))


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
                if ind.changeable and plan.max_cents[j] > r.points_cents[i, j]]
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
    }


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
        spec = ReasonSpec("POINTS_LOST", "info", (("indicator", ind.code),))
        top.append({**_reason(r, spec, i), "points": _cents(r.points_cents[i, j]),
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
    if d.risk_compensation is not None:
        quote["risk_compensation"] = {"loss_share": d.risk_compensation.loss_share,
                                      "cap_share_of_balance": d.risk_compensation.cap_share_of_balance}
    if d.service.green_channel:
        quote["green_channel_up_to_cny"] = limit
    return quote


def enterprise_quotes(results: Mapping[str, ProductResult], rows: Iterator[int] | None = None
                      ) -> Iterator[dict[str, Any]]:
    """One `{"credit_code", "quotes": [...]}` object per enterprise (row), products in plan order."""
    first = next(iter(results.values()))
    for i in rows if rows is not None else range(first.n):
        yield {"credit_code": str(first.index[i]), "quotes": [quote_dict(r, i) for r in results.values()]}
