"""Calibration of the final model: the method chosen by the declared cross-validated criterion (log-loss by default,
or Brier), and the out-of-fold scores mapped to the scale of the mean of the fold models before the calibrator learns
from them (training.select.scale_of_mean)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training import calibration
from training.calibration import PD_FLOOR, fit_calibrator
from training.config import ConfigError, SelectionConfig, TrainConfig, load_config
from training.datasets import from_frame
from training.metrics import brier, log_loss
from training.pipeline import train_pipeline
from training.select import scale_of_mean

SHIPPED = Path(__file__).resolve().parent.parent / "training" / "model.yaml"


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
    for criterion in ("log_loss", "brier"):
        chose_logistic, info = fit_calibrator(raw, logistic, "auto", criterion=criterion)
        assert chose_logistic.method == "platt" and set(info[f"cv_{criterion}"]) == {"isotonic", "platt", "beta"}
        chose_step, info = fit_calibrator(raw, step, "auto", criterion=criterion)
        assert chose_step.method == "isotonic"
        assert info[f"cv_{criterion}"]["isotonic"] < info[f"cv_{criterion}"]["platt"]


def test_beta_calibration_fits_tails_of_different_slopes_and_stays_monotone() -> None:
    from training.calibration import Calibrator

    rng = np.random.default_rng(5)
    raw = rng.normal(-1, 1.5, 20_000)
    q = _sigmoid(raw)
    truth = _sigmoid(2.0 * np.log(q) - 0.5 * np.log(1 - q) + 0.5)  # steep among good risks, flat among bad
    y = (rng.random(len(raw)) < truth).astype(np.int8)
    chosen, info = fit_calibrator(raw, y, "auto")
    assert chosen.method == "beta" and info["cv_log_loss"]["beta"] < info["cv_log_loss"]["platt"]
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


def _step_with_a_quiet_tail(seed: int = 1, n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """A step in risk at raw = 1 over a long tail of very rare defaults: isotonic's steps fit the jump (the lowest
    Brier) but put near-zero PDs where the rare defaults fall (a high log-loss); beta has the lowest log-loss."""
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=n)
    pd_ = np.clip(np.where(raw > 1.0, 0.15, 0.002) * np.exp(0.3 * raw), 0, 0.99)
    return raw, (rng.random(n) < pd_).astype(np.int8)


def _rule(scores: dict[str, float]) -> str:
    """`auto`'s rule, spelled out: the better of Platt and beta (beta only when strictly lower), isotonic only when
    lower than that by more than 0.5%."""
    smooth = "beta" if scores["beta"] < scores["platt"] else "platt"
    return "isotonic" if scores["isotonic"] < 0.995 * scores[smooth] else smooth


def test_auto_chooses_by_the_declared_criterion_where_brier_and_log_loss_disagree() -> None:
    raw, y = _step_with_a_quiet_tail()
    by_log_loss, info_ll = fit_calibrator(raw, y, "auto", criterion="log_loss")
    by_brier, info_b = fit_calibrator(raw, y, "auto", criterion="brier")
    assert (by_log_loss.method, by_brier.method) == ("beta", "isotonic")  # the data makes the criteria disagree
    assert info_ll["criterion"] == "log_loss" and info_b["criterion"] == "brier"
    for info in (info_ll, info_b):
        assert info["method"] == _rule(info[f"cv_{info['criterion']}"])  # argmin of the declared criterion only
        assert list(info["cv_brier"]) == list(info["cv_log_loss"]) == list(calibration.METHODS)
    # the figures are the same whichever criterion decides: only the choice follows it
    assert info_ll["cv_brier"] == info_b["cv_brier"] and info_ll["cv_log_loss"] == info_b["cv_log_loss"]
    assert info_b["cv_brier"]["isotonic"] < 0.995 * min(info_b["cv_brier"]["platt"], info_b["cv_brier"]["beta"])
    assert info_ll["cv_log_loss"]["beta"] < min(info_ll["cv_log_loss"]["platt"], info_ll["cv_log_loss"]["isotonic"])
    assert fit_calibrator(raw, y, "auto")[1] == info_ll  # log-loss unless told


def test_the_default_criterion_is_log_loss_in_code_and_in_the_shipped_configuration(tmp_path: Path) -> None:
    assert TrainConfig().calibration_criterion == "log_loss"
    assert load_config().calibration_criterion == "log_loss"
    bare = tmp_path / "bare.yaml"
    bare.write_text("seed: 3\n", encoding="utf-8")  # nothing said: log-loss
    assert load_config(bare).calibration_criterion == "log_loss"
    brier_file = tmp_path / "brier.yaml"
    brier_file.write_text(SHIPPED.read_text(encoding="utf-8").replace("calibration_criterion: log_loss",
                                                                      "calibration_criterion: brier"), encoding="utf-8")
    assert load_config(brier_file).calibration_criterion == "brier"


@pytest.mark.parametrize("value", ["auc", "logloss", "Brier", "[brier]"])
def test_an_unknown_calibration_criterion_is_refused_naming_the_file(tmp_path: Path, value: str) -> None:
    text = SHIPPED.read_text(encoding="utf-8")
    assert "\ncalibration_criterion: log_loss" in text
    path = tmp_path / "model.yaml"
    path.write_text(text.replace("\ncalibration_criterion: log_loss", f"\ncalibration_criterion: {value}"),
                    encoding="utf-8")
    with pytest.raises(ConfigError, match="calibration_criterion must be log_loss or brier") as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: ")
    with pytest.raises(ValueError, match="calibration criterion"):
        fit_calibrator(np.zeros(10), np.r_[np.zeros(5), np.ones(5)], "auto", criterion=value)


def test_the_log_loss_of_an_isotonic_step_at_zero_is_that_of_the_floor_pd_not_infinite() -> None:
    floor_cost = -(np.log(PD_FLOOR) + np.log1p(-PD_FLOOR)) / 2  # a default at PD 0, a repayment at PD 0
    assert log_loss(np.array([1, 0]), np.array([0.0, 0.0]), PD_FLOOR) == pytest.approx(floor_cost, rel=1e-12)
    assert log_loss(np.array([0, 1]), np.array([0.25, 0.5])) == pytest.approx(-(np.log(0.75) + np.log(0.5)) / 2)
    rng = np.random.default_rng(8)
    raw = rng.normal(size=3000)
    y = (rng.random(3000) < np.where(raw > 0, 0.3, 0.0)).astype(np.int8)
    y[np.argmin(raw)] = 1  # a default below every other row: isotonic fitted without it gives it PD 0
    _, info = fit_calibrator(raw, y, "auto")
    assert all(np.isfinite(v) for v in info["cv_log_loss"].values())
    assert info["cv_log_loss"]["isotonic"] < -np.log(PD_FLOOR)  # bounded by the floor


def test_a_fixed_method_records_no_criterion_and_no_figures() -> None:
    raw, y = _step_with_a_quiet_tail()
    chosen, info = fit_calibrator(raw, y, "platt", criterion="brier")
    assert chosen.method == "platt"
    assert info == {"method": "platt", "criterion": None, "cv_brier": {}, "cv_log_loss": {}, "rows": len(y)}


def test_training_calibrates_by_the_configured_criterion_and_measures_candidates_by_brier(tmp_path: Path,
                                                                                         monkeypatch) -> None:
    """The pipeline's final calibrator uses the configured criterion, and the model card records it with both
    figures of every method; a candidate's Brier figure (training.select) is of its best-Brier calibration whatever
    the criterion, so the selection is the same under either."""
    import training.pipeline
    import training.select

    rng = np.random.default_rng(4)
    n = 1200
    income, overdue = rng.lognormal(3, 0.6, n), rng.poisson(0.7, n).astype(float)
    bad = (rng.random(n) < 1 / (1 + np.exp(-(-1.5 - 0.6 * (np.log(income) - 3) + 0.5 * overdue)))).astype(int)
    frame = pd.DataFrame({"income": income, "overdue": overdue, "bad": bad})
    base = dataclasses.replace(load_config(), monotone={}, cv_folds=3, seed=5, selection=SelectionConfig(
        tuple(c for c in load_config().selection.candidates if c.name in ("lightgbm depth 1", "lightgbm depth 2")),
        "auc", "brier", "se", (0.5,), "auto"))
    dataset = from_frame(frame, "bad", base)
    seen: dict[str, list[str]] = {"select": [], "final": []}

    def spy(where: str):  # type: ignore[no-untyped-def]
        def fit(raw, y, method="auto", seed=7, criterion="log_loss"):  # type: ignore[no-untyped-def]
            seen[where].append(criterion)
            return fit_calibrator(raw, y, method, seed, criterion)
        return fit

    monkeypatch.setattr(training.select, "fit_calibrator", spy("select"))
    monkeypatch.setattr(training.pipeline, "fit_calibrator", spy("final"))
    selections = []
    for criterion in ("brier", "log_loss"):
        for calls in seen.values():
            calls.clear()
        cfg = dataclasses.replace(base, calibration_criterion=criterion)
        result = train_pipeline(dataset, cfg, tmp_path / criterion, operator="test", write_report=False)
        card = result.metadata["calibration"]
        assert seen["final"] == [criterion] and seen["select"] and set(seen["select"]) == {"brier"}, seen
        assert card["criterion"] == criterion and card["method"] == _rule(card[f"cv_{criterion}"])
        assert set(card["cv_brier"]) == set(card["cv_log_loss"]) == set(calibration.METHODS)
        selections.append({k: v for k, v in result.metadata["selection"].items() if k != "candidates"})
        selections[-1]["figures"] = [{k: v for k, v in c.items() if k != "seconds"}
                                     for c in result.metadata["selection"]["candidates"]]
    assert selections[0] == selections[1]  # the candidates' figures and the pick do not depend on the criterion
