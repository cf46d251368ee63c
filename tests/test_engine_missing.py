"""Missing sources and odd frames: handled as each definition says, never an exception."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from products.catalogue import load_catalogue, reference_rates
from scoring import compile_all, enterprise_quotes, evaluate, evaluate_all
from scoring.sample import random_features

AS_OF = dt.date(2025, 12, 31)
PLANS = compile_all(load_catalogue(), reference_rates(AS_OF))
FRAME = random_features(400, seed=5, as_of=AS_OF)


def _drop_source(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    f = frame.copy()
    cols = [c for c in f.columns if c.startswith(f"{source}.")]
    f[cols] = np.nan
    f[f"has_{source}"] = pd.array([False] * len(f), dtype="boolean")
    return f


@pytest.mark.parametrize("code", sorted(PLANS))
def test_required_source_missing_declines_with_reason(code):
    plan = PLANS[code]
    for src in plan.required_sources:
        r = evaluate(plan, _drop_source(FRAME, src))
        assert not r.eligible.any()
        quotes = [q for obj in enterprise_quotes({code: r}) for q in obj["quotes"]]
        for q in quotes:
            assert any(x["code"] == "MISSING_SOURCE" and x["source"] == src for x in q["reasons"])


@pytest.mark.parametrize("code", sorted(PLANS))
def test_optional_source_missing_scores_as_declared_and_says_so(code):
    plan = PLANS[code]
    for src in plan.optional_sources:
        r = evaluate(plan, _drop_source(FRAME, src))
        for j, ind in enumerate(plan.indicators):
            if not ind.field.startswith(f"{src}.") or ind.on_missing == "ineligible":
                continue
            expected = round(ind.missing_fraction * ind.weight_cents)
            assert (r.points_cents[:, j] == expected).all()
            # never a silent zero: one note names the source (or one decline, when the assessment needs it)
            keys = [(s.code, dict(s.params).get("source")) for s in r.reason_specs]
            said = r.reason_flags[:, [keys.index(("SOURCE_MISSING_SCORED", src)), keys.index(("SOURCE_NEEDED", src))]]
            assert (said.sum(axis=1) == 1).all()


def test_frame_without_any_column_or_rows():
    empty_cols = pd.DataFrame(index=pd.Index(["X1", "X2"], name="credit_code"))
    res = evaluate_all(PLANS, empty_cols)
    for r in res.values():
        assert not r.eligible.any()
    objs = list(enterprise_quotes(res))
    assert len(objs) == 2 and all(len(o["quotes"]) == len(PLANS) for o in objs)
    no_rows = FRAME.iloc[:0]
    res = evaluate_all(PLANS, no_rows)
    assert all(r.n == 0 for r in res.values())


def test_all_values_missing_and_object_dtypes():
    f = FRAME.iloc[:3].astype(object)
    f.iloc[1, :] = None
    res = evaluate_all(PLANS, f)
    objs = list(enterprise_quotes(res))
    assert len(objs) == 3
    assert all(not q["eligible"] for q in objs[1]["quotes"])
    # object dtype gives the same results as the typed frame for untouched rows
    typed = evaluate_all(PLANS, FRAME.iloc[[0, 2]])
    for code in PLANS:
        assert res[code].index_cents[[0, 2]].tolist() == typed[code].index_cents.tolist()


def test_unknown_category_is_missing_not_an_error():
    f = FRAME.iloc[:5].copy()
    f["tax.tax_credit_grade"] = pd.array(["Z", "A", None, "B", "?"], dtype="str")
    r = evaluate(PLANS["tax_credit"], f)
    k = [s.code for s in r.reason_specs].index("TAX_GRADE_NOT_ABM")
    assert r.reason_flags[[0, 2, 4], k].all()


def test_wc_gap_missing_declines_with_its_reason():
    # an unknown working-capital gap never gives more credit than a known one: the firm is declined
    plan = PLANS["two_healthy"]
    f = FRAME.copy()
    f["wc_gap_cny"] = np.nan
    r = evaluate(plan, f)
    k = [(s.code, dict(s.params).get("base")) for s in r.reason_specs].index(("LIMIT_BASE_MISSING", "wc_gap"))
    assert r.reason_flags[:, k].any()
    assert not r.eligible.any()
