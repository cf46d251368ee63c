"""Turn a features frame into plain float64 arrays once, shared by every product plan.

Numbers stay numbers, booleans become 1.0 / 0.0, enums become their position in the catalogue's
choices; anything missing (or an unknown category, or a column the frame lacks) becomes NaN, so the
plans can treat "missing" uniformly and say what it scores. `has_<source>` flags become bool arrays.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from products.fields import feature_catalogue


@dataclass(frozen=True)
class Columns:
    index: pd.Index
    values: dict[str, np.ndarray]  # float64, NaN = missing
    has: dict[str, np.ndarray]  # bool per source

    @property
    def n(self) -> int:
        return len(self.index)

    def take(self, rows: slice | np.ndarray) -> Columns:
        return Columns(
            self.index[rows],
            {k: v[rows] for k, v in self.values.items()},
            {k: v[rows] for k, v in self.has.items()},
        )


@lru_cache(maxsize=65536)
def text_code(value: str) -> float:
    """A text value as a float the conditions compare for equality: the first 48 bits of its BLAKE2b
    hash (exact in a float64; the same value gives the same code in every process)."""
    return float(int.from_bytes(hashlib.blake2b(value.encode("utf-8"), digest_size=6).digest(), "big"))


def _as_text_codes(s: pd.Series) -> np.ndarray:
    """Text values as `text_code` floats, NaN for missing: hashed once per distinct value."""
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    table = np.array([text_code(str(u)) for u in uniques] + [np.nan], dtype=np.float64)
    return table[np.where(codes < 0, len(uniques), codes)]


def _as_float(s: pd.Series) -> np.ndarray:
    if s.dtype == np.float64:
        return s.to_numpy()
    try:
        return s.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):  # e.g. object columns holding stray strings
        return pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _as_bool_float(s: pd.Series) -> np.ndarray:
    if s.dtype == object:
        s = s.astype("boolean")  # object True/False/None from hand-built frames
    return _as_float(s)


def _as_codes(s: pd.Series, choices: tuple[str, ...]) -> np.ndarray:
    """Position of each value in `choices` as float; NaN for missing or unknown values."""
    try:
        arr = pa.array(s.array) if isinstance(s.dtype, pd.StringDtype | pd.ArrowDtype) else None
    except (pa.ArrowInvalid, TypeError):
        arr = None
    if arr is not None:
        idx = pc.index_in(arr, value_set=pa.array(choices, type=arr.type))
        return idx.to_numpy(zero_copy_only=False).astype(np.float64)  # nulls -> NaN
    codes = pd.Categorical(s, categories=list(choices)).codes.astype(np.float64)
    codes[codes < 0] = np.nan
    return codes


def _scalar(x: object, kind: str, choices: tuple[str, ...]) -> float:
    if x is None or x is pd.NA or x is pd.NaT:
        return np.nan
    if kind == "enum":
        return float(choices.index(x)) if x in choices else np.nan
    if kind == "text":
        return np.nan if isinstance(x, float) and np.isnan(x) else text_code(str(x))
    try:
        return float(x)  # bools become 1.0 / 0.0; NaN stays NaN
    except (TypeError, ValueError):
        return np.nan


def _extract_one(features: pd.DataFrame, fields: Iterable[str], sources: Iterable[str]) -> Columns:
    """Single-enterprise path: one row read once, then per-field scalar conversion (pandas per-column
    access costs ~20 us a column, far too much for a 2 ms quote of five products)."""
    catalogue = feature_catalogue()
    row = dict(zip(features.columns.tolist(), features.iloc[0].to_numpy().tolist(), strict=True))
    values = {}
    for name in fields:
        info = catalogue[name]
        values[name] = np.array([_scalar(row.get(name), info.kind, info.choices)])
    has = {src: np.array([_scalar(row.get(f"has_{src}"), "bool", ()) == 1.0]) for src in sources}
    return Columns(features.index, values, has)


def extract(features: pd.DataFrame, fields: Iterable[str], sources: Iterable[str]) -> Columns:
    """The arrays the plans need; never raises for missing columns (they are all-missing)."""
    if len(features) == 1:
        return _extract_one(features, fields, sources)
    catalogue = feature_catalogue()
    n = len(features)
    values: dict[str, np.ndarray] = {}
    for name in fields:
        if name in values:
            continue
        if name not in features.columns:
            values[name] = np.full(n, np.nan)
            continue
        s = features[name]
        info = catalogue[name]
        if info.kind == "enum":
            values[name] = _as_codes(s, info.choices)
        elif info.kind == "text":
            values[name] = _as_text_codes(s)
        elif info.kind == "bool":
            values[name] = _as_bool_float(s)
        else:
            values[name] = _as_float(s)
    has: dict[str, np.ndarray] = {}
    for src in sources:
        col = f"has_{src}"
        if col in features.columns:
            has[src] = np.nan_to_num(_as_bool_float(features[col]), nan=0.0) > 0
        else:
            has[src] = np.zeros(n, dtype=bool)
    return Columns(features.index, values, has)
