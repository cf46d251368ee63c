"""Derived indicators computed from point-in-time source columns (pure, vectorised).

Every derived value is NaN when an input it needs is missing or a denominator is zero: the product
definition decides what a missing value scores. Nothing here turns a missing source into a zero: the
working-capital gap is unknown without a credit-bureau record (its existing loans are unknown, not none).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

DAYS_PER_YEAR = 360  # the working-capital-loan rules count a year as 360 days

TAX_GRADE_RANK = {"D": 0, "C": 1, "M": 2, "B": 3, "A": 4}
PER_MU_CLASS_RANK = {"D": 0, "C": 1, "B": 2, "A": 3, "A+": 4}
LEVEL_RANK = {"none": 0, "city": 1, "provincial": 2, "national": 3}
PRODUCTION_STATES = ("stopped", "reduced", "stable", "increased")
INDUSTRY_SECTIONS = tuple("ABCDEFGHIJKLMNOPQRST")  # GB/T 4754-2017 sections A to T
PRODUCTION_STATE_RANK = {s: i for i, s in enumerate(PRODUCTION_STATES)}

# Expected sales growth used in the working-capital need is last year's growth kept in this band.
EXPECTED_GROWTH_BAND = (-0.2, 0.5)


def _col(f: pd.DataFrame, name: str) -> pd.Series:
    if name in f.columns:
        return pd.to_numeric(f[name], errors="coerce").astype("float64")
    return pd.Series(np.nan, index=f.index, dtype="float64")


def ratio(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    """numerator / denominator, NaN where the denominator is zero or either side is missing."""
    den = denominator.where(denominator != 0)
    return numerator / den


def _rank(f: pd.DataFrame, name: str, ranks: dict[str, int]) -> pd.Series:
    if name not in f.columns:
        return pd.Series(np.nan, index=f.index, dtype="float64")
    return f[name].map(ranks).astype("float64")


def production_state(kwh: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Production state from monthly electricity and the year-on-year ratio behind it.

    Compares the latest three months (m01-m03) with the same three months a year earlier (m13-m15):
    stopped when the recent level is under 5% of last year's (or both are zero), reduced under 80%,
    increased over 120%, stable otherwise.
    """
    recent = kwh[["kwh_m01", "kwh_m02", "kwh_m03"]].astype("float64").mean(axis=1)
    base = kwh[["kwh_m13", "kwh_m14", "kwh_m15"]].astype("float64").mean(axis=1)
    yoy = ratio(recent, base)
    yoy = yoy.where(~((base == 0) & (recent > 0)), np.inf)
    state = np.select(
        [
            ((base == 0) & (recent == 0)) | (yoy < 0.05),
            yoy < 0.8,
            yoy > 1.2,
            yoy.notna(),
        ],
        ["stopped", "reduced", "increased", "stable"],
        default="",
    )
    states = pd.Series(state, index=kwh.index).replace("", np.nan)
    return states, yoy


def working_capital(f: pd.DataFrame) -> pd.DataFrame:
    """Working-capital need and gap following the working-capital loan rules (流动资金贷款管理办法).

    need = last-year sales x (1 - sales margin) x (1 + expected growth) / working-capital turnover
    turnover = 360 / (inventory days + receivable days - payable days)
    gap = need - own funds - existing working-capital loans - other working-capital sources
    A non-positive cash cycle means suppliers finance the firm: need 0.
    """
    revenue = _col(f, "financials.revenue_cny")
    cost = _col(f, "financials.cost_of_sales_cny")
    margin = ratio(_col(f, "financials.net_profit_cny"), revenue)
    growth = _col(f, "sales_growth_1y").clip(*EXPECTED_GROWTH_BAND).fillna(0.0)
    inventory_days = DAYS_PER_YEAR * ratio(_col(f, "financials.inventory_cny"), cost)
    receivable_days = DAYS_PER_YEAR * ratio(_col(f, "financials.receivables_cny"), revenue)
    payable_days = DAYS_PER_YEAR * ratio(_col(f, "financials.payables_cny"), cost)
    cycle_days = inventory_days + receivable_days - payable_days
    turnover = ratio(pd.Series(DAYS_PER_YEAR, index=f.index, dtype="float64"), cycle_days)
    need = revenue * (1 - margin) * (1 + growth) / turnover
    need = need.where(cycle_days > 0, 0.0).where(cycle_days.notna())
    existing_loans = _col(f, "credit_bureau.working_capital_loans_cny")  # no record: unknown, never zero
    gap = need - _col(f, "financials.own_funds_cny") - existing_loans - _col(
        f, "financials.other_wc_sources_cny"
    )
    return pd.DataFrame(
        {"wc_turnover": turnover, "wc_need_cny": need, "wc_gap_cny": gap, "sales_margin": margin},
        index=f.index,
    )


def derive(f: pd.DataFrame, as_of: dt.date) -> pd.DataFrame:
    """Return `f` with derived indicator columns added."""
    out: dict[str, pd.Series] = {}
    established = pd.to_datetime(f.get("registry.established_date"))
    if established is not None:
        out["age_years"] = (pd.Timestamp(as_of) - established).dt.days / 365.25
    land = _col(f, "per_mu.land_area_mu")
    value_added = _col(f, "per_mu.value_added_cny")
    out["tax_per_mu_cny"] = ratio(_col(f, "per_mu.tax_paid_cny"), land)
    out["value_added_per_mu_cny"] = ratio(value_added, land)
    out["labour_productivity_cny"] = ratio(value_added, _col(f, "per_mu.employees"))
    out["value_added_per_tce_cny"] = ratio(value_added, _col(f, "per_mu.energy_use_tce"))
    out["value_added_per_t_emission_cny"] = ratio(value_added, _col(f, "per_mu.emissions_t"))
    out["rd_ratio"] = ratio(_col(f, "per_mu.rd_expense_cny"), _col(f, "per_mu.revenue_cny"))

    sales0 = _col(f, "tax.taxable_sales_cny_y0")
    sales1 = _col(f, "tax.taxable_sales_cny_y1")
    sales2 = _col(f, "tax.taxable_sales_cny_y2")
    out["sales_growth_1y"] = ratio(sales0, sales1) - 1
    # Two-year compound growth over the three yearly figures.
    out["sales_growth"] = np.sqrt(ratio(sales0, sales2)) - 1
    out["vat_paid_3y_cny"] = _col(f, "tax.vat_paid_cny_y0") + _col(f, "tax.vat_paid_cny_y1") + _col(
        f, "tax.vat_paid_cny_y2"
    )
    out["rd_deduction_ratio"] = ratio(_col(f, "tax.rd_super_deduction_cny"), sales0)
    out["tax_credit_grade_rank"] = _rank(f, "tax.tax_credit_grade", TAX_GRADE_RANK)
    out["per_mu_class_rank"] = _rank(f, "per_mu.per_mu_class", PER_MU_CLASS_RANK)
    out["specialized_level_rank"] = _rank(f, "tech.specialized_level", LEVEL_RANK)
    out["rd_platform_level_rank"] = _rank(f, "tech.rd_platform_level", LEVEL_RANK)

    wc_input = f.assign(sales_growth_1y=out["sales_growth_1y"])
    for name, values in working_capital(wc_input).items():
        out[name] = values

    assets = _col(f, "financials.total_assets_cny")
    interest = _col(f, "financials.interest_expense_cny")
    out["debt_ratio"] = ratio(_col(f, "financials.total_liabilities_cny"), assets)
    out["current_ratio"] = ratio(
        _col(f, "financials.current_assets_cny"), _col(f, "financials.current_liabilities_cny")
    )
    out["interest_coverage"] = ratio(_col(f, "financials.net_profit_cny") + interest, interest)
    out["roa"] = ratio(_col(f, "financials.net_profit_cny"), assets)
    # GB/T 4754 section letter: derived here (not in training only) so that quotes and batches feed the
    # risk model the same input it was trained on
    code = f.get("registry.industry_code")
    out["industry_section"] = (code.astype("str").str[0].where(code.notna()) if code is not None
                               else pd.Series(pd.NA, index=f.index, dtype="str"))

    insured_now = _col(f, "social_security.insured_employees_m01")
    out["insured_employees"] = insured_now
    out["employees_growth_12m"] = ratio(insured_now, _col(f, "social_security.insured_employees_m12")) - 1

    kwh_cols = [f"electricity.kwh_m{m:02d}" for m in range(1, 16)]
    if all(c in f.columns for c in kwh_cols):
        kwh = f[kwh_cols].rename(columns=lambda c: c.split(".", 1)[1])
        state, yoy = production_state(kwh)
        out["production_state"] = state
        out["electricity_yoy"] = yoy
        out["production_state_rank"] = state.map(PRODUCTION_STATE_RANK).astype("float64")
    return pd.concat([f, pd.DataFrame(out, index=f.index)], axis=1)


DERIVED_FEATURES = (
    "age_years", "tax_per_mu_cny", "value_added_per_mu_cny", "labour_productivity_cny",
    "value_added_per_tce_cny", "value_added_per_t_emission_cny", "rd_ratio", "sales_growth_1y",
    "sales_growth", "vat_paid_3y_cny", "rd_deduction_ratio", "tax_credit_grade_rank", "per_mu_class_rank",
    "specialized_level_rank", "rd_platform_level_rank", "wc_turnover", "wc_need_cny", "wc_gap_cny",
    "sales_margin", "debt_ratio", "current_ratio", "interest_coverage", "roa", "industry_section",
    "insured_employees",
    "employees_growth_12m", "production_state", "electricity_yoy", "production_state_rank",
)
