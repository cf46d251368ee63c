"""One missing source, one reason; next-grade hints only when they can help, within bounds, rounded."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from products.catalogue import load_catalogue, reference_rates
from products.fields import feature_catalogue
from products.schema import ProductDefinition
from scoring import compile_all, compile_plan, evaluate, quote_dict
from scoring.engine import HINT_STEPS, hint_step
from scoring.sample import random_features

AS_OF = dt.date(2025, 12, 31)
RATES = reference_rates(AS_OF)
DEFINITIONS = load_catalogue()
PLANS = compile_all(DEFINITIONS, RATES)
FRAME = random_features(600, seed=21, as_of=AS_OF)


def _without(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    f = frame.copy()
    f[[c for c in f.columns if c.startswith(f"{source}.")]] = np.nan
    f[f"has_{source}"] = pd.array([False] * len(f), dtype="boolean")
    from features.derive import derive  # derived indicators follow their inputs

    return derive(f[[c for c in frame.columns if "." in c or c.startswith("has_")]], AS_OF)


@pytest.mark.parametrize("code", ["tax_credit", "two_healthy"])
def test_no_tax_data_gives_one_reason_naming_the_source(code: str) -> None:
    plan = PLANS[code]
    frame = _without(FRAME, "tax")
    r = evaluate(plan, frame)
    checked = 0
    for i in range(r.n):
        q = quote_dict(r, i)
        if not r.gate_passed[i].all() and any(x["code"] not in ("MISSING_SOURCE", "SOURCE_NEEDED")
                                              for x in q["reasons"]):
            continue  # also declined by a gate on data it has (e.g. the abnormal-operation list)
        if not all(frame[f"has_{s}"].iloc[i] for s in plan.required_sources + plan.optional_sources
                   if s != "tax"):
            continue  # another source missing too: one reason for each
        checked += 1
        assert not q["eligible"]
        assert [(x["code"], x["source"]) for x in q["reasons"]] in (
            [("MISSING_SOURCE", "tax")], [("SOURCE_NEEDED", "tax")])
        assert "tax" in q["reasons"][0]["en"] and "supply" in q["reasons"][0]["en"]
        assert q["next_grade"] is None  # no hint while the assessment lacks data
    assert checked > 50


def test_a_source_scored_neutrally_is_one_note_and_a_supply_hint() -> None:
    plan = PLANS["new_villager"]
    source = "tax"  # optional there; its indicators (grade, VAT, growth) score as declared without it
    from_source = {ind.code for ind in plan.indicators if source in feature_catalogue()[ind.field].sources}
    assert source in plan.optional_sources and len(from_source) > 1
    frame = _without(FRAME, source)
    r = evaluate(plan, frame)
    hinted = 0
    for i in range(r.n):
        q = quote_dict(r, i)
        notes = [x for x in q["notes"] if x.get("source") == source]
        assert len(notes) <= 1
        assert not [x for x in q["notes"] if x["code"] == "INDICATOR_MISSING_SCORED"
                    and x["indicator"] in from_source]
        ng = q["next_grade"]
        if ng is not None:
            for change in ng["changes"]:
                assert change["from"] is not None
            if ng["supply"]:
                hinted += 1
                assert [x["source"] for x in ng["supply"]].count(source) == 1
    assert hinted


def _changes(plans: dict, frame: pd.DataFrame):
    for plan in plans.values():
        r = evaluate(plan, frame)
        for i in range(r.n):
            q = quote_dict(r, i)
            if q["next_grade"] is None:
                continue
            yield plan, r, i, q


def test_hints_only_when_every_gate_passes_within_bounds_and_rounded() -> None:
    seen = 0
    for plan, r, i, q in _changes(PLANS, FRAME):
        assert r.gate_passed[i].all()
        rel = plan.definition.hints.max_relative_change
        for change in q["next_grade"]["changes"]:
            ind = next(x for x in plan.indicators if x.code == change["indicator"])
            assert ind.changeable
            assert change["from"] is not None and change["to"] is not None
            if ind.kind not in ("benchmark", "bins"):
                continue
            seen += 1
            step = hint_step(plan, ind.unit) or 0.0
            assert abs(change["to"] - change["from"]) <= max(rel * abs(change["from"]), step) + 1e-9
            if ind.kind == "benchmark" and step:
                assert change["to"] == pytest.approx(round(change["to"] / step) * step)
    assert seen > 20


def test_the_relative_bound_is_configurable() -> None:
    def counted(max_change: float) -> int:
        plans = {}
        for code, d in DEFINITIONS.items():
            data = d.model_dump()
            data["hints"] = {"max_relative_change": max_change}
            plans[code] = compile_plan(ProductDefinition.model_validate(data), RATES)
        return sum(len(q["next_grade"]["changes"]) for *_, q in _changes(plans, FRAME))

    tight, default, loose = counted(0.01), counted(0.5), counted(100.0)
    assert tight < default < loose


def test_hint_steps_follow_units_and_can_be_overridden() -> None:
    plan = PLANS["tech_innovation"]
    assert hint_step(plan, "CNY") == HINT_STEPS["CNY"]
    assert hint_step(plan, None) is None
    data = DEFINITIONS["tech_innovation"].model_dump()
    data["hints"] = {"round_to": {"CNY": 10_000}}
    custom = compile_plan(ProductDefinition.model_validate(data), RATES)
    assert hint_step(custom, "CNY") == 10_000
