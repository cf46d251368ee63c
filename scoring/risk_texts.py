"""Reason texts (zh/en) for the risk model's SHAP factors, on the rules of `scoring.texts`.

Codes and templates have the format of the products' reason catalogue (`products/reasons.yaml`); a code
defined there wins, so the scorecard and the risk model read one catalogue. Feature labels come from
`risk_reasons.yaml` beside this file, then from the product indicators that name the field, then from
the source catalogue. The quote (`training.serving.RiskModel`) and the batch (`scoring.columnar`) both
turn a model input into a value with `model_value` and print it with `display_value`.
"""

from __future__ import annotations

import math
import re
from functools import cache, lru_cache
from importlib import resources
from typing import Any

import yaml

from features.derive import LEVEL_RANK, PER_MU_CLASS_RANK, PRODUCTION_STATE_RANK, TAX_GRADE_RANK
from features.sources import SOURCES
from products.catalogue import common_reasons, default_catalogue
from products.visibility import Audience, shows
from scoring.texts import MISSING, Label, number_text, render

CATALOGUE_FILE = "risk_reasons.yaml"
_MONTHLY = re.compile(r"^(electricity\.kwh|social_security\.insured_employees)_m(\d{2})$")
RANK_LABELS: dict[str, dict[int, str]] = {  # model inputs that are ranks of a government class
    "tax_credit_grade_rank": {v: k for k, v in TAX_GRADE_RANK.items()},
    "per_mu_class_rank": {v: k for k, v in PER_MU_CLASS_RANK.items()},
    "specialized_level_rank": {v: k for k, v in LEVEL_RANK.items()},
    "rd_platform_level_rank": {v: k for k, v in LEVEL_RANK.items()},
    "production_state_rank": {v: k for k, v in PRODUCTION_STATE_RANK.items()},
}
BOOL_FEATURES = frozenset(  # model inputs that are yes/no flags
    [f"has_{name}" for name in SOURCES]
    + [f"{name}.{f.name}" for name, spec in SOURCES.items() for f in spec.fields if f.kind == "bool"]
)
YES, NO = Label("是", "yes"), Label("否", "no")


@lru_cache(maxsize=1)
def _catalogue() -> dict[str, Any]:
    """The risk-factor catalogue packaged beside this module: the one file scoring reads itself
    (read once, through the package's resources, never from a path given at run time)."""
    return yaml.safe_load(resources.files("scoring").joinpath(CATALOGUE_FILE).read_text(encoding="utf-8"))


@cache
def reason_templates() -> dict[str, Label]:
    """Risk-factor codes; the products' shared catalogue overrides a code it also defines."""
    out = {code: Label(t["zh"], t["en"]) for code, t in _catalogue()["codes"].items()}
    for code, text in common_reasons().items():
        if code in out:
            out[code] = Label(text.zh, text.en)
    return out


@cache
def _indicator_labels() -> dict[str, Label]:
    """Field -> indicator name from the product definitions (first product naming it wins)."""
    out: dict[str, Label] = {}
    for definition in default_catalogue().values():
        for dimension in definition.dimensions.values():
            for indicator in dimension.indicators:
                out.setdefault(indicator.field, Label(indicator.name.zh, indicator.name.en))
    return out


@cache
def feature_label(name: str) -> Label:
    known = _catalogue()["features"].get(name)
    if known:
        return Label(known["zh"], known["en"])
    if name in _indicator_labels():
        return _indicator_labels()[name]
    monthly = _MONTHLY.match(name)
    if monthly:
        months = int(monthly.group(2))
        if monthly.group(1).startswith("electricity"):
            return Label(f"{months}个月前当月用电量（千瓦时）", f"Electricity use {months} month(s) back (kWh)")
        return Label(f"{months}个月前参保人数", f"Insured employees {months} month(s) back")
    source, _, field = name.partition(".")
    spec = SOURCES.get(source)
    doc = next((f.doc for f in spec.fields if f.name == field), None) if spec else None
    if spec and doc:
        return Label(f"{spec.provider_zh}：{doc}", doc[0].upper() + doc[1:])
    return Label(name, name)


def model_value(name: str, x: float, labels: tuple[str, ...] | None = None) -> Any:
    """An encoded model input as the model saw it: None (missing), its category text (`labels` of a
    categorical input), a yes/no flag, or a number."""
    if math.isnan(x):
        return None
    if labels is not None:
        return labels[int(x)]
    if name in BOOL_FEATURES:
        return bool(x)
    return float(x)


def display_value(name: str, value: Any) -> Label:
    """The value as a loan officer reads it: grades as letters, flags as yes/no (是/否), numbers by
    `number_text`; `MISSING` when there is none (the missing template says so instead)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Label(MISSING, MISSING)
    if isinstance(value, bool):
        return YES if value else NO
    if isinstance(value, int | float):
        rank = RANK_LABELS[name].get(int(value)) if name in RANK_LABELS and float(value).is_integer() else None
        shown = rank if rank is not None else number_text(value)
        return Label(shown, shown)
    return Label(str(value), str(value))


def factor_code(name: str, missing: bool, contribution: float, audience: Audience = Audience.bank) -> str:
    """The risk-factor code: missing data, a value `audience` may not read (worded without it), or a value."""
    direction = "RAISES" if contribution > 0 else "LOWERS"
    if missing:
        return f"RISK_FACTOR_MISSING_{direction}"
    return f"RISK_FACTOR_{direction}" if shows(audience, name) else f"RISK_FACTOR_WITHHELD_{direction}"


def reason_for(name: str, value: Any, contribution: float, audience: Audience = Audience.bank) -> dict[str, str]:
    """Code and zh/en text of one risk factor (direction from the sign of its SHAP contribution), worded
    without the value when `audience` may not read it (`products.visibility`)."""
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    code = factor_code(name, missing, contribution, audience)
    label = feature_label(name)
    shown = display_value(name, value)
    template = reason_templates()[code]
    zh = render(template, {"indicator_zh": label.zh, "indicator_en": label.en, "value": shown.zh})["zh"]
    en = render(template, {"indicator_zh": label.zh, "indicator_en": label.en, "value": shown.en})["en"]
    return {"code": code, "zh": zh, "en": en}
