"""Samples (out-of-time split, validation fold) and the LightGBM fit with early stopping."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import lightgbm as lgb
import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split

from training.config import TrainConfig
from training.datasets import Dataset
from training.encoding import FeatureSpec
from training.errors import DataError
from training.metrics import log_loss

Progress = Callable[[str, int, int], None]
_JSON_SPECIAL = re.compile(r'[",:\[\]{}\s]')  # LightGBM refuses these in feature names


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # row positions used to grow trees
    valid: np.ndarray  # early stopping + calibration
    oot: np.ndarray  # out-of-time (or random holdout when the data has no dates)
    kind: str  # "out_of_time" | "random_holdout"
    oot_from: str | None = None  # first date of the out-of-time sample

    @cached_property  # read by every stage after the fit: sorted once
    def dev(self) -> np.ndarray:
        dev = np.sort(np.r_[self.train, self.valid])
        dev.flags.writeable = False  # shared by every reader
        return dev

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "oot_from": self.oot_from, "train_rows": int(len(self.train)),
                "valid_rows": int(len(self.valid)), "oot_rows": int(len(self.oot))}


def _stratify(y: np.ndarray) -> np.ndarray | None:
    counts = np.bincount(y, minlength=2)
    return y if counts.min() >= 2 else None


def split_dataset(ds: Dataset, cfg: TrainConfig) -> Split:
    """Out-of-time: the latest loan dates holding about `oot_share` of rows; else a random holdout."""
    rows = np.arange(ds.rows)
    kind, oot_from = "random_holdout", None
    dev = oot = None
    if ds.dates is not None and ds.dates.nunique() >= 2:
        days = ds.dates.to_numpy()
        counts = ds.dates.value_counts().sort_index(ascending=False)
        taken, cutoff = 0, None
        for day, n in counts.iloc[:-1].items():  # keep at least the earliest date for development
            taken += n
            cutoff = day
            if taken >= cfg.oot_share * ds.rows:
                break
        oot_mask = days >= np.datetime64(cutoff)
        dev, oot = rows[~oot_mask], rows[oot_mask]
        kind, oot_from = "out_of_time", str(np.datetime64(cutoff, "D"))
    else:
        dev, oot = train_test_split(rows, test_size=cfg.oot_share, random_state=cfg.seed, stratify=_stratify(ds.y))
    train, valid = train_test_split(dev, test_size=cfg.validation_fraction, random_state=cfg.seed,
                                    stratify=_stratify(ds.y[dev]))
    split = Split(np.sort(train), np.sort(valid), np.sort(oot), kind, oot_from)
    for name, part in (("training", split.train), ("validation", split.valid), (split.kind.replace("_", "-"), oot)):
        counts = np.bincount(ds.y[part], minlength=2)
        if counts.min() == 0:
            missing = "defaults" if counts[1] == 0 else "non-defaults"
            raise DataError(f"the {name} sample ({len(part)} rows) has no {missing}: need more rows or outcomes")
    return split


def lgb_feature_names(names: tuple[str, ...]) -> list[str]:
    """Names LightGBM accepts (no JSON punctuation), unique; the spec keeps the real names."""
    out: list[str] = []
    for i, name in enumerate(names):
        clean = _JSON_SPECIAL.sub("_", name) or f"f{i}"
        out.append(clean if clean not in out else f"{clean}__{i}")
    return out


@dataclass
class Fitted:
    booster: lgb.Booster
    best_iteration: int  # trees kept in the model
    iterations_run: int  # trees grown in the (last) early-stopped fit
    params: dict[str, Any]
    mode: str = "holdout"  # "holdout" | "cv"
    valid_rows: np.ndarray | None = None  # rows whose out-of-sample raw score is in valid_raw
    valid_raw: np.ndarray | None = None  # raw scores for calibration (out-of-fold; Dask: validation fold)
    fold_iterations: list[int] = field(default_factory=list)


def validation_mode(cfg: TrainConfig, dev_rows: int) -> str:
    if cfg.validation != "auto":
        return cfg.validation
    return "cv" if dev_rows <= cfg.cv_max_rows else "holdout"


def _early_stopped(params: dict[str, Any], X: np.ndarray, y: np.ndarray, fit_rows: np.ndarray,
                   stop_rows: np.ndarray, spec: FeatureSpec, cfg: TrainConfig, stage: str,
                   progress: Progress | None) -> tuple[lgb.Booster, int, int]:
    names = lgb_feature_names(spec.names)
    cats = spec.categorical_indices
    train = lgb.Dataset(X[fit_rows], y[fit_rows], feature_name=names, categorical_feature=cats, free_raw_data=True)
    valid = lgb.Dataset(X[stop_rows], y[stop_rows], reference=train, feature_name=names, categorical_feature=cats,
                        free_raw_data=True)
    state = {"iterations": 0}

    def report(env: lgb.callback.CallbackEnv) -> None:
        state["iterations"] = env.iteration + 1
        if progress is not None:
            progress(stage, env.iteration + 1, env.end_iteration)

    booster = lgb.train(
        params, train, num_boost_round=cfg.num_boost_round, valid_sets=[valid], valid_names=["valid"],
        callbacks=[lgb.early_stopping(cfg.early_stopping_rounds, verbose=False), report],
    )
    return booster, int(booster.best_iteration or state["iterations"]), int(state["iterations"])


def _best_iteration(booster: lgb.Booster, X: np.ndarray, y: np.ndarray, patience: int) -> int:
    """What `lgb.early_stopping` on the validation log-loss would keep: trees are added one at a time to
    the validation scores, and the search stops `patience` rounds after the last improvement."""
    raw = np.zeros(len(X))
    best, best_loss = 1, np.inf
    for k in range(booster.num_trees()):
        raw += booster.predict(X, raw_score=True, start_iteration=k, num_iteration=1)
        loss = log_loss(y, 1.0 / (1.0 + np.exp(-raw)))
        if loss < best_loss:
            best, best_loss = k + 1, loss
        elif k + 1 - best >= patience:
            break
    return best


def _fit_dask(params: dict[str, Any], X: np.ndarray, y: np.ndarray, split: Split, spec: FeatureSpec,
              cfg: TrainConfig, progress: Progress | None, scheduler: str | None) -> Fitted:
    """LightGBM's own Dask interface (`DaskLGBMClassifier`): the training rows are spread over the
    workers (a LocalCluster on loopback unless `scheduler` names a cluster). Dask training has no early
    stopping, so all `num_boost_round` trees are grown and the validation fold picks how many to keep."""
    import dask.array as da
    from dask.distributed import Client, LocalCluster

    cluster = None if scheduler else LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                                  host="127.0.0.1", dashboard_address=None)
    client = Client(scheduler or cluster)
    try:
        workers = max(1, len(client.scheduler_info()["workers"]))
        rows = -(-len(split.train) // workers)
        X_train = da.from_array(X[split.train], chunks=(rows, X.shape[1]))
        y_train = da.from_array(y[split.train], chunks=(rows,))
        if progress is not None:
            progress("training (dask)", 0, cfg.num_boost_round)
        threads = {"num_threads", "n_jobs"}  # Dask gives each worker its own threads
        model = lgb.DaskLGBMClassifier(client=client, n_estimators=cfg.num_boost_round,
                                       **{k: v for k, v in params.items() if k not in threads})
        model.fit(X_train, y_train, feature_name=lgb_feature_names(spec.names),
                  categorical_feature=spec.categorical_indices)
        booster = model.booster_
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    best = _best_iteration(booster, X[split.valid], y[split.valid], cfg.early_stopping_rounds)
    raw = booster.predict(X[split.valid], raw_score=True, num_iteration=best)
    return Fitted(booster, best, booster.num_trees(), params, "holdout", split.valid, raw)


def fit_booster(X: np.ndarray, y: np.ndarray, split: Split, spec: FeatureSpec, cfg: TrainConfig,
                progress: Progress | None = None, engine: str = "local", scheduler: str | None = None) -> Fitted:
    """Binary LightGBM with the declared monotone constraints and early stopping.

    holdout: trees grow on `split.train`, stop on `split.valid`, whose scores then fit the calibrator.
    cv (small and medium data): k folds of the development rows give the number of trees and
    out-of-fold scores for the calibrator; the final model then learns from every development row,
    so no fifth of a small sample is spent on validation only.
    """
    params = {**cfg.lgb_params(), "monotone_constraints": list(spec.monotone), "num_threads": 0}
    if engine == "dask":  # holdout only: the validation fold chooses the trees and fits the calibrator
        return _fit_dask(params, X, y, split, spec, cfg, progress, scheduler)
    dev = split.dev
    if validation_mode(cfg, len(dev)) == "holdout":
        booster, best, grown = _early_stopped(params, X, y, split.train, split.valid, spec, cfg, "training",
                                              progress)
        # no valid_raw: the pipeline scores the validation fold with the saved model (with every other row)
        return Fitted(booster, best, grown, params, "holdout", split.valid, None)
    folds = StratifiedKFold(n_splits=cfg.cv_folds, shuffle=True, random_state=cfg.seed)
    oof = np.empty(len(dev))
    iterations = []
    for k, (a, b) in enumerate(folds.split(dev, y[dev])):
        booster, best, _ = _early_stopped(params, X, y, dev[a], dev[b], spec, cfg,
                                          f"training fold {k + 1}/{cfg.cv_folds}", progress)
        oof[b] = booster.predict(X[dev[b]], raw_score=True, num_iteration=best)
        iterations.append(best)
    rounds = max(1, round(float(np.mean(iterations))))
    full = lgb.Dataset(X[dev], y[dev], feature_name=lgb_feature_names(spec.names),
                       categorical_feature=spec.categorical_indices, free_raw_data=True)

    def report(env: lgb.callback.CallbackEnv) -> None:
        if progress is not None:
            progress("training on all development rows", env.iteration + 1, env.end_iteration)

    booster = lgb.train(params, full, num_boost_round=rounds, callbacks=[report])
    return Fitted(booster, rounds, rounds, params, "cv", dev, oof, iterations)
