"""Ingestion of government data files into the store: validate, quarantine, write with provenance.

One file per source, named by the source (`tax.csv`, `per_mu.parquet`, ...). Each file is one
transaction: either all its good rows and its batch record are stored, or nothing is. Re-ingesting
a file already stored (same source and sha256) adds nothing; rows already stored under the same
(credit_code, as_of) from another file are counted, not duplicated. Bad rows go to a quarantine
CSV with the row number and the reason; they are never dropped silently.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import sqlalchemy as sa

from features.sources import SOURCES, all_fields
from features.store.tables import batches, source_table
from features.validation import FileLayoutError, ValidatedChunk, check_columns, validate_chunk

SUFFIXES = (".csv", ".parquet")
ProgressCallback = Callable[[str, int, int], None]  # source, rows done, rows total


@dataclass
class SourceResult:
    source: str
    file: str
    rows_read: int = 0
    rows_accepted: int = 0
    rows_rejected: int = 0
    rows_already_stored: int = 0
    already_ingested: bool = False
    quarantine_file: str | None = None
    batch_id: int | None = None
    error: str | None = None


@dataclass
class IngestReport:
    directory: str
    sources: dict[str, SourceResult] = field(default_factory=dict)
    ignored_files: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.error is None for r in self.sources.values())

    def as_json(self) -> dict:
        return {
            "directory": self.directory,
            "ok": self.ok,
            "sources": {name: asdict(r) for name, r in self.sources.items()},
            "ignored_files": self.ignored_files,
        }


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_source_files(directory: Path) -> tuple[dict[str, list[Path]], list[Path]]:
    """Source files in `directory` by source name, and files that are not any source's."""
    found: dict[str, list[Path]] = {}
    ignored: list[Path] = []
    for path in sorted(directory.iterdir()):
        if not path.is_file():
            continue
        stem, suffix = path.stem, path.suffix.lower()
        if suffix in SUFFIXES and stem in SOURCES:
            found.setdefault(stem, []).append(path)
        elif suffix in SUFFIXES:
            ignored.append(path)
    return found, ignored


MAX_ROW_BYTES = 1 << 20  # a CSV line longer than this (1 MiB) is refused before pandas reads the file


def count_rows(path: Path) -> int:
    """Data rows in the file; FileLayoutError when a CSV line is longer than MAX_ROW_BYTES (checked on the
    same pass, so a file of one endless line is refused without being parsed)."""
    if path.suffix.lower() == ".parquet":
        return pq.ParquetFile(path).metadata.num_rows
    lines = 0
    run = 0  # bytes since the last newline
    line = 1
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            newlines = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)
            if len(newlines):
                gaps = np.diff(newlines, prepend=-1)
                gaps[0] += run
                longest = int(np.argmax(gaps))
                if gaps[longest] - 1 > MAX_ROW_BYTES:
                    raise FileLayoutError(f"{path.name}: line {line + longest} is longer than {MAX_ROW_BYTES:,} bytes")
                run = len(block) - int(newlines[-1]) - 1
            else:
                run += len(block)
            if run > MAX_ROW_BYTES:
                raise FileLayoutError(f"{path.name}: line {line + len(newlines)} is longer than {MAX_ROW_BYTES:,} "
                                      "bytes")
            lines += len(newlines)
            line += len(newlines)
    return max(lines - 1, 0)


def read_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """Chunks of the file; CSV cells stay text so that parsing problems are reported per cell."""
    if path.suffix.lower() == ".parquet":
        parquet = pq.ParquetFile(path)
        for batch in parquet.iter_batches(batch_size=chunk_rows):
            yield batch.to_pandas()
        return
    yield from pd.read_csv(path, dtype=str, keep_default_na=False, chunksize=chunk_rows, encoding="utf-8")


MAX_HEADER_BYTES = 64 * 1024  # a CSV header line longer than this is refused before pandas reads anything
MAX_COLUMNS = 256  # more columns than any source has, by far: refused from the header alone
MAX_ROW_GROUP_BYTES = 2 << 30  # a Parquet row group that would decompress to more than this is refused


def _csv_header(path: Path) -> list[str]:
    """The header's cells, reading at most MAX_HEADER_BYTES (a 100,000-column file is refused at once)."""
    import csv

    with path.open("rb") as handle:
        head = handle.read(MAX_HEADER_BYTES + 1)
    line, newline, _ = head.partition(b"\n")
    if not newline and len(head) > MAX_HEADER_BYTES:
        raise FileLayoutError(f"{path.name}: the header line is longer than {MAX_HEADER_BYTES:,} bytes")
    try:
        text = line.decode("utf-8-sig").rstrip("\r")
    except UnicodeDecodeError:
        raise FileLayoutError(f"{path.name}: the header is not UTF-8 text") from None
    return next(csv.reader([text]), [])


def file_columns(path: Path) -> list[str]:
    """The file's columns, bounded before the file is read: at most MAX_COLUMNS, a CSV header of at most
    MAX_HEADER_BYTES, Parquet row groups that decompress to at most MAX_ROW_GROUP_BYTES."""
    if path.suffix.lower() == ".parquet":
        parquet = pq.ParquetFile(path)
        names = list(parquet.schema_arrow.names)
        meta = parquet.metadata
        for i in range(meta.num_row_groups):
            if meta.row_group(i).total_byte_size > MAX_ROW_GROUP_BYTES:
                raise FileLayoutError(f"{path.name}: row group {i} decompresses to "
                                      f"{meta.row_group(i).total_byte_size:,} bytes, over {MAX_ROW_GROUP_BYTES:,}")
    else:
        names = _csv_header(path)
    if len(names) > MAX_COLUMNS:
        raise FileLayoutError(f"{path.name}: {len(names):,} columns, more than the {MAX_COLUMNS} any source may have")
    if path.suffix.lower() != ".parquet":
        return list(pd.read_csv(path, dtype=str, nrows=0, encoding="utf-8").columns)
    return names


# ------------------------------------------------------------------------------------- writing rows


def _python_columns(good: pd.DataFrame, source_name: str) -> tuple[list[str], list[tuple]]:
    """Column names and row tuples of plain Python values (None for missing) for the driver."""
    names, arrays = [], []
    for spec in all_fields(SOURCES[source_name]):
        series = good[spec.name]
        missing = series.isna().to_numpy()
        if spec.kind == "date":
            # numpy formats dates far faster than strftime; missing dates become "NaT", masked below
            series = pd.Series(np.datetime_as_string(series.to_numpy(dtype="datetime64[D]")), index=series.index)
        elif spec.kind == "int":
            series = series.astype("Int64")
        values = np.array(series.astype(object), dtype=object)  # a writable copy
        values[missing] = None
        names.append(spec.name)
        arrays.append(values)
    return names, list(zip(*arrays, strict=True))


def _insert_rows(conn: sa.Connection, source_name: str, good: pd.DataFrame, batch_id: int) -> int:
    """Insert rows, skipping (credit_code, as_of) keys already stored; returns rows inserted."""
    if good.empty:
        return 0
    names, rows = _python_columns(good, source_name)
    names.append("batch_id")
    rows = [(*row, batch_id) for row in rows]
    table = source_table(source_name).name
    column_list = ", ".join(names)
    dialect = conn.dialect.name
    if dialect == "sqlite":
        placeholders = ", ".join("?" for _ in names)
        result = conn.exec_driver_sql(f"INSERT OR IGNORE INTO {table} ({column_list}) VALUES ({placeholders})", rows)
        return int(result.rowcount)
    if dialect == "postgresql":
        return _copy_postgres(conn, table, names, rows)
    raise RuntimeError(f"ingestion supports sqlite and postgresql, not {dialect}")


def _copy_postgres(conn: sa.Connection, table: str, names: list[str], rows: list[tuple]) -> int:
    """COPY into a temporary table, then insert what is not stored yet (COPY cannot skip conflicts)."""
    column_list = ", ".join(names)
    conn.exec_driver_sql(
        f"CREATE TEMP TABLE IF NOT EXISTS staging_{table} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP"
    )
    conn.exec_driver_sql(f"TRUNCATE staging_{table}")
    cursor = conn.connection.driver_connection.cursor()
    with cursor.copy(f"COPY staging_{table} ({column_list}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    result = conn.exec_driver_sql(
        f"INSERT INTO {table} ({column_list}) SELECT {column_list} FROM staging_{table} "
        "ON CONFLICT (credit_code, as_of) DO NOTHING"
    )
    return int(result.rowcount)


# ------------------------------------------------------------------------------------- one file


def _already_ingested(conn: sa.Connection, source_name: str, sha: str) -> sa.Row | None:
    query = sa.select(batches).where(batches.c.source == source_name, batches.c.file_sha256 == sha)
    return conn.execute(query).first()


def _write_quarantine(bad_chunks: list[pd.DataFrame], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    pd.concat(bad_chunks, ignore_index=True).to_csv(partial, index=False, encoding="utf-8")
    os.replace(partial, target)


def ingest_file(
    engine: sa.Engine,
    path: Path,
    source_name: str,
    quarantine_dir: Path,
    chunk_rows: int = 200_000,
    operator: str | None = None,
    progress: ProgressCallback | None = None,
) -> SourceResult:
    result = SourceResult(source=source_name, file=str(path))
    spec = SOURCES[source_name]
    try:
        check_columns(source_name, file_columns(path))
        total = count_rows(path)  # also bounds the width of every CSV line
    except (FileLayoutError, OSError, ValueError) as error:
        result.error = str(error)
        return result
    sha = file_sha256(path)
    started = dt.datetime.now(dt.UTC)
    bad_chunks: list[pd.DataFrame] = []
    quarantine = quarantine_dir / f"{source_name}-{sha[:12]}.csv"
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                # Keep this transaction's pages in memory until its commit: a spill to the file (a rollback
                # journal's default) takes the exclusive lock, and every reader (the API's quotes and key
                # look-ups) would then wait until the commit; measured 1.1 s against 0.13 s for a reader.
                conn.exec_driver_sql("PRAGMA cache_spill=OFF")
            previous = _already_ingested(conn, source_name, sha)
            if previous is not None:
                result.already_ingested = True
                result.batch_id = previous.id
                result.rows_read = previous.rows_read
                if progress:
                    progress(source_name, total, total)
                return result
            batch_id = conn.execute(
                batches.insert().values(
                    source=source_name, provider=spec.provider, file_name=path.name, file_sha256=sha,
                    rows_read=0, rows_accepted=0, rows_rejected=0, rows_already_stored=0,
                    operator=operator or _operator(), started_at=started, finished_at=started,
                )
            ).inserted_primary_key[0]
            row = 1
            seen_keys: list[np.ndarray] = []
            for raw in read_chunks(path, chunk_rows):
                chunk = validate_chunk(source_name, raw, first_row=row)
                chunk = _reject_cross_chunk_duplicates(chunk, seen_keys)
                inserted = _insert_rows(conn, source_name, chunk.good, batch_id)
                result.rows_read += len(raw)
                result.rows_accepted += inserted
                result.rows_already_stored += len(chunk.good) - inserted
                result.rows_rejected += len(chunk.bad)
                if not chunk.bad.empty:
                    bad_chunks.append(chunk.bad)
                row += len(raw)
                if progress:
                    progress(source_name, result.rows_read, total)
            if bad_chunks:
                _write_quarantine(bad_chunks, quarantine)
                result.quarantine_file = str(quarantine)
            conn.execute(
                batches.update().where(batches.c.id == batch_id).values(
                    rows_read=result.rows_read, rows_accepted=result.rows_accepted,
                    rows_rejected=result.rows_rejected, rows_already_stored=result.rows_already_stored,
                    quarantine_file=result.quarantine_file, finished_at=dt.datetime.now(dt.UTC),
                )
            )
            result.batch_id = batch_id
    except sa.exc.SQLAlchemyError as error:
        # The transaction rolled back: nothing of this file is stored; drop its quarantine report too.
        quarantine.unlink(missing_ok=True)
        cause = getattr(error, "orig", None) or error
        return SourceResult(source=source_name, file=str(path), error=f"database error, nothing stored: {cause}")
    except (OSError, ValueError) as error:
        quarantine.unlink(missing_ok=True)
        return SourceResult(source=source_name, file=str(path), error=f"cannot read file, nothing stored: {error}")
    return result


def _reject_cross_chunk_duplicates(chunk: ValidatedChunk, seen: list[np.ndarray]) -> ValidatedChunk:
    """Duplicates inside one chunk are caught by validation; this catches them across chunks.

    Keys are 64-bit hashes of (credit_code, as_of): a collision (odds about 1e-7 for millions of rows)
    would send a row to quarantine with the duplicate reason, never store it twice.
    """
    keys = pd.util.hash_pandas_object(chunk.good[["credit_code", "as_of"]], index=False).to_numpy()
    repeated = np.isin(keys, np.concatenate(seen)) if seen else np.zeros(len(keys), dtype=bool)
    seen.append(keys)
    if not repeated.any():
        return chunk
    mask = pd.Series(repeated, index=chunk.good.index)
    moved = chunk.good.loc[mask, ["_row", "credit_code"]].astype("string")
    moved["as_of"] = chunk.good.loc[mask, "as_of"].dt.strftime("%Y-%m-%d")
    moved["_reason"] = "duplicate credit_code and as_of earlier in the file"
    return ValidatedChunk(good=chunk.good.loc[~mask], bad=pd.concat([chunk.bad, moved], ignore_index=True))


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def ingest_directory(
    engine: sa.Engine,
    directory: Path,
    quarantine_dir: Path,
    chunk_rows: int = 200_000,
    operator: str | None = None,
    progress: ProgressCallback | None = None,
) -> IngestReport:
    report = IngestReport(directory=str(directory))
    found, ignored = find_source_files(directory)
    report.ignored_files = [str(p) for p in ignored]
    for source_name, paths in found.items():
        for path in paths:
            key = source_name if len(paths) == 1 else f"{source_name}:{path.name}"
            report.sources[key] = ingest_file(
                engine, path, source_name, quarantine_dir, chunk_rows, operator, progress
            )
    return report
