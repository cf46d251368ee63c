"""Reading source rows back from the store and assembling point-in-time features."""

from __future__ import annotations

import datetime as dt

import pandas as pd
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
