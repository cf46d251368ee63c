"""Benchmark: ingest a synthetic region into SQLite (and PostgreSQL when reachable).

    python bench/ingest.py --firms 1000000 [--postgres URL] [--skip-sqlite]

Prints wall time, rows per second and peak memory for the full ingestion (validation, quarantine,
provenance, transaction per file), and, as a bare baseline in the same run, the time to read the same
Parquet files and executemany the rows into an identical SQLite table with no validation.
"""

from __future__ import annotations

import argparse
import resource
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import sqlalchemy as sa

from api.database import migrate
from features.ingest import find_source_files, ingest_directory
from features.store.db import connect
from features.synthetic import generate_region, write_region


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bare_sqlite(directory: Path, db_path: Path) -> tuple[float, int]:
    """Read each Parquet file and executemany its rows into a table with the same columns."""
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    rows_total = 0
    start = time.perf_counter()
    for name, paths in find_source_files(directory)[0].items():
        table = pq.read_table(paths[0])
        columns = table.column_names
        conn.execute(f"CREATE TABLE bare_{name} ({', '.join(columns)}, PRIMARY KEY (credit_code, as_of))")
        placeholders = ", ".join("?" for _ in columns)
        for batch in table.to_batches(200_000):
            data = batch.to_pydict()
            rows = list(zip(*(data[c] for c in columns), strict=True))
            rows = [tuple(v.isoformat() if hasattr(v, "isoformat") else v for v in row) for row in rows]
            conn.executemany(f"INSERT INTO bare_{name} VALUES ({placeholders})", rows)
            rows_total += len(rows)
        conn.commit()
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed, rows_total


def timed_ingest(url: str, directory: Path, quarantine: Path) -> tuple[float, int]:
    engine = migrate(url)
    start = time.perf_counter()
    last = {"t": start}

    def progress(source: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if now - last["t"] > 15 or done == total:
            print(f"    {source:<16} {done:>10,}/{total:,}  {now - start:7.1f}s", flush=True)
            last["t"] = now

    report = ingest_directory(engine, directory, quarantine, progress=progress)
    elapsed = time.perf_counter() - start
    assert report.ok, report.as_json()
    return elapsed, sum(r.rows_accepted for r in report.sources.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--firms", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        write_region(generate_region(args.firms, args.seed), work / "region", "parquet")
        print(f"region: {args.firms:,} firms generated in {time.perf_counter() - start:.1f}s")

        if not args.skip_sqlite:
            bare_s, bare_rows = bare_sqlite(work / "region", work / "bare.db")
            print(f"bare sqlite executemany: {bare_rows:,} rows in {bare_s:.1f}s ({bare_rows / bare_s:,.0f} rows/s)")
            full_s, rows = timed_ingest(f"sqlite:///{work / 'store.db'}", work / "region", work / "q")
            print(f"indexloan ingest sqlite: {rows:,} rows in {full_s:.1f}s ({rows / full_s:,.0f} rows/s); "
                  f"ratio to bare {full_s / bare_s:.2f}x")

        if not args.skip_postgres:
            schema = f"bench_{uuid.uuid4().hex[:8]}"
            admin = sa.create_engine(args.postgres)
            try:
                with admin.begin() as conn:
                    conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
            except sa.exc.OperationalError as error:
                print(f"postgresql not reachable, skipped: {error.orig}")
            else:
                url = sa.make_url(args.postgres).update_query_dict({"options": f"-csearch_path={schema}"})
                try:
                    pg_s, rows = timed_ingest(url.render_as_string(hide_password=False), work / "region", work / "qp")
                    print(f"indexloan ingest postgresql: {rows:,} rows in {pg_s:.1f}s ({rows / pg_s:,.0f} rows/s)")
                finally:
                    connect.cache_clear()
                    with admin.begin() as conn:
                        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        print(f"peak memory: {peak_mb():,.0f} MB")


if __name__ == "__main__":
    main()
