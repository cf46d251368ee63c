"""The training run's evaluation shortcuts give exactly what the plain computations give: one ranking of every
row's PD for each sample's ROC, the calibrator's cross-validation on threads, the feature reference on its own
thread."""

from __future__ import annotations

import numpy as np
import pytest

from training import calibration
from training import metrics as m
from training.pipeline import feature_reference


def _scores_with_ties(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = np.round(rng.beta(1, 20, rows), 3)  # few distinct values: long runs of equal scores
    y = (rng.random(rows) < p * 3).astype(np.int8)
    return y, p


def test_a_samples_roc_read_off_the_ranking_of_every_row_is_the_roc_of_its_own_sort() -> None:
    y, p = _scores_with_ties(20_000, 1)
    ranking = m.Ranking(p)
    rng = np.random.default_rng(2)
    for rows in (np.sort(rng.choice(len(p), 7_000, replace=False)), np.arange(len(p)), np.arange(0, len(p), 3)):
        stable = np.argsort(-p[rows], kind="stable")  # the sort the summaries made before the ranking
        for got, want in zip(m.roc_points(y[rows], p[rows], ranking.within(rows)),
                             m.roc_points(y[rows], p[rows], stable), strict=True):
            np.testing.assert_array_equal(got, want)
        assert m.summary(y[rows], p[rows], ranking.within(rows)) == m.summary(y[rows], p[rows], stable)


def test_within_gives_each_rows_position_in_the_sample_by_descending_score() -> None:
    p = np.array([0.1, 0.9, 0.5, 0.7, 0.3])
    ranking = m.Ranking(p)
    rows = np.array([0, 2, 3])  # scores 0.1, 0.5, 0.7
    assert ranking.within(rows).tolist() == [2, 1, 0]


def _sequential(raw: np.ndarray, y: np.ndarray, folds: int, seed: int) -> tuple[dict[str, float], dict[str, float]]:
    """Each method's Brier and log-loss (of the PDs as served, within the floor) on its out-of-fold PDs."""
    from sklearn.model_selection import StratifiedKFold

    brier, log_loss = {}, {}
    for method in calibration.METHODS:
        pred = np.empty(len(y))
        for fit_idx, test_idx in StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(raw, y):
            pred[test_idx] = calibration._fit(method, raw[fit_idx], y[fit_idx])(raw[test_idx])
        brier[method] = m.brier(y, pred)
        log_loss[method] = float(-np.mean(y * np.log(pred) + (1 - y) * np.log(1 - pred)))
    return brier, log_loss


@pytest.mark.parametrize("cores", [1, 2, 8])
def test_the_calibrators_cross_validation_on_threads_gives_the_sequential_numbers(monkeypatch, cores: int) -> None:
    rng = np.random.default_rng(3)
    raw = rng.normal(-3, 1.2, 30_000)
    y = (rng.random(len(raw)) < 1 / (1 + np.exp(-(1.3 * raw + 0.4)))).astype(np.int8)
    monkeypatch.setattr(calibration.os, "cpu_count", lambda: cores)
    _, info = calibration.fit_calibrator(raw, y, "auto", seed=7)
    brier, log_loss = _sequential(raw, y, 5, 7)
    assert info["cv_brier"] == brier and list(info["cv_brier"]) == list(brier)  # same numbers, same order
    assert list(info["cv_log_loss"]) == list(log_loss)
    for method, value in log_loss.items():
        assert info["cv_log_loss"][method] == pytest.approx(value, rel=1e-12, abs=0)


def test_the_feature_reference_of_a_sample_is_that_of_the_sample_copied_out() -> None:
    rng = np.random.default_rng(4)
    X = np.asfortranarray(rng.normal(size=(5_000, 3)))
    X[rng.random(5_000) < 0.1, 1] = np.nan
    X[:, 2] = np.round(X[:, 2])  # few distinct values
    rows = np.sort(rng.choice(5_000, 3_000, replace=False))
    assert feature_reference(X, rows, ("a", "b", "c")) == m.feature_reference(X[rows], ["a", "b", "c"])
