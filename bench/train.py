"""Risk-model benchmarks: tree shape vs explanation cost and AUC; the full pipeline on 1,000,000 rows.

    .venv/bin/python bench/train.py                 # every part
    .venv/bin/python bench/train.py --part baseline # all features vs the five product indices (demo region)
    .venv/bin/python bench/train.py --part selection # the shipped model-family selection on the demo region
    .venv/bin/python bench/train.py --part shape    # tree shape: OOT AUC vs one-row TreeSHAP time
    .venv/bin/python bench/train.py --part scale --rows 1000000

Part "selection" trains the shipped configuration (model-family selection by inner cross-validation) on
the demo region and prints every candidate's inner-CV figures, the winner and why, its out-of-time figures,
the training time, and the chosen model's one-row cost on the quote path: raw score, contributions (the
explanation) and the whole `assess` (encode + PD + contributions + texts), median of single-thread calls.
Part "shape" trains on the demo region (20,000 firms, seed 7) with several tree shapes (LightGBM only, no
family selection) and prints the
out-of-time AUC (with a paired bootstrap interval of the difference to the chosen shape) and the time of
one row's `pred_contrib` (the quote's explanation). Part "scale" builds synthetic loans from several
regions (point-in-time features, cached as Parquet under var/bench/), runs the whole pipeline (dataset
from the file, training with early stopping, calibration, evaluation, HTML report) and a bare
`lgb.train` with the same parameters and the same number of rounds on the same rows.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

_BENCH = Path(__file__).resolve().parent
# the repository instead of bench/ first on the path: bench/http.py would shadow the standard library's http
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

from features.synthetic import generate_region  # noqa: E402
from training import metrics as m  # noqa: E402
from training.config import TrainConfig, load_config  # noqa: E402
from training.datasets import from_file, from_source_frames  # noqa: E402
from training.fit import lgb_feature_names  # noqa: E402
from training.pipeline import train_pipeline  # noqa: E402
from training.serving import RiskModel  # noqa: E402

AS_OF = dt.date(2026, 1, 1)
SHAPES = (  # (label, max_depth, num_leaves)
    ("unlimited depth, 31 leaves", -1, 31),
    ("depth 6, 31 leaves", 6, 31),
    ("depth 5, 16 leaves", 5, 16),
    ("depth 4, 12 leaves", 4, 12),
    ("depth 3, 8 leaves", 3, 8),
    ("depth 2, 4 leaves (configured)", 2, 4),
)


def per_call_ms(fn, repeat: int = 400) -> float:  # type: ignore[no-untyped-def]
    """Median milliseconds of one call of `fn` (after one warm-up call), single thread."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def _paired_auc_diff(y: np.ndarray, a: np.ndarray, b: np.ndarray, reps: int = 300) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(reps):
        idx = rng.integers(0, len(y), len(y))
        diffs.append(m.auc(y[idx], a[idx]) - m.auc(y[idx], b[idx]))
    return float(np.quantile(diffs, 0.025)), float(np.quantile(diffs, 0.975))


def shape_study(cfg: TrainConfig) -> None:
    print("== tree shape: out-of-time AUC vs one-row explanation time (demo region, 20,000 firms) ==")
    ds = from_source_frames(generate_region(20_000, 7), cfg, AS_OF)
    rows = []
    preds = {}
    for label, depth, leaves in SHAPES:
        shaped = dataclasses.replace(cfg, params={**cfg.params, "max_depth": depth, "num_leaves": leaves},
                                     selection=dataclasses.replace(cfg.selection, candidates=()))
        with tempfile.TemporaryDirectory() as tmp:
            result = train_pipeline(ds, shaped, tmp, operator="bench", write_report=False)
            model = RiskModel.from_dir(tmp)
            X = model.encode(ds.X.iloc[result.split.oot])
            one = X[:1]
            row_frame = ds.X.iloc[result.split.oot[:1]]
            contrib_ms = per_call_ms(lambda: model.contributions(one))  # noqa: B023
            assess_ms = per_call_ms(lambda: model.assess(row_frame), 200)  # noqa: B023
            y = ds.y[result.split.oot]
            preds[label] = (y, model.predict(X))
            rows.append({"shape": label, "trees": model.booster.num_trees(), "oot_auc": result.metrics["oot"]["auc"],
                         "oot_ks": result.metrics["oot"]["ks"], "oot_brier": result.metrics["oot"]["brier"],
                         "pred_contrib_1row_ms": contrib_ms, "assess_1row_ms": assess_ms})
    chosen = next(label for label, *_ in SHAPES if "configured" in label)
    y, base = preds[chosen]
    for row in rows:
        lo, hi = _paired_auc_diff(y, preds[row["shape"]][1], base)
        row["auc_diff_vs_configured_95ci"] = f"[{lo:+.4f}, {hi:+.4f}]"
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    # The reference point: exactly 200 trees of 31 leaves (no early stopping), by depth.
    print("\nreference: exactly 200 trees of 31 leaves (one-row pred_contrib, median ms)")
    from training.encoding import build_spec

    spec = build_spec(ds.X, ds.categorical, cfg.monotone)
    X_all = spec.encode(ds.X)
    one = X_all[:1]
    for depth in (-1, 6, 5, 4):
        params = {**cfg.lgb_params(), "max_depth": depth, "num_leaves": 31,
                  "monotone_constraints": list(spec.monotone)}
        booster = lgb.train(params, lgb.Dataset(X_all, ds.y, feature_name=lgb_feature_names(spec.names),
                                                categorical_feature=spec.categorical_indices), 200)
        ms = per_call_ms(lambda: booster.predict(one, pred_contrib=True, num_threads=1))  # noqa: B023
        print(f"  max_depth {depth:>2}: {booster.num_trees()} trees, {ms:.3f} ms")


def selection_study(cfg: TrainConfig) -> None:
    print("== model-family selection (shipped configuration) on the demo region, 20,000 firms ==")
    ds = from_source_frames(generate_region(20_000, 7), cfg, AS_OF)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = train_pipeline(ds, cfg, tmp, operator="bench", write_report=True)
        seconds = time.perf_counter() - start
        model = RiskModel.from_dir(tmp)
        sel = result.metadata["selection"]
        rows = [{"candidate": c["name"], "family": c["family"], "AUC": c["auc"], "AUC sd": c["auc_sd"], "KS": c["ks"],
                 "Brier": c["brier"], "trees": c.get("trees"), "weight": c.get("weight"), "seconds": c["seconds"]}
                for c in sel["candidates"]]
        print(f"inner cross-validation: {sel['mode']}, {sel['folds']} folds, {sel['rows']:,} development rows; "
              f"criterion {sel['criterion']}, tie-break {sel['tie_break']} within {sel['tolerance']}")
        print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        print(f"winner: {sel['winner']} ({model.family}) - {sel['reason']}")
        o = result.metrics["oot"]
        print(f"out-of-time ({o['rows']:,} loans, {o['defaults']} defaults): AUC {o['auc']:.4f}  KS {o['ks']:.4f}  "
              f"Brier {o['brier']:.5f}; calibration {result.metadata['calibration']['method']}")
        stages = ", ".join(f"{k} {v:.1f}" for k, v in _grouped(result.timings).items())
        print(f"training with selection and report: {seconds:.1f} s ({stages}; {_load()})")
        _shipped_ratio(result, ds, seconds)
        X = model.encode(ds.X.iloc[result.split.oot])
        one = X[:1]
        row_frame = ds.X.iloc[result.split.oot[:1]]
        raw_ms = per_call_ms(lambda: model.raw_score(one))
        contrib_ms = per_call_ms(lambda: model.contributions(one))
        assess_ms = per_call_ms(lambda: model.assess(row_frame), 200)
        trees = model.booster.num_trees() if model.booster is not None else 0
        print(f"chosen model one-row cost (median, single thread): raw score {raw_ms:.3f} ms, contributions "
              f"(explanation) {contrib_ms:.3f} ms, assess (encode + PD + contributions + texts) {assess_ms:.3f} ms; "
              f"{trees} trees, {len(model.feature_names)} features")


def _shipped_ratio(result: Any, ds: Any, seconds: float) -> None:
    """The shipped configuration against one bare `lgb.train` of the final model's LightGBM parameters on the
    development rows, with the mean of the folds' early-stopped rounds (what one refit would grow)."""
    meta = result.metadata
    if not meta["params"]:
        print("shipped configuration: the winner is the scorecard (no LightGBM part): no bare lgb.train to compare")
        return
    folds = meta["validation"]["fold_best_iterations"] or [meta["best_iteration"]]
    rounds = max(1, round(float(np.mean(folds))))
    params = meta["params"] | {"monotone_constraints": list(result.spec.monotone)}
    dev = result.split.dev
    X = result.spec.encode(ds.X)[dev]
    bare = _bare_seconds(params, X, ds.y[dev], lgb_feature_names(result.spec.names), result.spec.categorical_indices,
                         rounds)
    print(f"shipped configuration (model-family selection on): pipeline {seconds:.1f} s vs bare lgb.train of the final "
          f"model's params on the {len(dev):,} development rows ({rounds} rounds = the folds' mean) {bare:.2f} s "
          f"-> {seconds / bare:.1f}x ({_load()}); per candidate: "
          + ", ".join(f"{c['name']} {c['seconds']:.1f} s" for c in meta["selection"]["candidates"]))


def _grouped(timings: dict[str, float]) -> dict[str, float]:
    """Per-candidate stages (`name: fold k/n`) added up per candidate."""
    out: dict[str, float] = {}
    for stage, t in timings.items():
        key = stage.split(": fold")[0]
        out[key] = out.get(key, 0.0) + t
    return out


def baseline_study(cfg: TrainConfig) -> None:
    print("== demo region: model on all point-in-time features vs on the five product indices alone ==")
    from training.baseline import five_index_dataset

    frames = generate_region(20_000, 7)
    for label, ds in (("all features", from_source_frames(frames, cfg, AS_OF)),
                      ("five product indices", five_index_dataset(frames, cfg, AS_OF))):
        with tempfile.TemporaryDirectory() as tmp:
            o = train_pipeline(ds, cfg, tmp, operator="bench", write_report=False).metrics["oot"]
        print(f"  {label:<22} out-of-time ({o['rows']:,} loans, {o['defaults']} defaults): AUC {o['auc']:.4f}  "
              f"KS {o['ks']:.4f}  Brier {o['brier']:.5f}")


def _loans_file(rows: int, firms_per_region: int) -> Path:
    """Synthetic loans with point-in-time features, from as many regions (seeds) as needed."""
    path = Path("var/bench") / f"loans_{rows}.parquet"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = load_config()
    parts, total, seed = [], 0, 101
    while total < rows:
        start = time.perf_counter()
        ds = from_source_frames(generate_region(firms_per_region, seed), cfg, AS_OF)
        frame = ds.X.assign(loan_date=ds.dates.to_numpy(), default_12m=ds.y)
        parts.append(frame)
        total += len(frame)
        print(f"  region seed {seed}: {len(frame):,} loans ({time.perf_counter() - start:.1f} s)", flush=True)
        seed += 1
    data = pd.concat(parts, ignore_index=True).iloc[:rows]
    data.to_parquet(path, index=False)
    return path


def _load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def _bare_seconds(params: dict[str, Any], X: np.ndarray, y: np.ndarray, names: list[str], cats: list[int],
                  rounds: int) -> float:
    """A bare `lgb.train`: Dataset construction from the numpy matrix and `rounds` boosting rounds, timed."""
    start = time.perf_counter()
    lgb.train(params, lgb.Dataset(X, y, feature_name=names, categorical_feature=cats), num_boost_round=rounds)
    return time.perf_counter() - start


def _warm_memory(gigabytes: float) -> float:
    """Touch (then free) this much fresh memory. On this VM the first touch of a page the guest never used
    costs about 4 s per GB (the host backs it then), a later one almost nothing: without this the side that
    runs first and holds more memory (the pipeline: the file's columns, the encoded matrix) pays the host's
    page backing as well as its own work. Returns the seconds it took."""
    start = time.perf_counter()
    block = np.empty(int(gigabytes * (1 << 30)) // 8)
    block[::512] = 0.0  # one write per 4 KiB page
    del block
    return time.perf_counter() - start


def scale_study(cfg: TrainConfig, rows: int, firms_per_region: int, bare_all: bool, warm_gb: float,
                validation: str | None = None) -> None:
    print(f"== full pipeline vs bare lgb.train on {rows:,} synthetic loans (LightGBM of `params`, no family "
          "selection, so both grow the same model) ==")
    cfg = dataclasses.replace(cfg, selection=dataclasses.replace(cfg.selection, candidates=()))
    if validation is not None:  # e.g. holdout on fewer rows than cv_max_rows, to iterate faster than on 1M
        cfg = dataclasses.replace(cfg, validation=validation)
    path = _loans_file(rows, firms_per_region)
    if warm_gb > 0:
        print(f"memory warmed: {warm_gb:g} GB touched and freed in {_warm_memory(warm_gb):.1f} s (not timed)")
    print(f"before: {_load()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        ds = from_file(path, "default_12m", cfg, date_col="loan_date",
                       segment_cols=("industry_section", "registry.district"))
        t_data = time.perf_counter() - start
        result = train_pipeline(ds, cfg, tmp, operator="bench")
        t_pipeline = time.perf_counter() - start
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1 << 20)
    print(f"after the pipeline: {_load()}; peak memory of the process {peak_gb:.1f} GB", flush=True)
    rounds = result.metadata["iterations_run"]  # every tree the pipeline grew (early stopping's patience too)
    params = result.metadata["params"] | {"monotone_constraints": list(result.spec.monotone)}
    X = result.spec.encode(ds.X)
    y = ds.y
    names = lgb_feature_names(result.spec.names)
    cats = result.spec.categorical_indices
    # exactly the rows the pipeline grows trees on, in the same encoding; their copy out of X is not timed
    X_train, y_train = X[result.split.train], y[result.split.train]
    t_bare_train = _bare_seconds(params, X_train, y_train, names, cats, rounds)
    print(f"after the bare fit: {_load()}", flush=True)
    oot = result.metrics["oot"]
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())
    print(f"pipeline stages: dataset from file {t_data:.1f} s, {stages}")
    print(f"rows {ds.rows:,}; features {len(result.spec.names)}; training rows {len(result.split.train):,} "
          f"(validation {len(result.split.valid):,}, out-of-time {len(result.split.oot):,}); rounds grown {rounds} "
          f"(kept {result.metadata['best_iteration']})")
    print(f"out-of-time: AUC {oot['auc']:.4f}  KS {oot['ks']:.4f}  Brier {oot['brier']:.5f}")
    print(f"full pipeline (read file + dataset {t_data:.1f} s, split, encode, train with early stopping, predict "
          f"every row, calibrate, evaluate, report, artifacts): {t_pipeline:.1f} s")
    print(f"bare lgb.train (Dataset from the numpy matrix + {rounds} rounds, same params) on the pipeline's "
          f"{len(X_train):,} training rows: {t_bare_train:.1f} s -> pipeline / bare = {t_pipeline / t_bare_train:.2f}x")
    if result.metadata["validation"]["mode"] == "cv":
        print("note: development fits cross-validation here (<= cv_max_rows rows): the pipeline grew "
              f"{result.metadata['validation']['folds']} fold models and a final one, the bare side one model; "
              "the comparison is meant for holdout sizes (--rows 1000000)")
    if bare_all:
        t_bare_all = _bare_seconds(params, X, y, names, cats, rounds)
        print(f"bare lgb.train, same params and rounds, all {ds.rows:,} rows: {t_bare_all:.1f} s "
              f"-> pipeline / bare = {t_pipeline / t_bare_all:.2f}x ({_load()})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("baseline", "selection", "shape", "scale", "all"), default="all")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--firms-per-region", type=int, default=200_000)
    parser.add_argument("--warm-gb", type=float, default=8.0,
                        help="scale: GB of memory touched before timing (0: none; see _warm_memory)")
    parser.add_argument("--validation", choices=("auto", "holdout", "cv"), default=None,
                        help="scale: the pipeline's validation mode (default: the config's)")
    parser.add_argument("--bare-all", action="store_true",
                        help="scale: also time a bare lgb.train on every row (out-of-time included)")
    args = parser.parse_args()
    cfg = load_config()
    if args.part in ("baseline", "all"):
        baseline_study(cfg)
    if args.part in ("selection", "all"):
        selection_study(cfg)
    if args.part in ("shape", "all"):
        shape_study(cfg)
    if args.part in ("scale", "all"):
        scale_study(cfg, args.rows, args.firms_per_region, args.bare_all, args.warm_gb, args.validation)


if __name__ == "__main__":
    main()
