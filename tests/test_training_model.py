"""The PD model on the demo region: beats the five indices, monotone where declared, reproducible."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.synthetic import generate_region
from training.baseline import five_index_dataset
from training.config import load_config
from training.datasets import Dataset, from_source_frames
from training.pipeline import TrainResult, train_pipeline
from training.serving import RiskModel

CFG = load_config()
AS_OF = dt.date(2026, 1, 1)  # both loan years (2023, 2024) have a closed 12-month window


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return generate_region(20_000, 7)  # the demo region of `make demo`


@pytest.fixture(scope="module")
def dataset(frames: dict[str, pd.DataFrame]) -> Dataset:
    return from_source_frames(frames, CFG, AS_OF)


@pytest.fixture(scope="module")
def trained(dataset: Dataset, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    return train_pipeline(dataset, CFG, tmp_path_factory.mktemp("model"), operator="analyst")


def test_model_beats_the_five_product_indices_out_of_time(frames, trained: TrainResult, tmp_path: Path) -> None:
    baseline = train_pipeline(five_index_dataset(frames, CFG, AS_OF), CFG, tmp_path, write_report=False)
    np.testing.assert_array_equal(baseline.split.oot, trained.split.oot)  # same loans, same split
    full, five = trained.metrics["oot"]["auc"], baseline.metrics["oot"]["auc"]
    assert full > five + 0.03, (full, five)
    assert trained.split.kind == "out_of_time" and trained.split.oot_from == "2024-12-31"


def _sweep(model: RiskModel, X: pd.DataFrame, feature: str, values: list[float]) -> np.ndarray:
    """PD per row (rows) and value of `feature` (columns), all else unchanged."""
    return np.column_stack([model.predict(X.assign(**{feature: v})) for v in values])


def test_pd_is_monotone_in_every_declared_feature(dataset: Dataset, trained: TrainResult) -> None:
    model = RiskModel.from_dir(trained.out_dir)
    rows = dataset.X.iloc[trained.split.oot[:800]]
    declared = {n: d for n, d in zip(model.spec.names, model.spec.monotone, strict=True) if d}
    assert declared["credit_bureau.overdue_count_24m"] == 1 and declared["tax_credit_grade_rank"] == -1
    for feature, direction in declared.items():
        observed = dataset.X[feature].dropna()
        values = sorted(set(np.quantile(observed, np.linspace(0, 1, 7)).tolist()) | {observed.max() + 1})
        steps = np.diff(_sweep(model, rows, feature, values), axis=1) * direction
        assert (steps >= 0).all(), f"{feature}: PD moves against the declared direction"


def test_more_overdue_loans_never_lower_pd_and_a_better_tax_grade_never_raises_it(dataset, trained) -> None:
    model = RiskModel.from_dir(trained.out_dir)
    rows = dataset.X.iloc[trained.split.oot[:800]]
    overdue = _sweep(model, rows, "credit_bureau.overdue_count_24m", [0, 1, 2, 3, 6, 12])
    grade = _sweep(model, rows, "tax_credit_grade_rank", [0, 1, 2, 3, 4])  # D, C, M, B, A
    assert (np.diff(overdue, axis=1) >= 0).all() and overdue[:, -1].mean() > overdue[:, 0].mean()
    assert (np.diff(grade, axis=1) <= 0).all() and grade[:, 0].mean() > grade[:, -1].mean()


def test_same_data_and_seed_give_the_same_model(dataset: Dataset, tmp_path: Path) -> None:
    small = Dataset(dataset.X.iloc[:4000], dataset.y[:4000], dataset.categorical, dataset.source,
                    dataset.dates.iloc[:4000])
    a = train_pipeline(small, CFG, tmp_path / "a", write_report=False)
    b = train_pipeline(small, CFG, tmp_path / "b", write_report=False)
    assert (tmp_path / "a" / "model.txt").read_bytes() == (tmp_path / "b" / "model.txt").read_bytes()
    assert a.metrics == b.metrics


def test_report_is_self_contained_with_metrics_segments_shap_and_model_card(trained: TrainResult) -> None:
    html = (trained.out_dir / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", html) and "<script" not in html
    assert html.count("data:image/png;base64,") >= 8  # ROC, KS, calibration, distribution, SHAP x5, importance
    for needle in ("AUC", "KS", "Brier", "PSI", "Calibration", "Segments", "industry", "district",
                   "eligible:tax_credit", "SHAP summary", "SHAP dependence", "Feature importance", "JR/T 0221-2021",
                   "training data checksum", "code version", "operator", "started at", "finished at",
                   "time window", "parameters"):
        assert needle in html, needle
    meta = trained.metadata
    assert meta["training"]["data_checksum"] == trained.metadata["training"]["data_checksum"]
    assert meta["operator"] == "analyst" and meta["training"]["time_window"] == ["2023-12-31", "2024-12-31"]
    assert meta["calibration"]["method"] in ("isotonic", "platt", "beta")
    assert set(trained.metrics["oot"]) >= {"auc", "gini", "ks", "brier", "rows"}


def test_report_shap_plots_are_the_same_picture_every_time(dataset: Dataset, trained: TrainResult) -> None:
    """shap jitters and shuffles its points with numpy's global generator: the report seeds it for its plots
    (same model, same report) and gives the caller's generator state back."""
    from training import report

    X = trained.spec.encode(dataset.X.iloc[trained.split.oot[:300]])
    contrib = trained.scorer.contributions(X)
    importance = report.importance_frame(trained.spec, trained.booster, contrib)
    np.random.seed(1)
    first = report._shap_plots(trained.spec, X, contrib, importance)
    after_first = np.random.random()
    np.random.seed(1)
    np.random.random()  # a different global state: the plots must not depend on it
    assert report._shap_plots(trained.spec, X, contrib, importance) == first
    np.random.seed(1)
    assert np.random.random() == after_first  # the caller's generator continues where it was
