"""Monotone directions inferred from development rows (`monotone: inferred` LightGBM candidates): the rule,
declared directions winning, inference on each inner fold's training rows only, the final model respecting
the directions its card records, exact explanations and determinism."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.config import Candidate, ConfigError, SelectionConfig, load_config
from training.datasets import Dataset, from_frame
from training.encoding import build_spec
from training.fit import Split
from training.monotone import infer_directions, infer_one
from training.pipeline import train_pipeline
from training.select import evaluate_lightgbm, inferred_on, measure_candidates
from training.serving import RiskModel

PLAIN = Candidate("lightgbm depth 2", "lightgbm")
INFERRED = Candidate("lightgbm depth 2 inferred", "lightgbm", monotone="inferred")
DEEP_INFERRED = Candidate("lightgbm depth 3 inferred", "lightgbm", {"max_depth": 3, "num_leaves": 8},
                          monotone="inferred")


def _config(winner: str, candidates: tuple[Candidate, ...] = (PLAIN, INFERRED), **changes):  # type: ignore[no-untyped-def]
    base = load_config()
    return dataclasses.replace(base, monotone={"overdue": 1, "age": 0}, cv_folds=3, seed=5, **changes,
                               selection=SelectionConfig(candidates, "auc", "brier", "se", (0.5,), winner))


def _frame(n: int = 3000, seed: int = 4) -> pd.DataFrame:
    """`income`: PD falls with it (not declared); `utilisation`: rises (not declared), noisy enough that an
    unconstrained tree model wiggles; `age`: a valley (declared 0: never inferred); `overdue` declared +1;
    `region`: a category (never constrained); `noise`: no effect."""
    rng = np.random.default_rng(seed)
    income = rng.lognormal(3, 0.6, n)
    utilisation = rng.uniform(0, 1, n)
    age = rng.uniform(20, 70, n)
    overdue = rng.poisson(0.7, n).astype(float)
    region = rng.choice(list("ABCD"), n)
    noise = rng.normal(size=n)
    logit = (-1.4 - 0.7 * (np.log(income) - 3) + 1.2 * utilisation + 0.002 * (age - 45) ** 2 + 0.5 * overdue
             + pd.Series(region).map({"A": 0.3, "B": -0.2, "C": 0.0, "D": 0.4}).to_numpy())
    bad = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    income_seen = np.where(rng.random(n) < 0.1, np.nan, income)
    return pd.DataFrame({"income": income_seen, "utilisation": utilisation, "age": age, "overdue": overdue,
                         "region": region, "noise": noise, "bad": bad})


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return from_frame(_frame(), "bad", _config("auto"))


@pytest.fixture(scope="module")
def plain(dataset: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same shape with the declared directions only."""
    out = tmp_path_factory.mktemp("plain")
    train_pipeline(dataset, _config(PLAIN.name, (PLAIN,)), out, operator="test", write_report=False)
    return out


def _measured(dataset: Dataset, cfg):  # type: ignore[no-untyped-def]
    split = Split(np.arange(dataset.rows), np.empty(0, np.int64), np.empty(0, np.int64), "test")
    spec = build_spec(dataset.X, dataset.categorical, cfg.monotone, rows=split.train)
    X = spec.encode(dataset.X)
    folds, results, _ = measure_candidates(X, dataset.y, split, spec, cfg)
    return X, spec, folds, results


def test_the_rule_takes_clear_monotone_associations_and_leaves_turns_and_noise_alone() -> None:
    rng = np.random.default_rng(1)
    n = 4000
    x = rng.uniform(0, 1, n)

    def outcome(logit: np.ndarray) -> np.ndarray:
        return (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)

    assert infer_one(x, outcome(-1 + 1.5 * x)).direction == 1
    assert infer_one(-x, outcome(-1 + 1.5 * x)).direction == -1
    assert infer_one(x, outcome(np.full(n, -1.0))) is None  # no association
    assert infer_one(x, outcome(-1 + 6 * (x - 0.5) ** 2)) is None  # a valley
    # a code whose rare top value turns the other way (like "others" after married / single): not monotone
    code = np.where(x < 0.47, 1.0, np.where(x < 0.97, 2.0, 3.0))
    y = outcome(np.select([code == 1, code == 2], [-0.9, -1.3], 0.0))
    assert infer_one(code, y) is None
    # missing values take no part
    with_gaps = np.where(rng.random(n) < 0.2, np.nan, x)
    assert infer_one(with_gaps, outcome(-1 + 1.5 * x)).rows == int(np.isfinite(with_gaps).sum())


def test_declared_directions_win_and_categories_are_never_inferred(dataset: Dataset) -> None:
    cfg = _config("auto")
    spec = build_spec(dataset.X, dataset.categorical, cfg.monotone)
    X = spec.encode(dataset.X)
    found = {spec.names[j]: v.direction for j, v in inferred_on(X, dataset.y, np.arange(dataset.rows), spec,
                                                                 cfg).items()}
    assert found == {"income": -1, "utilisation": 1}  # overdue declared +1, age declared 0, region a category
    everything = infer_directions(X, dataset.y, np.arange(dataset.rows), spec.names, frozenset(spec.names))
    assert {spec.names[j] for j in everything} >= {"income", "utilisation", "overdue"}


def test_each_fold_infers_from_its_training_rows_only(dataset: Dataset) -> None:
    """Flipping the outcomes of the first fold's held-out rows (same folds) changes none of the directions that
    fold's model is grown with, though the other folds, which train on those rows, see it. (Its scores may
    change: early stopping watches the held-out fold, as for every candidate.)"""
    cfg = _config("auto", (INFERRED,))
    X, spec, folds, (result,) = _measured(dataset, cfg)
    for k, (fit_rows, _) in enumerate(folds.pairs):
        assert result.inferred[k] == inferred_on(X, dataset.y, fit_rows, spec, cfg)
    held_out = folds.pairs[0][1]
    y = dataset.y.copy()
    y[held_out] = 1 - y[held_out]
    other = evaluate_lightgbm(INFERRED, X, y, spec, folds, cfg, None)
    assert other.inferred[0] == result.inferred[0]
    assert other.inferred[1:] != result.inferred[1:]


@pytest.mark.parametrize("cv_final", ["average", "refit"])
def test_the_final_model_holds_the_directions_its_card_records(dataset: Dataset, plain: Path, tmp_path: Path,
                                                               cv_final: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import training.select

    inferred_on_rows: list[int] = []

    def counted(X, y, rows, spec, cfg):  # type: ignore[no-untyped-def]
        inferred_on_rows.append(len(rows))
        return inferred_on(X, y, rows, spec, cfg)

    monkeypatch.setattr(training.select, "inferred_on", counted)
    cfg = _config(INFERRED.name, (INFERRED,), cv_final=cv_final)
    train_pipeline(dataset, cfg, tmp_path / "inferred", operator="test", write_report=False)
    # once per inner fold's training rows, and once on all development rows (a refit and the card share it)
    assert len(inferred_on_rows) == cfg.cv_folds + 1 and inferred_on_rows.count(max(inferred_on_rows)) == 1
    card = json.loads((tmp_path / "inferred" / "metadata.json").read_text())["selection"]["inferred_monotone"]
    held = {name: f["held"] for name, f in card["features"].items()}
    assert held == {"income": -1, "utilisation": 1}
    assert card["features"]["income"]["development"]["direction"] == -1
    assert card["features"]["income"]["development"]["p_value"] < card["alpha"]
    rows = dataset.X.iloc[:400]
    wiggles = 0
    for name in ("inferred", "plain"):
        model = RiskModel.from_dir(tmp_path / name if name == "inferred" else plain)
        for feature, direction in held.items():
            observed = dataset.X[feature].dropna()
            values = np.linspace(observed.min() - 1, observed.max() + 1, 60)
            raw = np.column_stack([model.raw_score(rows.assign(**{feature: v})) for v in values])
            pd_ = np.column_stack([model.predict(rows.assign(**{feature: v})) for v in values])
            against = int((np.diff(raw, axis=1) * direction < 0).sum())
            if name == "plain":
                wiggles += against
                continue
            assert against == 0, f"raw score moves against the inferred direction of {feature}"
            assert (np.diff(pd_, axis=1) * direction >= 0).all(), f"PD moves against {feature}"
            assert (raw[:, -1] - raw[:, 0]).mean() * direction > 0, f"{feature} has no effect"
    assert wiggles > 0  # the sweep can see a violation: the unconstrained model has some


def test_an_inferred_winner_explains_exactly_and_is_reproducible(dataset: Dataset, plain: Path,
                                                                 tmp_path: Path) -> None:
    cfg = _config(DEEP_INFERRED.name, (PLAIN, DEEP_INFERRED))
    a = train_pipeline(dataset, cfg, tmp_path / "a", operator="test", write_report=True)
    b = train_pipeline(dataset, cfg, tmp_path / "b", operator="test", write_report=False)
    for name in ("model.txt", "calibrator.joblib"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert a.metadata["selection"]["inferred_monotone"] == b.metadata["selection"]["inferred_monotone"]
    model = RiskModel.from_dir(tmp_path / "a")
    X = model.encode(dataset.X)
    raw, _, contrib = model.scores(X)
    assert np.allclose(contrib.sum(axis=1), raw, rtol=0, atol=1e-9)
    by_name = {c["name"]: c for c in a.metadata["selection"]["candidates"]}
    assert by_name[DEEP_INFERRED.name]["monotone"] == "inferred" and "monotone" not in by_name[PLAIN.name]
    assert set(by_name[DEEP_INFERRED.name]["inferred_monotone"]) >= {"income", "utilisation"}
    # a declared-only winner: nothing inferred to record
    assert "inferred_monotone" not in json.loads((plain / "metadata.json").read_text())["selection"]


def test_inferred_directions_are_configured_per_lightgbm_candidate(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parent.parent / "training" / "model.yaml").read_text(encoding="utf-8")
    path = tmp_path / "model.yaml"
    ok = text.replace("    - {name: scorecard, family: scorecard}\n",
                      "    - {name: scorecard, family: scorecard}\n"
                      "    - {name: d2 inferred, family: lightgbm, monotone: inferred}\n")
    path.write_text(ok, encoding="utf-8")
    assert next(c for c in load_config(path).selection.candidates if c.name == "d2 inferred").monotone == "inferred"
    for bad in (text.replace("{name: scorecard, family: scorecard}",
                             "{name: scorecard, family: scorecard, monotone: inferred}"),
                ok.replace("monotone: inferred}", "monotone: guessed}"),
                ok + "monotone_alpha: 0.7\n"):
        path.write_text(bad, encoding="utf-8")
        with pytest.raises(ConfigError):
            load_config(path)
