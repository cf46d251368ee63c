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
import pickle
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
from features.store.snapshot import ROW_GROUP_ROWS, group_bounds, open_parquet

FORMAT = 1
DEFAULT_PARTITION_ROWS = ROW_GROUP_ROWS  # a partition is one snapshot row group: workers decode only their rows
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
    """Contiguous row ranges; by default the date's snapshot row groups (one per DEFAULT_PARTITION_ROWS)."""
    return group_bounds(rows, partitions)


HASH_CHUNK_ROWS = 50_000


def row_hashes(features: pd.DataFrame, threads: int = 2) -> np.ndarray:
    """One 64-bit hash per row (index and every column): the run's fingerprint, and what a Dask worker checks
    the rows it read against. A row's hash depends on that row alone, so chunks are hashed in threads
    (numpy's loops release the GIL) and joined in order."""
    chunks = [(a, min(a + HASH_CHUNK_ROWS, len(features))) for a in range(0, len(features), HASH_CHUNK_ROWS)]
    if threads <= 1 or len(chunks) <= 1:
        return pd.util.hash_pandas_object(features, index=True).to_numpy()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        parts = pool.map(lambda ab: pd.util.hash_pandas_object(features.iloc[ab[0]:ab[1]], index=True).to_numpy(),
                         chunks)
        return np.concatenate(list(parts))


def fingerprint(features: pd.DataFrame, describe: dict[str, Any], bounds: list[tuple[int, int]],
                hashes: np.ndarray | None = None) -> str:
    """Content hash of the inputs (rows, index, every column the run reads) plus versions and options."""
    digest = hashlib.sha256()
    head = {"format": FORMAT, "versions": describe, "bounds": bounds, "columns": [str(c) for c in features.columns],
            "dtypes": [str(t) for t in features.dtypes]}
    digest.update(json.dumps(head, sort_keys=True, default=str).encode())
    digest.update((row_hashes(features) if hashes is None else hashes).tobytes())
    return digest.hexdigest()


def _rows_digest(hashes: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(hashes).tobytes()).hexdigest()


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


class InputsChangedError(BatchInputError):
    """A Dask worker read other rows than the driver fingerprinted (the snapshot was replaced mid-run, or
    is stale because it could not be written): the rest of the run reads the driver's rows instead."""

    exit_code = 1


@dataclass(frozen=True)
class Columns:
    """How a worker turns the Parquet rows it read into the run's frame: the columns the run reads, their
    dtypes and the index column. The same for every partition: scattered once, like the context."""

    index: str
    dtypes: dict[str, Any]


@dataclass(frozen=True)
class PartitionTask:
    """All a Dask worker is sent for one partition (a few hundred bytes, whatever its row count): where its rows
    are (a Parquet file, row groups, the rows to skip and keep), the digest they must have, and where its part
    file goes."""

    index: int
    source: str
    row_groups: tuple[int, ...]
    skip: int
    rows: int
    digest: str
    part: str


def read_partition(task: PartitionTask, columns: Columns) -> pd.DataFrame:
    """The partition's rows as the driver holds them, read from the Parquet file on the worker."""
    wanted = [columns.index, *columns.dtypes]
    table = open_parquet(task.source).read_row_groups(list(task.row_groups), columns=wanted,
                                                      use_pandas_metadata=False)
    frame = table.slice(task.skip, task.rows).to_pandas(ignore_metadata=True).set_index(columns.index)
    frame = frame.astype(columns.dtypes)
    if _rows_digest(row_hashes(frame)) != task.digest:
        raise InputsChangedError(f"the features in {task.source} changed during the run")
    return frame


def score_task(ctx: BatchContext, columns: Columns, task: PartitionTask) -> tuple[int, int]:
    """On a Dask worker: read the partition, score it, write its part file (atomically); (index, bytes)."""
    data = scored_partition_ipc(ctx, read_partition(task, columns))
    _write_atomic(data, Path(task.part))
    return task.index, data.size


def _source_rows(source: Path | None, features: pd.DataFrame) -> bool:
    """True when `source` is a Parquet file holding `features`' rows in the same order (checked by credit
    code here, and by content on every worker)."""
    if source is None or features.index.name is None:
        return False
    try:
        meta = open_parquet(source)
        if meta.metadata.num_rows != len(features) or features.index.name not in meta.schema_arrow.names:
            return False
        if any(c not in meta.schema_arrow.names for c in features.columns):
            return False
        codes = meta.read(columns=[features.index.name]).column(0).to_numpy(zero_copy_only=False)
    except (OSError, pa.ArrowException):
        return False
    return bool(np.array_equal(codes, features.index.to_numpy(dtype=object)))


def _inputs_file(features: pd.DataFrame, bounds: list[tuple[int, int]], work: Path, fp: str, index: str) -> Path:
    """The run's features written once into the work directory, one row group per partition (for inputs that
    are not a snapshot file: `--features`, snapshots off). Kept for a resumed run of the same fingerprint."""
    path = work / f"inputs-{fp[:16]}.parquet"
    if path.exists():
        return path
    for stale in work.glob("inputs-*.parquet"):
        stale.unlink()
    table = pa.Table.from_pandas(features.rename_axis(index), preserve_index=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with pq.ParquetWriter(tmp, table.schema) as writer:
        for a, b in bounds:
            writer.write_table(table.slice(a, b - a))  # each write is its own row group
    os.replace(tmp, path)
    return path


def partition_tasks(source: Path, bounds: list[tuple[int, int]], todo: list[int],
                    work: Path, hashes: np.ndarray) -> list[PartitionTask]:
    """The task descriptions of the partitions `todo`, their rows located by row group in `source`."""
    groups = pq.ParquetFile(source).metadata
    starts = np.cumsum([0] + [groups.row_group(g).num_rows for g in range(groups.num_row_groups)])
    tasks = []
    for i in todo:
        a, b = bounds[i]
        first = int(np.searchsorted(starts, a, side="right")) - 1
        last = int(np.searchsorted(starts, b, side="left"))  # exclusive
        tasks.append(PartitionTask(i, str(source.resolve()), tuple(range(first, last)), a - int(starts[first]),
                                   b - a, _rows_digest(hashes[a:b]), str(_part_path(work, i).resolve())))
    return tasks


def payload_bytes(value: Any) -> int:
    """Pickled size of what is sent to a worker (what `distributed` serializes for a task argument)."""
    return len(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


def _run_dask(ctx: BatchContext, columns: Columns, tasks: list[PartitionTask], scheduler: str | None,
              workers: int, sent: dict[str, int]) -> Iterator[int]:
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is None:
        # workers only score: they import LightGBM without scikit-learn, as the CLI does (training.predict_only)
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None, silence_logs=40, preload=["training.predict_only"])
        client = Client(cluster)
    else:
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as error:
            raise BatchInputError(f"cannot reach the Dask scheduler at {scheduler}: {error}") from None
    try:
        shared = client.scatter(ctx, broadcast=True)  # once per worker, not per partition
        shape = client.scatter(columns, broadcast=True)
        window = 2 * max(1, len(client.scheduler_info()["workers"]))  # partitions in flight: bounded memory
        queued = iter(tasks)

        def submit_next() -> Any | None:
            task = next(queued, None)
            if task is None:
                return None
            sent["task_bytes"] = max(sent.get("task_bytes", 0), payload_bytes(task))
            return client.submit(score_task, shared, shape, task, key=f"precredit-part-{task.index}-{task.skip}",
                                 pure=False)

        running = as_completed([f for f in (submit_next() for _ in range(window)) if f is not None])
        for future in running:
            i, _ = future.result()  # the part file is on disk: only its index and size come back
            future.release()
            nxt = submit_next()
            if nxt is not None:
                running.add(nxt)
            yield i
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _run_dask_fetching(ctx: BatchContext, features: pd.DataFrame, bounds: list[tuple[int, int]], todo: list[int],
                       work: Path, fp: str, hashes: np.ndarray, source: Path | None, options: RunOptions,
                       sent: dict[str, Any]) -> Iterator[int]:
    """Dask workers read their rows from `source` (the snapshot) when it holds the run's rows, else from the
    features written once to the work directory. A snapshot replaced mid-run (a worker's digest differs) is
    dropped for the rest of the run: the driver's frame, the one fingerprinted, is what gets scored."""
    columns = Columns(str(features.index.name or "credit_code"), features.dtypes.to_dict())
    sent.update({"context_bytes": payload_bytes(ctx), "columns_bytes": payload_bytes(columns)})
    if not todo:
        return
    from_snapshot = source is not None and _source_rows(source, features)
    sent["rows_from"] = "snapshot" if from_snapshot else "work_dir"
    rows_file = source if from_snapshot and source is not None else _inputs_file(features, bounds, work, fp,
                                                                                 columns.index)
    done: set[int] = set()
    try:
        for i in _run_dask(ctx, columns, partition_tasks(rows_file, bounds, todo, work, hashes),
                           options.scheduler, options.workers, sent):
            done.add(i)
            yield i
    except InputsChangedError:
        if not from_snapshot:
            raise  # the work directory's own file changed under the run: nothing to fall back to
        sent["rows_from"] = "snapshot, then work_dir (the snapshot changed during the run)"
        rest = [i for i in todo if i not in done]
        rows_file = _inputs_file(features, bounds, work, fp, columns.index)
        yield from _run_dask(ctx, columns, partition_tasks(rows_file, bounds, rest, work, hashes),
                             options.scheduler, options.workers, sent)


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
                  progress: Progress | None = None, source: Path | None = None) -> RunResult:
    """Score every enterprise in `features` (index = credit code) and write the output and its summary.

    `source`: a Parquet file the features were read from (the date's feature snapshot). Dask workers read
    their partitions from it when it holds the same rows in the same order; otherwise the features are
    written once into the work directory for them."""
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
        source = None  # the file's row order is not the run's
    bounds = partition_bounds(len(features), options.partitions)
    hashes = row_hashes(features)
    fp = fingerprint(features, {**describe, "reasons": ctx.reasons}, bounds, hashes)
    work = options.resolved_work_dir()
    options.out.parent.mkdir(parents=True, exist_ok=True)
    done = _prepare_work_dir(work, fp, len(bounds))
    reused = sorted(done)
    todo = [i for i in range(len(bounds)) if i not in done]
    if progress:
        progress(len(done), len(bounds))
    sent: dict[str, Any] = {}
    if options.engine == "dask":
        finished = _run_dask_fetching(ctx, features, bounds, todo, work, fp, hashes, source, options, sent)
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
                "seconds": round(time.perf_counter() - started, 3),
                **({"sent_to_workers": sent} if sent else {})},
        **summary.as_json(),
    }
    summary_path = options.out.with_name(options.out.stem + ".summary.json")
    tmp = summary_path.with_name(f".{summary_path.name}.tmp")
    tmp.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, summary_path)
    if not options.keep_parts:
        shutil.rmtree(work, ignore_errors=True)
    return RunResult(options.out, summary_path, body, sorted(computed), reused)
