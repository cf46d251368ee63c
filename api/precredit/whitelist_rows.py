"""A whitelist's rows: read from a pre-credit run's output in batches, stored, served page by page and as files.

What the platform may see of a row (SPEC 5, "usable but not visible"; `api.visibility.PLATFORM_FIELDS`)
is the quote's whitelist applied to the batch columns, narrowed by the product's own `platform_fields`:

    credit_code, product, product_version                      always
    grade, tier                                                 "grade", "tier"
    limit_cny                                                   "limit_cny"
    rate_lo_pct, rate_hi_pct, rate_pct                          "rate_band", "rate"
    guarantee_fee_pct, subsidy_pct                              "guarantee_fee", "subsidy"
    expires_on                                                  "expiry_days"
    reasons, reasons_zh, reasons_en                             always (codes and texts; eligible rows have none)

Never an index, points, indicator values, PD inputs or SHAP values: they are not even read from the run.
Rates and fees are kept in integer basis points, the engine's own unit, so `bp / 100` gives back the run's
`rate_pct`, `fee_pct` and `subsidy_pct` bit for bit: the engine decided them, this module only copies them.

Memory stays flat whatever the size: the run is read `BATCH_ROWS` rows at a time (Parquet batches or
streamed CSV blocks, only the columns needed), each batch is written and committed before the next is
read, and pages and files are read back in credit-code order through the primary key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import sqlalchemy as sa

from api.tables import whitelist_files, whitelist_rows
from api.visibility import ALWAYS_FOR_PLATFORM, PLATFORM_FIELDS
from products.schema import ProductDefinition

BATCH_ROWS = 65_536
FILE_FORMAT = 1  # bump when the file layout changes (it is part of the files' ETag)

# row field -> the quote field (PLATFORM_FIELDS) that governs whether the platform may see it
ROW_FIELDS: dict[str, str] = {
    "credit_code": "product", "product": "product", "product_version": "product_version",
    "grade": "grade", "tier": "tier", "limit_cny": "limit_cny",
    "rate_lo_pct": "rate_band", "rate_hi_pct": "rate_band", "rate_pct": "rate",
    "guarantee_fee_pct": "guarantee_fee", "subsidy_pct": "subsidy", "expires_on": "expiry_days",
    "reasons": "reasons", "reasons_zh": "reasons", "reasons_en": "reasons",
}
assert set(ROW_FIELDS.values()) <= set(PLATFORM_FIELDS)
# row fields stored per row (the others come from the whitelist: product, version, expiry)
STORED = {"grade": "grade", "tier": "tier", "limit_cny": "limit_cny", "rate_lo_pct": "rate_lo_bp",
          "rate_hi_pct": "rate_hi_bp", "rate_pct": "rate_bp", "guarantee_fee_pct": "fee_bp",
          "subsidy_pct": "subsidy_bp", "reasons": "reasons", "reasons_zh": "reasons_zh", "reasons_en": "reasons_en"}
BP_FIELDS = {"rate_lo_pct", "rate_hi_pct", "rate_pct", "guarantee_fee_pct", "subsidy_pct"}
TEXT_FIELDS = ("reasons", "reasons_zh", "reasons_en")
# what each product reads from the run: never index, points, PD or explanations
RUN_COLUMNS = ("eligible", "grade", "tier", "limit_cny", "rate_lo_pct", "rate_hi_pct", "rate_pct", "fee_pct",
               "subsidy_pct", *TEXT_FIELDS)
ROW_COLUMNS = ("whitelist_id", "product", "credit_code", "grade", "tier", "limit_cny", "rate_lo_bp", "rate_hi_bp",
               "rate_bp", "fee_bp", "subsidy_bp", "reasons", "reasons_zh", "reasons_en")

ARROW_TYPES: dict[str, pa.DataType] = {
    "credit_code": pa.string(), "product": pa.string(), "product_version": pa.string(), "grade": pa.string(),
    "tier": pa.string(), "limit_cny": pa.int64(), "rate_lo_pct": pa.float64(), "rate_hi_pct": pa.float64(),
    "rate_pct": pa.float64(), "guarantee_fee_pct": pa.float64(), "subsidy_pct": pa.float64(),
    "expires_on": pa.date32(), "reasons": pa.string(), "reasons_zh": pa.string(), "reasons_en": pa.string(),
}


class RunFileError(ValueError):
    """The run's output cannot be read as a whitelist source (missing column, unknown grade, ...)."""


def visible_fields(narrowing: Sequence[str] | None) -> list[str]:
    """The row fields the platform may see under a product's `platform_fields` (None = the whole whitelist)."""
    return [f for f, q in ROW_FIELDS.items() if narrowing is None or q in ALWAYS_FOR_PLATFORM or q in narrowing]


# ------------------------------------------------------------------------------------- the product's terms


@dataclass(frozen=True)
class Terms:
    """A product's terms a whitelist row needs besides the run's columns: its grades, validity, visible fields."""

    product: str
    version: str
    grades: tuple[str, ...]
    expiry_days: int
    fields: tuple[str, ...]  # visible row fields

    @classmethod
    def of(cls, definition: ProductDefinition, rates: Mapping[str, float]) -> Terms:
        from scoring import compile_all

        plan = compile_all({definition.code: definition}, dict(rates))[definition.code]
        return cls(definition.code, plan.version, tuple(plan.grades), int(definition.quote_valid_days),
                   tuple(visible_fields(definition.platform_fields)))


# ------------------------------------------------------------------------------------- reading a run


def run_batches(path: Path, fmt: str, products: Sequence[str]) -> Iterator[pa.Table]:
    """The run's output, `BATCH_ROWS` rows at a time, only the columns the whitelist reads."""
    columns = ["credit_code", *(f"{p}.{c}" for p in products for c in RUN_COLUMNS)]
    if fmt == "parquet":
        source = pq.ParquetFile(path)
        missing = [c for c in columns if c not in source.schema_arrow.names]
        if missing:
            raise RunFileError(f"the run's output has no column {', '.join(missing[:3])}")
        # row group by row group (a run writes one per partition), handing the memory back after each:
        # iter_batches keeps growing dictionaries across row groups, and the pool keeps what was freed
        for group in range(source.num_row_groups):
            table = source.read_row_group(group, columns=columns, use_threads=False)
            for offset in range(0, table.num_rows, BATCH_ROWS):
                yield table.slice(offset, BATCH_ROWS)
            del table
            pa.default_memory_pool().release_unused()
        return
    header = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 16)).schema.names
    missing = [c for c in columns if c not in header]
    if missing:
        raise RunFileError(f"the run's output has no column {', '.join(missing[:3])}")
    types: dict[str, pa.DataType] = {"credit_code": pa.string()}
    for p in products:
        types |= {f"{p}.eligible": pa.bool_(), f"{p}.grade": pa.string(), f"{p}.tier": pa.string(),
                  f"{p}.limit_cny": pa.int64(), **{f"{p}.{c}": pa.float64() for c in RUN_COLUMNS if "_pct" in c},
                  **{f"{p}.{c}": pa.string() for c in TEXT_FIELDS}}
    reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=16 << 20),
                            convert_options=pacsv.ConvertOptions(column_types=types, include_columns=columns,
                                                                 strings_can_be_null=False))
    for batch in reader:
        yield pa.Table.from_batches([batch])


def _strings(column: pa.ChunkedArray) -> list[Any]:
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    return column.to_pylist()


def _bp(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    values = column.to_numpy(zero_copy_only=False).astype(np.float64)
    missing = np.isnan(values)
    return np.rint(np.where(missing, 0.0, values) * 100).astype(np.int64), missing


def _ints(values: np.ndarray, missing: np.ndarray) -> list[int | None]:
    out: list[int | None] = values.tolist()
    for i in np.flatnonzero(missing).tolist():
        out[i] = None
    return out


def product_rows(table: pa.Table, whitelist_id: int, terms: Terms) -> list[tuple]:
    """The stored rows (ROW_COLUMNS) of one batch's eligible enterprises for one product."""
    p = terms.product
    eligible = pc.fill_null(table[f"{p}.eligible"], False)  # an empty CSV cell is not an offer
    if not pc.any(eligible).as_py():
        return []
    sub = table.filter(eligible)
    grades = _strings(sub[f"{p}.grade"])
    unknown = sorted(set(grades) - set(terms.grades), key=str)
    if unknown:
        raise RunFileError(f"{p}: grade {unknown[0]!r} is not a grade of {p} {terms.version}")
    lo, lo_na = _bp(sub[f"{p}.rate_lo_pct"])
    hi, hi_na = _bp(sub[f"{p}.rate_hi_pct"])
    rate, rate_na = _bp(sub[f"{p}.rate_pct"])
    fee, fee_na = _bp(sub[f"{p}.fee_pct"])
    subsidy, subsidy_na = _bp(sub[f"{p}.subsidy_pct"])
    texts = [[t or None for t in _strings(sub[f"{p}.{c}"])] for c in TEXT_FIELDS]
    n = sub.num_rows
    return list(zip([whitelist_id] * n, [p] * n, _strings(sub["credit_code"]), grades, _strings(sub[f"{p}.tier"]),
                    sub[f"{p}.limit_cny"].to_pylist(), _ints(lo, lo_na), _ints(hi, hi_na), _ints(rate, rate_na),
                    _ints(fee, fee_na), _ints(subsidy, subsidy_na), *texts, strict=True))


def insert_rows(conn: sa.Connection, rows: list[tuple]) -> None:
    """Bulk insert: executemany on SQLite, COPY on PostgreSQL."""
    if not rows:
        return
    names = ", ".join(ROW_COLUMNS)
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"INSERT INTO {whitelist_rows.name} ({names}) VALUES "
                             f"({', '.join('?' for _ in ROW_COLUMNS)})", rows)
    elif conn.dialect.name == "postgresql":
        cursor = conn.connection.driver_connection.cursor()
        with cursor.copy(f"COPY {whitelist_rows.name} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    else:  # pragma: no cover - the service runs on SQLite and PostgreSQL
        conn.execute(whitelist_rows.insert(), [dict(zip(ROW_COLUMNS, r, strict=True)) for r in rows])


class GradeCounts:
    """Rows and total limits per product and grade, accumulated batch by batch."""

    def __init__(self, products: Sequence[str]) -> None:
        self.rows = {p: Counter[str]() for p in products}
        self.limit = {p: Counter[str]() for p in products}

    def add(self, product: str, rows: list[tuple]) -> None:
        for r in rows:
            self.rows[product][r[3]] += 1
            self.limit[product][r[3]] += r[5]

    def as_json(self, product: str, grades: Sequence[str]) -> dict[str, Any]:
        rows, limit = self.rows[product], self.limit[product]
        return {"rows": sum(rows.values()), "limit_cny": sum(limit.values()),
                "grades": {g: {"rows": rows[g], "limit_cny": limit[g]} for g in grades if rows[g]}}


def load_run(engine: sa.Engine, whitelist_id: int, path: Path, fmt: str, terms: Mapping[str, Terms],
             progress: Callable[[sa.Connection, int], None] | None = None) -> GradeCounts:
    """Stream the run's eligible rows of every product into `whitelist_rows`, one committed batch at a time
    (`progress(conn, rows so far)` is called inside each batch's transaction)."""
    counts = GradeCounts(list(terms))
    loaded = 0
    for table in run_batches(path, fmt, list(terms)):
        batch = {p: product_rows(table, whitelist_id, t) for p, t in terms.items()}
        with engine.begin() as conn:
            for p, rows in batch.items():
                insert_rows(conn, rows)
                counts.add(p, rows)
                loaded += len(rows)
            if progress is not None:
                progress(conn, loaded)
    return counts


# ------------------------------------------------------------------------------------- reading rows back


@dataclass(frozen=True)
class ProductView:
    """One product of one whitelist as the platform reads it."""

    whitelist_id: int
    product: str
    product_version: str
    expires_on: dt.date | None
    fields: tuple[str, ...]


_SELECTED = [whitelist_rows.c.credit_code, *(whitelist_rows.c[c] for c in STORED.values())]
_POSITION = {c.name: i for i, c in enumerate(_SELECTED)}


def row_dicts(view: ProductView, rows: Sequence[Any]) -> list[dict[str, Any]]:
    """Rows of `page` (columns in `_SELECTED` order) as the platform's JSON objects, fields in view order."""
    constants = {"product": view.product, "product_version": view.product_version,
                 "expires_on": view.expires_on.isoformat() if view.expires_on else None}
    plan = [(f, _POSITION["credit_code" if f == "credit_code" else STORED.get(f, "credit_code")],
             "const" if f in constants else "bp" if f in BP_FIELDS else "text" if f in TEXT_FIELDS else "value")
            for f in view.fields]
    out = []
    for r in rows:
        item: dict[str, Any] = {}
        for f, i, kind in plan:
            if kind == "value":
                item[f] = r[i]
            elif kind == "const":
                item[f] = constants[f]
            elif kind == "bp":
                item[f] = None if r[i] is None else r[i] / 100
            else:
                item[f] = r[i] or ""
        out.append(item)
    return out


def page(conn: sa.Connection, view: ProductView, after: str | None, limit: int) -> list[Any]:
    """Up to `limit` rows after credit code `after`, in credit-code order (a primary-key range scan)."""
    t = whitelist_rows
    query = sa.select(*_SELECTED).where(t.c.whitelist_id == view.whitelist_id, t.c.product == view.product)
    if after is not None:
        query = query.where(t.c.credit_code > after)
    return list(conn.execute(query.order_by(t.c.credit_code).limit(limit)))


def rows_by_code(conn: sa.Connection, whitelist_id: int, product: str, codes: Sequence[str]) -> dict[str, Any]:
    """Rows (in `_SELECTED` order) of these credit codes, by code."""
    t = whitelist_rows
    if not codes:
        return {}
    query = sa.select(*_SELECTED).where(t.c.whitelist_id == whitelist_id, t.c.product == product,
                                        t.c.credit_code.in_(list(codes)))
    return {r.credit_code: r for r in conn.execute(query)}


def arrow_schema(view: ProductView) -> pa.Schema:
    return pa.schema([(f, ARROW_TYPES[f]) for f in view.fields])


def _arrow_batch(view: ProductView, rows: list[Any], schema: pa.Schema) -> pa.RecordBatch:
    """Rows of `page` (columns in `_SELECTED` order) as one record batch, converted column by column."""
    n = len(rows)
    stored = list(zip(*rows, strict=True)) if rows else [() for _ in _SELECTED]
    columns = []
    for f in view.fields:
        if f in ("product", "product_version", "expires_on"):
            value = {"product": view.product, "product_version": view.product_version,
                     "expires_on": view.expires_on}[f]
            columns.append(pa.array([value] * n, ARROW_TYPES[f]))
            continue
        values = stored[_POSITION["credit_code" if f == "credit_code" else STORED[f]]]
        if f in BP_FIELDS:
            bp = np.array(values, dtype=np.float64)  # None -> NaN -> null
            columns.append(pa.array(bp / 100, ARROW_TYPES[f], from_pandas=True))
        elif f in TEXT_FIELDS:
            columns.append(pa.array([v or "" for v in values], ARROW_TYPES[f]))
        else:
            columns.append(pa.array(values, ARROW_TYPES[f]))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def iter_rows(engine: sa.Engine, view: ProductView, batch_rows: int = BATCH_ROWS) -> Iterator[list[Any]]:
    """Every row of the product, in credit-code order, `batch_rows` at a time (keyset pages: each a short
    read, so nothing holds a long transaction open while a file is written)."""
    after = None
    while True:
        with engine.connect() as conn:
            rows = page(conn, view, after, batch_rows)
        if not rows:
            return
        yield rows
        after = rows[-1].credit_code


_file_lock = threading.Lock()


def file_path(directory: Path, sha: str, fmt: str) -> Path:
    return directory / f"{sha}.{fmt}"


def write_file(engine: sa.Engine, view: ProductView, fmt: str, directory: Path) -> tuple[str, int]:
    """Write the product's rows as a Parquet (zstd) or CSV file, content-addressed: `<sha256>.<fmt>` in
    `directory` (written aside, then renamed). Returns (sha256, bytes); also recorded in `whitelist_files`."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{view.whitelist_id}-{view.product}.{os.getpid()}.{threading.get_ident()}.{fmt}.tmp"
    schema = arrow_schema(view)
    writer: Any = (pq.ParquetWriter(tmp, schema, compression="zstd") if fmt == "parquet"
                   else pacsv.CSVWriter(tmp, schema))
    try:
        wrote = False
        for rows in iter_rows(engine, view):
            writer.write_batch(_arrow_batch(view, rows, schema))
            wrote = True
        if not wrote:
            writer.write_table(schema.empty_table())
    finally:
        writer.close()
    digest = hashlib.sha256()
    with tmp.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    sha, size = digest.hexdigest(), tmp.stat().st_size
    os.replace(tmp, file_path(directory, sha, fmt))
    with engine.begin() as conn:
        known = conn.execute(sa.select(whitelist_files.c.sha256).where(
            whitelist_files.c.whitelist_id == view.whitelist_id, whitelist_files.c.product == view.product,
            whitelist_files.c.format == fmt)).scalar_one_or_none()
        if known is None:
            conn.execute(whitelist_files.insert().values(whitelist_id=view.whitelist_id, product=view.product,
                                                         format=fmt, sha256=sha, bytes=size,
                                                         created_at=dt.datetime.now(dt.UTC)))
        elif known != sha:  # the same rows written by another library version: serve the new file
            conn.execute(whitelist_files.update().where(
                whitelist_files.c.whitelist_id == view.whitelist_id, whitelist_files.c.product == view.product,
                whitelist_files.c.format == fmt).values(sha256=sha, bytes=size))
    return sha, size


def ensure_file(engine: sa.Engine, view: ProductView, fmt: str, directory: Path) -> tuple[Path, str, int]:
    """The product's file (written on first request, then served from `directory`): (path, sha256, bytes)."""
    query = sa.select(whitelist_files.c.sha256, whitelist_files.c.bytes).where(
        whitelist_files.c.whitelist_id == view.whitelist_id, whitelist_files.c.product == view.product,
        whitelist_files.c.format == fmt)
    with engine.connect() as conn:
        known = conn.execute(query).first()
    if known is not None and file_path(directory, known.sha256, fmt).is_file():
        return file_path(directory, known.sha256, fmt), known.sha256, known.bytes
    with _file_lock:  # one writer per process; another process writing the same file is harmless
        sha, size = write_file(engine, view, fmt, directory)
    return file_path(directory, sha, fmt), sha, size


def fields_json(fields: Sequence[str]) -> str:
    return json.dumps(list(fields))
