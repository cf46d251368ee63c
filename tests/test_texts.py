"""One reason and explanation formatter: the rules of `scoring.texts` checked directly, and the quote's row view,
the batch's columnar view and the risk model's factors giving the same text for the same enterprise."""

from __future__ import annotations

import datetime as dt
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.assemble import point_in_time
from features.synthetic import generate_region
from products.catalogue import load_catalogue, reference_rates
from products.visibility import Audience, shows
from scoring import compile_all, evaluate_all, quote_dict
from scoring.columnar import decline_columns, risk_factor_columns, top_points_lost
from scoring.ranking import top_k_positive, top_k_stable
from scoring.risk_texts import BOOL_FEATURES, RANK_LABELS, display_value, feature_label, reason_for, reason_templates
from scoring.sample import random_features
from scoring.texts import (
    INFINITY,
    json_number,
    number_text,
    percent_text,
    points_text,
)
from training.config import load_config
from training.datasets import from_source_frames
from training.pipeline import train_pipeline
from training.serving import RiskFactor, RiskModel

AS_OF = dt.date(2025, 12, 31)
NUMBER = re.compile(r"^-?\d{1,3}(,\d{3})*(\.\d+)?$")  # separators every three digits, no exponent
EXPONENT = re.compile(r"\d[eE][+-]?\d")


# ------------------------------------------------------------------ the rules


@pytest.mark.parametrize(("value", "text"), [
    (217400.5, "217,400.5"), (-217400.5, "-217,400.5"), (0.0001234, "0.0001234"), (1e-7, "0.0000001"),
    (1e12, "1,000,000,000,000"), (-1e12, "-1,000,000,000,000"), (1e23, "100,000,000,000,000,000,000,000"),
    (1234567.0, "1,234,567"), (12345.678, "12,345.68"), (1.2345, "1.23"), (0.5634, "0.5634"),
    (0.056349, "0.05635"), (2.675, "2.68"), (0.99996, "1"), (999.999, "1,000"), (-0.004, "-0.004"),
    (0.0, "0"), (-0.0, "0"), (7, "7"), (np.float64(3.5), "3.5"),
    (math.inf, INFINITY), (-math.inf, "-" + INFINITY), (math.nan, ""), (None, ""),
])
def test_number_text_examples(value: float | None, text: str) -> None:
    assert number_text(value) == text


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_numbers_never_print_an_exponent_and_stay_close(sign: float) -> None:
    mantissas = (1.0, 1.5, 2.174005, 3.14159265, 5.0, 9.99996)
    for exponent in range(-12, 25):
        for mantissa in mantissas:
            x = sign * mantissa * 10.0 ** exponent
            text = number_text(x)
            assert NUMBER.match(text), (x, text)
            back = float(text.replace(",", ""))
            if abs(x) >= 1:
                assert abs(back - x) <= 0.005 + abs(x) * 1e-15, (x, text)  # two decimals
            else:
                assert abs(back - x) <= abs(x) * 5e-4, (x, text)  # four significant digits


def test_points_percentages_and_json_values() -> None:
    assert [points_text(c) for c in (1250, 1200, 5, 0, -5, 100000, 12345678)] == [
        "12.5", "12", "0.05", "0", "-0.05", "1,000", "123,456.78"]
    assert points_text(np.int64(1250)) == "12.5"
    assert [percent_text(p) for p in (0.0345, 1.0, 0.000001, 0.12345)] == ["3.45%", "100.00%", "0.00%", "12.35%"]
    assert percent_text(math.nan) == percent_text(None) == ""
    assert [json_number(x) for x in (1.5, math.inf, -math.inf, math.nan, None)] == [
        1.5, INFINITY, "-" + INFINITY, None, None]
    factor = RiskFactor("tax_per_mu_cny", math.inf, 0.1, "RISK_FACTOR_RAISES", "zh", "en")
    assert factor.to_json()["value"] == INFINITY == json_number(math.inf)  # the quote's JSON rule is the same


def test_rows_grouped_by_their_printed_percentage_print_alike() -> None:
    """The batch prints one PD per group of rows that `percent_text` prints alike: never two texts in a group
    (ties at half a hundredth of a percent, their neighbours, -0.0, huge and missing values), and far fewer
    groups than distinct PDs."""
    from scoring.columnar import _by_percent_text

    grid = np.arange(10_001) / 10_000
    ties = grid + 0.00005
    pds = np.concatenate([np.random.default_rng(3).random(50_000), grid, ties, np.nextafter(ties, 1),
                          np.nextafter(ties, 0), [0.0, -0.0, -1e-9, 2.5, 1e30, math.inf, math.nan]])
    first, group = _by_percent_text(pds)
    texts = [percent_text(v) for v in pds.tolist()]
    assert [texts[i] for i in first[group]] == texts
    random_groups = len(np.unique(group[:50_000]))
    assert random_groups <= 10_001 < len(np.unique(pds[:50_000]))


def test_top_k_is_the_stable_descending_order_and_positive_drops_the_rest() -> None:
    values = np.random.default_rng(9).integers(-2, 4, size=(3000, 12)).astype(float)  # many ties
    expected = np.argsort(-values, axis=1, kind="stable")[:, :4]
    assert np.array_equal(top_k_stable(values, 4), expected)
    picked = np.take_along_axis(values, expected, axis=1)
    assert np.array_equal(top_k_positive(values, 4), np.where(picked > 0, expected, -1))
    assert top_k_stable(values, 50).shape == (3000, 12)


def test_risk_factor_texts_print_values_by_the_same_rules() -> None:
    assert display_value("tax_credit_grade_rank", 4.0).en == RANK_LABELS["tax_credit_grade_rank"][4] == "A"
    assert display_value("tax_credit_grade_rank", 2.5).en == "2.5"  # not a rank: a number
    assert (display_value("has_tax", True).zh, display_value("has_tax", True).en) == ("是", "yes")
    assert display_value("registry.district", "鹿城区").zh == "鹿城区"
    big = reason_for("registry.registered_capital_cny", 217400.5, 0.2)
    assert big["code"] == "RISK_FACTOR_RAISES" and "217,400.5" in big["en"] and "217,400.5" in big["zh"]
    assert not EXPONENT.search(big["en"])
    infinite = reason_for("employees_growth_12m", -math.inf, -0.1)
    assert infinite["code"] == "RISK_FACTOR_LOWERS" and "-" + INFINITY in infinite["en"] and "-∞" in infinite["zh"]
    missing = reason_for("tax.tax_credit_score", None, 0.3)
    assert missing["code"] == "RISK_FACTOR_MISSING_RAISES" == reason_for("tax.tax_credit_score", math.nan, 1)["code"]
    assert feature_label("tax.tax_credit_score").zh in missing["zh"]
    assert {"RISK_FACTOR_RAISES", "RISK_FACTOR_LOWERS", "RISK_FACTOR_MISSING_RAISES",
            "RISK_FACTOR_MISSING_LOWERS"} <= set(reason_templates())
    assert feature_label("electricity.kwh_m03").en == "Electricity use 3 month(s) back (kWh)"


# ------------------------------------------------------------------ row view = columnar view


@pytest.fixture(scope="module")
def results() -> dict:
    plans = compile_all(load_catalogue(), reference_rates(AS_OF))
    frame = random_features(1500, seed=21, as_of=AS_OF)
    rng = np.random.default_rng(4)
    pds = rng.uniform(0.0, 0.12, len(frame))  # some above every product's maximum
    pds[rng.random(len(frame)) < 0.1] = np.nan  # and some firms without a PD
    return evaluate_all(plans, frame, pd_values=pds)


def _cell(column: pd.Categorical, i: int) -> str | None:
    value = column[i]
    return None if pd.isna(value) else value


def test_decline_and_top_reason_texts_of_a_quote_equal_the_columnar_view(results: dict) -> None:
    seen: set[str] = set()
    for r in results.values():
        declines = decline_columns(r)
        top = top_points_lost(r, 3)
        for i in range(r.n):
            q = quote_dict(r, i)
            codes = [x["code"] for x in q["reasons"]]
            seen.update(codes)
            assert _cell(declines["reasons"], i) == ";".join(codes)
            for lang, sep in (("zh", "；"), ("en", "; ")):
                expected = sep.join(x[lang] for x in q["reasons"])
                assert _cell(declines[f"reasons_{lang}"], i) == expected, (r.plan.code, i)
                assert not EXPONENT.search(expected)
            shown = q["top_reasons"]
            assert len(shown) <= min(3, len(r.plan.indicators))
            for k in range(min(3, len(r.plan.indicators))):  # a product with two indicators has two columns
                reason = shown[k] if k < len(shown) else None
                assert _cell(top[f"top_reason_{k + 1}"], i) == (reason and reason["indicator"])
                for lang in ("zh", "en"):
                    assert _cell(top[f"top_reason_{k + 1}_{lang}"], i) == (reason and reason[lang])
    assert {"PD_ABOVE_MAX", "GRADE_NOT_ELIGIBLE", "MISSING_SOURCE"} <= seen


def test_pd_in_a_decline_text_is_a_percentage(results: dict) -> None:
    r = results["tax_credit"]
    hit = next(i for i in range(r.n) if any(x["code"] == "PD_ABOVE_MAX" for x in quote_dict(r, i)["reasons"]))
    text = next(x for x in quote_dict(r, hit)["reasons"] if x["code"] == "PD_ABOVE_MAX")
    assert f"{percent_text(float(r.pd[hit]))}" in text["en"] and percent_text(r.plan.max_pd) in text["zh"]
    assert re.search(r"\d+\.\d\d%", text["en"])


# ------------------------------------------------------------------ risk factors: quote = batch


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> RiskModel:
    cfg = load_config()
    out: Path = tmp_path_factory.mktemp("texts-model")
    train_pipeline(from_source_frames(generate_region(3000, 3), cfg, dt.date(2026, 1, 1)), cfg, out,
                   write_report=False)
    return RiskModel.from_dir(out)


def test_risk_factor_texts_of_a_quote_equal_the_columnar_view(model: RiskModel) -> None:
    features = point_in_time(generate_region(300, 99), AS_OF)
    X = model.encode(features)
    contrib = model.contributions(X)
    # the most frequent first factor among plain numbers the bank may read: give it large, tiny, negative and
    # infinite values (a score_only one is worded without its value: checked below)
    first = np.abs(contrib[:, :-1]).argmax(axis=1)
    names = model.spec.names
    plain = [j for j in np.bincount(first, minlength=X.shape[1]).argsort()[::-1]
             if names[j] not in model.spec.categories and names[j] not in RANK_LABELS and names[j] not in BOOL_FEATURES
             and shows(Audience.bank, names[j])]
    j = int(plain[0])
    for offset, value in enumerate((217400.5, 1e-7, -3.25e6, math.inf, -math.inf, 1e12 + 0.5)):
        X[offset * 5:(offset + 1) * 5, j] = value
    raw, _, contrib = model.scores(X)
    columns = risk_factor_columns(model.spec, X, contrib, 4)
    texts = []
    for i in range(len(X)):
        factors = model.assessment(X[i], raw[i], 0.0, contrib[i], top_k=4)["risk_factors"]
        for k in range(4):
            f = factors[k] if k < len(factors) else None
            assert _cell(columns[f"risk_factor_{k + 1}"], i) == (f and f["feature"])
            assert _cell(columns[f"risk_factor_{k + 1}_code"], i) == (f and f["code"])
            for lang in ("zh", "en"):
                cell = columns[f"risk_factor_{k + 1}_{lang}"][i]
                assert (None if pd.isna(cell) else cell) == (f and f[lang]), (i, k)
            if f is not None:
                assert columns[f"risk_factor_{k + 1}_contribution"][i] == f["contribution"]
                texts += [f["zh"], f["en"]]
    assert texts and not any(EXPONENT.search(t) for t in texts)
    assert any(INFINITY in t for t in texts) and any("217,400.5" in t for t in texts)
    withheld = [t for t in texts if "usable but not visible" in t or "可用不可见" in t]
    assert withheld and not any(re.search(r"\d{3}", t) for t in withheld)  # score_only inputs: no value
