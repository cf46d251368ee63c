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
from features.sources import GOVERNMENT_SOURCES, SOURCES, VISIBILITIES, Visibility
from features.uscc import WENZHOU_DIVISIONS

FeatureKind = Literal["number", "bool", "enum", "text"]


@dataclass(frozen=True)
class FeatureField:
    name: str
    kind: FeatureKind
    sources: tuple[str, ...]  # the sources the value comes from (missing when any is missing)
    choices: tuple[str, ...] = ()  # enum: its values; text: the known values (empty: any matching `pattern`)
    pattern: str | None = None  # text: the form of a value
    visibility: Visibility = "visible"  # who may see the value (features.sources.Visibility)


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
# The inputs each derived indicator is computed from (source fields and other derived indicators), so that
# it inherits the strictest visibility of its inputs; `tests/test_visibility.py` checks every input a
# derived column really reads is declared here.
_WC_INPUTS = ("financials.revenue_cny", "financials.cost_of_sales_cny", "financials.net_profit_cny",
              "financials.inventory_cny", "financials.receivables_cny", "financials.payables_cny",
              "sales_growth_1y")
_KWH_RECENT = tuple(f"electricity.kwh_m{m:02d}" for m in (1, 2, 3, 13, 14, 15))
DERIVED_INPUTS: dict[str, tuple[str, ...]] = {
    "age_years": ("registry.established_date",),
    "tax_per_mu_cny": ("per_mu.tax_paid_cny", "per_mu.land_area_mu"),
    "value_added_per_mu_cny": ("per_mu.value_added_cny", "per_mu.land_area_mu"),
    "labour_productivity_cny": ("per_mu.value_added_cny", "per_mu.employees"),
    "value_added_per_tce_cny": ("per_mu.value_added_cny", "per_mu.energy_use_tce"),
    "value_added_per_t_emission_cny": ("per_mu.value_added_cny", "per_mu.emissions_t"),
    "rd_ratio": ("per_mu.rd_expense_cny", "per_mu.revenue_cny"),
    "sales_growth_1y": ("tax.taxable_sales_cny_y0", "tax.taxable_sales_cny_y1"),
    "sales_growth": ("tax.taxable_sales_cny_y0", "tax.taxable_sales_cny_y2"),
    "vat_paid_3y_cny": ("tax.vat_paid_cny_y0", "tax.vat_paid_cny_y1", "tax.vat_paid_cny_y2"),
    "rd_deduction_ratio": ("tax.rd_super_deduction_cny", "tax.taxable_sales_cny_y0"),
    "tax_credit_grade_rank": ("tax.tax_credit_grade",),
    "per_mu_class_rank": ("per_mu.per_mu_class",),
    "specialized_level_rank": ("tech.specialized_level",),
    "rd_platform_level_rank": ("tech.rd_platform_level",),
    "wc_turnover": _WC_INPUTS[:2] + _WC_INPUTS[3:6],
    "wc_need_cny": _WC_INPUTS,
    "wc_gap_cny": (*_WC_INPUTS, "financials.own_funds_cny", "financials.other_wc_sources_cny",
                   "credit_bureau.working_capital_loans_cny"),
    "sales_margin": ("financials.net_profit_cny", "financials.revenue_cny"),
    "debt_ratio": ("financials.total_liabilities_cny", "financials.total_assets_cny"),
    "current_ratio": ("financials.current_assets_cny", "financials.current_liabilities_cny"),
    "interest_coverage": ("financials.net_profit_cny", "financials.interest_expense_cny"),
    "roa": ("financials.net_profit_cny", "financials.total_assets_cny"),
    "industry_section": ("registry.industry_code",),
    "insured_employees": ("social_security.insured_employees_m01",),
    "employees_growth_12m": ("social_security.insured_employees_m01", "social_security.insured_employees_m12"),
    "production_state": _KWH_RECENT,
    "electricity_yoy": _KWH_RECENT,
    "production_state_rank": ("production_state",),
}
# Derived indicators whose visibility is declared instead of inherited, and why.
DERIVED_VISIBILITY: dict[str, Visibility] = {
    # a four-way state (stopped/reduced/stable/increased), not the meter readings it is read from
    "production_state": "visible",
}

DERIVED_ENUMS: dict[str, tuple[str, ...]] = {"production_state": PRODUCTION_STATES,
                                              "industry_section": INDUSTRY_SECTIONS}


def _strictest(levels: list[Visibility]) -> Visibility:
    return max(levels, key=VISIBILITIES.index, default="visible")


@cache
def field_visibility() -> dict[str, Visibility]:
    """Visibility of every source field (`<source>.<field>`, strings and dates too) and derived indicator."""
    out: dict[str, Visibility] = {f"{src}.{f.name}": f.visibility for src, spec in SOURCES.items()
                                  for f in spec.fields}
    out.update({f"has_{src}": "visible" for src in SOURCES})  # whether a source is on file

    def derived(name: str, seen: tuple[str, ...] = ()) -> Visibility:
        if name in DERIVED_VISIBILITY:
            return DERIVED_VISIBILITY[name]
        if name in out:
            return out[name]
        if name in seen or name not in DERIVED_INPUTS:
            raise RuntimeError(f"derived feature {name!r} has no (acyclic) inputs declared")
        return _strictest([derived(i, (*seen, name)) for i in DERIVED_INPUTS[name]])

    missing = set(DERIVED_FEATURES) - set(DERIVED_INPUTS)
    if missing:  # a new derived indicator must say what it is computed from
        raise RuntimeError(f"derived features without inputs: {sorted(missing)}")
    for name in DERIVED_FEATURES:
        out[name] = derived(name)
    return out


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
                out[name] = FeatureField(name, "text", (src,), CONDITION_TEXT_FIELDS[name], spec.pattern,
                                         visibility=spec.visibility)
                continue
            else:
                continue  # other strings (names, identifiers) and dates are not conditions
            name = f"{src}.{spec.name}"
            out[name] = FeatureField(name, kind, (src,), spec.choices, visibility=spec.visibility)
    missing = set(DERIVED_FEATURES) - set(DERIVED_SOURCES)
    if missing:  # a new derived indicator must say where it comes from
        raise RuntimeError(f"derived features without sources: {sorted(missing)}")
    for name in DERIVED_FEATURES:
        if name in DERIVED_ENUMS:
            out[name] = FeatureField(name, "enum", DERIVED_SOURCES[name], DERIVED_ENUMS[name])
        else:
            out[name] = FeatureField(name, "number", DERIVED_SOURCES[name])
    return out
