"""Exact serialisation of a quote's inputs: the feature values used, with their kinds.

Floats round-trip through JSON exactly (shortest repr), so a replay sees bit-identical inputs.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import numpy as np
import pandas as pd


def canonical_json(obj: Any, sort_keys: bool = True) -> str:
    """Compact JSON. Configuration keeps its key order (`sort_keys=False`): the order of a product's
    dimensions and indicators is part of its meaning (it orders reasons)."""
    return json.dumps(obj, sort_keys=sort_keys, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


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
        return float(v)
    if kind == "t":
        return pd.Timestamp(v).isoformat()
    return str(v)


def features_to_json(row: pd.DataFrame, columns: list[str]) -> dict[str, Any]:
    """{column: [kind, value]} for one enterprise's features (columns absent from the frame are skipped)."""
    present = [c for c in columns if c in row.columns]
    sub = row[present]
    kinds = [_KIND_BY_DTYPE.get(dtype) or _KIND_BY_DTYPE.setdefault(dtype, _kind(sub[c]))
             for c, dtype in zip(present, sub.dtypes, strict=True)]
    values = sub.iloc[0].tolist()
    return {c: [k, _value(k, v)] for c, k, v in zip(present, kinds, values, strict=True)}


_KIND_BY_DTYPE: dict[Any, str] = {}


def features_from_json(credit_code: str, data: dict[str, Any]) -> pd.DataFrame:
    """The one-row features frame back from `features_to_json`."""
    columns: dict[str, pd.Series] = {}
    index = pd.Index([credit_code], name="credit_code")
    for column, (kind, value) in data.items():
        if kind == "b":
            columns[column] = pd.Series([pd.NA if value is None else value], index=index, dtype="boolean")
        elif kind == "f":
            columns[column] = pd.Series([np.nan if value is None else value], index=index, dtype="float64")
        elif kind == "t":
            columns[column] = pd.Series([pd.NaT if value is None else pd.Timestamp(value)], index=index)
        else:
            columns[column] = pd.Series([value], index=index, dtype=object)
    return pd.DataFrame(columns, index=index)
