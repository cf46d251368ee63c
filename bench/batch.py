"""Benchmark the whole-region pre-credit run against bare LightGBM on the same rows.

    .venv/bin/python bench/batch.py [--firms 1000000] [--seed 7] [--partitions 20] [--skip-dask]

Setup (not timed as batch work): a synthetic region of `--firms` enterprises (features.synthetic +
point-in-time assembly, as bench/quote.py) and a risk model trained on a 20,000-firm region (seed 7).
Then, in one process on the same rows:
  * baseline: `spec.encode` once, then bare `booster.predict(X, raw_score=True)` and
    `booster.predict(X, pred_contrib=True)` rows/s (LightGBM's own threads, all cores);
  * batch: `build_context` (plans, per_mu rank calibration on the region) + `run_precredit` (fingerprint,
    partitions, engine, PD, reasons, part files, assembled output file, summary), all five products,
    K=0 and K=3 on the local engine (2 threads), and K=0 on Dask with 1 and 2 worker processes;
  * peak resident memory of the process tree (this process + Dask workers), sampled every 50 ms.

With `--store URL` (a store filled by `indexloan demo-data` + `indexloan ingest`) the features are the
date's feature snapshot (`population_features`, read twice: building and reading the snapshot), and the
Dask runs read their partitions from the snapshot file. Dask runs use a cluster started beforehand (its
start is reported apart), so the rates are the workers' own; printed per run: bytes sent driver -> workers
per partition now (the task description) and before this change (the partition's rows, pickled, as
`client.scatter` sent them), the context sent once per worker, and what comes back (before: the part
file's bytes; now: an index and a size).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

# bench/ holds a module named http.py: keep the script's folder off the path so the standard library's wins
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.precredit.inputs import build_context  # noqa: E402
from api.precredit.run import RunOptions, partition_bounds, payload_bytes, run_precredit  # noqa: E402
from bench.quote import AS_OF, features_frame  # noqa: E402  (the same region setup as the engine benchmark)

MODEL_FIRMS = 20_000


class PeakRss:
    """Peak RSS (GB) of this process and its children while the block runs."""

    def __enter__(self) -> PeakRss:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):  # a worker that just exited
                    total += p.memory_info().rss
            self.peak = max(self.peak, total)
            self._stop.wait(0.05)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def gb(self) -> float:
        return self.peak / 1024**3


def load_avg() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def train_model(directory: Path):  # type: ignore[no-untyped-def]
    from features.synthetic import generate_region
    from training.config import load_config
    from training.datasets import from_source_frames
    from training.pipeline import train_pipeline
    from training.serving import RiskModel

    if not (directory / "metadata.json").exists():
        cfg = load_config()
        train_pipeline(from_source_frames(generate_region(MODEL_FIRMS, 7, AS_OF), cfg, AS_OF), cfg, directory,
                       operator="bench", write_report=False)
    return RiskModel.from_dir(directory)


@contextlib.contextmanager
def dask_cluster(engine: str, workers: int):  # type: ignore[no-untyped-def]
    """A LocalCluster of `workers` processes started before the timed run (None for the local engine)."""
    if engine != "dask":
        yield None
        return
    from dask.distributed import LocalCluster

    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None, silence_logs=40)
    print(f"dask: LocalCluster of {workers} worker(s) started in {time.perf_counter() - t0:.1f} s (not timed)")
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


def print_transfer(summary: dict, narrowed, options: RunOptions, workers: int, total: float,  # type: ignore[no-untyped-def]
                   n: int) -> None:
    sent = summary["run"]["sent_to_workers"]
    bounds = partition_bounds(len(narrowed), options.partitions)
    rows = sorted(narrowed.index)  # the run's order
    a, b = bounds[0]
    before = payload_bytes(narrowed.loc[rows[a:b]])
    parts = sorted(options.resolved_work_dir().glob("part-*.arrow"))
    back = sum(p.stat().st_size for p in parts) / max(1, len(parts))
    print(f"  bytes driver -> workers per partition ({b - a:,} rows, rows from {sent['rows_from']}): now "
          f"{sent['task_bytes']:,} B (task) vs before {before / 1024**2:,.1f} MB (rows) = "
          f"{before / sent['task_bytes']:,.0f}x less; once per worker: context "
          f"{sent['context_bytes'] / 1024**2:.2f} MB + columns "
          f"{sent['columns_bytes']:,} B; workers -> driver per partition: now an index and a size, before "
          f"{back / 1024**2:.1f} MB (part file)")
    print(f"  per-worker rate ({workers} worker(s)): {n / total / workers:,.0f} enterprises/s per worker")
    import shutil

    shutil.rmtree(options.resolved_work_dir(), ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--firms", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--partitions", type=int, default=None, help="default: one per 100,000 enterprises")
    ap.add_argument("--threads", type=int, default=2, help="local engine threads")
    ap.add_argument("--skip-dask", action="store_true")
    ap.add_argument("--work", type=Path, default=None, help="output directory (default: a temporary one)")
    ap.add_argument("--store", default=None, help="SQLAlchemy URL of an ingested store: features from its snapshot")
    ap.add_argument("--dask-workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-batch-"))
    work.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    model = train_model(work / "model")
    t_model = time.perf_counter() - t0
    source = None
    t0 = time.perf_counter()
    if args.store:
        import sqlalchemy as sa

        from features.store.snapshot import population_features, snapshot_path

        engine = sa.create_engine(args.store)
        population_features(AS_OF, engine)
        t_build = time.perf_counter() - t0
        t0 = time.perf_counter()
        features = population_features(AS_OF, engine)
        source = snapshot_path(engine, AS_OF)
        print(f"store: snapshot built in {t_build:.1f} s, read in {time.perf_counter() - t0:.2f} s ({source})")
    else:
        features = features_frame(args.firms, args.seed, "synthetic")
    t_feat = time.perf_counter() - t0
    n = len(features)
    print(f"setup: model ({model.booster.num_trees()} trees, {len(model.feature_names)} features) in {t_model:.1f} s; "
          f"{n:,} enterprises x {features.shape[1]} columns in {t_feat:.1f} s; peak RSS so far "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2:.2f} GB; {load_avg()}")

    # bare LightGBM on the same rows, as the model sees them
    t0 = time.perf_counter()
    X = model.encode(features)
    t_encode = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.booster.predict(X, raw_score=True)
    t_predict = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.booster.predict(X, pred_contrib=True)
    t_contrib = time.perf_counter() - t0
    del X
    gc.collect()
    rate_predict, rate_contrib = n / t_predict, n / t_contrib
    print(f"baseline: encode {t_encode:.2f} s; booster.predict {t_predict:.2f} s = {rate_predict:,.0f} rows/s; "
          f"pred_contrib {t_contrib:.2f} s = {rate_contrib:,.0f} rows/s; {load_avg()}")

    runs = [("local", 0, args.threads), ("local", 3, args.threads)]
    if not args.skip_dask:
        runs += [("dask", 0, w) for w in args.dask_workers]
    outputs: dict[str, str] = {}
    for engine, k, workers in runs:
        out = work / f"precredit-{engine}-{workers}-k{k}.parquet"
        gc.collect()
        with PeakRss() as peak, dask_cluster(engine, workers) as scheduler:
            t0 = time.perf_counter()
            ctx, describe, narrowed = build_context(features, AS_OF, None, k, model)
            t_ctx = time.perf_counter() - t0
            options = RunOptions(out, engine, scheduler, args.partitions, workers, keep_parts=engine == "dask")
            result = run_precredit(ctx, narrowed, describe, options, source=source)
            total = time.perf_counter() - t0
        outputs[f"{engine}-{workers}-k{k}"] = result.summary["output"]["sha256"]
        if engine == "dask":
            print_transfer(result.summary, narrowed, options, workers, total, n)
        del narrowed, ctx
        rate = n / total
        base, base_name = (rate_predict, "booster.predict") if k == 0 else (rate_contrib, "pred_contrib")
        label = f"{engine} ({workers} {'threads' if engine == 'local' else 'worker processes'})"
        print(f"batch {label}, K={k}: {total:.2f} s (context {t_ctx:.2f} s, run {result.summary['run']['seconds']:.2f}"
              f" s, {result.summary['run']['partitions']} partitions) = {rate:,.0f} enterprises/s = "
              f"{rate / base:.2f}x {base_name}; output {out.stat().st_size / 1024**2:.0f} MB; "
              f"peak RSS (process tree) {peak.gb:.2f} GB; {load_avg()}")
    if not args.skip_dask:
        k0 = {v for key, v in outputs.items() if key.endswith("-k0")}
        print(f"dask output identical to local (K=0, output sha256 of {len(outputs) - 1} runs): {len(k0) == 1}")
    for code, p in result.summary["products"].items():
        print(f"  {code:16s} eligible {p['eligible_share']:6.1%}  "
              f"total limit CNY {p['total_limit_cny'] / 1e8:,.1f} 亿  "
              f"median rate {p['rates'].get('p50_pct', float('nan'))}%")
    print(f"peak RSS of this process (incl. generation): "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2:.2f} GB")


if __name__ == "__main__":
    main()
