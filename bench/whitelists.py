"""Benchmark pre-credit whitelists at a city's scale: publish a 1M-firm run, page through it, diff two of them.

    nice -n 19 .venv/bin/python bench/whitelists.py [--firms 1000000] [--database-url URL] [--eligible SHARE]

Setup (not timed): a real pre-credit run on a 20,000-firm synthetic region (all five products, the store's
definitions, no model), tiled to `--firms` enterprises with fresh credit codes (rows drawn with replacement,
so the products' eligibility and grade mix is the region's; `--eligible 1.0` makes every firm eligible for
every product), written as a batch run's Parquet + summary. A second run changes about 1% of each product's
eligible rows (limit, or grade and limit), drops 0.5% and adds 0.5%. Both are built in a child process, so
the figures below are this process's own.

Then, timed, with the peak resident memory above the start and the load average:
  propose run 1   sha256 check + rows streamed into the store + grade counts (first whitelist: no diff)
  publish         maker-checker publication
  propose run 2   the same + the change set against run 1's whitelist (the preview)
  change set      the change set of two 1M-firm whitelists recomputed alone, per product, in the database
  pages           every row of the largest product, 1,000 a page (keyset), and the time of a first and a last page
  feed            the whole change feed of every product, 1,000 a page
  files           the largest product as Parquet and CSV
The default database is a SQLite file in a temporary folder; `--database-url` takes PostgreSQL.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psutil

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SMALL_FIRMS = 20_000


class PeakRss:
    """Peak RSS (MB) of this process above its RSS when the block started."""

    def __enter__(self) -> PeakRss:
        self.proc = psutil.Process()
        self.start = self.proc.memory_info().rss
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            self._stop.wait(0.02)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def above_mb(self) -> float:
        return (self.peak - self.start) / 2**20


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def report(step: str, seconds: float, rss: PeakRss | None = None, **figures: object) -> None:
    extra = "  ".join(f"{k}={v}" for k, v in figures.items())
    mem = f"  peak +{rss.above_mb:,.0f} MB (RSS {rss.peak / 2**20:,.0f} MB)" if rss else ""
    print(f"{step:<34} {seconds:8.2f} s{mem}  load {load()}  {extra}", flush=True)


# ------------------------------------------------------------------------------------- the runs (child process)


def build_runs(directory: str, firms: int, eligible: float | None) -> None:
    """Write run1.parquet and run2.parquet (+ summaries) in the batch run's format."""
    import datetime as dt
    import hashlib

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from api.precredit.inputs import build_context
    from api.precredit.run import RunOptions, run_precredit
    from features import uscc
    from features.assemble import point_in_time
    from features.synthetic import generate_region

    out = Path(directory)
    as_of = dt.date(2025, 12, 31)
    frames = generate_region(SMALL_FIRMS, 7, as_of)
    frames.pop("loan_outcomes", None)
    features = point_in_time(frames, as_of)
    ctx, describe, narrowed = build_context(features, as_of, None, 0, None)
    small = run_precredit(ctx, narrowed, describe, RunOptions(out / "small.parquet")).summary
    table = pq.read_table(out / "small.parquet")
    products = list(small["products"])
    rng = np.random.default_rng(1)
    draw = rng.integers(0, table.num_rows, firms)
    big = table.take(pa.array(draw))
    codes = uscc.generate(np.arange(firms, dtype=np.int64) * 7919 + 13, np.array(["330302"] * firms))
    big = big.set_column(0, "credit_code", pa.array(list(codes), pa.string())).sort_by("credit_code")
    if eligible is not None:
        for p in products:  # the chosen share is eligible; those that were not take an eligible firm's terms
            was = big[f"{p}.eligible"].to_numpy(zero_copy_only=False)
            donors = np.flatnonzero(was)
            chosen = np.ones(firms, dtype=bool) if eligible >= 1.0 else rng.random(firms) < eligible
            source = np.where(was, np.arange(firms), donors[rng.integers(0, len(donors), firms)])
            for c in ("grade", "tier", "limit_cny", "rate_lo_pct", "rate_hi_pct", "rate_pct", "reasons",
                      "reasons_zh", "reasons_en"):
                name = f"{p}.{c}"
                big = big.set_column(big.schema.get_field_index(name), name, big[name].take(pa.array(source)))
            big = big.set_column(big.schema.get_field_index(f"{p}.eligible"), f"{p}.eligible", pa.array(chosen))

    def write(tab: pa.Table, name: str) -> None:
        path = out / f"{name}.parquet"
        pq.write_table(tab, path, compression="zstd", row_group_size=100_000)
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        summary = {**small, "output": {"path": str(path), "format": "parquet", "sha256": sha, "rows": tab.num_rows}}
        (out / f"{name}.summary.json").write_text(json.dumps(summary, ensure_ascii=False), encoding="utf-8")

    write(big, "run1")
    second = big
    for p in products:
        eligible_now = np.flatnonzero(second[f"{p}.eligible"].to_numpy(zero_copy_only=False))
        not_now = np.flatnonzero(~second[f"{p}.eligible"].to_numpy(zero_copy_only=False))
        changed = rng.choice(eligible_now, max(1, len(eligible_now) // 100), replace=False)
        left = rng.choice(np.setdiff1d(eligible_now, changed), max(1, len(eligible_now) // 200), replace=False)
        entered = (rng.choice(not_now, min(len(not_now), max(1, len(eligible_now) // 200)), replace=False)
                   if len(not_now) else np.array([], dtype=np.int64))
        limit = second[f"{p}.limit_cny"].to_numpy().copy()
        limit[changed] += 10_000
        flags = second[f"{p}.eligible"].to_numpy(zero_copy_only=False).copy()
        flags[left] = False
        flags[entered] = True
        # the entering firms take the terms of some eligible firm
        donors = rng.choice(eligible_now, len(entered))
        take = np.arange(firms)
        take[entered] = donors
        for c in ("grade", "tier", "rate_lo_pct", "rate_hi_pct", "rate_pct", "reasons", "reasons_zh", "reasons_en"):
            name = f"{p}.{c}"
            second = second.set_column(second.schema.get_field_index(name), name, second[name].take(pa.array(take)))
        limit[entered] = limit[donors]
        second = second.set_column(second.schema.get_field_index(f"{p}.limit_cny"), f"{p}.limit_cny", pa.array(limit))
        second = second.set_column(second.schema.get_field_index(f"{p}.eligible"), f"{p}.eligible", pa.array(flags))
    write(second, "run2")
    eligible_rows = {p: int(pc.sum(big[f"{p}.eligible"]).as_py()) for p in products}
    (out / "shape.json").write_text(json.dumps({"firms": firms, "eligible": eligible_rows}), encoding="utf-8")


# ------------------------------------------------------------------------------------- the measurements


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--firms", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=None, help="default: a SQLite file in a temporary folder")
    parser.add_argument("--eligible", type=float, default=None,
                        help="share of firms eligible for every product (default: the region's own mix)")
    parser.add_argument("--products", default=None, help="comma-separated products to whitelist (default all)")
    parser.add_argument("--workdir", default=None, help="keep the runs and the database here")
    args = parser.parse_args()

    directory = Path(args.workdir or tempfile.mkdtemp(prefix="bench-whitelists-"))
    directory.mkdir(parents=True, exist_ok=True)
    print(f"indexloan whitelists benchmark: {args.firms:,} firms, {os.cpu_count()} cores, load {load()}", flush=True)
    started = time.perf_counter()
    if not (directory / "run2.parquet").exists():
        child = mp.get_context("spawn").Process(target=build_runs, args=(str(directory), args.firms, args.eligible))
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit("building the runs failed")
    shape = json.loads((directory / "shape.json").read_text())
    print(f"setup: two runs of {shape['firms']:,} firms in {time.perf_counter() - started:.0f} s; eligible rows per "
          f"product {shape['eligible']} (total {sum(shape['eligible'].values()):,})", flush=True)

    import pyarrow.parquet as pq
    import sqlalchemy as sa

    from api.database import migrate
    from api.precredit import whitelist_changes as changes
    from api.precredit import whitelists as wl

    url = args.database_url or f"sqlite:///{directory / f'bench-{uuid.uuid4().hex[:6]}.db'}"
    engine = migrate(url)
    print(f"database: {engine.url.render_as_string(hide_password=True)}", flush=True)
    meta = pq.ParquetFile(directory / "run1.parquet").metadata
    read = [n for n in pq.ParquetFile(directory / "run1.parquet").schema_arrow.names
            if n == "credit_code" or n.split(".")[-1] in ("eligible", "grade", "tier", "limit_cny", "rate_lo_pct",
                                                         "rate_hi_pct", "rate_pct", "reasons", "reasons_zh",
                                                         "reasons_en")]
    names = pq.ParquetFile(directory / "run1.parquet").schema_arrow.names
    columns = [names.index(n) for n in read]
    whole = sum(meta.row_group(g).column(c).total_uncompressed_size for g in range(meta.num_row_groups)
                for c in columns)
    print(f"run file: {(directory / 'run1.parquet').stat().st_size / 2**20:,.0f} MB on disk; the columns a "
          f"whitelist reads take {whole / 2**20:,.0f} MB uncompressed (what holding the run once would cost)",
          flush=True)

    wanted = args.products.split(",") if args.products else None
    # warm-up, not timed: the imports and the definitions compiled on first use, one batch read
    from api.precredit import whitelist_rows as wrows

    source = wl.file_source(directory / "run1.parquet")
    terms = wl._terms(engine, source, wanted or source.products, None)
    next(wrows.run_batches(source.path, source.fmt, list(terms)))
    with PeakRss() as rss:
        t = time.perf_counter()
        w1 = wl.propose(engine, wl.file_source(directory / "run1.parquet"), wanted, "analyst")
        seconds = time.perf_counter() - t
    report("propose run 1 (import)", seconds, rss, rows=f"{w1.rows:,}", rows_per_s=f"{w1.rows / seconds:,.0f}")
    t = time.perf_counter()
    wl.publish(engine, w1.id, "approver")
    report("publish run 1", time.perf_counter() - t)

    with PeakRss() as rss:
        t = time.perf_counter()
        w2 = wl.propose(engine, wl.file_source(directory / "run2.parquet"), wanted, "analyst")
        seconds = time.perf_counter() - t
    counts = {p: (r.changes or {}) for p, r in w2.products.items()}
    report("propose run 2 (import + diff)", seconds, rss, rows=f"{w2.rows:,}",
           changes=sum(c.get("entered", 0) + c.get("left", 0) + c.get("changed", 0) for c in counts.values()))

    with PeakRss() as rss:
        t = time.perf_counter()
        with engine.connect() as conn:
            transaction = conn.begin()
            for p, r in w2.products.items():
                changes.compute(conn, w2.id, p, w1.id, r.fields)
            transaction.rollback()
        seconds = time.perf_counter() - t
    report(f"change set ({len(w2.products)} products, again)", seconds, rss,
           whitelist_rows=f"{w1.rows:,} vs {w2.rows:,}")
    t = time.perf_counter()
    wl.publish(engine, w2.id, "approver")
    report("publish run 2", time.perf_counter() - t)

    largest = max(w2.products.values(), key=lambda r: r.rows).product
    pub = wl.published(engine, largest)
    with PeakRss() as rss:
        t = time.perf_counter()
        after, rows, pages, samples = None, 0, 0, []
        first_page = last_page = 0.0
        while True:
            t_page = time.perf_counter()
            page = wl.rows_page(engine, pub, after, 1000)
            elapsed = time.perf_counter() - t_page
            if pages == 0:
                first_page = elapsed
            last_page = elapsed
            rows += len(page.items)
            pages += 1
            if pages % 100 == 0:
                samples.append(rss.proc.memory_info().rss)
            if page.next_cursor is None:
                break
            after = wl.decode_cursor(page.next_cursor, "rows", largest)["c"]
        seconds = time.perf_counter() - t
    spread = (max(samples) - min(samples)) / 2**20 if samples else 0.0
    report(f"pages: {largest} ({rows:,} rows)", seconds, rss, pages=pages, rows_per_s=f"{rows / seconds:,.0f}",
           first_page_ms=f"{first_page * 1000:.1f}", last_page_ms=f"{last_page * 1000:.1f}",
           rss_spread_over_pages_mb=f"{spread:.1f}")

    with PeakRss() as rss:
        t = time.perf_counter()
        total = 0
        for p in w2.products:
            cursor = wl.changes_cursor(p, w1.publication_no or 1)
            while True:
                page = wl.changes_page(engine, p, cursor, 1000)
                total += len(page.items)
                cursor = page.next_cursor
                if not page.more:
                    break
        seconds = time.perf_counter() - t
    report("feed: every change after run 1", seconds, rss, changes=f"{total:,}")

    for fmt in ("parquet", "csv"):
        with PeakRss() as rss:
            t = time.perf_counter()
            path, sha, size = wl.file_for(engine, pub, fmt, directory / "files")
            seconds = time.perf_counter() - t
        report(f"file: {largest}.{fmt}", seconds, rss, size_mb=f"{size / 2**20:,.1f}",
               rows_per_s=f"{pub.rows / seconds:,.0f}")
    with contextlib.suppress(Exception), engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            size = Path(engine.url.database).stat().st_size
        else:
            size = conn.execute(sa.text("SELECT pg_total_relation_size('whitelist_rows')")).scalar()
        print(f"whitelist_rows: {size / 2**20:,.0f} MB for {w1.rows + w2.rows:,} rows (both whitelists)")
    print(f"done in {time.perf_counter() - started:.0f} s; load {load()}")


if __name__ == "__main__":
    main()
