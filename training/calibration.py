"""Probability calibration of the booster's raw score: isotonic or Platt, chosen on validation.

The calibrator is stored as plain numbers (method, thresholds, coefficients), so applying it is a
numpy expression: fast on one row, identical on a batch, and no fitted estimator is unpickled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from training.metrics import brier

PD_FLOOR = 1e-4  # isotonic steps can reach 0 or 1; no enterprise gets an exact 0% or 100% PD


@dataclass(frozen=True)
class Calibrator:
    method: str  # "isotonic" | "platt"
    x: np.ndarray = field(default_factory=lambda: np.empty(0))  # isotonic: raw-score thresholds
    y: np.ndarray = field(default_factory=lambda: np.empty(0))  # isotonic: PD at the thresholds
    a: float = 1.0  # platt: PD = 1 / (1 + exp(-(a * raw + b)))
    b: float = 0.0

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float64)
        if self.method == "isotonic":
            p = np.interp(raw, self.x, self.y)
        else:
            p = 1.0 / (1.0 + np.exp(-(self.a * raw + self.b)))
        return np.clip(p, PD_FLOOR, 1.0 - PD_FLOOR)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "x": self.x, "y": self.y, "a": self.a, "b": self.b}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibrator:
        return cls(str(data["method"]), np.asarray(data["x"], np.float64), np.asarray(data["y"], np.float64),
                   float(data["a"]), float(data["b"]))


def _fit(method: str, raw: np.ndarray, y: np.ndarray) -> Calibrator:
    if method == "isotonic":
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
        return Calibrator("isotonic", np.asarray(iso.X_thresholds_, np.float64), np.asarray(iso.y_thresholds_,
                                                                                             np.float64))
    lr = LogisticRegression(C=1e6, max_iter=1000).fit(raw.reshape(-1, 1), y)
    return Calibrator("platt", a=float(lr.coef_[0, 0]), b=float(lr.intercept_[0]))


def fit_calibrator(raw: np.ndarray, y: np.ndarray, method: str = "auto", seed: int = 7
                   ) -> tuple[Calibrator, dict[str, Any]]:
    """Fit on the validation fold; with `auto`, pick the method with the lower cross-validated Brier."""
    raw = np.asarray(raw, np.float64)
    y = np.asarray(y, np.int8)
    scores: dict[str, float] = {}
    if method == "auto":
        folds = min(5, int(min(y.sum(), len(y) - y.sum())))
        if folds >= 2:
            splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
            for candidate in ("isotonic", "platt"):
                pred = np.empty(len(y))
                for fit_idx, test_idx in splitter.split(raw, y):
                    pred[test_idx] = _fit(candidate, raw[fit_idx], y[fit_idx])(raw[test_idx])
                scores[candidate] = brier(y, pred)
            # Platt keeps the ranking (no ties); it wins unless isotonic is clearly better.
            method = "isotonic" if scores["isotonic"] < scores["platt"] * 0.995 else "platt"
        else:
            method = "platt"
    calibrator = _fit(method, raw, y)
    return calibrator, {"method": method, "cv_brier": scores, "rows": int(len(y))}
