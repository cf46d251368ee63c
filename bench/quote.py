"""Benchmark the scoring engine: per-enterprise quote latency and whole-region batch throughput.

    .venv/bin/python bench/quote.py [--firms 1000000] [--seed 7] [--singles 300] [--source synthetic|sample]

Features are assembled first (not timed as engine work); then
  * single: one enterprise (a one-row features frame), all five products, engine only, and with the
    JSON quote formatting on top;
  * batch: every enterprise, all five products, `evaluate_batch` (2 threads), plus peak memory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from products.catalogue import load_catalogue, reference_rates  # noqa: E402
from scoring import calibrate, compile_all, enterprise_quotes, evaluate_all, evaluate_batch  # noqa: E402

AS_OF = dt.date(2025, 12, 31)


def rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux reports KiB


def features_frame(firms: int, seed: int, source: str):  # type: ignore[no-untyped-def]
    if source == "synthetic":
        from features.assemble import point_in_time
        from features.synthetic import generate_region

        frames = generate_region(firms, seed, AS_OF)
        frames.pop("loan_outcomes", None)
        features = point_in_time(frames, AS_OF)
        del frames
        gc.collect()
        return features
    from scoring.sample import random_features

    return random_features(firms, seed, AS_OF)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--firms", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--singles", type=int, default=300)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--chunk-rows", type=int, default=100_000)
    ap.add_argument("--source", choices=("synthetic", "sample"), default="synthetic")
    args = ap.parse_args()

    t0 = time.perf_counter()
    features = features_frame(args.firms, args.seed, args.source)
    t_features = time.perf_counter() - t0
    rss_features = rss_gb()
    print(f"features: {len(features):,} enterprises x {features.shape[1]} columns from {args.source} "
          f"in {t_features:.1f} s; peak RSS so far {rss_features:.2f} GB")

    t0 = time.perf_counter()
    plans = compile_all(load_catalogue(), reference_rates(AS_OF))
    t_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    plans["per_mu"] = calibrate(plans["per_mu"], features)
    t_cal = time.perf_counter() - t0
    print(f"load + compile 5 products: {t_compile * 1e3:.1f} ms; per_mu rank calibration on the region: "
          f"{t_cal:.2f} s")

    # single enterprise, all five products
    rng = np.random.default_rng(args.seed)
    rows = rng.choice(len(features), size=min(args.singles, len(features)), replace=False)
    singles = [features.iloc[[i]] for i in rows]
    for one in singles[:20]:  # warm-up
        evaluate_all(plans, one)
    engine_ms, full_ms = [], []
    for one in singles:
        t = time.perf_counter()
        res = evaluate_all(plans, one)
        engine_ms.append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()
        res = evaluate_all(plans, one)
        list(enterprise_quotes(res))
        full_ms.append((time.perf_counter() - t) * 1e3)

    def stats(xs: list[float]) -> str:
        q = np.percentile(xs, [50, 95, 99])
        return f"mean {statistics.fmean(xs):.2f} ms, p50 {q[0]:.2f}, p95 {q[1]:.2f}, p99 {q[2]:.2f}"

    print(f"single enterprise, 5 products, engine only:      {stats(engine_ms)}")
    print(f"single enterprise, 5 products, engine + JSON:    {stats(full_ms)}")

    # batch (tracemalloc sees numpy's allocations: the engine's own peak, apart from the features frame)
    gc.collect()
    t = time.perf_counter()
    chunks = evaluate_batch(plans, features, chunk_rows=args.chunk_rows, workers=args.workers)
    t_batch = time.perf_counter() - t
    del chunks
    gc.collect()
    tracemalloc.start()
    chunks = evaluate_batch(plans, features, chunk_rows=args.chunk_rows, workers=args.workers)
    engine_peak = tracemalloc.get_traced_memory()[1] / 1024**3
    tracemalloc.stop()
    n = len(features)
    print(f"batch, 5 products, {args.workers} threads, chunks of {args.chunk_rows:,}: {t_batch:.2f} s = "
          f"{n / t_batch:,.0f} enterprises/s")
    t = time.perf_counter()
    for c in chunks:
        for r in c.values():
            r.explanation  # noqa: B018 - computing top reasons and next-grade options
    t_explain = time.perf_counter() - t
    print(f"explanations (top reasons + next grade) for all: {t_explain:.2f} s; batch incl. explanations "
          f"{n / (t_batch + t_explain):,.0f} enterprises/s")
    for code in plans:
        eligible = sum(int(c[code].eligible.sum()) for c in chunks)
        limits = sum(float(c[code].limit_cny.sum()) for c in chunks)
        print(f"  {code:16s} eligible {eligible / n:6.1%}  total limit CNY {limits / 1e8:,.1f} 亿")
    print(f"engine peak allocations during the batch (tracemalloc, results kept): {engine_peak:.2f} GB; "
          f"features frame {features.memory_usage(deep=True).sum() / 1024**3:.2f} GB")
    print(f"peak RSS (whole process, incl. synthetic generation and feature assembly): {rss_gb():.2f} GB")


if __name__ == "__main__":
    main()
