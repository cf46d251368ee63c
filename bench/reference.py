"""The issue's reference model: what a risk team gets from LightGBM's defaults, as a bare baseline.

200 trees x 31 leaves (LightGBM's default `num_leaves`) on 30 numeric features, trained on synthetic data
(fixed seed), every other parameter LightGBM's default. Benchmarks time a raw `predict` of it on the same
number of rows as the work they measure, in the same run.
"""

from __future__ import annotations

import time
from pathlib import Path

import lightgbm as lgb
import numpy as np

FEATURES = 30
TREES = 200
LEAVES = 31
TRAIN_ROWS = 50_000


def synthetic_rows(rows: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, FEATURES))


def reference_model(seed: int = 7, cache: Path | None = None) -> lgb.Booster:
    """The reference booster; trained once and kept in `cache` (a folder) when given."""
    saved = None if cache is None else cache / f"reference-model-seed{seed}.txt"
    if saved is not None and saved.exists():
        return lgb.Booster(model_file=str(saved))
    X = synthetic_rows(TRAIN_ROWS, seed)
    logit = X[:, :10] @ np.linspace(1.0, 0.1, 10) + 0.5 * X[:, 10] * X[:, 11]
    y = (np.random.default_rng(seed + 1).random(TRAIN_ROWS) < 1 / (1 + np.exp(-logit))).astype(int)
    # one training thread: the model does not depend on it, and OpenMP threads spinning on a busy 2-core machine
    # take minutes; predictions are timed with LightGBM's own threads
    params = {"objective": "binary", "num_leaves": LEAVES, "verbosity": -1, "seed": seed, "num_threads": 1}
    booster = lgb.train(params, lgb.Dataset(X, y), num_boost_round=TREES)
    assert booster.num_trees() == TREES
    if saved is not None:
        saved.parent.mkdir(parents=True, exist_ok=True)
        booster.save_model(str(saved))
    return booster


def timed_predict(booster: lgb.Booster, rows: int, seed: int = 11, repeat: int = 2) -> float:
    """Best-of-`repeat` seconds of a raw `booster.predict` (LightGBM's own threads) on `rows` rows."""
    X = synthetic_rows(rows, seed)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        booster.predict(X)
        best = min(best, time.perf_counter() - t0)
    return best
