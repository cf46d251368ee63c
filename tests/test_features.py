"""Point-in-time selection and derived indicators on hand-checked examples."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.assemble import point_in_time
from features.derive import production_state
from features.ingest import ingest_directory
from features.store.load import load_features
from tests.factories import credit_codes, source_frame, valid_row, write_csv

CODES = credit_codes(3)


def _tax_rows(code: str, dates_and_sales: list[tuple[str, float]]) -> list[dict]:
    return [valid_row("tax", code, d, taxable_sales_cny_y0=s) for d, s in dates_and_sales]


def test_latest_record_on_or_before_as_of_is_used() -> None:
    tax = source_frame("tax", _tax_rows(CODES[0], [("2023-12-31", 1.0), ("2024-12-31", 2.0), ("2025-12-31", 3.0)]))
    at = lambda day: point_in_time({"tax": tax}, dt.date.fromisoformat(day))  # noqa: E731
    assert at("2024-06-30").loc[CODES[0], "tax.taxable_sales_cny_y0"] == 1.0
    assert at("2024-12-31").loc[CODES[0], "tax.taxable_sales_cny_y0"] == 2.0
    assert at("2026-01-01").loc[CODES[0], "tax.taxable_sales_cny_y0"] == 3.0
    assert at("2023-12-30").empty  # nothing known yet


@given(
    dates=st.lists(st.dates(dt.date(2018, 1, 1), dt.date(2026, 12, 31)), min_size=1, max_size=8, unique=True),
    as_of=st.dates(dt.date(2018, 1, 1), dt.date(2026, 12, 31)),
)
@settings(max_examples=60, deadline=None)
def test_a_record_dated_after_as_of_is_never_used(dates: list[dt.date], as_of: dt.date) -> None:
    rows = _tax_rows(CODES[0], [(d.isoformat(), float(i)) for i, d in enumerate(dates)])
    features = point_in_time({"tax": source_frame("tax", rows)}, as_of, credit_codes=[CODES[0]])
    usable = [d for d in dates if d <= as_of]
    if not usable:
        assert not features.loc[CODES[0], "has_tax"]
        assert np.isnan(features.loc[CODES[0], "tax.taxable_sales_cny_y0"])
    else:
        assert features.loc[CODES[0], "has_tax"]
        assert features.loc[CODES[0], "tax.as_of"].date() == max(usable)


def test_missing_source_is_a_flag_not_a_zero() -> None:
    tax = source_frame("tax", _tax_rows(CODES[0], [("2025-12-31", 5.0)]))
    features = point_in_time({"tax": tax}, dt.date(2025, 12, 31), credit_codes=[CODES[0], CODES[1]])
    assert features.loc[CODES[0], "has_tax"] and not features.loc[CODES[1], "has_tax"]
    assert not features.loc[CODES[0], "has_per_mu"]
    assert np.isnan(features.loc[CODES[1], "tax.taxable_sales_cny_y0"])
    assert np.isnan(features.loc[CODES[0], "tax_per_mu_cny"])
    assert pd.isna(features.loc[CODES[0], "production_state"])


def test_per_mu_indicators_hand_checked() -> None:
    per_mu = source_frame("per_mu", [valid_row(
        "per_mu", CODES[0], "2025-12-31", land_area_mu=50.0, tax_paid_cny=1_000_000.0, value_added_cny=6_000_000.0,
        energy_use_tce=300.0, emissions_t=2.0, employees=120, rd_expense_cny=900_000.0, revenue_cny=30_000_000.0,
    )])
    f = point_in_time({"per_mu": per_mu}, dt.date(2025, 12, 31)).loc[CODES[0]]
    assert f["tax_per_mu_cny"] == 20_000.0
    assert f["value_added_per_mu_cny"] == 120_000.0
    assert f["labour_productivity_cny"] == 50_000.0
    assert f["value_added_per_tce_cny"] == 20_000.0
    assert f["value_added_per_t_emission_cny"] == 3_000_000.0
    assert f["rd_ratio"] == pytest.approx(0.03)


def test_zero_denominator_gives_missing_not_infinite() -> None:
    per_mu = source_frame("per_mu", [valid_row("per_mu", CODES[0], "2025-12-31", employees=0, energy_use_tce=0.0)])
    f = point_in_time({"per_mu": per_mu}, dt.date(2025, 12, 31)).loc[CODES[0]]
    assert np.isnan(f["labour_productivity_cny"]) and np.isnan(f["value_added_per_tce_cny"])


def test_working_capital_need_and_gap_hand_checked() -> None:
    # revenue 10m, cost 8m, profit 0.5m -> margin 5%; sales 10m vs 8m -> growth 25%;
    # inventory days 360*2/8 = 90, receivable days 360*2.5/10 = 90, payable days 360*1/8 = 45 -> cycle 135;
    # turnover 360/135; need = 10m * 0.95 * 1.25 / (360/135) = 4,453,125;
    # gap = need - own funds 1m - working-capital loans 0.5m - other sources 0.2m = 2,753,125.
    date = "2025-12-31"
    frames = {
        "financials": source_frame("financials", [valid_row(
            "financials", CODES[0], date, revenue_cny=10e6, cost_of_sales_cny=8e6, net_profit_cny=0.5e6,
            inventory_cny=2e6, receivables_cny=2.5e6, payables_cny=1e6, own_funds_cny=1e6, other_wc_sources_cny=0.2e6,
        )]),
        "tax": source_frame("tax", [valid_row("tax", CODES[0], date, taxable_sales_cny_y0=10e6,
                                              taxable_sales_cny_y1=8e6, taxable_sales_cny_y2=6.4e6)]),
        "credit_bureau": source_frame("credit_bureau", [valid_row("credit_bureau", CODES[0], date,
                                                                  working_capital_loans_cny=0.5e6)]),
    }
    f = point_in_time(frames, dt.date(2025, 12, 31)).loc[CODES[0]]
    assert f["sales_growth_1y"] == pytest.approx(0.25)
    assert f["sales_growth"] == pytest.approx(0.25)  # 6.4m -> 10m over two years = 25% a year
    assert f["wc_turnover"] == pytest.approx(360 / 135)
    assert f["wc_need_cny"] == pytest.approx(4_453_125.0)
    assert f["wc_gap_cny"] == pytest.approx(2_753_125.0)


@pytest.mark.parametrize(
    ("recent", "last_year", "state"),
    [(100.0, 100.0, "stable"), (70.0, 100.0, "reduced"), (130.0, 100.0, "increased"), (1.0, 100.0, "stopped"),
     (0.0, 0.0, "stopped"), (50.0, 0.0, "increased")],
)
def test_production_state_from_monthly_electricity(recent: float, last_year: float, state: str) -> None:
    months = {f"kwh_m{m:02d}": [recent if m <= 3 else last_year if 13 <= m <= 15 else 80.0] for m in range(1, 25)}
    states, _ = production_state(pd.DataFrame(months))
    assert states.iloc[0] == state


def test_store_round_trip_gives_same_features(store, tmp_path) -> None:
    rows = _tax_rows(CODES[0], [("2024-12-31", 1.0), ("2025-12-31", 2.0)]) + _tax_rows(CODES[1], [("2026-06-30", 9.0)])
    write_csv(tmp_path / "d", "tax", rows)
    ingest_directory(store, tmp_path / "d", tmp_path / "q")
    features = load_features([CODES[0], CODES[1], CODES[2]], dt.date(2025, 12, 31), engine=store)
    assert list(features.index) == [CODES[0]]  # CODES[1] only has a future record; CODES[2] is unknown
    assert features.loc[CODES[0], "tax.taxable_sales_cny_y0"] == 2.0
