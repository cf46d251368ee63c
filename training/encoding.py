"""The model's input contract: feature order, category codes and monotone directions.

Training and serving encode through the same `FeatureSpec` into a float64 matrix, so a quote sees
exactly the numbers the model was trained on. Categories become their code in the training
vocabulary (an unseen category or a missing value is NaN, which LightGBM treats as missing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

SMALL_FRAME_ROWS = 256


def _category_key(value: object) -> str | None:
    """The vocabulary key of one value, as `Series.astype("str")` would spell it (None = missing)."""
    if isinstance(value, str):
        return value
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    return str(value)


def _category_codes(column: pd.Series, vocabulary: tuple[str, ...]) -> np.ndarray:
    """Each value's position in `vocabulary` as float64 (NaN = unseen or missing), looked up by Arrow's hash
    kernel: `pd.Categorical` first turned the column into a Python string per row (~0.5 s a million)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not (pd.api.types.is_string_dtype(column) and not pd.api.types.is_object_dtype(column)):
        column = column.astype("str")  # numbers or mixed objects: spelled as in the vocabulary
    values = pa.array(column)  # a string column's own Arrow data, missing values as nulls
    codes = pc.index_in(values, value_set=pa.array(vocabulary, type=values.type))
    found = codes.to_numpy(zero_copy_only=False) if isinstance(codes, pa.Array) else codes.to_numpy()
    return found.astype(np.float64, copy=False)  # a null (NaN) makes it float64 already


def _as_float(column: pd.Series) -> np.ndarray:
    try:
        return column.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):  # text in a numeric column: unreadable -> NaN
        return pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


@dataclass(frozen=True)
class FeatureSpec:
    names: tuple[str, ...]
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict)
    monotone: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "_position", {n: i for i, n in enumerate(self.names)})
        object.__setattr__(self, "_codes", {c: {v: float(i) for i, v in enumerate(vs)}
                                            for c, vs in self.categories.items()})
        numeric = [n for n in self.names if n not in self.categories]
        object.__setattr__(self, "_numeric", numeric)
        object.__setattr__(self, "_numeric_pos", np.array([self._position[n] for n in numeric], dtype=np.intp))
        object.__setattr__(self, "_layouts", [])

    @property
    def categorical_indices(self) -> list[int]:
        return [self._position[c] for c in self.categories]

    def missing_columns(self, frame: pd.DataFrame) -> list[str]:
        return [n for n in self.names if n not in frame.columns]

    def _positions(self, columns: pd.Index) -> tuple[np.ndarray, np.ndarray]:
        """Column positions of the numeric and categorical features in `columns` (-1 = absent), cached
        per column layout: a quote's one-row frame has the same layout every time."""
        for known, cached in self._layouts:
            if columns is known or columns.equals(known):
                return cached
        cached = (columns.get_indexer(self._numeric), columns.get_indexer(list(self.categories)))
        self._layouts.insert(0, (columns, cached))
        del self._layouts[8:]
        return cached

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """float64 matrix [rows, features] in model order; absent columns are all-missing."""
        # column-major: filled a column at a time, and LightGBM's predict reads it as is
        numeric, categorical = self._positions(frame.columns)
        present = numeric >= 0
        if len(frame) > SMALL_FRAME_ROWS:  # every column is written once: only the absent ones get NaN
            out = np.empty((len(frame), len(self.names)), dtype=np.float64, order="F")
            absent = [*self._numeric_pos[~present], *(self._position[c] for c, k in zip(self._codes, categorical,
                                                                                         strict=True) if k < 0)]
            out[:, absent] = np.nan
        else:
            out = np.full((len(frame), len(self.names)), np.nan, dtype=np.float64, order="F")
        if present.any() and len(frame) > SMALL_FRAME_ROWS:
            # a column at a time: converting a block of mixed nullable dtypes at once is ~8x slower
            for pos, k in zip(self._numeric_pos[present], numeric[present], strict=True):
                column = frame.iloc[:, k]
                # plain float64 already holds NaN for missing: copied once, straight into place
                out[:, pos] = column.to_numpy(copy=False) if column.dtype == np.float64 else _as_float(column)
        elif present.any():  # a quote: one conversion of the whole (tiny) block has the least overhead
            block = frame.take(numeric[present], axis=1)
            try:
                values = block.to_numpy(dtype=np.float64, na_value=np.nan)
            except (TypeError, ValueError):  # text in a numeric column: per column
                values = np.column_stack([_as_float(block.iloc[:, k]) for k in range(block.shape[1])])
            out[:, self._numeric_pos[present]] = values
        if (categorical >= 0).any():
            self._encode_categories(frame, categorical, out)
        return out

    def _encode_categories(self, frame: pd.DataFrame, positions: np.ndarray, out: np.ndarray) -> None:
        present = [(name, pos) for name, pos in zip(self._codes, positions, strict=True) if pos >= 0]
        if len(frame) <= SMALL_FRAME_ROWS:  # a quote: plain Python beats pandas' per-call overhead
            block = frame.take([pos for _, pos in present], axis=1).to_numpy(dtype=object)
            for k, (name, _) in enumerate(present):
                codes = self._codes[name]
                out[:, self._position[name]] = [codes.get(_category_key(v), np.nan) for v in block[:, k]]
            return
        for name, pos in present:
            out[:, self._position[name]] = _category_codes(frame.iloc[:, pos], self.categories[name])

    def to_json(self) -> dict[str, Any]:
        return {"names": list(self.names), "categories": {k: list(v) for k, v in self.categories.items()},
                "monotone": list(self.monotone)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeatureSpec:
        return cls(tuple(data["names"]), {k: tuple(v) for k, v in data["categories"].items()},
                   tuple(data["monotone"]))


class RowColumns:
    """The columns of `X[rows]` one at a time, each gathered into one reused buffer: per-feature statistics
    of a sample without a copy of the whole sample (hundreds of MB on a million rows). A returned column is
    valid until the next call."""

    def __init__(self, X: np.ndarray, rows: np.ndarray) -> None:
        self._X, self._rows = X, rows
        self._buffer = np.empty(len(rows), dtype=X.dtype)

    def __len__(self) -> int:
        return len(self._rows)

    def column(self, j: int) -> np.ndarray:
        return np.take(self._X[:, j], self._rows, out=self._buffer)


def build_spec(X: pd.DataFrame, categorical: tuple[str, ...], monotone: dict[str, int],
               rows: np.ndarray | None = None) -> FeatureSpec:
    """Vocabulary from the training rows (`rows`, default all; sorted, so the same data gives the same codes)."""
    # only the categorical columns are taken at `rows`: copying every row of every feature cost seconds
    texts = X[list(categorical)] if rows is None else X[list(categorical)].iloc[rows]
    categories = {c: tuple(sorted(str(v) for v in texts[c].dropna().unique())) for c in categorical}
    directions = tuple(int(monotone.get(n, 0)) if n not in categories else 0 for n in X.columns)
    return FeatureSpec(tuple(X.columns), categories, directions)
