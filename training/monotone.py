"""Monotone directions inferred from development rows, for numeric inputs the configuration does not declare.

A LightGBM candidate with `monotone: inferred` constrains, besides the declared directions, every undeclared
numeric input whose rank association with the outcome is clear and consistent on the rows it is trained on:

- clear: Spearman's rank correlation with the outcome has a two-sided p-value below `alpha`;
- consistent: no half of the input's range has a rank correlation of the opposite sign that is significant
  one-sided at `alpha`; the halves are the rows below the median value, at or below it, at or above it and
  above it (with and without the median value: on a coded input with few values, a turn right next to the
  median, or among rare codes beyond it, is seen by one of them). A peak, a valley or a rare top or bottom
  value that goes the other way leaves the input unconstrained.

Declared directions always win (a feature named under `monotone:`, even with 0, is never inferred), and
categorical inputs are never constrained (their codes have no order). Inside the model-family selection the
directions are inferred on each inner fold's training rows only, so the candidate's figures are honest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import spearmanr

ALPHA = 0.01


@dataclass(frozen=True)
class Inferred:
    direction: int  # +1: a higher value never lowers PD; -1: never raises it
    rho: float  # Spearman's rank correlation with the outcome
    p: float  # its two-sided p-value
    rows: int  # rows with a value

    def describe(self) -> dict[str, Any]:
        return {"direction": self.direction, "spearman": round(self.rho, 6), "p_value": float(f"{self.p:.3g}"),
                "rows": self.rows}


def _association(v: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    if len(v) < 3 or v[0] == v[-1] or y.min() == y.max():  # v sorted: constant; or one outcome only
        return 0.0, 1.0
    rho, p = spearmanr(v, y)
    return (0.0, 1.0) if not np.isfinite(rho) else (float(rho), float(p))


def infer_one(values: np.ndarray, y: np.ndarray, alpha: float = ALPHA) -> Inferred | None:
    """The direction of one numeric input on these rows, or None when it is not clear and consistent."""
    seen = np.isfinite(values)
    order = np.argsort(values[seen], kind="stable")
    v, yy = values[seen][order], np.asarray(y)[seen][order].astype(np.float64)
    rho, p = _association(v, yy)
    if not (p < alpha and rho != 0):
        return None
    direction = 1 if rho > 0 else -1
    median = v[len(v) // 2]
    for half in (v < median, v <= median, v >= median, v > median):
        part_rho, part_p = _association(v[half], yy[half])
        if part_rho * direction < 0 and part_p / 2 < alpha:  # one-sided: a significant turn the other way
            return None
    return Inferred(direction, rho, p, int(seen.sum()))


def infer_directions(X: np.ndarray, y: np.ndarray, rows: np.ndarray, names: tuple[str, ...],
                     open_features: frozenset[str], alpha: float = ALPHA) -> dict[int, Inferred]:
    """Inferred directions (by feature position) on `rows`, for the features of `open_features` (numeric and
    undeclared) only."""
    out: dict[int, Inferred] = {}
    yy = y[rows]
    for j, name in enumerate(names):
        if name in open_features:
            found = infer_one(X[rows, j], yy, alpha)
            if found is not None:
                out[j] = found
    return out


def with_inferred(declared: tuple[int, ...], inferred: dict[int, Inferred]) -> list[int]:
    """The constraints a model is grown with: the declared ones, and inferred ones where none is declared."""
    return [d if d else (inferred[j].direction if j in inferred else 0) for j, d in enumerate(declared)]
