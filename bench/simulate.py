"""Benchmark the what-if simulation against a plain batch run of the same rows, and quote latency while a
newly approved product version is being loaded.

    .venv/bin/python bench/simulate.py [--firms 1000000] [--store-firms 20000] [--product tech_innovation]

Setup (not timed): a synthetic region of `--firms` enterprises (bench/quote.py's features_frame) and the risk
model of bench/batch.py (trained on a 20,000-firm region, cached in --work). Then, in one process:
  * batch: `build_context` + `run_precredit` for the one product, K=0, 2 threads (the plain pre-credit run);
  * simulation: `api.workbench.simulate.simulate` of a draft raising the product's A cut-off by 5 points (both
    versions through `score_rows`, the model once per row), then the HTML report; time and peak RSS of each;
  * reload: a `QuotingService` on a SQLite store of `--store-firms` firms quotes in a loop on one thread while
    a new version is approved (the state is rebuilt beside the served one and swapped in): quote latency
    percentiles before and during the rebuild, and how long the new version took to be served.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.batch import PeakRss, load_avg, train_model  # noqa: E402
from bench.quote import AS_OF, features_frame  # noqa: E402


def raised_a_cut(code: str, version: str, effective: dt.date, points: float = 5.0):  # type: ignore[no-untyped-def]
    from products.catalogue import DEFINITIONS_DIR, load_catalogue, parse_definition

    data = load_catalogue(DEFINITIONS_DIR)[code].model_dump(mode="json")
    data.update(version=version, effective_date=effective.isoformat())
    grades = data["grading"]["grades"]
    grades[0]["min_index"] = min(grades[0]["min_index"] + points, float(data["scale"]))
    return parse_definition(data)


def percentiles(values: list[float]) -> str:
    if not values:
        return "no quotes"
    ms = sorted(v * 1000 for v in values)
    q = statistics.quantiles(ms, n=100) if len(ms) > 1 else [ms[0]] * 99
    return f"n={len(ms)} p50 {q[49]:.2f} ms, p99 {q[98]:.2f} ms, max {ms[-1]:.2f} ms"


def bench_simulation(args: argparse.Namespace, work: Path) -> None:
    from api.precredit.inputs import build_context
    from api.precredit.run import RunOptions, run_precredit
    from api.workbench.report import render
    from api.workbench.simulate import simulate
    from products.catalogue import DEFINITIONS_DIR, load_catalogue

    t0 = time.perf_counter()
    features = features_frame(args.firms, args.seed, "synthetic")
    model = train_model(work / "model")
    gc.collect()
    print(f"setup: {len(features):,} firms, model with {model.booster.num_trees()} trees, "
          f"{time.perf_counter() - t0:.1f} s")

    with PeakRss() as peak:
        t0 = time.perf_counter()
        ctx, describe, narrowed = build_context(features, AS_OF, [args.product], 0, model)
        run_precredit(ctx, narrowed, describe, RunOptions(work / "batch.parquet", "local", None, None,
                                                           work_dir=work / "batch.parts", workers=2))
        t_batch = time.perf_counter() - t0
    print(f"plain batch run ({args.product}, K=0): {t_batch:.1f} s, {len(features) / t_batch:,.0f} rows/s, "
          f"peak RSS {peak.gb:.2f} GB")
    del ctx, narrowed
    gc.collect()

    draft = raised_a_cut(args.product, "bench", AS_OF)
    known = list(load_catalogue(DEFINITIONS_DIR).values())
    with PeakRss() as peak:
        t0 = time.perf_counter()
        sim = simulate(features, draft, known, AS_OF, model, 0.45)
        t_sim = time.perf_counter() - t0
        t0 = time.perf_counter()
        html = render(sim)
        t_report = time.perf_counter() - t0
    summary = sim.summary()["products"][args.product]
    print(f"simulation ({args.product}, before + after): {t_sim:.1f} s, {len(features) / t_sim:,.0f} rows/s, "
          f"ratio to the plain batch run {t_sim / t_batch:.2f}; report {t_report:.1f} s ({len(html) / 1e3:.0f} kB); "
          f"peak RSS {peak.gb:.2f} GB")
    print(f"  changed {summary['changed']:,} firms, grade_changed {summary['grade_changed']:,}")


def bench_reload(args: argparse.Namespace, work: Path) -> None:
    from api.database import migrate
    from api.quoting.service import QuotingService
    from api.workbench.store import ProductVersions
    from features.ingest import ingest_directory
    from features.synthetic import generate_region, write_region

    today = dt.date.today()
    region = work / "store-region"
    write_region(generate_region(args.store_firms, args.seed), region, "parquet")
    engine = migrate(f"sqlite:///{work / 'store.db'}")
    t0 = time.perf_counter()
    assert ingest_directory(engine, region, work / "quarantine").ok
    service = QuotingService(engine)
    products = service.products_for(today, None)
    codes = list(service.state(today).population.frame.index)
    print(f"reload setup: {len(codes):,} firms in SQLite, first state built, {time.perf_counter() - t0:.1f} s")
    for code in codes[:2000]:  # warm the blocks
        service.quote(code, today, products, None)

    latencies: dict[str, list[float]] = {"idle": [], "rebuilding": []}
    phase = ["idle"]
    stop = threading.Event()

    def quote_loop() -> None:
        i = 0
        while not stop.is_set():
            code = codes[i % len(codes)]
            i += 1
            t = time.perf_counter()
            service.quote(code, today, products, None)
            latencies[phase[0]].append(time.perf_counter() - t)

    loop = threading.Thread(target=quote_loop, daemon=True)
    loop.start()
    time.sleep(3)
    store = ProductVersions(engine)
    drafted = store.draft(raised_a_cut(args.product, "bench-reload", today), "bench-analyst")
    phase[0] = "rebuilding"
    t0 = time.perf_counter()
    store.approve(store.submit(drafted.id, "bench-analyst").id, "bench-approver")
    while service.state(today).versions.plans[args.product].version != "bench-reload":
        time.sleep(0.01)
    t_swap = time.perf_counter() - t0
    stop.set()
    loop.join()
    service.writer.stop()
    print(f"quote latency, idle:            {percentiles(latencies['idle'])}")
    print(f"quote latency, while reloading: {percentiles(latencies['rebuilding'])}")
    print(f"approved version served {t_swap:.2f} s after the approval (one worker; every worker checks each "
          f"{QuotingService.STALE_CHECK_SECONDS:g} s and rebuilds in the background)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--firms", type=int, default=1_000_000)
    ap.add_argument("--store-firms", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--product", default="tech_innovation")
    ap.add_argument("--work", type=Path, default=None, help="working directory (default: a temporary one)")
    ap.add_argument("--skip-reload", action="store_true")
    ap.add_argument("--skip-simulation", action="store_true")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-simulate-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"start: {load_avg()}")
    if not args.skip_simulation:
        bench_simulation(args, work)
        print(f"after the simulation: {load_avg()}")
    if not args.skip_reload:
        bench_reload(args, work)
    print(f"end: {load_avg()}")


if __name__ == "__main__":
    main()
