"""Point-in-time feature assembly (pure: frames in, frame out; no I/O).

For an as-of date, each source contributes its latest record dated on or before that date; a record
dated after it is never used. Columns are named `<source>.<field>`; `has_<source>` says whether the
enterprise had any record of that source at the date (a missing source is a flag, never a zero).
The same function serves one enterprise and a million.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from features.derive import derive
from features.sources import GOVERNMENT_SOURCES, SOURCES


def latest_on_or_before(frame: pd.DataFrame, as_of: dt.date) -> pd.DataFrame:
    """Latest row per credit_code with `as_of` <= the given date, indexed by credit_code."""
    dates = pd.to_datetime(frame["as_of"])
    eligible = frame.loc[dates <= pd.Timestamp(as_of)]
    if eligible.empty:
        return eligible.set_index("credit_code")
    order = pd.to_datetime(eligible["as_of"]).argsort(kind="stable")
    latest = eligible.iloc[order].drop_duplicates("credit_code", keep="last")
    return latest.set_index("credit_code")


def point_in_time(
    frames: dict[str, pd.DataFrame],
    as_of: dt.date,
    credit_codes: list[str] | None = None,
    sources: tuple[str, ...] = GOVERNMENT_SOURCES,
) -> pd.DataFrame:
    """One row per enterprise with `<source>.<field>` columns, `has_<source>` flags and derived indicators.

    The population is `credit_codes` when given, else every enterprise seen in any source by `as_of`.
    """
    parts: dict[str, pd.DataFrame] = {}
    for name in sources:
        spec = SOURCES[name]
        frame = frames.get(name)
        wanted = ["as_of", *spec.field_names]
        if frame is None:
            latest = pd.DataFrame(columns=wanted, index=pd.Index([], name="credit_code"))
        else:
            latest = latest_on_or_before(frame, as_of)
            latest = latest[[c for c in wanted if c in latest.columns]]
        parts[name] = latest.add_prefix(f"{name}.")
    if credit_codes is None:
        index = pd.Index(sorted(set().union(*(p.index for p in parts.values()))), name="credit_code")
    else:
        index = pd.Index(list(dict.fromkeys(credit_codes)), name="credit_code")
    aligned = []
    for name, part in parts.items():
        # get_indexer: isin on pandas-3 string indexes builds an Arrow scalar per value (slow)
        present = pd.Series(part.index.get_indexer(index) >= 0, index=index, name=f"has_{name}")
        aligned.append(present.to_frame())
        aligned.append(part.reindex(index))
    features = pd.concat(aligned, axis=1)
    features = _restore_dtypes(features, sources)
    return derive(features, as_of)


def _restore_dtypes(features: pd.DataFrame, sources: tuple[str, ...]) -> pd.DataFrame:
    """Reindexing turns absent int/bool columns into object; give them nullable dtypes."""
    converted = {}
    for name in sources:
        for spec in SOURCES[name].fields:
            col = f"{name}.{spec.name}"
            if col not in features.columns:
                continue
            if spec.kind == "bool":
                converted[col] = features[col].astype("boolean")
            elif spec.kind in ("int", "float"):
                converted[col] = pd.to_numeric(features[col], errors="coerce").astype("float64")
            elif spec.kind == "date":
                converted[col] = pd.to_datetime(features[col])
        date_col = f"{name}.as_of"
        if date_col in features.columns:
            converted[date_col] = pd.to_datetime(features[date_col])
    return pd.DataFrame({c: converted.get(c, features[c]) for c in features.columns}, index=features.index)
