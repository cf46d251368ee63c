"""Model families (LightGBM, WoE scorecard, blend) and their selection by inner cross-validation, on small data:
monotone in every declared feature whatever the family, exact explanations, development rows only,
reproducible, recorded in the model card, and loadable through the verified artifacts (old format too)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from training import artifacts as art
from training.config import Candidate, ConfigError, SelectionConfig, load_config
from training.datasets import Dataset, from_frame
from training.encoding import build_spec
from training.errors import ArtifactIntegrityError
from training.families import average_boosters
from training.fit import Split
from training.pipeline import train_pipeline
from training.registry import Registry
from training.scorecard import QUANTUM
from training.select import Evaluated, build_winner, choose, measure_candidates
from training.serving import RiskModel

MONOTONE = {"overdue": 1, "grade": -1, "income": -1}
CANDIDATES = (Candidate("lightgbm depth 2", "lightgbm"),
              Candidate("lightgbm depth 1", "lightgbm", {"max_depth": 1, "num_leaves": 2}),
              Candidate("scorecard", "scorecard"), Candidate("blend", "blend"))
# the shipped deep shape, measured here without its row minimum (this sample is smaller)
DEEP = dataclasses.replace(next(c for c in load_config().selection.candidates if c.name == "lightgbm depth 6"),
                           min_rows=0)
MEAN = Candidate("mean of shapes", "mean", of=("lightgbm depth 2", "lightgbm depth 1"))
ENSEMBLE = Candidate("ensemble", "ensemble")
FAMILY_OF = {"lightgbm": "lightgbm depth 2", "scorecard": "scorecard", "blend": "blend", "deep": DEEP.name,
             "mean": MEAN.name, "ensemble": ENSEMBLE.name}
NEEDED = {"lightgbm depth 2": CANDIDATES[:1], "scorecard": CANDIDATES[2:3], "blend": (CANDIDATES[0], *CANDIDATES[2:]),
          DEEP.name: (DEEP,), MEAN.name: (*CANDIDATES[:2], MEAN), ENSEMBLE.name: (*CANDIDATES[:3], ENSEMBLE)}


def _config(winner: str = "auto"):  # type: ignore[no-untyped-def]
    """Three inner folds; a forced winner competes only with the candidates it needs (faster)."""
    base = load_config()
    candidates = NEEDED.get(winner, CANDIDATES)
    return dataclasses.replace(base, monotone=MONOTONE, cv_folds=3, seed=5, selection=SelectionConfig(
        candidates, "auc", "brier", 0.001, (0.3, 0.5, 0.7), winner))


def _frame(n: int = 1600, seed: int = 11) -> pd.DataFrame:
    """Loans with declared monotone inputs, an input missing for a fifth of the rows (riskier when missing) and
    a text column with common, rare and missing categories."""
    rng = np.random.default_rng(seed)
    overdue = rng.poisson(0.8, n).astype(float)
    grade = rng.integers(0, 5, n).astype(float)
    income = rng.lognormal(3, 0.6, n)
    noise = rng.normal(size=n)
    missing = rng.random(n) < 0.2
    income_seen = np.where(missing, np.nan, income)
    sector = rng.choice(list("ABCDEFGH") + ["R1", "R2"], n, p=[.2, .2, .15, .15, .1, .08, .06, .05, .005, .005])
    sector = np.where(rng.random(n) < 0.05, None, sector).astype(object)
    effect = pd.Series(sector).map({"A": -.4, "B": 0, "C": .3, "D": .5, "E": -.2, "F": .1, "G": .6, "H": 0,
                                    "R1": 1.0, "R2": -1.0}).fillna(0.4).to_numpy()
    logit = -1.6 + 0.55 * overdue - 0.35 * grade - 0.6 * (np.log(income) - 3) + 0.6 * missing + effect
    bad = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"overdue": overdue, "grade": grade, "income": income_seen, "noise": noise,
                         "sector": pd.array(sector, dtype="str"), "bad": bad})


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return from_frame(_frame(), "bad", _config())


@pytest.fixture(scope="module")
def trained(dataset: Dataset, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One model per family (the winner forced by `selection.winner`) and one chosen by the criterion."""
    out = {}
    for family, name in {**FAMILY_OF, "auto": "auto"}.items():
        d = tmp_path_factory.mktemp(family)
        train_pipeline(dataset, _config(name), d, operator="test", write_report=family == "auto")
        out[family] = d
    return out


def _figures(selection: dict) -> dict:
    """A selection report without its timings."""
    return {**selection, "candidates": [{k: v for k, v in c.items() if k != "seconds"}
                                        for c in selection["candidates"]]}


def _metadata(directory: Path) -> dict:
    return json.loads((directory / "metadata.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("family", ["lightgbm", "scorecard", "blend", "deep", "mean", "ensemble"])
def test_pd_is_monotone_in_every_declared_feature_for_every_family(dataset, trained, family: str) -> None:
    model = RiskModel.from_dir(trained[family])
    # an ensemble is served as the family its weights hold (here LightGBM shapes and the scorecard: a blend)
    expected = "lightgbm" if family in ("deep", "mean") else "blend" if family == "ensemble" else family
    assert model.family == expected and _metadata(trained[family])["family"] == expected
    rows = dataset.X.iloc[:300]
    for feature, direction in MONOTONE.items():
        observed = dataset.X[feature].dropna()
        values = sorted(set(np.quantile(observed, np.linspace(0, 1, 9)).tolist()) | {observed.max() + 1})
        raw = np.column_stack([model.raw_score(rows.assign(**{feature: v})) for v in values])
        pd_ = np.column_stack([model.predict(rows.assign(**{feature: v})) for v in values])
        assert (np.diff(raw, axis=1) * direction >= 0).all(), f"{family}: raw score moves against {feature}"
        assert (np.diff(pd_, axis=1) * direction >= 0).all(), f"{family}: PD moves against {feature}"
        assert (raw[:, -1] - raw[:, 0]).mean() * direction > 0, f"{family}: {feature} has no effect"


@pytest.mark.parametrize("family", ["scorecard", "blend"])
def test_contributions_sum_exactly_to_the_raw_score(dataset, trained, family: str) -> None:
    model = RiskModel.from_dir(trained[family])
    X = model.encode(dataset.X)
    raw, pd_values, contrib = model.scores(X)
    assert contrib.shape == (len(X), len(model.feature_names) + 1)
    assert (contrib[:, -1] == model.base_value).all()
    assert np.array_equal(contrib.sum(axis=1), raw)
    for i in range(0, len(X), 37):  # any order of addition gives the same number
        assert sum(contrib[i].tolist()) == raw[i] == math.fsum(contrib[i]) == sum(reversed(contrib[i].tolist()))
    assert (np.round(contrib / QUANTUM) * QUANTUM == contrib).all()
    for row, r in zip(model.assess(dataset.X.iloc[:50], top_k=len(model.feature_names)), raw, strict=False):
        assert row["base_value"] + sum(f["contribution"] for f in row["risk_factors"]) == row["raw_score"] == r


def test_blend_contributions_are_weighted_treeshap_plus_scorecard_points(dataset, trained) -> None:
    model = RiskModel.from_dir(trained["blend"])
    w = model.scorer.weight
    assert 0 < w < 1 and _metadata(trained["blend"])["blend_weight"] == w
    X = model.encode(dataset.X)
    shap = model.booster.predict(X, pred_contrib=True)
    points = model.scorer.scorecard.contributions(X)
    expected = w * shap + (1 - w) * points
    assert np.abs(model.contributions(X) - expected).max() < 1e-6  # the 2**-30 grid and the rounding residual
    assert np.abs(model.raw_score(X) - (w * model.booster.predict(X, raw_score=True)
                                        + (1 - w) * points.sum(axis=1))).max() < 1e-8


@pytest.mark.parametrize("family", ["scorecard", "blend"])
def test_one_row_and_a_batch_give_identical_numbers(dataset, trained, family: str) -> None:
    model = RiskModel.from_dir(trained[family])
    frame = dataset.X.iloc[:120]
    batch_raw, batch_contrib, batch = model.raw_score(frame), model.contributions(frame), model.assess(frame)
    for i in range(0, len(frame), 9):
        row = frame.iloc[[i]]
        assert model.raw_score(row)[0] == batch_raw[i]
        assert np.array_equal(model.contributions(row)[0], batch_contrib[i])
        assert json.dumps(model.assess(row)[0]) == json.dumps(batch[i])


def test_the_card_records_every_candidate_and_why_the_winner_won(trained) -> None:
    meta = _metadata(trained["auto"])
    sel = meta["selection"]
    assert [c["name"] for c in sel["candidates"]] == [c.name for c in CANDIDATES]
    for c in sel["candidates"]:
        assert {"auc", "auc_sd", "ks", "brier", "brier_sd", "folds"} <= set(c) and len(c["folds"]) == 3
        assert 0.5 < c["auc"] < 1 and 0 < c["brier"] < 0.25
    best = max(c["auc"] for c in sel["candidates"])
    winner = next(c for c in sel["candidates"] if c["name"] == sel["winner"])
    assert winner["auc"] >= best - sel["tolerance"] and sel["reason"] and meta["family"] == winner["family"]
    assert sel["mode"] == "cv" and sel["rows"] == meta["training"]["split"]["train_rows"] + \
        meta["training"]["split"]["valid_rows"]
    html = (trained["auto"] / "report.html").read_text(encoding="utf-8")
    for needle in ("Model family selection", "lightgbm depth 1", "scorecard", "Categorical and missing data",
                   "Imputation: none"):
        assert needle in html, needle
    forced = _metadata(trained["scorecard"])["selection"]
    assert forced["winner"] == "scorecard" and "configured winner" in forced["reason"]


def test_missing_values_and_rare_categories_are_reported_not_imputed(trained) -> None:
    inputs = _metadata(trained["blend"])["inputs"]
    by_name = {f["feature"]: f for f in inputs["features"]}
    assert 0.15 < by_name["income"]["missing_share_dev"] < 0.25
    assert by_name["sector"]["kind"] == "categorical" and by_name["sector"]["rare_categories"] == 2
    assert 0.02 < by_name["sector"]["missing_share_dev"] < 0.08
    assert inputs["imputation"].startswith("none") and set(inputs["treatment"]) == {"lightgbm", "scorecard"}
    card = _metadata(trained["scorecard"])["scorecard"]["features"]
    income = next(f for f in card if f["feature"] == "income")
    assert income["missing_rows"] > 0 and income["missing_points"] > 0  # missing is riskier: its own points


def test_selection_sees_development_rows_only(dataset: Dataset, tmp_path: Path) -> None:
    """Changing every out-of-time outcome changes no candidate's figures and not the model."""
    rows = np.arange(dataset.rows)
    split = Split(rows[:1000], np.empty(0, np.int64), rows[1000:], "out_of_time")
    flipped = dataclasses.replace(dataset, y=np.r_[dataset.y[:1000], 1 - dataset.y[1000:]].astype(np.int8))
    a = train_pipeline(dataset, _config(), tmp_path / "a", write_report=False, split=split)
    b = train_pipeline(flipped, _config(), tmp_path / "b", write_report=False, split=split)
    assert _figures(a.metadata["selection"]) == _figures(b.metadata["selection"])
    assert (tmp_path / "a" / "model.txt").read_bytes() == (tmp_path / "b" / "model.txt").read_bytes()
    assert a.metadata["selection"]["rows"] == 1000


def test_same_data_and_seed_give_the_same_model_bit_for_bit(dataset: Dataset, trained, tmp_path: Path) -> None:
    again = train_pipeline(dataset, _config(), tmp_path, operator="test", write_report=False)
    for name in ("model.txt", "calibrator.joblib"):
        assert (tmp_path / name).read_bytes() == (trained["auto"] / name).read_bytes(), name
    assert _figures(again.metadata["selection"]) == _figures(_metadata(trained["auto"])["selection"])


def test_a_changed_scorecard_or_blend_file_is_refused(trained, tmp_path: Path) -> None:
    for family in ("scorecard", "blend"):
        copy = tmp_path / family
        shutil.copytree(trained[family], copy)
        text = (copy / "model.txt").read_text(encoding="utf-8")
        (copy / "model.txt").write_text(text.replace('"intercept": ', '"intercept": 1', 1), encoding="utf-8")
        with pytest.raises(ArtifactIntegrityError, match="model.txt failed its integrity check"):
            RiskModel.from_dir(copy)


def test_a_format_1_model_directory_still_loads(dataset, trained, tmp_path: Path) -> None:
    """Models trained before families existed: format 1 metadata, no `family`, LightGBM text."""
    copy = tmp_path / "v1"
    shutil.copytree(trained["lightgbm"], copy)
    meta = _metadata(copy)
    for key in ("family", "selection", "blend_weight", "scorecard", "inputs"):
        meta.pop(key)
    meta["format"] = art.FORMAT_V1
    (copy / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")
    old = RiskModel.from_dir(copy)
    new = RiskModel.from_dir(trained["lightgbm"])
    assert old.family == "lightgbm"
    assert np.array_equal(old.predict(dataset.X), new.predict(dataset.X))
    meta["format"] = "indexloan-pd-model/9"
    (copy / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(ArtifactIntegrityError, match="not the metadata"):
        RiskModel.from_dir(copy)


def test_a_blend_registers_and_loads_through_the_registry(store: sa.Engine, trained, dataset, tmp_path) -> None:
    registry = Registry(store, tmp_path / "models")
    record = registry.register(trained["blend"], created_by="alice")
    digests = {n: hashlib.sha256((trained["blend"] / n).read_bytes()).hexdigest() for n in art.ARTIFACTS}
    assert record.id == art.model_id_from_digests(digests)
    served = registry.load(record.id)
    assert served.family == "blend" and served.model_version == record.id
    assert np.array_equal(served.predict(dataset.X), RiskModel.from_dir(trained["blend"]).predict(dataset.X))


def test_selection_configuration_is_checked(tmp_path: Path) -> None:
    base = Path(__file__).resolve().parent.parent / "training" / "model.yaml"
    text = base.read_text(encoding="utf-8")
    cases = {
        "{name: blend, family: blend}": "{name: blend, family: forest}",
        "  criterion: auc ": "  criterion: gini ",
        "  tolerance: se ": "  winner: nobody\n  tolerance: se ",
        "  tolerance: se": "  tolerance: -1",
        "cv_final: average": "cv_final: bagged",
        "\ncv_repeats: ": "\ncv_repeats: 0 #",
        "calibration_scores: as_is": "calibration_scores: mapped",
    }
    for old, new in cases.items():
        assert old in text, old
        path = tmp_path / "model.yaml"
        path.write_text(text.replace(old, new), encoding="utf-8")
        with pytest.raises(ConfigError):
            load_config(path)
    only_blend = text.replace("    - {name: scorecard, family: scorecard}\n", "")
    path.write_text(only_blend, encoding="utf-8")
    with pytest.raises(ConfigError, match="blend candidate needs"):
        load_config(path)
    cfg = load_config()
    assert [c.family for c in cfg.selection.candidates].count("lightgbm") >= 2
    assert cfg.selection.criterion == "auc" and cfg.selection.tie_break == "brier" and cfg.selection.tolerance == "se"


def test_the_average_of_fold_models_is_one_lightgbm_model_with_their_mean_score_and_shap() -> None:
    import lightgbm as lgb

    rng = np.random.default_rng(4)
    X = rng.normal(size=(800, 4))
    X[:80, 2] = np.nan
    X[:, 3] = rng.integers(0, 6, 800)
    y = (X[:, 0] - 0.5 * np.nan_to_num(X[:, 2]) + rng.normal(size=800) > 0.5).astype(int)
    params = {"objective": "binary", "num_leaves": 4, "max_depth": 2, "verbosity": -1, "deterministic": True,
              "monotone_constraints": [1, 0, 0, 0], "bagging_fraction": 0.8, "bagging_freq": 1}
    boosters = [lgb.train({**params, "seed": k}, lgb.Dataset(X[k * 100:], y[k * 100:], categorical_feature=[3]),
                          10 + 3 * k) for k in range(3)]
    merged = average_boosters(boosters)
    assert merged.num_trees() == sum(b.num_trees() for b in boosters)
    mean_raw = np.mean([b.predict(X, raw_score=True) for b in boosters], axis=0)
    mean_shap = np.mean([b.predict(X, pred_contrib=True) for b in boosters], axis=0)
    assert np.abs(merged.predict(X, raw_score=True) - mean_raw).max() < 1e-12
    assert np.abs(merged.predict(X, pred_contrib=True) - mean_shap).max() < 1e-12
    again = lgb.Booster(model_str=merged.model_to_string())
    assert np.array_equal(again.predict(X, raw_score=True), merged.predict(X, raw_score=True))
    grid = np.linspace(-3, 3, 25)
    for row in X[:50]:
        swept = np.tile(row, (len(grid), 1))
        swept[:, 0] = grid
        assert (np.diff(merged.predict(swept, raw_score=True)) >= 0).all()


def _evaluated(name: str, aucs: list[float], brier: float) -> Evaluated:
    folds = [{"rows": 100, "auc": a, "ks": 0.3, "brier": brier} for a in aucs]
    return Evaluated(Candidate(name, "lightgbm"), np.zeros(1), {"auc": float(np.mean(aucs)), "ks": 0.3,
                                                                "brier": brier, "folds": folds})


def test_the_winner_has_the_best_auc_unless_the_folds_cannot_tell_then_the_lower_brier_wins() -> None:
    cfg = dataclasses.replace(load_config(), selection=SelectionConfig(CANDIDATES, "auc", "brier", "se"))
    leader = _evaluated("a", [0.70, 0.74, 0.72, 0.71, 0.73], 0.170)
    noisy = _evaluated("b", [0.71, 0.72, 0.73, 0.70, 0.725], 0.160)  # behind by 0.003, paired SE ~0.0045
    clearly = _evaluated("c", [0.68, 0.72, 0.70, 0.69, 0.71], 0.150)  # behind by 0.02 in every fold: SE 0
    winner, reason = choose([leader, noisy, clearly], cfg)
    assert winner.candidate.name == "b" and "tie-break brier" in reason
    assert leader.figures["tie_margin"] == 0 and clearly.figures["tie_margin"] < 1e-12
    assert 0.003 < noisy.figures["tie_margin"] < 0.01
    fixed = dataclasses.replace(cfg, selection=dataclasses.replace(cfg.selection, tolerance=0.001))
    winner, reason = choose([leader, noisy, clearly], fixed)
    assert winner.candidate.name == "a" and "best inner-CV AUC" in reason


def test_holdout_validation_selects_on_the_validation_fold_and_keeps_the_fold_model(dataset, tmp_path) -> None:
    """Large samples use one validation fold: the candidates are scored on it, the winner is its fold model."""
    cfg = dataclasses.replace(_config("blend"), validation="holdout")
    result = train_pipeline(dataset, cfg, tmp_path, write_report=False)
    sel = result.metadata["selection"]
    assert sel["mode"] == "holdout" and sel["folds"] == 1 and sel["rows"] == len(result.split.valid)
    assert result.metadata["best_iteration"] <= result.metadata["iterations_run"]
    model = RiskModel.from_dir(tmp_path)
    X = model.encode(dataset.X)
    raw, _, contrib = model.scores(X)
    assert model.family == "blend" and np.array_equal(contrib.sum(axis=1), raw)


def test_the_deep_shape_is_the_mean_of_its_fold_models_with_exact_treeshap(dataset, trained) -> None:
    """The depth-6 candidate as a winner: its own shape in every tree, and contributions that are TreeSHAP and
    add up to the raw score."""
    import shap

    meta = _metadata(trained["deep"])
    assert meta["selection"]["winner"] == DEEP.name and meta["params"]["max_depth"] == 6
    model = RiskModel.from_dir(trained["deep"])
    dump = model.booster.dump_model()
    assert model.booster.num_trees() == sum(meta["validation"]["fold_best_iterations"])  # 3 folds' trees

    def depth(node: dict) -> int:
        return 0 if "leaf_value" in node else 1 + max(depth(node["left_child"]), depth(node["right_child"]))

    assert max(depth(t["tree_structure"]) for t in dump["tree_info"]) > 3
    X = model.encode(dataset.X.iloc[:400])
    raw, _, contrib = model.scores(X)
    assert np.abs(contrib.sum(axis=1) - raw).max() < 1e-9
    explainer_values = shap.TreeExplainer(model.booster).shap_values(X)
    assert np.abs(np.asarray(explainer_values) - contrib[:, :-1]).max() < 1e-6


def test_a_candidate_needing_more_rows_is_skipped_and_the_card_says_why(dataset, tmp_path: Path) -> None:
    big = dataclasses.replace(DEEP, min_rows=10 ** 6)
    cfg = _config()
    cfg = dataclasses.replace(cfg, selection=dataclasses.replace(cfg.selection, candidates=(CANDIDATES[0], big)))
    result = train_pipeline(dataset, cfg, tmp_path, write_report=False)
    sel = result.metadata["selection"]
    assert [c["name"] for c in sel["candidates"]] == [CANDIDATES[0].name]
    assert sel["skipped"] == [{"name": big.name, "family": "lightgbm", "min_rows": 10 ** 6,
                               "reason": f"fewer than {10 ** 6} development rows ({sel['rows']})"}]


def _measured(dataset, cfg):  # noqa: ANN001, ANN202 - the module's dataset fixture, measure_candidates' types
    """Every candidate of `cfg` measured by inner cross-validation on all of `dataset`'s rows: the encoded
    matrix, its spec, the folds and the candidates' results (best first)."""
    split = Split(np.arange(dataset.rows), np.empty(0, np.int64), np.empty(0, np.int64), "test")
    spec = build_spec(dataset.X, dataset.categorical, cfg.monotone, rows=split.train)
    X = spec.encode(dataset.X)
    folds, results, _ = measure_candidates(X, dataset.y, split, spec, cfg)
    return X, spec, folds, results


def test_the_calibrator_of_a_mean_of_fold_models_learns_from_its_out_of_fold_scores(dataset, trained) -> None:
    """By default (`calibration_scores: as_is`) the averaged LightGBM's calibrator learns from the out-of-fold
    scores as they are; `mean_scale` maps them to the mean's (smaller) spread first. The card says which."""
    cfg = _config(FAMILY_OF["lightgbm"])
    assert cfg.calibration_scores == "as_is"
    X, spec, folds, results = _measured(dataset, cfg)
    winner = results[0]
    _, cal_raw, scale = build_winner(winner, X, dataset.y, spec, folds, cfg)
    assert scale is None and np.array_equal(cal_raw, winner.oof)
    _, mapped, scale = build_winner(winner, X, dataset.y, spec, folds,
                                    dataclasses.replace(cfg, calibration_scores="mean_scale"))
    assert scale is not None and 0 < scale.ratio < 1
    assert np.allclose(mapped, scale.apply(winner.oof), rtol=0, atol=1e-12) and mapped.std() < winner.oof.std()
    meta = _metadata(trained["lightgbm"])
    assert meta["selection"]["calibration_scores"] == {"method": "out-of-fold scores as they are"}


def test_the_mean_of_shapes_averages_their_out_of_fold_scores_and_fold_models(dataset) -> None:
    """The mean candidate is measured on the shapes' own out-of-fold scores, and its fold model scores (and
    explains) as the mean of theirs: one LightGBM booster with every shape's trees."""
    cfg = _config(MEAN.name)
    X, spec, _, results = _measured(dataset, cfg)
    by = {r.candidate.name: r for r in results}
    shapes, mean = [by["lightgbm depth 2"], by["lightgbm depth 1"]], by[MEAN.name]
    assert mean.figures["shapes"] == ["lightgbm depth 2", "lightgbm depth 1"]
    assert np.allclose(mean.oof, (shapes[0].oof + shapes[1].oof) / 2, rtol=0, atol=1e-12)
    rows = X[:300]
    for k, booster in enumerate(mean.models):
        each = [s.models[k] for s in shapes]
        assert booster.num_trees() == sum(b.num_trees() for b in each) == mean.iterations[k]
        want = np.mean([b.predict(rows, raw_score=True) for b in each], axis=0)
        assert np.abs(booster.predict(rows, raw_score=True) - want).max() < 1e-12
        want_shap = np.mean([b.predict(rows, pred_contrib=True) for b in each], axis=0)
        assert np.abs(booster.predict(rows, pred_contrib=True) - want_shap).max() < 1e-12


def test_a_mean_winner_is_one_lightgbm_model_with_exact_treeshap(dataset, trained) -> None:
    meta = _metadata(trained["mean"])
    sel = meta["selection"]
    assert sel["winner"] == MEAN.name and meta["family"] == "lightgbm" and set(meta["params"]["mean_of"]) == \
        {"lightgbm depth 2", "lightgbm depth 1"}
    model = RiskModel.from_dir(trained["mean"])
    assert model.booster.num_trees() == sum(meta["validation"]["fold_best_iterations"])
    X = model.encode(dataset.X.iloc[:400])
    raw, _, contrib = model.scores(X)
    assert np.abs(contrib.sum(axis=1) - raw).max() < 1e-9
    assert sel["calibration_scores"] == {"method": "out-of-fold scores as they are"}


def test_a_mean_needs_lightgbm_shapes(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parent.parent / "training" / "model.yaml").read_text(encoding="utf-8")
    path = tmp_path / "model.yaml"
    for bad in ("of: [scorecard]", "of: [no such shape]"):
        path.write_text(text.replace("    - {name: blend, family: blend}",
                                     f"    - {{name: m, family: mean, {bad}}}\n    - {{name: blend, family: blend}}"),
                        encoding="utf-8")
        with pytest.raises(ConfigError, match="a mean needs"):
            load_config(path)
    of_scorecard = "    - {name: scorecard, family: scorecard, of: [lightgbm depth 2]}"
    path.write_text(text.replace("    - {name: scorecard, family: scorecard}", of_scorecard), encoding="utf-8")
    with pytest.raises(ConfigError, match="for a mean or ensemble candidate only"):
        load_config(path)


def test_repeated_folds_score_every_row_once_per_repeat_and_average_the_scores(dataset) -> None:
    """cv_repeats: every repeat shuffles its own folds; a row's out-of-fold score is the mean of its one
    out-of-fold model per repeat; the fold figures are those of the first repeat's folds."""
    cfg = dataclasses.replace(_config("lightgbm depth 2"), cv_repeats=2)
    X, spec, folds, results = _measured(dataset, cfg)
    gbm = results[0]
    assert folds.repeats == 2 and len(folds.pairs) == len(gbm.models) == 2 * cfg.cv_folds
    want = np.zeros(len(folds.rows))
    for booster, (fitted, scored) in zip(gbm.models, folds.pairs, strict=True):
        assert not np.isin(scored, fitted).any()
        want[np.searchsorted(folds.rows, scored)] += booster.predict(X[scored], raw_score=True) / 2
    assert np.abs(gbm.oof - want).max() < 1e-12
    for r in range(2):  # each repeat scores every row exactly once
        scored = np.concatenate([b for _, b in folds.pairs[r * cfg.cv_folds:(r + 1) * cfg.cv_folds]])
        assert np.array_equal(np.sort(scored), folds.rows)
    assert not np.array_equal(folds.pairs[0][1], folds.pairs[cfg.cv_folds][1])
    assert len(gbm.figures["folds"]) == cfg.cv_folds


def test_the_ensemble_weighs_members_out_of_fold_and_serves_their_weighted_sum(dataset) -> None:
    """The ensemble candidate: greedy weights over the LightGBM shapes and the scorecard, cross-fitted for its
    figures; its fold model scores and explains as the weighted sum of the LightGBM members' fold models."""
    cfg = _config(ENSEMBLE.name)
    X, spec, folds, results = _measured(dataset, cfg)
    by = {r.candidate.name: r for r in results}
    ens = by[ENSEMBLE.name]
    members = [by[n] for n in ens.figures["members"]]
    assert ens.figures["members"] == [c.name for c in CANDIDATES[:3]]
    weights = np.array([ens.figures["weight"].get(r.candidate.name, 0.0) for r in members])
    assert (weights >= 0).all() and abs(weights.sum() - 1) < 1e-12
    assert np.allclose(ens.oof, weights @ np.array([r.oof for r in members]), rtol=0, atol=1e-12)
    assert len(ens.figures["fold_weights"]) == cfg.cv_folds and len(ens.figures["folds"]) == cfg.cv_folds
    gbm = [(r, w) for r, w in zip(members, weights, strict=True) if w > 0 and r.candidate.family == "lightgbm"]
    card = weights[[r.candidate.family for r in members].index("scorecard")]
    assert ens.served == ("blend" if gbm and card > 0 else "lightgbm" if gbm else "scorecard")
    if gbm:
        total = sum(w for _, w in gbm)
        assert ens.weight == (pytest.approx(total) if card > 0 else None)
        rows = X[:300]
        for k, booster in enumerate(ens.models):
            want = sum(w / total * r.models[k].predict(rows, raw_score=True) for r, w in gbm)
            assert np.abs(booster.predict(rows, raw_score=True) - want).max() < 1e-12
            want_shap = sum(w / total * r.models[k].predict(rows, pred_contrib=True) for r, w in gbm)
            assert np.abs(booster.predict(rows, pred_contrib=True) - want_shap).max() < 1e-12


def test_an_ensemble_winner_explains_exactly_and_the_card_records_its_weights(dataset, trained) -> None:
    meta = _metadata(trained["ensemble"])
    sel = meta["selection"]
    entry = next(c for c in sel["candidates"] if c["name"] == ENSEMBLE.name)
    assert sel["winner"] == ENSEMBLE.name and sel["family"] == meta["family"] == "blend"
    assert set(entry["weight"]) <= {c.name for c in CANDIDATES[:3]} and "scorecard" in entry["weight"]
    assert meta["blend_weight"] == pytest.approx(1 - entry["weight"]["scorecard"])
    assert set(meta["params"]["ensemble_of"]) == set(entry["weight"]) - {"scorecard"}
    model = RiskModel.from_dir(trained["ensemble"])
    X = model.encode(dataset.X)
    raw, _, contrib = model.scores(X)
    assert np.array_equal(contrib.sum(axis=1), raw)  # a blend's contributions add up exactly


def test_an_ensemble_takes_lightgbm_shapes_and_one_scorecard(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parent.parent / "training" / "model.yaml").read_text(encoding="utf-8")
    path = tmp_path / "model.yaml"
    for bad, message in (("of: [blend]", "an ensemble's members"), ("of: [nobody]", "an ensemble's members"),
                         ("steps: 0", "steps"), ("steps: many", "steps")):
        added = f"    - {{name: blend, family: blend}}\n    - {{name: e, family: ensemble, {bad}}}"
        path.write_text(text.replace("    - {name: blend, family: blend}", added), encoding="utf-8")
        with pytest.raises(ConfigError, match=message):
            load_config(path)
    two_cards = text.replace("    - {name: scorecard, family: scorecard}",
                             "    - {name: scorecard, family: scorecard}\n    - {name: card 2, family: scorecard}")
    path.write_text(two_cards.replace("    - {name: blend, family: blend}",
                                      "    - {name: blend, family: blend}\n    - {name: e, family: ensemble}"),
                    encoding="utf-8")
    with pytest.raises(ConfigError, match="at most one scorecard"):
        load_config(path)
    steps_elsewhere = text.replace("    - {name: scorecard, family: scorecard}",
                                   "    - {name: scorecard, family: scorecard, steps: 3}")
    path.write_text(steps_elsewhere, encoding="utf-8")
    with pytest.raises(ConfigError, match="for an ensemble candidate only"):
        load_config(path)


def test_an_ensemble_with_holdout_validation_is_served_from_the_fold_models(dataset, tmp_path: Path) -> None:
    """Large samples (one validation fold): the ensemble's weights are learnt on the validation fold's scores
    and the served model is the weighted sum of the members' fold models, explained exactly."""
    cfg = dataclasses.replace(_config(ENSEMBLE.name), validation="holdout")
    result = train_pipeline(dataset, cfg, tmp_path, write_report=False)
    sel = result.metadata["selection"]
    entry = next(c for c in sel["candidates"] if c["name"] == ENSEMBLE.name)
    assert sel["mode"] == "holdout" and sel["winner"] == ENSEMBLE.name
    assert abs(sum(entry["weight"].values()) - 1) < 1e-12
    model = RiskModel.from_dir(tmp_path)
    assert model.family == sel["family"] == ("blend" if "scorecard" in entry["weight"] and len(entry["weight"]) > 1
                                             else "scorecard" if "scorecard" in entry["weight"] else "lightgbm")
    X = model.encode(dataset.X)
    raw, _, contrib = model.scores(X)
    assert np.abs(contrib.sum(axis=1) - raw).max() < 1e-9
