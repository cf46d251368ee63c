"""Benchmark the whole-region pre-credit run end to end, as a user runs it, against bare `predict` baselines.

    .venv/bin/python bench/batch.py [--firms 200000 1000000] [--cache DIR] [--dask-workers 1 2] [--reasons 0]

Per region size, in one run:
  * setup, cached in `--cache` (not timed): `indexloan demo-data --firms N --seed 7` + `indexloan ingest` into
    a SQLite store; a risk model trained on a 20,000-firm region (seed 7) used as `--model`; one untimed
    `indexloan batch precredit` that builds the date's feature snapshot (its time is printed apart);
  * baselines on N rows, in this process: a raw `predict` of the REFERENCE model (bench/reference.py: 200 trees
    x 31 leaves on 30 numeric features, LightGBM defaults otherwise) and of OUR CHAMPION model
    (`model.raw_score(model.encode(features))`: whatever its family), LightGBM's own threads;
  * end to end: `indexloan batch precredit --as-of ... --out ...` as a subprocess, timed from process start
    to exit (the output file and its summary are written before it exits), local engine (2 threads), then
    Dask with 1 and 2 worker processes (the CLI's own LocalCluster: its start-up is part of the time);
    rates, ratios to both baselines, peak RSS of the process tree, output sha256 (Dask must equal local),
    bytes driver -> workers per partition (the task) and what they were before (the rows, pickled);
  * a breakdown of the local run's seconds: interpreter + imports (a subprocess importing what the run
    imports), reading the snapshot's columns (in a fresh process, as the run does, and again in this one),
    `build_context`, and `run_precredit` (its own timer).
Figures depend on the machine's load: each line prints the load average; ratios are within one run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

# bench/ holds a module named http.py: keep the script's folder off the path so the standard library's wins
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.reference import reference_model, timed_predict  # noqa: E402

AS_OF = dt.date(2025, 12, 31)
MODEL_FIRMS = 20_000
SKLEARN_IMPORTS = "import sklearn.isotonic, sklearn.linear_model, sklearn.model_selection"
# what `indexloan batch precredit` imports, in its order: LightGBM first, without scikit-learn (predict_only)
RUN_IMPORTS = ("import api.cli.main, api.cli.batch; from training.predict_only import import_lightgbm_to_predict; "
               "import_lightgbm_to_predict(); import api.database, api.precredit.inputs, api.precredit.run, "
               "api.workbench.store, features.store.snapshot")
# the snapshot read as the run does it: in a fresh process (a process that has read it once reuses its memory,
# and faulting in fresh pages is most of a cold read's cost); prints the seconds
COLD_READ = (RUN_IMPORTS + "; import datetime, sys, time, sqlalchemy; from pathlib import Path; "
             "from api.precredit.inputs import load_model, run_columns; "
             "from features.store.snapshot import population_features; "
             "model = load_model(None, None, Path(sys.argv[2])); day = datetime.date.fromisoformat(sys.argv[3]); "
             "t0 = time.perf_counter(); "
             "population_features(day, sqlalchemy.create_engine(sys.argv[1]), run_columns(day, None, model)); "
             "print(time.perf_counter() - t0)")


class PeakRss:
    """Peak RSS (GB) of this process's children (the CLI and its Dask workers) while the block runs."""

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
            for p in me.children(recursive=True):
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
    return "load " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}  # subprocesses and Dask workers import this tree


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "api.cli.main", *args]


def ensure_store(cache: Path, firms: int, seed: int) -> str:
    """A SQLite store holding a demo region of `firms` enterprises (built once, kept in `cache`)."""
    base = cache / f"region-{firms}-seed{seed}"
    url = f"sqlite:///{base / 'store.db'}"
    if not (base / "ingested").exists():
        base.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        subprocess.run(cli("demo-data", "--out", str(base / "sources"), "--firms", str(firms), "--seed", str(seed)),
                       check=True, env=env(), stdout=subprocess.DEVNULL)
        subprocess.run(cli("ingest", str(base / "sources"), "--database-url", url), check=True, env=env(),
                       stdout=subprocess.DEVNULL)
        (base / "ingested").write_text("ok\n")
        print(f"setup: store of {firms:,} firms built in {time.perf_counter() - t0:.0f} s ({url})")
    return url


def ensure_model(cache: Path) -> Path:
    directory = cache / "model"
    if not (directory / "metadata.json").exists():
        from features.synthetic import generate_region
        from training.config import load_config
        from training.datasets import from_source_frames
        from training.pipeline import train_pipeline

        cfg = load_config()
        train_pipeline(from_source_frames(generate_region(MODEL_FIRMS, 7, AS_OF), cfg, AS_OF), cfg, directory,
                       operator="bench", write_report=False)
    return directory


def precredit(url: str, model: Path, out: Path, *args: str) -> tuple[float, float, dict]:
    """Seconds from process start to exit, peak RSS (GB) and the summary of one CLI run."""
    command = cli("batch", "precredit", "--as-of", AS_OF.isoformat(), "--out", str(out), "--model", str(model),
                  "--database-url", url, *args)
    with PeakRss() as peak:
        t0 = time.perf_counter()
        done = subprocess.run(command, env=env(), capture_output=True, text=True)
        seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"batch precredit failed ({done.returncode}): {done.stderr[-2000:]}")
    summary = json.loads(out.with_name(out.stem + ".summary.json").read_text(encoding="utf-8"))
    return seconds, peak.gb, summary


def breakdown(url: str, model_dir: Path, n: int) -> tuple[float, float, float, float, float, float, int]:
    """Interpreter + imports (a fresh process importing what the run imports), a process importing scikit-learn
    alone (which the run no longer imports), the store's freshness check, snapshot read (the check included) in
    a fresh process and again in this one, build_context seconds;
    the rows, pickled, of the first partition (what a task carried before workers read their own)."""
    import sqlalchemy as sa

    from api.precredit.inputs import build_context, load_model, run_columns
    from api.precredit.run import partition_bounds, payload_bytes
    from features.store.snapshot import fingerprint, population_features

    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", RUN_IMPORTS], check=True, env=env())
    t_imports = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", SKLEARN_IMPORTS], check=True, env=env())
    t_sklearn = time.perf_counter() - t0
    done = subprocess.run([sys.executable, "-c", COLD_READ, url, str(model_dir), AS_OF.isoformat()], check=True,
                          env=env(), capture_output=True, text=True)
    t_cold = float(done.stdout.split()[-1])
    engine = sa.create_engine(url)
    model = load_model(None, None, model_dir)
    t0 = time.perf_counter()
    with engine.connect() as conn:
        fingerprint(conn)
    t_check = time.perf_counter() - t0
    t0 = time.perf_counter()
    features = population_features(AS_OF, engine, run_columns(AS_OF, None, model))
    t_read = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, _, narrowed = build_context(features, AS_OF, None, 0, model)
    t_ctx = time.perf_counter() - t0
    a, b = partition_bounds(n, None)[0]
    return t_imports, t_sklearn, t_check, t_cold, t_read, t_ctx, payload_bytes(narrowed.sort_index().iloc[a:b])


def bench_region(firms: int, args: argparse.Namespace, reference, model_dir: Path) -> None:  # type: ignore[no-untyped-def]
    import sqlalchemy as sa

    from features.store.snapshot import population_features
    from training.serving import RiskModel

    url = ensure_store(args.cache, firms, args.seed)
    work = args.cache / f"runs-{firms}"
    work.mkdir(parents=True, exist_ok=True)
    seconds, _, summary = precredit(url, model_dir, work / "warm.parquet")  # builds the snapshot if needed
    n = summary["enterprises"]
    print(f"\n== {n:,} enterprises (store {url}); first run (snapshot built or checked) {seconds:.1f} s; "
          f"{load_avg()}")

    # baselines on the same number of rows, in this run
    t_ref = timed_predict(reference, n)
    model = RiskModel.from_dir(model_dir)
    features = population_features(AS_OF, sa.create_engine(url))
    t0 = time.perf_counter()
    X = model.encode(features)
    t_encode = time.perf_counter() - t0
    t_champ = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        model.raw_score(X)
        t_champ = min(t_champ, time.perf_counter() - t0)
    del X, features
    family = model.metadata.get("family", "?") if hasattr(model, "metadata") else "?"
    print(f"baselines ({n:,} rows): reference predict {t_ref:.2f} s = {n / t_ref:,.0f} rows/s; champion "
          f"({family}, {len(model.feature_names)} features) raw_score {t_champ:.2f} s = {n / t_champ:,.0f} rows/s "
          f"(+ encode {t_encode:.2f} s); {load_avg()}")

    runs = [("local", ["--workers", str(args.threads)])]
    runs += [(f"dask-{w}", ["--engine", "dask", "--workers", str(w)]) for w in args.dask_workers]
    digests: dict[str, str] = {}
    for name, extra in runs:
        out = work / f"{name}.parquet"
        seconds, rss, summary = precredit(url, model_dir, out, "--reasons", str(args.reasons), *extra)
        digests[name] = summary["output"]["sha256"]
        rate = n / seconds
        print(f"{name:7s} K={args.reasons}: {seconds:6.2f} s end to end = {rate:9,.0f} firms/s = "
              f"{rate * t_ref / n:.2f}x reference predict, {rate * t_champ / n:.2f}x champion predict; "
              f"run_precredit {summary['run']['seconds']:.2f} s; peak RSS {rss:.2f} GB; {load_avg()}")
        sent = summary["run"].get("sent_to_workers")
        if sent:
            workers = int(extra[-1])
            print(f"        driver -> workers per partition: {sent['task_bytes']:,} B (task, rows from "
                  f"{sent['rows_from']}); once per worker: context {sent['context_bytes'] / 1024**2:.2f} MB + "
                  f"columns {sent['columns_bytes']:,} B; per worker {rate / workers:,.0f} firms/s")
        if name == "local":
            t_imports, t_sklearn, t_check, t_cold, t_read, t_ctx, before = breakdown(url, model_dir, n)
            rest = seconds - summary["run"]["seconds"] - t_imports - t_cold - t_ctx
            print(f"        breakdown of {seconds:.2f} s: interpreter + imports {t_imports:.2f} (scikit-learn, not "
                  f"imported by the run, alone: {t_sklearn:.2f}), snapshot read {t_cold:.2f} (in a fresh "
                  f"process; {t_read:.2f} in one that read it before; the freshness check {t_check:.2f}), "
                  f"build_context {t_ctx:.2f}, run_precredit {summary['run']['seconds']:.2f} "
                  f"(of which champion raw_score ~{t_champ:.2f} + encode ~{t_encode:.2f}), the rest (store "
                  f"checks, model and product loading, summary) {rest:.2f}; before workers fetched their rows, "
                  f"a partition's task carried {before / 1024**2:.1f} MB")
    same = len(set(digests.values())) == 1
    print(f"outputs identical across engines: {'yes' if same else 'NO'} ({digests['local'][:16]}...)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--firms", type=int, nargs="+", default=[200_000, 1_000_000])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2, help="local engine threads")
    ap.add_argument("--reasons", type=int, default=0)
    ap.add_argument("--dask-workers", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--cache", type=Path, default=Path("/var/tmp/indexloan-bench-batch"),
                    help="stores, model and outputs (kept between runs)")
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    reference = reference_model(cache=args.cache)
    model_dir = ensure_model(args.cache)
    print(f"setup: reference model ({reference.num_trees()} trees) and champion model in "
          f"{time.perf_counter() - t0:.1f} s; {load_avg()}")
    for firms in args.firms:
        bench_region(firms, args, reference, model_dir)


if __name__ == "__main__":
    main()
