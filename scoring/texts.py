"""The one set of rules for reason and explanation texts (pure: no I/O).

A quote's row view (`scoring.output`), the batch's columnar view (`scoring.columnar`) and the risk model's
factors (`scoring.risk_texts`, `training.serving`) render from these functions only, so the same enterprise
reads the same sentence whichever path produced it:

- numbers in sentences (`number_text`): thousands separators, at most 2 decimals from 1 up, 4 significant
  digits below 1, rounded half up as the number reads, trailing zeros dropped, never an exponent:
  217400.5 -> "217,400.5", 1.2345 -> "1.23", 2.675 -> "2.68", 0.0001234 -> "0.0001234", 1e-7 -> "0.0000001",
  -1e12 -> "-1,000,000,000,000"; infinity -> "∞" / "-∞"; missing -> "" (callers use the missing template);
- points (`points_text`): integer cents of a point, exactly: 1250 -> "12.5";
- percentages (`percent_text`): two decimals: 0.0345 -> "3.45%";
- numbers as JSON values (`json_number`): a finite float, the infinity text for ±inf, None when missing;
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from string import Formatter
from typing import Any

import numpy as np

from features.sources import SOURCES
from products.catalogue import common_reasons
from products.schema import Text
from scoring.engine import ProductResult, ReasonSpec
from scoring.plan import Plan

DECIMALS = 2  # numbers of magnitude 1 and more
SIGNIFICANT = 4  # numbers below 1
INFINITY = "∞"  # readable in both languages; "inf" or "1e309" is not
MISSING = ""
DYNAMIC = ("points", "grade", "pd", "amount")  # placeholders whose values differ between enterprises


@dataclass(frozen=True)
class Label:
    """A text in both languages."""

    zh: str
    en: str


# ------------------------------------------------------------------ numbers


def _is_missing(x: Any) -> bool:
    return x is None or x != x  # NaN is the one value unequal to itself


def number_text(x: float | None) -> str:
    """A number as a sentence prints it (see the module docstring); `MISSING` for None/NaN."""
    if _is_missing(x):
        return MISSING
    x = float(x)  # type: ignore[arg-type]
    if math.isinf(x):
        return INFINITY if x > 0 else "-" + INFINITY
    if x.is_integer():
        # beyond 2**53 a float's exact value has digits nobody typed (1e23 = 99999999999999991611392)
        return f"{int(x):,}" if abs(x) < 2**53 else f"{Decimal(repr(x)):,f}"
    # round the number as it reads (its shortest repr), half up: 2.675 -> "2.68", as a person rounds it
    d = Decimal(repr(x))
    exponent = d.adjusted()  # position of the first significant digit
    places = DECIMALS if exponent >= 0 else SIGNIFICANT - 1 - exponent
    text = f"{d.quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP):,f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def points_text(cents: int | np.integer) -> str:
    """Integer cents of a point as points, exact: 1250 -> "12.5", 100000 -> "1,000", -5 -> "-0.05"."""
    c = int(cents)
    whole, frac = divmod(abs(c), 100)
    text = f"{whole:,}" + (f".{frac:02d}".rstrip("0") if frac else "")
    return "-" + text if c < 0 else text


def percent_text(fraction: float | None) -> str:
    """A share as a percentage with two decimals: 0.0345 -> "3.45%"; `MISSING` for None/NaN."""
    if _is_missing(fraction):
        return MISSING
    if fraction in (math.inf, -math.inf):
        return number_text(fraction)
    return f"{fraction:,.2%}"


def json_number(x: float | None) -> float | str | None:
    """A number as a JSON value: a finite float, the infinity text (JSON has none), None when missing."""
    if _is_missing(x):
        return None
    x = float(x)  # type: ignore[arg-type]
    return x if math.isfinite(x) else number_text(x)


# ------------------------------------------------------------------ templates


class _Blank(dict):
    def __missing__(self, key: str) -> str:  # an unknown placeholder prints as itself
        return "{" + key + "}"


def render(template: Text | Label, params: Mapping[str, str]) -> dict[str, str]:
    """A zh/en template with its placeholders filled (str.format_map: filled, never evaluated)."""
    values = _Blank(params)
    return {"zh": template.zh.format_map(values), "en": template.en.format_map(values)}


def placeholders(template: Text | Label) -> frozenset[str]:
    return frozenset(name for t in (template.zh, template.en) for _, name, _, _ in Formatter().parse(t) if name)


@dataclass(frozen=True)
class ReasonParts:
    """The enterprise-independent part of a reason of a plan."""

    code: str
    params: Mapping[str, str]  # placeholders that do not depend on the row (read-only: shared by the cache)
    indicator: int | None  # position of the indicator the reason names
    template: Text | None
    dynamic: frozenset[str]  # which of DYNAMIC the template prints
    fixed: dict[str, str] | None  # the texts themselves when no placeholder depends on the row


def _source_names(src: str) -> dict[str, str]:
    spec = SOURCES.get(src)
    return {"source_zh": spec.provider_zh if spec else src, "source_en": src.replace("_", " ")}


@lru_cache(maxsize=8192)  # per (plan, reason): plans hash by identity and are few
def reason_parts(plan: Plan, spec: ReasonSpec) -> ReasonParts:
    params: dict[str, str] = dict(spec.params)
    if "source" in params:
        params.update(_source_names(params["source"]))
    j = None
    if "indicator" in params:
        j = next(j for j, ind in enumerate(plan.indicators) if ind.code == params["indicator"])
        ind = plan.indicators[j]
        params.update(indicator_zh=ind.name.zh, indicator_en=ind.name.en, max=points_text(ind.weight_cents))
    if "base" in params:
        b = next(b for b in plan.bases if b.code == params["base"])
        params.update(base_zh=b.name.zh, base_en=b.name.en)
    params.update(eligible="/".join(plan.definition.grading.eligible), max_pd=percent_text(plan.max_pd),
                  min=number_text(plan.min_limit))
    text = plan.reasons.get(spec.code) or common_reasons().get(spec.code)
    dynamic = frozenset(placeholders(text).intersection(DYNAMIC)) if text is not None else frozenset()
    fixed = None
    if text is None:
        fixed = {"zh": spec.code, "en": spec.code}
    elif not dynamic:
        fixed = render(text, params)
    return ReasonParts(spec.code, params, j, text, dynamic, fixed)


def points_lost_spec(indicator: str) -> ReasonSpec:
    """The reason a top-reasons entry is rendered with (an indicator's points against its maximum)."""
    return ReasonSpec("POINTS_LOST", "info", (("indicator", indicator),))


def row_values(r: ProductResult, parts: ReasonParts, i: int) -> dict[str, str]:
    """The per-enterprise placeholders of row `i` that the reason prints (a PD only when there is one)."""
    out: dict[str, str] = {}
    if "points" in parts.dynamic and parts.indicator is not None:
        out["points"] = points_text(r.points_cents[i, parts.indicator])
    if "grade" in parts.dynamic:
        out["grade"] = r.plan.grades[r.grade[i]]
    if "pd" in parts.dynamic and not np.isnan(r.pd[i]):
        out["pd"] = percent_text(float(r.pd[i]))
    if "amount" in parts.dynamic:  # the binding limit base's amount (CNY, rounded down as a limit is)
        out["amount"] = number_text(float(r.binding_cny[i]))
    return out


def render_reason(parts: ReasonParts, values: Mapping[str, str]) -> dict[str, str]:
    """zh/en of a reason from its parts and its row's `row_values` (or stand-ins for them)."""
    if parts.fixed is not None:
        return dict(parts.fixed)  # a copy: the cached one is shared
    return render(parts.template, {**parts.params, **values})  # type: ignore[arg-type]
