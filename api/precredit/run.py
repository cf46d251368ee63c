"""A resumable pre-credit run: partitions by credit code, a work directory, one deterministic output file.

    features (sorted by credit code) -> N contiguous partitions -> score_partition on each
    (in threads, or on a Dask cluster) -> <work dir>/part-00000.arrow ... -> the output file + summary

The work directory holds a manifest with the run's fingerprint (the inputs' content hash, the product
versions and cut-offs, the reference rates, the model version, the options). A rerun with the same
fingerprint keeps every finished partition and computes only the rest; any other fingerprint clears
the stale partitions first. Each part file appears atomically (written aside, then renamed), so a
killed run leaves only whole partitions behind. The output is written aside and renamed too.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from api.precredit.score import BatchContext, score_partition
from api.precredit.summary import Summary

FORMAT = 1
DEFAULT_PARTITION_ROWS = 100_000
MANIFEST = "manifest.json"
Progress = Callable[[int, int], None]  # partitions done (incl. reused), total


class BatchInputError(ValueError):
    """Bad options or inputs for a run (reported to the user, nothing written); the CLI exits with `exit_code`."""

    exit_code = 2  # a usage error


class NotInForceError(BatchInputError):
    """No versions are in force for the run's date or products (the quote path's VersionsError)."""

    exit_code = 1  # as `indexloan quote` for the same date


@dataclass(frozen=True)
class RunOptions:
    out: Path
    engine: str = "local"  # "local" | "dask"
    scheduler: str | None = None  # Dask scheduler address; None = a LocalCluster on loopback
    partitions: int | None = None
    workers: int = 2  # threads (local) or LocalCluster worker processes (dask)
    work_dir: Path | None = None
    keep_parts: bool = False

    def resolved_work_dir(self) -> Path:
        return self.work_dir or self.out.with_name(self.out.name + ".parts")


@dataclass
class RunResult:
    out: Path
    summary_path: Path
    summary: dict[str, Any]
    computed: list[int] = field(default_factory=list)
    reused: list[int] = field(default_factory=list)


def output_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise BatchInputError(f"--out must end in .parquet or .csv, got {path.name!r}")
    return suffix[1:]


def partition_bounds(rows: int, partitions: int | None) -> list[tuple[int, int]]:
    count = partitions or max(1, -(-rows // DEFAULT_PARTITION_ROWS))
    count = max(1, min(count, rows))
    edges = np.linspace(0, rows, count + 1).round().astype(np.int64)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def fingerprint(features: pd.DataFrame, describe: dict[str, Any], bounds: list[tuple[int, int]]) -> str:
    """Content hash of the inputs (rows, index, every column the run reads) plus versions and options."""
    digest = hashlib.sha256()
    head = {"format": FORMAT, "versions": describe, "bounds": bounds, "columns": [str(c) for c in features.columns],
            "dtypes": [str(t) for t in features.dtypes]}
    digest.update(json.dumps(head, sort_keys=True, default=str).encode())
    digest.update(pd.util.hash_pandas_object(features, index=True).to_numpy().tobytes())
    return digest.hexdigest()


def _part_path(work: Path, i: int) -> Path:
    return work / f"part-{i:05d}.arrow"


def scored_partition_ipc(ctx: BatchContext, features: pd.DataFrame) -> pa.Buffer:
    """`score_partition` as an Arrow IPC file in memory: what a part file holds. Built where the partition
    is scored (a thread, or a Dask worker), so the driver only writes bytes."""
    table = pa.Table.from_pandas(score_partition(ctx, features), preserve_index=False)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:  # uncompressed: written and read at memory speed
        writer.write_table(table)
    return sink.getvalue()


def _write_atomic(data: pa.Buffer, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with pa.OSFile(str(tmp), "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _prepare_work_dir(work: Path, fp: str, parts: int) -> set[int]:
    """Finished partitions to keep (same fingerprint), after clearing anything stale."""
    work.mkdir(parents=True, exist_ok=True)
    manifest = work / MANIFEST
    known = None
    if manifest.exists():
        try:
            known = json.loads(manifest.read_text(encoding="utf-8")).get("fingerprint")
        except (OSError, ValueError):
            known = None
    if known != fp:
        for stale in list(work.glob("part-*.arrow")) + list(work.glob(".part-*.tmp")):
            stale.unlink()
        manifest.write_text(json.dumps({"format": FORMAT, "fingerprint": fp, "partitions": parts}) + "\n",
                            encoding="utf-8")
    return {i for i in range(parts) if _part_path(work, i).exists()}


def _run_local(ctx: BatchContext, features: pd.DataFrame, bounds: list[tuple[int, int]], todo: list[int],
               work: Path, workers: int) -> Iterator[int]:
    from features.settings import get_settings

    throttle = get_settings().batch_throttle_seconds  # a test hook: pause after each partition

    def one(i: int) -> int:
        a, b = bounds[i]
        _write_atomic(scored_partition_ipc(ctx, features.iloc[a:b]), _part_path(work, i))
        if throttle:
            time.sleep(throttle)
        return i

    if workers <= 1 or len(todo) <= 1:
        for i in todo:
            yield one(i)
        return
    # a window of `workers` partitions in flight: bounded memory, and a stopped run stops promptly
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        pending = [pool.submit(one, i) for i in todo[:workers]]
        for nxt in todo[workers:]:
            finished = pending.pop(0).result()
            pending.append(pool.submit(one, nxt))  # keep the window full while the caller writes output
            yield finished
        for future in pending:
            yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _run_dask(ctx: BatchContext, features: pd.DataFrame, bounds: list[tuple[int, int]], todo: list[int],
              work: Path, scheduler: str | None, workers: int) -> Iterator[int]:
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None, silence_logs=40)
        client = Client(cluster)
    else:
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as error:
            raise BatchInputError(f"cannot reach the Dask scheduler at {scheduler}: {error}") from None
    try:
        shared = client.scatter(ctx, broadcast=True)
        window = 2 * max(1, len(client.scheduler_info()["workers"]))  # partitions in flight: bounded memory
        futures: dict[Any, int] = {}
        queued = iter(todo)

        def submit_next() -> Any | None:
            i = next(queued, None)
            if i is None:
                return None
            a, b = bounds[i]
            rows = client.scatter(features.iloc[a:b], hash=False)  # a future, not graph data; no hashing of rows
            future = client.submit(scored_partition_ipc, shared, rows, key=f"precredit-part-{i}-{a}", pure=False)
            futures[future] = i
            return future

        running = as_completed([f for f in (submit_next() for _ in range(window)) if f is not None])
        for future in running:
            i = futures.pop(future)
            data = future.result()
            future.release()
            nxt = submit_next()
            if nxt is not None:
                running.add(nxt)
            _write_atomic(data, _part_path(work, i))
            yield i
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _uniform(table: pa.Table, schema: pa.Schema | None) -> tuple[pa.Table, pa.Schema]:
    """Dictionary columns with one index type (partitions differ in how many categories they hold)."""
    fields = []
    for f in table.schema:
        if pa.types.is_dictionary(f.type):
            f = f.with_type(pa.dictionary(pa.int32(), f.type.value_type))
        fields.append(f)
    target = schema or pa.schema(fields, metadata=table.schema.metadata)
    return table.cast(target), target


class Assembler:
    """Appends part files to the output in partition order, as soon as each next one is there (so writing
    overlaps scoring); the output is written aside and renamed by `finish`."""

    def __init__(self, work: Path, parts: int, out: Path, fmt: str, summary: Summary) -> None:
        self.work, self.parts, self.out, self.fmt, self.summary = work, parts, out, fmt, summary
        self.tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        self.next = 0
        self._writer: Any = None
        self._schema: pa.Schema | None = None

    def add_ready(self, ready: set[int]) -> None:
        while self.next < self.parts and self.next in ready:
            self._append(self.next)
            self.next += 1

    def _append(self, i: int) -> None:
        with pa.memory_map(str(_part_path(self.work, i))) as source:
            table, self._schema = _uniform(pa.ipc.open_file(source).read_all(), self._schema)
        self.summary.add(table)
        if self.fmt == "parquet":
            if self._writer is None:
                self._writer = pq.ParquetWriter(self.tmp, self._schema, compression="zstd")
            self._writer.write_table(table)
            return
        plain = pa.table({n: (c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c)
                          for n, c in zip(table.column_names, table.columns, strict=True)})
        if self._writer is None:
            self._writer = pacsv.CSVWriter(self.tmp, plain.schema)
        self._writer.write_table(plain)

    def finish(self) -> str:
        """Close, rename into place; the output's sha256."""
        self.add_ready(set(range(self.parts)))
        self._writer.close()
        self._writer = None
        os.replace(self.tmp, self.out)
        digest = hashlib.sha256()
        with self.out.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
        return digest.hexdigest()

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self.tmp.unlink(missing_ok=True)


def run_precredit(ctx: BatchContext, features: pd.DataFrame, describe: dict[str, Any], options: RunOptions,
                  progress: Progress | None = None) -> RunResult:
    """Score every enterprise in `features` (index = credit code) and write the output and its summary."""
    fmt = output_format(options.out)
    if options.engine not in ("local", "dask"):
        raise BatchInputError(f"--engine must be local or dask, got {options.engine!r}")
    if options.partitions is not None and options.partitions < 1:
        raise BatchInputError("--partitions must be at least 1")
    if len(features) == 0:
        raise BatchInputError("no enterprises to score (the store or the feature files hold none for this date)")
    if not features.index.is_unique:
        raise BatchInputError("the features hold duplicate credit codes")
    started = time.perf_counter()
    if not features.index.is_monotonic_increasing:
        features = features.sort_index(kind="stable")  # deterministic order, whatever the input order
    bounds = partition_bounds(len(features), options.partitions)
    fp = fingerprint(features, {**describe, "reasons": ctx.reasons}, bounds)
    work = options.resolved_work_dir()
    options.out.parent.mkdir(parents=True, exist_ok=True)
    done = _prepare_work_dir(work, fp, len(bounds))
    reused = sorted(done)
    todo = [i for i in range(len(bounds)) if i not in done]
    if progress:
        progress(len(done), len(bounds))
    if options.engine == "dask":
        finished = _run_dask(ctx, features, bounds, todo, work, options.scheduler, options.workers)
    else:
        finished = _run_local(ctx, features, bounds, todo, work, options.workers)
    summary = Summary(list(ctx.plans))
    assembler = Assembler(work, len(bounds), options.out, fmt, summary)
    computed: list[int] = []
    try:
        assembler.add_ready(done)
        for i in finished:
            computed.append(i)
            assembler.add_ready(done.union(computed))
            if progress:
                progress(len(done) + len(computed), len(bounds))
        sha = assembler.finish()
    finally:
        finished.close()  # a stopped run releases its threads or cluster now, not when collected
        assembler.abort()
    body = {
        "output": {"path": str(options.out), "format": fmt, "sha256": sha, "rows": summary.rows},
        "versions": describe, "reasons": ctx.reasons, "fingerprint": fp,
        "run": {"engine": options.engine, "scheduler": options.scheduler, "partitions": len(bounds),
                "computed_partitions": len(computed), "reused_partitions": len(reused),
                "seconds": round(time.perf_counter() - started, 3)},
        **summary.as_json(),
    }
    summary_path = options.out.with_name(options.out.stem + ".summary.json")
    tmp = summary_path.with_name(f".{summary_path.name}.tmp")
    tmp.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, summary_path)
    if not options.keep_parts:
        shutil.rmtree(work, ignore_errors=True)
    return RunResult(options.out, summary_path, body, sorted(computed), reused)
