"""Reason texts (zh/en) for the risk model's SHAP factors.

Codes and templates have the format of the products' reason catalogue (`products/reasons.yaml`);
a code defined there wins, so the scorecard and the risk model read one catalogue. Feature labels
come from `reasons.yaml` beside this file, then from the product indicators that name the field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from features.derive import LEVEL_RANK, PER_MU_CLASS_RANK, PRODUCTION_STATE_RANK, TAX_GRADE_RANK

CATALOGUE_FILE = Path(__file__).resolve().parent / "reasons.yaml"
_MONTHLY = re.compile(r"^(electricity\.kwh|social_security\.insured_employees)_m(\d{2})$")
_RANK_LABELS = {
    "tax_credit_grade_rank": {v: k for k, v in TAX_GRADE_RANK.items()},
    "per_mu_class_rank": {v: k for k, v in PER_MU_CLASS_RANK.items()},
    "specialized_level_rank": {v: k for k, v in LEVEL_RANK.items()},
    "rd_platform_level_rank": {v: k for k, v in LEVEL_RANK.items()},
    "production_state_rank": {v: k for k, v in PRODUCTION_STATE_RANK.items()},
}


@dataclass(frozen=True)
class Label:
    zh: str
    en: str


class _Blank(dict):
    def __missing__(self, key: str) -> str:  # an unknown placeholder prints as itself
        return "{" + key + "}"


@cache
def _catalogue() -> dict[str, Any]:
    return yaml.safe_load(CATALOGUE_FILE.read_text(encoding="utf-8"))


@cache
def reason_templates() -> dict[str, Label]:
    """Risk-factor codes; the products' shared catalogue overrides a code it also defines."""
    out = {code: Label(t["zh"], t["en"]) for code, t in _catalogue()["codes"].items()}
    try:
        from products.catalogue import common_reasons

        for code, text in common_reasons().items():
            if code in out:
                out[code] = Label(text.zh, text.en)
    except Exception:  # noqa: BLE001, S110 - the products package is optional for training
        pass
    return out


@cache
def _indicator_labels() -> dict[str, Label]:
    """Field -> indicator name from the product definitions (first product naming it wins)."""
    try:
        from products.catalogue import default_catalogue

        out: dict[str, Label] = {}
        for definition in default_catalogue().values():
            for dimension in definition.dimensions.values():
                for indicator in dimension.indicators:
                    out.setdefault(indicator.field, Label(indicator.name.zh, indicator.name.en))
        return out
    except Exception:  # noqa: BLE001 - labels fall back to the source catalogue
        return {}


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
    from features.sources import SOURCES

    source, _, field = name.partition(".")
    spec = SOURCES.get(source)
    doc = next((f.doc for f in spec.fields if f.name == field), None) if spec else None
    if doc:
        return Label(f"{spec.provider_zh}：{doc}", doc[0].upper() + doc[1:])  # type: ignore[union-attr]
    return Label(name, name)


def display_value(name: str, value: Any) -> str:
    """The value as a loan officer reads it: grades as letters, flags as yes/no, money with separators."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if name in _RANK_LABELS and isinstance(value, int | float):
        return _RANK_LABELS[name].get(int(value), str(value))
    if isinstance(value, int | float):
        number = float(value)
        if number.is_integer() and abs(number) >= 1:
            return f"{int(number):,}"
        return f"{number:.4g}"
    return str(value)


def _yes_no_zh(text: str) -> str:
    return {"yes": "是", "no": "否"}.get(text, text)


def reason_for(name: str, value: Any, contribution: float) -> dict[str, str]:
    """Code and zh/en text of one risk factor (direction from the sign of its SHAP contribution)."""
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    direction = "RAISES" if contribution > 0 else "LOWERS"
    code = f"RISK_FACTOR_MISSING_{direction}" if missing else f"RISK_FACTOR_{direction}"
    label = feature_label(name)
    shown = display_value(name, value)
    template = reason_templates()[code]
    params: Mapping[str, str] = _Blank(indicator_zh=label.zh, indicator_en=label.en, value=shown)
    params_zh = _Blank({**params, "value": _yes_no_zh(shown)})
    return {"code": code, "zh": template.zh.format_map(params_zh), "en": template.en.format_map(params)}
