"""Point-in-time feature snapshots: a date's whole population kept as a Parquet file next to the store.

Assembling a date's features means reading every source's rows back and picking each enterprise's latest
record; at a region's size that is most of the cost of a service start, a batch run, a simulation or a
monitoring report. The snapshot keeps the assembled frame per as-of date with the store's fingerprint it
reflects (per source: rows and newest ingestion batch). Stored rows are never changed by ingestion (a row
already stored is skipped), so when only new batches arrived, the snapshot is *extended*: only the
enterprises with a new row dated on or before the date are assembled again and replace theirs. Any other
change (rows removed, another database) rebuilds it. Reads always give the frame a full assembly would
give, bit for bit (`tests/test_snapshot.py`). Files are replaced atomically, so processes sharing a store
may build side by side.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from features.settings import get_settings
from features.sources import GOVERNMENT_SOURCES
from features.store.load import load_features
from features.store.tables import batches, source_table

FORMAT = "indexloan-feature-snapshot/2"  # 2: row groups of ROW_GROUP_ROWS
_META_KEY = b"indexloan"
# Rows per Parquet row group (at most): a batch run's default partition is one row group (`group_bounds`
# cuts both), so a Dask worker decodes only its own rows.
ROW_GROUP_ROWS = 100_000


def group_bounds(rows: int, groups: int | None = None) -> list[tuple[int, int]]:
    """`groups` contiguous (start, stop) row ranges of near-equal size; by default as many as it takes to
    hold at most ROW_GROUP_ROWS each. The snapshot's row groups and a batch run's default partitions."""
    count = groups or max(1, -(-rows // ROW_GROUP_ROWS))
    count = max(1, min(count, rows))
    edges = np.linspace(0, rows, count + 1).round().astype(np.int64)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def open_parquet(path: Path | str) -> pq.ParquetFile:
    """A snapshot (or a run's inputs file) opened memory-mapped: column chunks are decoded straight from the
    page cache. Read into buffers instead, a million rows cost seconds of kernel time faulting in fresh pages
    (bench/batch.py: 0.5 s against 2.7-6 s of system time for 1,000,000 rows)."""
    return pq.ParquetFile(path, memory_map=True)


@dataclass(frozen=True)
class Fingerprint:
    """What a snapshot reflects: per source, the number of stored rows and the newest batch id."""

    sources: dict[str, tuple[int, int]]

    def extends(self, older: Fingerprint) -> bool:
        """True when `self` differs from `older` only by rows of newer batches (nothing removed)."""
        if set(self.sources) != set(older.sources):
            return False
        return all(self.sources[s][0] >= older.sources[s][0] and self.sources[s][1] >= older.sources[s][1]
                   for s in self.sources)

    def to_json(self) -> dict[str, list[int]]:
        return {s: list(v) for s, v in self.sources.items()}

    @classmethod
    def from_json(cls, data: dict[str, list[int]]) -> Fingerprint:
        return cls({s: (int(v[0]), int(v[1])) for s, v in data.items()})


def fingerprint(conn: sa.Connection) -> Fingerprint:
    """Per source, its stored rows and its newest batch that stored any. The newest batch comes from the
    batches table (one row per ingested file; rows reach a source table only with their batch), not from
    `max(batch_id)` over the source table, a scan of every row; the count reads only the primary key's
    index and still sees rows removed behind ingestion's back, which the batches table cannot."""
    query = (sa.select(batches.c.source, sa.func.max(batches.c.id)).where(batches.c.rows_accepted > 0)
             .group_by(batches.c.source))
    newest = {str(source): int(top) for source, top in conn.execute(query).all()}
    out: dict[str, tuple[int, int]] = {}
    for name in GOVERNMENT_SOURCES:
        rows = conn.execute(sa.select(sa.func.count()).select_from(source_table(name))).scalar_one()
        out[name] = (int(rows), newest.get(name, 0))
    return Fingerprint(out)


def _url_digest(url: sa.URL) -> str:
    return hashlib.sha256(url.render_as_string(hide_password=True).encode("utf-8")).hexdigest()[:16]


def snapshot_dir(engine: sa.Engine) -> Path | None:
    """Where `engine`'s snapshots live: the setting, else beside a SQLite file, else (a server database) in a
    folder of the system's temporary directory named after the URL, as the runtime directory."""
    settings = get_settings()
    if not settings.feature_snapshots:
        return None
    url = engine.url
    if settings.feature_snapshot_dir is not None:
        base = Path(settings.feature_snapshot_dir)
        return base / _url_digest(url)
    if url.get_backend_name() == "sqlite":
        if url.database in (None, "", ":memory:"):
            return None  # an in-memory store lives as long as its process: nothing to keep
        database = Path(url.database).resolve()
        return database.parent / f".{database.name}.snapshots"
    return Path(tempfile.gettempdir()) / f"indexloan-{os.getuid()}-{_url_digest(url)}" / "snapshots"


def _path(directory: Path, as_of: dt.date) -> Path:
    return directory / f"features-{as_of.isoformat()}.parquet"


def snapshot_path(engine: sa.Engine, as_of: dt.date) -> Path | None:
    """The file holding `as_of`'s snapshot of `engine`'s store (None when snapshots are off)."""
    directory = snapshot_dir(engine)
    return None if directory is None else _path(directory, as_of)


def _read(path: Path, as_of: dt.date, columns: Sequence[str] | None = None
          ) -> tuple[pd.DataFrame, Fingerprint] | None:
    """The snapshot's frame (only `columns` of it, in the file's order, when given) and its fingerprint."""
    try:
        source = open_parquet(path)
        meta = json.loads((source.schema_arrow.metadata or {})[_META_KEY])
        if meta.get("format") != FORMAT or meta.get("as_of") != as_of.isoformat():
            return None
        wanted = None if columns is None else [c for c in source.schema_arrow.names if c in set(columns)]
        frame = source.read(columns=wanted, use_pandas_metadata=True).to_pandas()  # the index comes along
    except (OSError, KeyError, ValueError, pa.ArrowException):
        return None  # unreadable or foreign: rebuilt from the store
    dtypes = {c: t for c, t in (meta.get("dtypes") or {}).items() if c in frame.columns}
    frame = frame.astype(dtypes) if dtypes else frame
    return frame, Fingerprint.from_json(meta["fingerprint"])


def _write(path: Path, frame: pd.DataFrame, as_of: dt.date, mark: Fingerprint) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame, preserve_index=True)
    meta = {"format": FORMAT, "as_of": as_of.isoformat(), "fingerprint": mark.to_json(),
            "dtypes": {c: str(t) for c, t in frame.dtypes.items()}}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), _META_KEY: json.dumps(meta)})
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        # strings dictionary-encoded, numbers plain: LZ4 keeps the size of the defaults and decodes faster
        strings = [f.name for f in table.schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
        with pq.ParquetWriter(tmp, table.schema, use_dictionary=strings, compression="lz4") as writer:
            for a, b in group_bounds(len(frame)):
                writer.write_table(table.slice(a, b - a), row_group_size=max(1, b - a))  # one row group each
        os.replace(tmp, path)  # readers see the old file or the new one, never half of one
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _only_added(conn: sa.Connection, old: Fingerprint) -> bool:
    """True when every row the older fingerprint counted is still stored (none removed)."""
    for name in GOVERNMENT_SOURCES:
        table = source_table(name)
        rows, newest = old.sources[name]
        kept = conn.execute(sa.select(sa.func.count()).where(table.c.batch_id <= newest)).scalar_one()
        if int(kept) != rows:
            return False
    return True


def _changed_codes(conn: sa.Connection, old: Fingerprint, as_of: dt.date) -> list[str]:
    """Enterprises with a row from a batch newer than the snapshot's, dated on or before `as_of`."""
    codes: set[str] = set()
    for name in GOVERNMENT_SOURCES:
        table = source_table(name)
        query = sa.select(table.c.credit_code).distinct().where(
            table.c.batch_id > old.sources[name][1], table.c.as_of <= as_of)
        codes.update(conn.execute(query).scalars())
    return sorted(codes)


def _extended(frame: pd.DataFrame, fresh: pd.DataFrame) -> pd.DataFrame:
    """`frame` with the rows of `fresh` replacing (or added to) its own, in the full assembly's order."""
    kept = frame.loc[~frame.index.isin(fresh.index)]
    fresh = fresh.reindex(columns=frame.columns).astype(frame.dtypes.to_dict())
    out = pd.concat([kept, fresh]).sort_index(kind="stable")
    out.index.name = frame.index.name
    return out


def _only(frame: pd.DataFrame, columns: Sequence[str] | None) -> pd.DataFrame:
    return frame if columns is None else frame[[c for c in frame.columns if c in set(columns)]]


def population_features(as_of: dt.date, engine: sa.Engine, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Point-in-time features of every enterprise the store knows on `as_of` (= `load_features(None, ...)`),
    from the date's snapshot when it is current, extended or rebuilt (and kept) when it is not.

    `columns`: only these of the frame's columns (in the frame's order; names it lacks are left out), read
    alone from a current snapshot."""
    directory = snapshot_dir(engine)
    if directory is None:
        return _only(load_features(None, as_of, engine=engine), columns)
    path = _path(directory, as_of)
    with engine.connect() as conn:
        mark = fingerprint(conn)
        if path.exists() and columns is not None:
            narrow = _read(path, as_of, columns)
            if narrow is not None and narrow[1] == mark:
                return narrow[0]
        cached = _read(path, as_of) if path.exists() else None
        if cached is not None and cached[1] == mark:
            return _only(cached[0], columns)
        if cached is not None and mark.extends(cached[1]) and _only_added(conn, cached[1]):
            changed = _changed_codes(conn, cached[1], as_of)
        else:
            changed = None
    if changed is None:
        frame = load_features(None, as_of, engine=engine)
    else:
        frame = cached[0] if not changed else _extended(cached[0], load_features(changed, as_of, engine=engine))
    with contextlib.suppress(OSError):  # a snapshot is a cache: a read-only or full disk costs speed, not answers
        _write(path, frame, as_of, mark)
    return _only(frame, columns)


def refresh_snapshots(engine: sa.Engine) -> list[dt.date]:
    """Bring every kept snapshot of `engine` up to date (after an ingestion); the dates refreshed."""
    directory = snapshot_dir(engine)
    if directory is None or not directory.exists():
        return []
    dates = []
    for path in sorted(directory.glob("features-*.parquet")):
        try:
            day = dt.date.fromisoformat(path.stem.removeprefix("features-"))
        except ValueError:
            continue
        population_features(day, engine)
        dates.append(day)
    return dates
