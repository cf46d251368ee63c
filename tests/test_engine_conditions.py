"""Conditions on text fields, conditional subsidies and fees, collateral options, coefficients by
target, per-stage cut-offs, the stage tilt and service deadlines: on the shipped definitions."""

from __future__ import annotations

import copy
import datetime as dt

import numpy as np
import pandas as pd
import yaml

from products.catalogue import DEFINITIONS_DIR, load_catalogue, parse_definition, reference_rates
from products.policy import HolidayCalendar, default_calendar
from products.schema import unreachable_cells
from scoring import compile_all, compile_plan, evaluate, quote_dict
from scoring.deadlines import add_days, service_deadlines
from scoring.sample import random_features

AS_OF = dt.date(2025, 12, 31)
RATES = reference_rates(AS_OF)
CATALOGUE = load_catalogue()
PLANS = compile_all(CATALOGUE, RATES)
FRAME = random_features(1500, seed=11, as_of=AS_OF)


def _with_district(frame: pd.DataFrame, district: str | None) -> pd.DataFrame:
    f = frame.copy()
    f["registry.district"] = pd.array([district] * len(f), dtype="str")
    return f


def _data(code: str) -> dict:
    return yaml.safe_load((DEFINITIONS_DIR / f"{code}.yaml").read_text(encoding="utf-8"))


def test_the_tech_subsidy_applies_only_in_the_district_that_funds_it():
    plan = PLANS["tech_innovation"]
    ouhai = evaluate(plan, _with_district(FRAME, "ouhai"))
    lucheng = evaluate(plan, _with_district(FRAME, "lucheng"))
    unknown = evaluate(plan, _with_district(FRAME, None))
    offered = ouhai.eligible
    assert offered.sum() > 20
    assert np.array_equal(ouhai.subsidy_bp[offered], np.rint(ouhai.rate_bp[offered] * 0.40).astype(np.int64))
    assert (lucheng.subsidy_bp == 0).all() and (unknown.subsidy_bp == 0).all()
    assert np.array_equal(lucheng.all_in_bp[offered], lucheng.rate_bp[offered] + lucheng.fee_bp[offered])
    # a mixed frame: each row by its own district (the text column goes through the batch path too)
    mixed = FRAME.copy()
    mixed["registry.district"] = pd.array(np.where(np.arange(len(FRAME)) % 2 == 0, "ouhai", "yueqing"), dtype="str")
    r = evaluate(plan, mixed)
    even = np.arange(len(FRAME)) % 2 == 0
    assert (r.subsidy_bp[r.eligible & ~even] == 0).all() and (r.subsidy_bp[r.eligible & even] > 0).all()
    one = evaluate(plan, mixed.iloc[[0]])  # the single-row quote path
    assert one.subsidy_bp[0] == r.subsidy_bp[0]


def test_text_values_in_a_gate_and_in_segments():
    data = _data("tech_innovation")
    data["gates"].append({"code": "in_wenzhou_city", "reason": "ABNORMAL_OPERATION",
                          "all_of": [{"field": "registry.district", "op": "in", "value": ["lucheng", "ouhai"]}]})
    data["segments"] = {"field": "registry.district", "groups": {"city": ["lucheng", "longwan", "ouhai"],
                                                                 "county": ["yueqing", "ruian"]},
                        "labels": ["city", "county"], "on_missing": "ineligible",
                        "names": {"city": {"zh": "市区", "en": "City"}, "county": {"zh": "县市", "en": "County"}}}
    plan = compile_plan(parse_definition(data), RATES)
    frame = FRAME.iloc[:6].copy()
    frame["registry.district"] = pd.array(["lucheng", "ouhai", "yueqing", "ruian", None, "longwan"], dtype="str")
    r = evaluate(plan, frame)
    gate = [g.code for g in plan.gates].index("in_wenzhou_city")
    assert r.gate_passed[:, gate].tolist() == [True, True, False, False, False, False]
    assert r.segment.tolist() == [0, 0, 1, 1, -1, 0]


def test_per_mu_charges_the_guarantee_fee_only_on_the_guaranteed_option():
    r = evaluate(PLANS["per_mu"], FRAME)
    offered = np.flatnonzero(r.eligible)
    assert offered.size > 5
    assert (r.fee_bp == 0).all()  # the main terms are pure credit
    for i in offered:
        q = quote_dict(r, int(i))
        assert q["collateral"] == "unsecured" and q["guarantee_fee"]["pct"] == 0.0
        options = {o["code"]: o for o in q["collateral_options"]}
        fee = {"A+": 0.5, "A": 0.8}[q["grade"]]
        assert options["guaranteed"]["guarantee_fee"]["pct"] == fee
        assert options["guaranteed"]["all_in_cost"]["pct"] == round(options["guaranteed"]["rate"] + fee, 2)
        assert options["unsecured"]["all_in_cost"]["pct"] == q["all_in_cost"]["pct"] == q["rate"]


def test_new_villager_prices_each_collateral_option_with_its_own_floor():
    r = evaluate(PLANS["new_villager"], FRAME)
    offered = r.eligible
    assert offered.sum() > 5
    unsecured, secured = r.option_terms[:, 0, :], r.option_terms[:, 1, :]
    assert (unsecured[offered, 0] >= 398).all() and (secured[offered, 0] >= 320).all()
    assert (secured[offered, 2] < unsecured[offered, 2]).all()
    assert np.array_equal(unsecured[:, 2], r.rate_bp)
    # a cheap reference rate: each option stops at its own floor
    low = compile_plan(CATALOGUE["new_villager"], {**RATES, "lpr_1y": 1.0})
    lo = evaluate(low, FRAME)
    assert (lo.option_terms[lo.eligible, 0, 0] == 398).all() and (lo.option_terms[lo.eligible, 1, 0] == 320).all()


def test_in_locality_coefficients_multiply_the_grade_cap_only():
    plan = PLANS["new_villager"]
    frame = FRAME.copy()
    frame["locality.years_in_locality"] = 25.0  # x1.3
    frame["locality.children_in_local_school"] = 2.0  # x1.1
    frame["locality.local_property"] = pd.array([True] * len(frame), dtype="boolean")  # x1.2 -> capped 1.5
    r = evaluate(plan, frame)  # no PD: no PD scaling
    revenue = frame["financials.revenue_cny"].to_numpy(dtype=float)
    caps = np.array([10e6, 6e6, 3e6, 0.0])[r.grade] * 1.5
    expected = np.floor(np.minimum(np.minimum(caps, 0.30 * revenue), 15e6) / 10_000 + 1e-9) * 10_000
    offered = r.eligible
    assert offered.sum() > 5
    assert np.array_equal(r.limit_cny[offered], expected[offered])
    # the old reading (coefficients on the whole limit) would lend more to some of these firms
    old = copy.deepcopy(_data("new_villager"))
    for c in old["limit"]["coefficients"]:
        del c["applies_to"]
    r_old = evaluate(compile_plan(parse_definition(old), RATES), frame)
    assert (r_old.limit_cny[offered] >= r.limit_cny[offered]).all()
    assert (r_old.limit_cny[offered] > r.limit_cny[offered]).any()


def test_tax_credit_every_cell_is_reached_and_small_stages_price_no_higher():
    plan = PLANS["tax_credit"]
    r = evaluate(plan, random_features(6000, seed=2, as_of=AS_OF))
    cells = {(plan.segment_labels[s], plan.grades[g]) for s, g, ok in zip(r.segment, r.grade, r.eligible, strict=True)
             if ok}
    assert {("startup", "A"), ("startup", "B"), ("startup", "C"), ("nurturing", "A")} <= cells
    assert unreachable_cells(CATALOGUE["tax_credit"]) == []
    for g in range(3):
        lows = plan.rate_lo_bp[:, g]
        assert (np.diff(lows) >= 0).all()  # startup <= nurturing <= growth <= mature


def test_next_grade_hints_keep_the_stage_when_stages_grade_on_their_own():
    plan = PLANS["tax_credit"]
    r = evaluate(plan, FRAME)
    e = r.explanation
    j = [i.code for i in plan.indicators].index("taxable_sales")
    hinted = ~np.isnan(e.option_to[:, j])
    stage = np.searchsorted(plan.segment_edges, e.option_to[hinted, j], side="right")
    assert np.array_equal(stage, r.segment[hinted])


def test_service_deadlines_count_working_days_with_the_holiday_calendar():
    cal = default_calendar()
    # Friday 2025-09-26 + 2 working days: Sunday 09-28 is a make-up working day
    assert add_days(dt.date(2025, 9, 26), 2, True, cal) == dt.date(2025, 9, 29)
    # Tuesday 2025-09-30 + 2: the National Day holiday runs to 10-08, Saturday 10-11 is worked
    assert add_days(dt.date(2025, 9, 30), 2, True, cal) == dt.date(2025, 10, 10)
    no_holidays = HolidayCalendar(frozenset({2025}), frozenset(), frozenset())
    assert add_days(dt.date(2025, 9, 30), 2, True, no_holidays) == dt.date(2025, 10, 2)
    assert add_days(dt.date(2025, 9, 30), 3, False, cal) == dt.date(2025, 10, 3)
    mu = service_deadlines(CATALOGUE["per_mu"].service, dt.date(2025, 9, 30), cal)
    assert mu["contact_by"] == "2025-10-10" and mu["working_days"] and mu["calendar_covered"]
    assert "2025-10-10" in mu["text"]["zh"] and "2025-10-10" in mu["text"]["en"]
    nv = service_deadlines(CATALOGUE["new_villager"].service, dt.date(2025, 9, 30), cal)
    assert nv["contact_by"] == "2025-10-01" and nv["disbursement_by"] == "2025-10-03"
    assert service_deadlines(CATALOGUE["tax_credit"].service, dt.date(2025, 9, 30), cal) is None
    late = service_deadlines(CATALOGUE["per_mu"].service, dt.date(2031, 3, 3), cal)
    assert late["calendar_covered"] is False


def test_the_worked_example_of_the_docs_validates_and_quotes():
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "products.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", doc, flags=re.S) if "code: ouhai_rd_startup" in b)
    definition = parse_definition(yaml.safe_load(block))
    plan = compile_plan(definition, RATES)
    frame = FRAME.iloc[:2].copy()
    frame["has_registry"] = frame["has_tech"] = pd.array([True, True], dtype="boolean")
    frame["registry.district"] = pd.array(["ouhai", "lucheng"], dtype="str")
    frame["tech.rd_staff"] = 6.0
    frame["tech.invention_patents"] = 2.0
    frame["judicial.dishonest_debtor"] = pd.array([False, False], dtype="boolean")
    r = evaluate(plan, frame)
    ouhai, lucheng = quote_dict(r, 0), quote_dict(r, 1)
    assert ouhai["eligible"] and ouhai["index"] == 64 and ouhai["grade"] == "B" and ouhai["limit_cny"] == 1_000_000
    lpr_bp = round(RATES["lpr_1y"] * 100)
    assert ouhai["rate_band"] == [(lpr_bp + 80) / 100, (lpr_bp + 140) / 100]
    assert ouhai["subsidy"]["pct"] == round(round(ouhai["rate"] * 100 * 0.30) / 100, 2)
    assert not lucheng["eligible"] and [x["code"] for x in lucheng["reasons"]] == ["OUTSIDE_DISTRICT"]
    assert "瓯海" in lucheng["reasons"][0]["zh"]
    deadline = service_deadlines(definition.service, dt.date(2026, 2, 13), default_calendar())
    assert deadline["contact_by"] == "2026-02-24"  # Friday before the Spring Festival: 14th worked, 15-23 off


def test_a_fee_with_conditions_is_charged_only_where_they_hold():
    data = _data("tech_innovation")
    data["guarantee"]["when"] = [{"field": "registry.size_class", "op": "in", "value": ["medium", "large"]},
                                 {"field": "registry.district", "op": "ne", "value": "dongtou"}]
    plan = compile_plan(parse_definition(data), RATES)
    frame = _with_district(FRAME, "ouhai")
    frame.loc[frame.index[::3], "registry.district"] = "dongtou"
    r = evaluate(plan, frame)
    size = frame["registry.size_class"].astype(object).to_numpy()
    district = frame["registry.district"].astype(object).to_numpy()
    charged = np.isin(size, ["medium", "large"]) & (district != "dongtou")
    offered = r.eligible
    assert (offered & charged).sum() > 3 and (offered & ~charged).sum() > 3
    assert (r.fee_bp[offered & charged] == 48).all() and (r.fee_bp[offered & ~charged] == 0).all()
    assert np.array_equal(r.all_in_bp[offered], (r.rate_bp + r.fee_bp - r.subsidy_bp)[offered])


def test_every_option_respects_its_floor_and_the_subsidy_never_exceeds_the_rate():
    frame = _with_district(FRAME, "ouhai")
    for code, plan in PLANS.items():
        r = evaluate(plan, frame)
        offered = r.eligible
        floors = [o.rate_floor if o.rate_floor is not None else plan.definition.rate.floor
                  for o in plan.definition.collateral_choices()]
        for k, floor in enumerate(floors):
            lo, hi, rate, fee, sub, all_in = (r.option_terms[offered, k, c] for c in range(6))
            assert (lo >= round(floor * 100)).all(), code
            assert ((lo <= rate) & (rate <= hi)).all(), code
            assert ((sub >= 0) & (sub <= rate)).all(), code
            assert np.array_equal(all_in, rate + fee - sub), code
            assert (r.option_terms[~offered, k, 2] == -1).all(), code
