"""The features catalogue as product definitions see it: every field a gate or indicator may name.

Built from `features.sources` (source fields, `<source>.<field>`), the `has_<source>` flags and the
derived indicators of `features.derive`, so a definition naming a field that the features frame
never has is rejected when the file is loaded, not when a quote is computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Literal

from features.derive import DERIVED_FEATURES, INDUSTRY_SECTIONS, PRODUCTION_STATES
from features.sources import GOVERNMENT_SOURCES, SOURCES
from features.uscc import WENZHOU_DIVISIONS

FeatureKind = Literal["number", "bool", "enum", "text"]


@dataclass(frozen=True)
class FeatureField:
    name: str
    kind: FeatureKind
    sources: tuple[str, ...]  # the sources the value comes from (missing when any is missing)
    choices: tuple[str, ...] = ()  # enum: its values; text: the known values (empty: any matching `pattern`)
    pattern: str | None = None  # text: the form of a value


# Which sources each derived indicator reads; used to explain a missing value by a missing source.
DERIVED_SOURCES: dict[str, tuple[str, ...]] = {
    "age_years": ("registry",),
    "tax_per_mu_cny": ("per_mu",),
    "value_added_per_mu_cny": ("per_mu",),
    "labour_productivity_cny": ("per_mu",),
    "value_added_per_tce_cny": ("per_mu",),
    "value_added_per_t_emission_cny": ("per_mu",),
    "rd_ratio": ("per_mu",),
    "sales_growth_1y": ("tax",),
    "sales_growth": ("tax",),
    "vat_paid_3y_cny": ("tax",),
    "rd_deduction_ratio": ("tax",),
    "tax_credit_grade_rank": ("tax",),
    "per_mu_class_rank": ("per_mu",),
    "specialized_level_rank": ("tech",),
    "rd_platform_level_rank": ("tech",),
    "wc_turnover": ("financials",),
    "wc_need_cny": ("financials",),
    "wc_gap_cny": ("financials", "credit_bureau"),
    "sales_margin": ("financials",),
    "debt_ratio": ("financials",),
    "current_ratio": ("financials",),
    "interest_coverage": ("financials",),
    "roa": ("financials",),
    "industry_section": ("registry",),
    "insured_employees": ("social_security",),
    "employees_growth_12m": ("social_security",),
    "production_state": ("electricity",),
    "electricity_yoy": ("electricity",),
    "production_state_rank": ("electricity",),
}
# Text fields a condition may compare (equality and membership: gates, subsidies, fees, segments).
# Names and identifiers are not conditions; a district must be one of the region's (a typo is an error).
CONDITION_TEXT_FIELDS: dict[str, tuple[str, ...]] = {
    "registry.district": tuple(WENZHOU_DIVISIONS.values()),
    "registry.industry_code": (),
}
DERIVED_ENUMS: dict[str, tuple[str, ...]] = {"production_state": PRODUCTION_STATES,
                                              "industry_section": INDUSTRY_SECTIONS}


@cache
def feature_catalogue() -> dict[str, FeatureField]:
    """Every field name a product definition may reference."""
    out: dict[str, FeatureField] = {}
    for src in GOVERNMENT_SOURCES:
        out[f"has_{src}"] = FeatureField(f"has_{src}", "bool", ())
        for spec in SOURCES[src].fields:
            if spec.kind in ("int", "float"):
                kind: FeatureKind = "number"
            elif spec.kind in ("bool", "enum"):
                kind = spec.kind
            elif f"{src}.{spec.name}" in CONDITION_TEXT_FIELDS:
                name = f"{src}.{spec.name}"
                out[name] = FeatureField(name, "text", (src,), CONDITION_TEXT_FIELDS[name], spec.pattern)
                continue
            else:
                continue  # other strings (names, identifiers) and dates are not conditions
            name = f"{src}.{spec.name}"
            out[name] = FeatureField(name, kind, (src,), spec.choices)
    missing = set(DERIVED_FEATURES) - set(DERIVED_SOURCES)
    if missing:  # a new derived indicator must say where it comes from
        raise RuntimeError(f"derived features without sources: {sorted(missing)}")
    for name in DERIVED_FEATURES:
        if name in DERIVED_ENUMS:
            out[name] = FeatureField(name, "enum", DERIVED_SOURCES[name], DERIVED_ENUMS[name])
        else:
            out[name] = FeatureField(name, "number", DERIVED_SOURCES[name])
    return out
