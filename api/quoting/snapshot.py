"""Exact serialisation of a quote's inputs: the feature values used, with their kinds.

Floats round-trip through JSON exactly (shortest repr), so a replay sees bit-identical inputs.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import numpy as np
import orjson
import pandas as pd


def canonical_json(obj: Any, sort_keys: bool = True) -> str:
    """Compact JSON. Configuration keeps its key order (`sort_keys=False`): the order of a product's
    dimensions and indicators is part of its meaning (it orders reasons)."""
    return json.dumps(obj, sort_keys=sort_keys, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _numpy_scalar(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def fast_json(obj: Any) -> bytes:
    """Compact JSON with sorted keys as UTF-8 bytes, for the quote path (orjson: ~10x `json.dumps`).
    orjson would write NaN and infinity as null; the quote's producers never emit them (missing is None,
    infinity is text: see `_value` and `RiskFactor.to_json`), and tests check every enterprise's quote."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS, default=_numpy_scalar)


def sha256_json(obj: Any, sort_keys: bool = True) -> str:
    return hashlib.sha256(canonical_json(obj, sort_keys).encode("utf-8")).hexdigest()


def _kind(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "b"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "t"
    if pd.api.types.is_numeric_dtype(series):
        return "f"
    return "s"


def _value(kind: str, v: Any) -> Any:
    if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v)):
        return None
    if kind == "b":
        return bool(v)
    if kind == "f":
        v = float(v)
        # JSON has no infinity (a ratio over a zero base can be one): spelled as text, read back exactly
        return v if math.isfinite(v) else repr(v)
    if kind == "t":
        return pd.Timestamp(v).isoformat()
    return str(v)


def _days(values: Any) -> np.ndarray:
    """Each value's calendar day as YYYY-MM-DD (its wall-clock day when it has a time zone), None when missing:
    formatted for the whole column at once, where boxing a Timestamp per firm and source cost a re-render most
    of its time (py-spy)."""
    if pd.api.types.is_datetime64_any_dtype(getattr(values, "dtype", None)):
        index = pd.DatetimeIndex(values)
        if index.tz is not None:
            index = index.tz_localize(None)
        days = np.datetime_as_string(index.to_numpy().astype("datetime64[D]"), unit="D").astype(object)
        days[index.isna()] = None
        return days
    return np.array([None if pd.isna(v) else v.date().isoformat() for v in values], dtype=object)


def _same_objects(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Elementwise: the same object, or two equal strings (what `_value` writes is then the same)."""
    return np.fromiter((x is y or (type(x) is str and type(y) is str and x == y) for x, y in zip(left, right,
                                                                                              strict=True)),
                       dtype=bool, count=len(left))


class RowEncoder:
    """A quote's snapshot of one row of a frame: {column: [kind, value]} for its features and each source's
    as-of date. Each column is taken once as an array, so encoding a row of the whole population is one
    array read per column; a one-row frame (a quote for another date) goes through the same code."""

    def __init__(self, frame: pd.DataFrame, columns: list[str]) -> None:
        present = [c for c in columns if c in frame.columns]
        self._columns = []
        for c in present:
            series = frame[c]
            kind = _kind(series)
            if kind in ("f", "b"):  # read as float64 with NaN for missing: one C-level read per value
                array: Any = series.to_numpy(dtype=np.float64, na_value=np.nan)
            elif kind == "s":  # Arrow-backed text: indexing an object array is ~10x cheaper per value
                array = series.to_numpy(dtype=object)
            else:
                array = series.array
            self._columns.append((c, kind, array))
        self._as_of = [(c[:-6], _days(frame[c].array)) for c in frame.columns if c.endswith(".as_of")]

    def features(self, i: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for c, kind, array in self._columns:
            v = array[i]
            if kind == "f":
                v = None if v != v else (float(v) if math.isfinite(v) else repr(float(v)))
            elif kind == "b":
                v = None if v != v else bool(v)
            else:
                v = _value(kind, v)
            out[c] = [kind, v]
        return out

    def same_rows(self, other: RowEncoder, mine: np.ndarray, theirs: np.ndarray) -> np.ndarray:
        """Per pair of rows (`mine[k]` here, `theirs[k]` in `other`): True where both encode to the same features
        and source dates, decided a column at a time (floats bit for bit, text as equal strings, the same object
        for a missing value), so without encoding either; False wherever that is not certain."""
        unsure = np.zeros(len(mine), dtype=bool)
        if ([(c, k) for c, k, _ in self._columns] != [(c, k) for c, k, _ in other._columns]
                or [s for s, _ in self._as_of] != [s for s, _ in other._as_of]):
            return unsure
        same = np.ones(len(mine), dtype=bool)
        for (_, kind, a), (_, _, b) in zip(self._columns, other._columns, strict=True):
            if kind in ("f", "b"):
                same &= a[mine].view(np.int64) == b[theirs].view(np.int64)
            elif kind == "t":
                if a.dtype != b.dtype or not hasattr(a, "asi8"):
                    return unsure
                same &= a.asi8[mine] == b.asi8[theirs]
            else:
                same &= _same_objects(a[mine], b[theirs])
        for (_, a), (_, b) in zip(self._as_of, other._as_of, strict=True):
            same &= _same_objects(a[mine], b[theirs])
        return same

    def provenance(self, i: int) -> dict[str, str]:
        return {source: day for source, days in self._as_of if (day := days[i]) is not None}


def features_from_json(credit_code: str, data: dict[str, Any]) -> pd.DataFrame:
    """The one-row features frame back from `RowEncoder.features`."""
    return features_from_json_rows([credit_code], [data])


def features_from_json_rows(credit_codes: list[str], rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A features frame back from several `RowEncoder.features` (one per credit code): the one decoder, for a
    replayed row and for a batch of stored quotes alike. A column missing from a row is missing there."""
    index = pd.Index(list(credit_codes), name="credit_code")
    kinds: dict[str, str] = {}
    for data in rows:
        for column, (kind, _) in data.items():
            kinds.setdefault(column, kind)
    columns: dict[str, pd.Series] = {}
    for column, kind in kinds.items():
        values = [data[column][1] if column in data else None for data in rows]
        if kind == "b":
            columns[column] = pd.Series([pd.NA if v is None else v for v in values], index=index, dtype="boolean")
        elif kind == "f":
            columns[column] = pd.Series([np.nan if v is None else float(v) for v in values], index=index,
                                        dtype="float64")
        elif kind == "t":
            columns[column] = pd.Series([pd.NaT if v is None else pd.Timestamp(v) for v in values], index=index)
        else:
            columns[column] = pd.Series(values, index=index, dtype=object)
    return pd.DataFrame(columns, index=index)
