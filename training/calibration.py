"""Probability calibration of the model's raw score (log-odds): Platt, beta or isotonic, chosen on validation.

- platt: PD = sigmoid(a x raw + b): one slope for both tails.
- beta (Kull et al. 2017, on q = sigmoid(raw)): logit PD = a ln q - b ln(1 - q) + c with a, b >= 0: the two
  tails get their own slopes (a model can be too steep among good risks and too flat among bad ones), and the
  PD stays non-decreasing in the raw score, so the monotone constraints still hold.
- isotonic: a non-decreasing step function (creates ties).

`auto` chooses by each method's cross-validated `criterion` (`calibration_criterion` in the model
configuration): `log_loss` (the default: the likelihood the Platt and beta calibrators are fitted by) or `brier`;
both figures of every method are recorded either way.

The calibrator is stored as plain numbers (method, thresholds, coefficients), so applying it is a
numpy expression: fast on one row, identical on a batch, and no fitted estimator is unpickled.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from training.metrics import brier, log_loss

METHODS = ("isotonic", "platt", "beta")  # the candidates of `auto`, in the order the metadata lists them
CRITERIA = ("log_loss", "brier")  # what `auto` chooses by (the first is the default)
PD_FLOOR = 1e-4  # isotonic steps can reach 0 or 1; no enterprise gets an exact 0% or 100% PD


@dataclass(frozen=True)
class Calibrator:
    method: str  # "isotonic" | "platt" | "beta"
    x: np.ndarray = field(default_factory=lambda: np.empty(0))  # isotonic: raw-score thresholds
    y: np.ndarray = field(default_factory=lambda: np.empty(0))  # isotonic: PD at the thresholds
    a: float = 1.0  # platt: PD = 1 / (1 + exp(-(a * raw + b))); beta: the slopes of ln q and -ln(1 - q)
    b: float = 0.0
    c: float = 0.0  # beta: the intercept

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float64)
        if self.method == "isotonic":
            p = np.interp(raw, self.x, self.y)
        elif self.method == "beta":
            log_q, log_1mq = _beta_logs(raw)
            p = 1.0 / (1.0 + np.exp(-(self.a * log_q - self.b * log_1mq + self.c)))
        else:
            p = 1.0 / (1.0 + np.exp(-(self.a * raw + self.b)))
        return np.clip(p, PD_FLOOR, 1.0 - PD_FLOOR)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "x": self.x, "y": self.y, "a": self.a, "b": self.b, "c": self.c}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibrator:
        return cls(str(data["method"]), np.asarray(data["x"], np.float64), np.asarray(data["y"], np.float64),
                   float(data["a"]), float(data["b"]), float(data.get("c", 0.0)))  # no c: before beta


def _beta_logs(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ln q and ln(1 - q) for q = sigmoid(raw), without overflow: -log(1 + e^-raw) and -log(1 + e^raw)."""
    return -np.logaddexp(0.0, -raw), -np.logaddexp(0.0, raw)


def _fit_beta(raw: np.ndarray, y: np.ndarray) -> Calibrator:
    """Logistic regression on (ln q, -ln(1 - q)); a negative slope is dropped and the other refitted (as in
    the beta calibration paper), so the map stays non-decreasing; both negative: Platt."""
    from sklearn.linear_model import LogisticRegression  # fitting only: applying a calibrator needs numpy alone

    log_q, log_1mq = _beta_logs(raw)
    features = np.column_stack([log_q, -log_1mq])
    keep = [0, 1]
    while keep:
        lr = LogisticRegression(C=1e6, max_iter=1000).fit(features[:, keep], y)
        coef = dict(zip(keep, lr.coef_[0], strict=True))
        negative = [k for k, v in coef.items() if v < 0]
        if not negative:
            return Calibrator("beta", a=float(coef.get(0, 0.0)), b=float(coef.get(1, 0.0)),
                              c=float(lr.intercept_[0]))
        keep = [k for k in keep if k != min(negative, key=lambda k: coef[k])]
    return _fit("platt", raw, y)


def _fit(method: str, raw: np.ndarray, y: np.ndarray) -> Calibrator:
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression

    if method == "isotonic":
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
        return Calibrator("isotonic", np.asarray(iso.X_thresholds_, np.float64), np.asarray(iso.y_thresholds_,
                                                                                             np.float64))
    if method == "beta":
        return _fit_beta(raw, y)
    lr = LogisticRegression(C=1e6, max_iter=1000).fit(raw.reshape(-1, 1), y)
    return Calibrator("platt", a=float(lr.coef_[0, 0]), b=float(lr.intercept_[0]))


def _cross_validated(raw: np.ndarray, y: np.ndarray, folds: int, seed: int) -> dict[str, dict[str, float]]:
    """Each method's Brier and log-loss on its out-of-fold PDs (the PDs as served: within [PD_FLOOR, 1 - PD_FLOOR],
    so an isotonic step at 0 or 1 costs a bounded log-loss). The fits are independent and spend most of their time
    in numpy and compiled code, which release the GIL: they run on a thread per core, each fit computing exactly
    what it would alone."""
    import sklearn.isotonic  # noqa: F401 - imported once here, not under the import lock in every thread
    import sklearn.linear_model  # noqa: F401
    from sklearn.model_selection import StratifiedKFold

    splits = list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(raw, y))
    tasks = [(method, fit_idx, test_idx) for method in METHODS for fit_idx, test_idx in splits]

    def out_of_fold(task: tuple[str, np.ndarray, np.ndarray]) -> np.ndarray:
        method, fit_idx, test_idx = task
        return _fit(method, raw[fit_idx], y[fit_idx])(raw[test_idx])

    with ThreadPoolExecutor(max_workers=min(len(tasks), os.cpu_count() or 1)) as pool:
        predictions = list(pool.map(out_of_fold, tasks))
    pred = {method: np.empty(len(y)) for method in METHODS}
    for (method, _, test_idx), p in zip(tasks, predictions, strict=True):
        pred[method][test_idx] = p
    return {"brier": {method: brier(y, pred[method]) for method in METHODS},
            "log_loss": {method: log_loss(y, pred[method], PD_FLOOR) for method in METHODS}}


def fit_calibrator(raw: np.ndarray, y: np.ndarray, method: str = "auto", seed: int = 7,
                   criterion: str = "log_loss") -> tuple[Calibrator, dict[str, Any]]:
    """Fit on the validation fold; with `auto`, pick the method with the lower cross-validated `criterion`
    (log_loss or brier): the better of Platt and beta (beta only when strictly lower), then isotonic only if it
    beats that by more than 0.5%."""
    from threadpoolctl import threadpool_limits

    if criterion not in CRITERIA:
        raise ValueError(f"calibration criterion must be one of {', '.join(CRITERIA)}, not {criterion!r}")
    # one BLAS thread: OpenBLAS splits the solver's dot products by its thread count, which moved the Platt
    # coefficients' last bits between 1 and 2 threads; the same data gives the same calibrator on any machine size
    with threadpool_limits(limits=1, user_api="blas"):
        return _fit_calibrator(np.asarray(raw, np.float64), np.asarray(y, np.int8), method, seed, criterion)


def choose_method(scores: dict[str, float]) -> str:
    """The method of `auto` from each method's cross-validated loss (lower is better): Platt and beta keep the
    ranking (no ties), so the better of the two (beta only when strictly lower); isotonic only when clearly better."""
    smooth = "beta" if scores["beta"] < scores["platt"] else "platt"
    return "isotonic" if scores["isotonic"] < scores[smooth] * 0.995 else smooth


def _fit_calibrator(raw: np.ndarray, y: np.ndarray, method: str, seed: int, criterion: str
                    ) -> tuple[Calibrator, dict[str, Any]]:
    scores: dict[str, dict[str, float]] = {"brier": {}, "log_loss": {}}
    auto = method == "auto"
    if auto:
        folds = min(5, int(min(y.sum(), len(y) - y.sum())))
        if folds >= 2:
            scores = _cross_validated(raw, y, folds, seed)
            method = choose_method(scores[criterion])
        else:
            method = "platt"
    calibrator = _fit(method, raw, y)
    return calibrator, {"method": method, "criterion": criterion if auto else None, "cv_brier": scores["brier"],
                        "cv_log_loss": scores["log_loss"], "rows": int(len(y))}
