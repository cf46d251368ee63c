"""two_healthy on the demo region: missing data never buys credit, the official grade rules, the binding
limit base is named with its amount.

The region is the demo generator's (`indexloan demo-data --firms 5000 --seed 7`), assembled point in time
as the store's `load_features` assembles an ingested region (`features.assemble.point_in_time`)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from features.assemble import point_in_time
from features.derive import working_capital
from features.synthetic import generate_region
from products.catalogue import load_catalogue, reference_rates
from scoring import compile_all, evaluate, quote_dict

AS_OF = dt.date(2025, 12, 31)
FIRMS = 5000


@pytest.fixture(scope="module")
def region() -> pd.DataFrame:
    return point_in_time(generate_region(FIRMS, 7), AS_OF)


@pytest.fixture(scope="module")
def plan():
    return compile_all(load_catalogue(), reference_rates(AS_OF))["two_healthy"]


def _has(frame: pd.DataFrame, source: str) -> np.ndarray:
    return frame[f"has_{source}"].fillna(False).to_numpy(bool)


def test_firms_without_statements_never_get_more_credit(region, plan) -> None:
    r = evaluate(plan, region)
    scored = _has(region, "two_healthy")
    with_fs, without = scored & _has(region, "financials"), scored & ~_has(region, "financials")
    assert with_fs.sum() > 500 and without.sum() > 100  # both groups are there
    assert r.eligible[with_fs].any()
    assert r.eligible[without].mean() <= r.eligible[with_fs].mean()
    assert r.limit_cny[without].mean() <= r.limit_cny[with_fs].mean()
    offered = r.limit_cny[without & r.eligible]
    assert offered.size == 0 or offered.mean() <= r.limit_cny[with_fs & r.eligible].mean()


def test_official_grade_is_used_and_a_b_get_preferential_rates(region, plan) -> None:
    r = evaluate(plan, region)
    official = region["two_healthy.grade"].astype("object")
    present = official.notna().to_numpy()
    assert present.sum() > 1000
    graded = np.array(plan.grades, dtype=object)[r.grade]
    assert (graded[present] == official.to_numpy()[present]).all()
    assert r.grade_official[present].all()
    reference_bp = round(plan.reference_rate_pct * 100)
    rates = {g: r.rate_bp[r.eligible & (graded == g) & present] for g in ("A", "B", "C")}
    assert rates["A"].size and rates["B"].size
    # preferential: under the bank's ordinary credit price, A cheaper than B cheaper than C
    assert (rates["A"] < reference_bp).all() and (rates["B"] < reference_bp).all()
    assert rates["A"].max() <= rates["B"].min()
    if rates["C"].size:
        assert rates["B"].max() <= rates["C"].min()


def test_missing_credit_bureau_record_is_unknown_not_zero_loans(region) -> None:
    firm = region[_has(region, "financials") & _has(region, "credit_bureau")].iloc[:1].copy()
    known = working_capital(firm)["wc_gap_cny"].iloc[0]
    assert np.isfinite(known)
    firm[[c for c in firm.columns if c.startswith("credit_bureau.")]] = np.nan
    firm["has_credit_bureau"] = pd.array([False], dtype="boolean")
    assert np.isnan(working_capital(firm)["wc_gap_cny"].iloc[0])


def test_no_credit_bureau_record_declines_with_one_reason_naming_it(region, plan) -> None:
    rows = region[_has(region, "two_healthy") & _has(region, "financials") & _has(region, "tax")
                  & ~_has(region, "credit_bureau")]
    if rows.empty:  # the demo region links statements to bureau records: make such a firm
        rows = region[_has(region, "two_healthy") & _has(region, "financials") & _has(region, "tax")].iloc[:20].copy()
        rows[[c for c in rows.columns if c.startswith("credit_bureau.")]] = np.nan
        rows["has_credit_bureau"] = pd.array([False] * len(rows), dtype="boolean")
        rows["wc_gap_cny"] = working_capital(rows)["wc_gap_cny"]
    r = evaluate(plan, rows)
    assert not r.eligible.any()
    gates_pass = r.gate_passed.all(axis=1)
    for i in np.flatnonzero(gates_pass):
        reasons = quote_dict(r, int(i))["reasons"]
        assert [(x["code"], x.get("source")) for x in reasons] == [("SOURCE_NEEDED", "credit_bureau")]


def test_the_binding_limit_base_is_named_with_its_amount(region, plan) -> None:
    r = evaluate(plan, region)
    sales = region["tax.taxable_sales_cny_y0"].to_numpy(float)
    gap = region["wc_gap_cny"].to_numpy(float)
    seen = {"LIMIT_BASE_BELOW_MINIMUM": 0, "LIMIT_BOUND_BY_BASE": 0}
    for i in np.flatnonzero(_has(region, "two_healthy"))[:1500]:
        q = quote_dict(r, int(i))
        bound = q["limit_bound_by"]
        texts = [x for x in q["reasons"] + q["notes"] if x["code"] in seen]
        if bound is None:
            assert not texts
            continue
        candidates = {"sales_share": 0.30 * sales[i], "wc_gap": gap[i]}
        assert bound["base"] == min(candidates, key=candidates.get) or q["limit_cny"] == 0
        expected = np.floor(max(min(candidates[bound["base"]], 5e6), 0) / 1e4) * 1e4
        assert bound["amount_cny"] == expected
        (text,) = texts
        seen[text["code"]] += 1
        assert text["base"] == bound["base"]
        assert f"{bound['amount_cny']:,}" in text["en"] and f"{bound['amount_cny']:,}" in text["zh"]
        assert bound["name"]["en"] in text["en"]
        if q["eligible"]:
            assert q["limit_cny"] <= bound["amount_cny"]
    assert all(seen.values()), seen
