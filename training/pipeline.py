"""The whole training run: split, encode, fit, calibrate, evaluate, report, write the artifacts."""

from __future__ import annotations

import dataclasses
import datetime as dt
import getpass
import json
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import joblib
import lightgbm as lgb
import numpy as np

from training import artifacts as art
from training import metrics as m
from training.calibration import Calibrator, fit_calibrator
from training.config import TrainConfig
from training.datasets import Dataset
from training.encoding import FeatureSpec, RowColumns, build_spec
from training.families import Scorer, load_scorer
from training.fit import Progress, Split, fit_booster, split_dataset
from training.inputs import describe_inputs

T = TypeVar("T")
SHAP_SAMPLE_ROWS = 2000  # rows explained for the report's SHAP plots
REPO_DIR = Path(__file__).resolve().parent.parent


def code_version() -> str:
    """`git describe` of the checkout when there is one, else the installed package version."""
    try:
        done = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], cwd=REPO_DIR,
                              capture_output=True, text=True, timeout=5, check=False)
        if done.returncode == 0 and done.stdout.strip():
            return f"git:{done.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        from importlib.metadata import version

        return f"indexloan {version('indexloan')}"
    except Exception:  # noqa: BLE001 - not installed: still train, say so
        return "unknown"


def default_operator() -> str:
    from features.settings import get_settings

    return get_settings().operator or getpass.getuser()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass
class TrainResult:
    out_dir: Path
    metadata: dict[str, Any]
    metrics: dict[str, Any]
    booster: lgb.Booster | None  # the LightGBM part of the model (None for a scorecard)
    calibrator: Calibrator
    spec: FeatureSpec
    split: Split
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    scorer: Scorer | None = None  # the model as served (training.families)


def evaluate_samples(y: np.ndarray, p: np.ndarray, split: Split, ranking: m.Ranking | None = None
                     ) -> dict[str, Any]:
    """Each sample's summary, read off one ranking of every row's PD (`ranking`: of `p`, when already made)."""
    ranking = ranking or m.Ranking(p)
    out: dict[str, Any] = {name: m.summary(y[idx], p[idx], ranking.within(idx)) for name, idx in
                           (("train", split.train), ("valid", split.valid), ("oot", split.oot), ("dev", split.dev))}
    out["psi_dev_oot"] = m.psi(p[split.dev], p[split.oot])
    return out


def train_pipeline(ds: Dataset, cfg: TrainConfig, out_dir: str | Path, operator: str | None = None,
                   progress: Progress | None = None, write_report: bool = True, split: Split | None = None,
                   engine: str = "local", scheduler: str | None = None) -> TrainResult:
    """Train, calibrate and evaluate; write model.txt, calibrator.joblib, metrics.json, report.html, metadata.

    `split` fixes the samples (e.g. cross-validation folds in a benchmark); by default the data is
    split out-of-time by date (or by a random holdout when undated).
    """
    started = _now()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    marks: list[tuple[str, float]] = []

    def step(stage: str, done: int, total: int) -> None:
        if not marks or marks[-1][0] != stage:
            marks.append((stage, time.perf_counter()))
        if progress is not None:
            progress(stage, done, total)

    step("splitting", 0, 1)
    split = split or split_dataset(ds, cfg)
    spec = build_spec(ds.X, ds.categorical, cfg.monotone, rows=split.train)
    notes = list(ds.notes)
    unknown = sorted(set(cfg.monotone) - set(spec.names))
    if unknown:
        notes.append(f"monotone constraints for features not in the data (ignored): {', '.join(unknown)}")
    step("encoding", 0, 1)
    X = spec.encode(ds.X)
    y = ds.y
    checksum = ds.source.get("file_sha256") or ds.checksum()
    model_path = out / art.MODEL_FILE
    selection: dict[str, Any] | None = None
    if engine == "local" and cfg.selection.candidates:
        from training.select import select_model

        selected = select_model(X, y, split, spec, cfg, step)
        mode, selection = selected.folds.mode, selected.report
        family = selected.scorer.family
        model_path.write_text(selected.scorer.to_text(), encoding="utf-8")
        winner = selected.winner
        params = {k: v for k, v in (winner.params or {}).items() if k != "monotone_constraints"}
        fold_iterations = winner.iterations if family != "scorecard" else []
        trees = selected.scorer.num_trees
        best_iteration, iterations_run = trees, (max(winner.grown) if mode == "holdout" and winner.grown
                                                 else trees)
        oof_rows, oof_raw = selected.cal_rows, selected.cal_raw
    else:  # Dask, or no candidates configured: the LightGBM of `params`
        fitted = fit_booster(X, y, split, spec, cfg, step, engine, scheduler)
        mode, family = fitted.mode, "lightgbm"
        fitted.booster.save_model(model_path, num_iteration=fitted.best_iteration)
        params = {k: v for k, v in fitted.params.items() if k != "monotone_constraints"}
        fold_iterations, best_iteration, iterations_run = fitted.fold_iterations, fitted.best_iteration, \
            fitted.iterations_run
        oof_rows, oof_raw = fitted.valid_rows, fitted.valid_raw
        if engine == "local":
            notes.append("model-family selection: no candidates configured; LightGBM with `params`")
        else:
            notes.append(f"model-family selection: not run with the {engine} engine; LightGBM with `params`")

    # Serve exactly what was evaluated: reload the saved file, predict with it.
    scorer = load_scorer(family, model_path.read_text(encoding="utf-8"))
    booster = scorer.booster
    step("calibrating", 0, 1)
    rng = np.random.default_rng(cfg.seed)
    sample = np.sort(rng.choice(split.oot, size=min(SHAP_SAMPLE_ROWS, len(split.oot)), replace=False))
    contrib = scorer.contributions(X[sample])
    base_value = float(contrib[0, -1]) if len(sample) else scorer.base_value(len(spec.names))
    # Every row's score: LightGBM on its own threads, without the GIL. Meanwhile this thread draws the report's
    # explanation plots (matplotlib: one core), which need no score and do not call the model.
    explained = None
    if write_report:
        from training import report as rp  # matplotlib and shap only when a report is drawn

        importance = rp.importance_frame(spec, booster, contrib)  # reads the booster: before the scoring starts
        scoring = _start(scorer.raw_score, X)
        explained = rp.draw_explanations(spec, X[sample], contrib, importance)
    else:
        scoring = _start(scorer.raw_score, X)
    raw = scoring.result()
    if mode == "cv":  # out-of-fold scores: every development row, never seen by its scorer
        cal_rows, cal_raw = oof_rows, oof_raw
    else:  # the validation fold, scored by the model as saved
        cal_rows, cal_raw = split.valid, raw[split.valid]
    calibrator, calibration = fit_calibrator(cal_raw, y[cal_rows], cfg.calibration, cfg.seed,
                                              cfg.calibration_criterion)
    joblib.dump(calibrator.to_dict(), out / art.CALIBRATOR_FILE)
    p = calibrator(raw)
    step("evaluating", 0, 1)
    # per-feature statistics of the development rows (numpy, a column at a time, each reader its own buffer) run
    # on threads of their own while this one evaluates and draws the report
    inputs = _start(describe_inputs, ds, spec, RowColumns(X, split.dev), scorer)
    reference = _start(feature_reference, X, split.dev, spec.names)
    ranking = m.Ranking(p)
    metrics = evaluate_samples(y, p, split, ranking)
    if mode == "cv":
        metrics["train"] = metrics["dev"]
        metrics["valid"] = m.summary(y[cal_rows], calibrator(cal_raw))
    metrics["rows"] = int(ds.rows)
    if not ds.segments.empty:
        metrics["segments_oot"] = m.segment_metrics(ds.segments.iloc[split.oot], y[split.oot],
                                                    p[split.oot]).to_dict("records")
    finished = _now()
    metadata: dict[str, Any] = {
        "format": art.FORMAT,
        "family": family,
        "features": spec.to_json(),
        "base_value": base_value,
        "best_iteration": best_iteration,
        "iterations_run": iterations_run,
        "num_trees": scorer.num_trees,
        "params": params if family != "scorecard" else {},
        "monotone": {n: d for n, d in zip(spec.names, spec.monotone, strict=True) if d},
        "calibration": calibration,
        "validation": {"mode": mode, "folds": cfg.cv_folds if mode == "cv" else None,
                       "fold_best_iterations": fold_iterations,
                       "rows": int(len(cal_rows))},
        "selection": selection,
        "blend_weight": getattr(scorer, "weight", None),
        "scorecard": ({"config": dataclasses.asdict(cfg.scorecard), "intercept": scorer.scorecard.intercept,
                       "features": scorer.scorecard.describe(spec.names)}
                      if hasattr(scorer, "scorecard") else None),
        "inputs": inputs.result(),
        "training": {
            "source": ds.source,
            "time_window": list(ds.time_window()),
            "rows": int(ds.rows),
            "data_checksum": checksum,
            "split": split.describe(),
            "engine": engine,
            "notes": notes,
            "config": {"seed": cfg.seed, "num_boost_round": cfg.num_boost_round,
                       "early_stopping_rounds": cfg.early_stopping_rounds,
                       "validation_fraction": cfg.validation_fraction, "oot_share": cfg.oot_share,
                       "validation": cfg.validation, "cv_folds": cfg.cv_folds, "cv_max_rows": cfg.cv_max_rows,
                       "cv_final": cfg.cv_final},
        },
        "code_version": code_version(),
        "operator": operator or default_operator(),
        "started_at": started,
        "finished_at": finished,
        "libraries": _libraries(family, selection),
        "metrics": {k: v for k, v in metrics.items() if k != "segments_oot"},
        "score_reference": m.score_reference(p[split.dev]),
        # "feature_reference" follows, once the report is drawn
    }
    metrics = clean_json(metrics)
    metadata = clean_json(metadata)
    (out / art.METRICS_FILE).write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    if explained is not None:
        from training import report as rp

        step("report", 0, 1)
        html = rp.render_report(metadata, metrics, y, p, split, explained, ds.segments, ranking)
    else:
        html = "<!doctype html><title>report skipped</title><p>report not requested</p>"
    (out / art.REPORT_FILE).write_text(html, encoding="utf-8")
    metadata["feature_reference"] = clean_json(reference.result())  # for live PSI (monitoring)
    metadata["artifacts"] = {name: art.sha256_file(out / name) for name in
                             (art.MODEL_FILE, art.CALIBRATOR_FILE, art.REPORT_FILE)}
    (out / art.METADATA_FILE).write_text(json.dumps(metadata, indent=2, ensure_ascii=False, allow_nan=False)
                                         + "\n", encoding="utf-8")
    step("done", 1, 1)
    timings = {stage: round(marks[i + 1][1] - t, 3) for i, (stage, t) in enumerate(marks[:-1])}
    return TrainResult(out, metadata, metrics, booster, calibrator, spec, split, timings, scorer)


def feature_reference(X: np.ndarray, rows: np.ndarray, names: tuple[str, ...]) -> dict[str, dict[str, list[float]]]:
    """`metrics.feature_reference` of `X[rows]`, one gathered column at a time."""
    columns = RowColumns(X, rows)
    out: dict[str, dict[str, list[float]]] = {}
    for j, name in enumerate(names):
        out |= m.feature_reference(columns.column(j)[:, None], [name])
    return out


def _start(fn: Callable[..., T], *args: Any) -> Future[T]:
    """`fn(*args)` on a thread of its own: numpy work that mostly releases the GIL, overlapping the caller's."""
    pool = ThreadPoolExecutor(1)
    try:
        return pool.submit(fn, *args)
    finally:
        pool.shutdown(wait=False)  # the thread ends with its one task


def _libraries(family: str, selection: dict[str, Any] | None) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"lightgbm": lgb.__version__, "numpy": np.__version__}
    if selection is not None or family != "lightgbm":
        for name in ("optbinning", "scikit-learn", "scipy"):
            try:
                out[name] = version(name)
            except PackageNotFoundError:
                out[name] = "not installed"
    return out


def clean_json(value: Any) -> Any:
    """Plain JSON values: numpy scalars to Python, NaN/inf to null (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return [clean_json(v) for v in value.tolist()]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if value is None or isinstance(value, str):
        return value
    return str(value)
