"""Calibration of the final model: the method chosen by cross-validated Brier, and the out-of-fold scores mapped to
the scale of the mean of the fold models before the calibrator learns from them (training.select.scale_of_mean)."""

from __future__ import annotations

import numpy as np

from training.calibration import fit_calibrator
from training.metrics import brier
from training.select import scale_of_mean


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _fold_scores(rng: np.random.Generator, signal: np.ndarray, k: int, noise: float) -> np.ndarray:
    """k models' scores of the same rows: the signal plus each model's own error."""
    return signal + rng.normal(0, noise, (k, len(signal)))


def test_the_calibrator_for_a_mean_of_fold_models_is_right_for_the_mean_not_for_one_model() -> None:
    rng = np.random.default_rng(3)
    n, k = 20_000, 5
    signal = rng.normal(size=n)
    y = (rng.random(n) < _sigmoid(1.5 * signal - 1.5)).astype(np.int8)
    each = _fold_scores(rng, signal, k, 0.8)
    fold = rng.integers(0, k, n)
    oof = each[fold, np.arange(n)]  # each row scored by the one model that did not learn from it
    scale = scale_of_mean(each, oof)
    assert 0.6 < scale.ratio < 0.8  # (1 + 0.64 / 5) / (1 + 0.64) = 0.69
    as_is, _ = fit_calibrator(oof, y, "platt")
    mapped, _ = fit_calibrator(scale.apply(oof), y, "platt")

    fresh = rng.normal(size=n)  # new applicants, scored by the mean of the k models
    y_new = (rng.random(n) < _sigmoid(1.5 * fresh - 1.5)).astype(np.int8)
    mean_new = _fold_scores(rng, fresh, k, 0.8).mean(axis=0)
    best, _ = fit_calibrator(mean_new, y_new, "platt")  # what an oracle would fit on the mean's own scores
    assert abs(mapped.a - best.a) < 0.4 * abs(as_is.a - best.a)  # most of the way to the slope the mean needs
    assert brier(y_new, mapped(mean_new)) < brier(y_new, as_is(mean_new))


def test_one_model_needs_no_mapping() -> None:
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(1, 500))
    scale = scale_of_mean(scores, scores[0])
    assert scale.ratio == 1.0 and np.allclose(scale.apply(scores[0]), scores[0])


def test_auto_calibration_picks_isotonic_only_where_platt_cannot_fit() -> None:
    rng = np.random.default_rng(2)
    raw = rng.normal(size=6000)
    logistic = (rng.random(6000) < _sigmoid(1.2 * raw - 1)).astype(np.int8)
    step = (rng.random(6000) < np.where(raw > 0.5, 0.6, 0.03)).astype(np.int8)  # no sigmoid of raw fits this
    chose_logistic, info = fit_calibrator(raw, logistic, "auto")
    assert chose_logistic.method == "platt" and set(info["cv_brier"]) == {"isotonic", "platt", "beta"}
    chose_step, info = fit_calibrator(raw, step, "auto")
    assert chose_step.method == "isotonic" and info["cv_brier"]["isotonic"] < info["cv_brier"]["platt"]


def test_beta_calibration_fits_tails_of_different_slopes_and_stays_monotone() -> None:
    from training.calibration import Calibrator

    rng = np.random.default_rng(5)
    raw = rng.normal(-1, 1.5, 20_000)
    q = _sigmoid(raw)
    truth = _sigmoid(2.0 * np.log(q) - 0.5 * np.log(1 - q) + 0.5)  # steep among good risks, flat among bad
    y = (rng.random(len(raw)) < truth).astype(np.int8)
    chosen, info = fit_calibrator(raw, y, "auto")
    assert chosen.method == "beta" and info["cv_brier"]["beta"] < info["cv_brier"]["platt"]
    assert abs(chosen.a - 2.0) < 0.3 and abs(chosen.b - 0.5) < 0.2
    grid = np.linspace(-12, 12, 2001)
    assert (np.diff(chosen(grid)) >= 0).all()
    again = Calibrator.from_dict(chosen.to_dict())
    assert np.array_equal(again(raw), chosen(raw))
    old = {k: v for k, v in fit_calibrator(raw, y, "platt")[0].to_dict().items() if k != "c"}  # before beta
    assert Calibrator.from_dict(old).method == "platt"


def test_beta_never_decreases_even_when_the_data_pulls_a_slope_negative() -> None:
    rng = np.random.default_rng(6)
    raw = rng.normal(size=5000)
    y = (rng.random(5000) < np.where(raw > 1.5, 0.05, _sigmoid(raw))).astype(np.int8)  # bad risks look good
    beta, _ = fit_calibrator(raw, y, "beta")
    assert beta.a >= 0 and beta.b >= 0
    assert (np.diff(beta(np.linspace(-8, 8, 801))) >= 0).all()


def test_with_repeated_folds_the_mapping_compares_the_mean_with_a_mean_of_one_model_per_repeat() -> None:
    """cv_repeats: a row's out-of-fold score is the mean of one model per repeat (already less spread than one
    model's), and the final model the mean of all of them: the ratio is of those two spreads."""
    rng = np.random.default_rng(5)
    n, k, repeats = 20_000, 5, 2
    signal = rng.normal(size=n)
    y = (rng.random(n) < _sigmoid(1.5 * signal - 1.5)).astype(np.int8)
    each = _fold_scores(rng, signal, k * repeats, 0.8)  # repeat by repeat
    folds = [rng.integers(0, k, n) for _ in range(repeats)]
    oof = np.mean([each[r * k + folds[r], np.arange(n)] for r in range(repeats)], axis=0)
    scale = scale_of_mean(each, oof, repeats)
    assert 0.72 < scale.ratio < 0.9  # (1 + 0.64 / 10) / (1 + 0.64 / 2) = 0.81
    assert scale.ratio > scale_of_mean(each, oof).ratio  # not the spread of one model: (1 + .064) / 1.64 = 0.65
    as_is, _ = fit_calibrator(oof, y, "platt")
    mapped, _ = fit_calibrator(scale.apply(oof), y, "platt")
    fresh = rng.normal(size=n)
    y_new = (rng.random(n) < _sigmoid(1.5 * fresh - 1.5)).astype(np.int8)
    mean_new = _fold_scores(rng, fresh, k * repeats, 0.8).mean(axis=0)
    best, _ = fit_calibrator(mean_new, y_new, "platt")
    assert abs(mapped.a - best.a) < 0.4 * abs(as_is.a - best.a)
    assert brier(y_new, mapped(mean_new)) < brier(y_new, as_is(mean_new))


def test_the_calibrator_is_the_same_whatever_the_blas_thread_count() -> None:
    """OpenBLAS splits the solver's dot products by its thread count: on 300,000 rows the Platt coefficients moved
    in their last bits between 1 and 2 threads. Fitted on one thread, the same data gives the same calibrator."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    raw = rng.normal(-3.0, 1.0, 300_000)
    y = (rng.random(len(raw)) < 1.0 / (1.0 + np.exp(-(1.1 * raw + 0.2)))).astype(np.int8)
    fitted = []
    for threads in (1, 2):
        with threadpool_limits(limits=threads, user_api="blas"):
            calibrator, _ = fit_calibrator(raw, y, "platt")
        fitted.append((calibrator.a, calibrator.b))
    assert fitted[0] == fitted[1]
