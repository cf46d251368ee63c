"""Training datasets: loans joined to point-in-time features, or any tabular file an analyst brings.

A `Dataset` holds raw feature columns (numbers, booleans, text categories), a 0/1 target, the
loan start date per row when known (for the out-of-time split) and segment columns for the report.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import warnings
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from training.artifacts import sha256_file
from training.config import TrainConfig
from training.errors import DataError

# Text labels read as "the bad outcome" when a target has two text values and no --positive.
POSITIVE_LABELS = ("1", "bad", "default", "defaulted", "yes", "y", "true", "t")
OUTCOME_WINDOW = pd.DateOffset(months=12)  # default_12m is known 12 months after the loan start


@dataclass
class Dataset:
    X: pd.DataFrame  # feature columns, positional RangeIndex
    y: np.ndarray  # int8, 1 = default / bad
    categorical: tuple[str, ...]  # text columns used as categories
    source: dict[str, Any]  # where the rows came from (model card)
    dates: pd.Series | None = None  # loan start dates (datetime64), None for undated files
    segments: pd.DataFrame = field(default_factory=pd.DataFrame)  # report segments, text per row
    notes: list[str] = field(default_factory=list)  # what was left out and why

    def __post_init__(self) -> None:
        self.X = self.X.reset_index(drop=True)
        if self.dates is not None:
            self.dates = pd.Series(pd.to_datetime(self.dates).to_numpy(), name="date")
        self.segments = self.segments.reset_index(drop=True)

    @property
    def rows(self) -> int:
        return len(self.y)

    def time_window(self) -> tuple[str | None, str | None]:
        if self.dates is None or self.dates.empty:
            return None, None
        return self.dates.min().date().isoformat(), self.dates.max().date().isoformat()

    def checksum(self) -> str:
        """sha256 of the rows as trained (features, target, dates): same data, same checksum."""
        digest = hashlib.sha256()
        digest.update(",".join(self.X.columns).encode())
        digest.update(pd.util.hash_pandas_object(self.X, index=False).to_numpy().tobytes())
        digest.update(self.y.tobytes())
        if self.dates is not None:
            digest.update(self.dates.to_numpy().astype("datetime64[D]").tobytes())
        return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Target


def binary_target(values: pd.Series, name: str, positive: str | None = None) -> np.ndarray:
    """0/1 from a two-valued column; a clear DataError for anything else."""
    missing = int(values.isna().sum())
    if missing:
        raise DataError(f"target column {name!r} has {missing} missing value(s); fill or remove those rows")
    codes, distinct = pd.factorize(values, sort=False)
    if len(distinct) > 2:
        shown = ", ".join(str(v) for v in list(distinct[:5]))
        raise DataError(f"target column {name!r} is not binary: {len(distinct)} distinct values ({shown}, ...)")
    if len(distinct) < 2:
        raise DataError(f"target column {name!r} has a single value ({distinct[0]!r}): nothing to learn")
    # the two values spelled as `astype(str)` spells the column: spelling a million rows costs seconds
    spelled = pd.Series(distinct).astype(str).str.strip().to_numpy()
    labels = sorted(set(spelled))

    def rows_spelled(label: str) -> np.ndarray:
        return (spelled == label)[codes].astype(np.int8)

    if positive is not None:
        if positive not in labels:
            raise DataError(f"--positive {positive!r} is not a value of {name!r} (values: {', '.join(labels)})")
        return rows_spelled(positive)
    if pd.api.types.is_bool_dtype(values):
        return values.astype(bool).to_numpy().astype(np.int8)
    if pd.api.types.is_numeric_dtype(values):
        if set(pd.Series(distinct).astype(float)) == {0.0, 1.0}:
            return values.astype(float).to_numpy().astype(np.int8)
        raise DataError(f"target column {name!r} has values {labels[0]} and {labels[1]}, not 0/1: "
                        "pass --positive VALUE for the bad outcome")
    hits = [label for label in labels if label.lower() in POSITIVE_LABELS]
    if len(hits) != 1:
        raise DataError(f"target column {name!r} has values {labels[0]!r} and {labels[1]!r}: "
                        "pass --positive VALUE for the bad outcome")
    return rows_spelled(hits[0])


# ---------------------------------------------------------------------------------------------
# Feature columns


def _is_text(series: pd.Series) -> bool:
    return (pd.api.types.is_string_dtype(series) or isinstance(series.dtype, pd.CategoricalDtype)
            or pd.api.types.is_object_dtype(series))


def _as_category_text(series: pd.Series) -> pd.Series:
    """Text categories as the `str` dtype (missing stays missing)."""
    return series.astype("str").where(series.notna())


def select_features(frame: pd.DataFrame, categorical: tuple[str, ...] | None, exclude: tuple[str, ...],
                    max_categories: int) -> tuple[pd.DataFrame, tuple[str, ...], list[str]]:
    """Numbers and booleans as float64, text as categories; returns (features, categorical, notes).

    `categorical=None` (files): every text column is a category unless it looks like an identifier.
    A tuple (store): only the listed text columns are categories, other text columns are left out.
    """
    columns: dict[str, pd.Series] = {}
    cats: list[str] = []
    notes: list[str] = []
    for name in frame.columns:
        if name in exclude:
            continue
        col = frame[name]
        if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            values = col.astype("float64") if not pd.api.types.is_bool_dtype(col) else \
                col.astype("Float64").astype("float64")
            if values.iloc[:4096].notna().any() or values.notna().any():  # the head almost always answers
                columns[name] = values
            else:
                notes.append(f"{name}: left out (always missing)")
        elif pd.api.types.is_datetime64_any_dtype(col):
            notes.append(f"{name}: left out (date column)")
        elif _is_text(col):
            if categorical is not None and name not in categorical:
                continue
            distinct = col.nunique(dropna=True)
            if distinct == 0:
                notes.append(f"{name}: left out (always missing)")
            elif categorical is None and distinct > max_categories and distinct > 0.5 * col.notna().sum():
                notes.append(f"{name}: left out ({distinct} distinct values: an identifier, not a category)")
            else:
                columns[name] = _as_category_text(col)
                cats.append(name)
        else:
            notes.append(f"{name}: left out (unsupported type {col.dtype})")
    if not columns:
        raise DataError("no usable feature columns (numbers, booleans or text categories)")
    # copy=False: the columns as they are (no second copy of every feature into one block)
    return pd.DataFrame(columns, index=frame.index, copy=False), tuple(cats), notes


# ---------------------------------------------------------------------------------------------
# From a file


def read_table(path: str | Path, columns: Collection[str] | None = None) -> pd.DataFrame:
    """The file as a frame; with `columns`, only those of them that the file has (the others are not read)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    suffix = path.suffix.lower()
    wanted = None if columns is None else set(columns)
    try:
        if suffix == ".csv":
            return pd.read_csv(path, usecols=None if wanted is None else (lambda c: c in wanted))
        if suffix in (".parquet", ".pq"):
            names = None if wanted is None else [c for c in pq.read_schema(path).names if c in wanted]
            # a block per column, as Arrow holds them: consolidating a million rows of 140 columns into
            # one block cost more than decoding the file; the features are taken a column at a time anyway
            return pd.read_parquet(path, columns=names,
                                   to_pandas_kwargs={"split_blocks": True, "self_destruct": True})
    except Exception as e:  # noqa: BLE001 - any reader failure is a bad file, said plainly
        raise DataError(f"cannot read {path}: {e}") from None
    raise DataError(f"data file {path}: unsupported format {suffix or '(none)'}; use .csv or .parquet")


def table_columns(path: str | Path) -> list[str]:
    """The column names of a data file, from its header (CSV) or schema (Parquet) only."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file() or suffix not in (".csv", ".parquet", ".pq"):
        return list(read_table(path).columns)  # the DataError read_table gives for such a path
    try:
        return list(pd.read_csv(path, nrows=0).columns) if suffix == ".csv" else list(pq.read_schema(path).names)
    except Exception as e:  # noqa: BLE001 - any reader failure is a bad file, said plainly
        raise DataError(f"cannot read {path}: {e}") from None


def from_frame(frame: pd.DataFrame, target: str, config: TrainConfig, date_col: str | None = None,
               positive: str | None = None, segment_cols: tuple[str, ...] = (),
               source: dict[str, Any] | None = None) -> Dataset:
    """A dataset from any table: `target` is the 0/1 outcome, every other column a candidate feature."""
    if target not in frame.columns:
        raise DataError(f"the data has no target column {target!r}; columns: {', '.join(map(str, frame.columns))}")
    for col in (date_col, *segment_cols):
        if col is not None and col not in frame.columns:
            raise DataError(f"the data has no column {col!r}")
    if frame.empty:
        raise DataError("the data has no rows")
    y = binary_target(frame[target], target, positive)
    dates = None
    if date_col is not None:
        dates = pd.to_datetime(frame[date_col], errors="coerce")
        if dates.isna().any():
            raise DataError(f"date column {date_col!r} has {int(dates.isna().sum())} missing or unreadable dates")
    exclude = tuple(c for c in (target, date_col) if c is not None)
    X, cats, notes = select_features(frame, None, exclude, config.max_categories)
    segments = pd.DataFrame({c: frame[c].astype("str") for c in segment_cols}, index=frame.index)
    return Dataset(X, y, cats, source or {"kind": "frame", "target": target}, dates, segments, notes)


def from_file(path: str | Path, target: str, config: TrainConfig, date_col: str | None = None,
              positive: str | None = None, segment_cols: tuple[str, ...] = ()) -> Dataset:
    with ThreadPoolExecutor(1) as pool:  # hashing releases the GIL: it runs while the file is decoded
        digest = pool.submit(sha256_file, path)
        frame = read_table(path)  # a missing or unreadable file is a DataError before the digest is asked for
        file_digest = digest.result()
    source = {"kind": "file", "path": str(Path(path).resolve()), "file_sha256": file_digest,
              "target": target, "date_column": date_col, "positive": positive}
    return from_frame(frame, target, config, date_col, positive, segment_cols, source)


# ---------------------------------------------------------------------------------------------
# From the store (loan outcomes joined to point-in-time features)


def loan_features(frames: dict[str, pd.DataFrame], loans: pd.DataFrame) -> pd.DataFrame:
    """Features of each loan's enterprise as of the loan's start date (never a later record)."""
    from features.assemble import point_in_time

    parts = []
    for day, group in loans.groupby("as_of", sort=True):
        # point_in_time only uses records dated on or before `day`: no leakage from the future.
        # Object-dtype credit codes: pandas 3's `str` Index.isin converts every value to an Arrow
        # scalar, which made assembling 100k loans take half a minute; with objects it hashes (7x faster).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pd.option_context("future.infer_string", False):
                feats = point_in_time(frames, pd.Timestamp(day).date(), list(group["credit_code"]))
        feats = feats.loc[group["credit_code"].to_numpy()]
        feats.index = group.index
        parts.append(feats)
    return pd.concat(parts).loc[loans.index]


def from_source_frames(frames: dict[str, pd.DataFrame], config: TrainConfig, as_of: dt.date | None = None,
                       source: dict[str, Any] | None = None,
                       feature_view: Callable[[pd.DataFrame], pd.DataFrame] | None = None) -> Dataset:
    """Loans whose 12-month outcome is known by `as_of` (default: today) with their start-date features.

    `feature_view` maps the point-in-time features to other model inputs (e.g. the five product
    indices of a baseline); the loans, dates, outcomes and segments stay the same.
    """
    outcomes = frames.get("loan_outcomes")
    if outcomes is None or outcomes.empty:
        raise DataError("the store has no loan outcomes (source loan_outcomes): nothing to train on")
    as_of = as_of or dt.date.today()
    loans = outcomes.copy()
    loans["as_of"] = pd.to_datetime(loans["as_of"])
    open_window = loans["as_of"] + OUTCOME_WINDOW > pd.Timestamp(as_of)
    notes = []
    if open_window.any():
        notes.append(f"{int(open_window.sum())} loan(s) left out: their 12-month outcome window was still open on "
                     f"{as_of.isoformat()}")
    loans = loans.loc[~open_window].sort_values(["as_of", "loan_id"], kind="stable").reset_index(drop=True)
    if loans.empty:
        raise DataError(f"no loan with a known 12-month outcome by {as_of.isoformat()}")
    y = binary_target(loans["default_12m"], "default_12m")
    feats = loan_features(frames, loans)
    if feature_view is None:
        exclude = (*config.store.exclude, *[c for c in feats.columns if c.endswith(".as_of")])
        X, cats, more = select_features(feats, config.store.categorical, exclude, config.max_categories)
    else:
        X, cats, more = select_features(feature_view(feats), (), (), config.max_categories)
    segments = pd.DataFrame(
        {name: feats[col].astype("str").fillna("(missing)") for name, col in config.store.segments.items()
         if col in feats.columns},
        index=feats.index,
    )
    eligible = product_eligibility(feats)
    for product in eligible.columns:
        segments[f"eligible:{product}"] = eligible[product].map({True: "eligible", False: "not eligible"})
    src = {**(source or {"kind": "frames"}), "as_of": as_of.isoformat(), "loans": int(len(loans)),
           "loan_dates": sorted({d.date().isoformat() for d in loans["as_of"]})}
    return Dataset(X, y, cats, src, loans["as_of"], segments, notes + more)


def from_store(engine: Any = None, as_of: dt.date | None = None, config: TrainConfig | None = None) -> Dataset:
    """Loans in the store joined to the point-in-time features of their start date."""
    from features.sources import GOVERNMENT_SOURCES
    from features.store.load import load_source_frames
    from training.config import load_config

    config = config or load_config()
    as_of = as_of or dt.date.today()
    frames = load_source_frames(as_of, sources=(*GOVERNMENT_SOURCES, "loan_outcomes"), engine=engine)
    url = engine.url.render_as_string(hide_password=True) if engine is not None else "(configured store)"
    return from_source_frames(frames, config, as_of, {"kind": "store", "database": url})


def product_eligibility(feats: pd.DataFrame) -> pd.DataFrame:
    """Per product, whether the enterprise passes its gates (for per-segment metrics only)."""
    from training.segments import gate_eligibility

    return gate_eligibility(feats)
