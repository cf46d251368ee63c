"""The one top-k rule: the `k` largest values of each row, largest first, ties to the lower position.

Used by the quote's top reasons (scoring.engine), the batch's columnar reasons (scoring.columnar) and the
risk model's risk factors (training.serving), so a row's order is the same through every door.
"""

from __future__ import annotations

import numpy as np


def _top_k(values: np.ndarray, k: int, overwrite: bool) -> tuple[np.ndarray, np.ndarray]:
    """Positions and values of the `k` largest per row, by `k` argmax passes (argmax returns the first maximum,
    so ties go to the lower position: the first `k` of a stable descending argsort)."""
    work = values if overwrite else values.astype(np.float64, copy=True)
    rows = np.arange(len(work))
    top = np.empty((len(work), min(k, work.shape[1])), dtype=np.intp)
    picked = np.empty(top.shape, dtype=np.float64)
    for m in range(top.shape[1]):
        top[:, m] = np.argmax(work, axis=1)
        picked[:, m] = work[rows, top[:, m]]
        work[rows, top[:, m]] = -np.inf
    return top, picked


def top_k_stable(values: np.ndarray, k: int, overwrite: bool = False) -> np.ndarray:
    """Column positions of the `k` largest values per row of a 2-D array, largest first, ties to the lower
    position. `overwrite`: `values` (float64) may be used as scratch space."""
    return _top_k(values, k, overwrite)[0]


def top_k_positive(values: np.ndarray, k: int, overwrite: bool = False) -> np.ndarray:
    """`top_k_stable`, with -1 where the value is not above zero (no points lost, no contribution)."""
    top, picked = _top_k(values, k, overwrite)
    return np.where(picked > 0, top, -1)
