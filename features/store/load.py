"""Reading source rows back from the store and assembling point-in-time features."""

from __future__ import annotations

import datetime as dt
import io

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa

from features.assemble import point_in_time
from features.sources import GOVERNMENT_SOURCES, SOURCES
from features.store.db import connect
from features.store.tables import source_table


def _typed(frame: pd.DataFrame, source_name: str) -> pd.DataFrame:
    spec = SOURCES[source_name]
    frame["as_of"] = pd.to_datetime(frame["as_of"])
    for f in spec.fields:
        if f.kind == "bool":
            frame[f.name] = frame[f.name].astype("boolean")
        elif f.kind == "date":
            frame[f.name] = pd.to_datetime(frame[f.name])
    return frame


_ARROW_TYPES = {"int": pa.float64(), "float": pa.float64(), "bool": pa.bool_(), "date": pa.timestamp("s"),
                "str": pa.string(), "enum": pa.string()}


def _copy_frame(conn: sa.Connection, query: sa.Select, source_name: str) -> pd.DataFrame:
    """PostgreSQL's bulk path: the query's rows as CSV through COPY, parsed by Arrow, typed as `_typed` makes
    `pd.read_sql`'s frame (several times faster than fetching rows as Python objects)."""
    sql = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    buffer = io.BytesIO()
    with conn.connection.cursor() as cursor, cursor.copy(f"COPY ({sql}) TO STDOUT (FORMAT CSV, HEADER)") as copy:
        for block in copy:
            buffer.write(block)
    types = {"credit_code": pa.string(), "as_of": pa.timestamp("s"), "consent_ref": pa.string(),
             "batch_id": pa.int64(), **{f.name: _ARROW_TYPES[f.kind] for f in SOURCES[source_name].fields}}
    options = pacsv.ConvertOptions(column_types=types, true_values=["t"], false_values=["f"],
                                   null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=False)
    table = pacsv.read_csv(pa.py_buffer(buffer.getbuffer()), convert_options=options)
    frame = table.to_pandas()
    for spec in SOURCES[source_name].fields:
        if spec.kind == "bool":
            frame[spec.name] = frame[spec.name].astype("boolean")
    return frame


def load_source_frames(
    as_of: dt.date,
    credit_codes: list[str] | None = None,
    sources: tuple[str, ...] = GOVERNMENT_SOURCES,
    engine: sa.Engine | None = None,
) -> dict[str, pd.DataFrame]:
    """Rows dated on or before `as_of` per source (optionally only for some enterprises)."""
    engine = engine or connect()
    frames: dict[str, pd.DataFrame] = {}
    with engine.connect() as conn:
        for name in sources:
            table = source_table(name)
            query = sa.select(table).where(table.c.as_of <= as_of)
            if credit_codes is not None:
                query = query.where(table.c.credit_code.in_(credit_codes))
            if conn.dialect.name == "postgresql" and credit_codes is None:
                frames[name] = _typed(_copy_frame(conn, query, name), name)
            else:
                frames[name] = _typed(pd.read_sql(query, conn), name)
    return frames


def load_features(
    credit_codes: list[str] | None, as_of: dt.date, engine: sa.Engine | None = None
) -> pd.DataFrame:
    """Point-in-time features for the given enterprises (or all), only those the store knows."""
    frames = load_source_frames(as_of, credit_codes, engine=engine)
    features = point_in_time(frames, as_of)
    if credit_codes is not None:
        known = [c for c in dict.fromkeys(credit_codes) if c in features.index]
        features = features.loc[known]
    return features
