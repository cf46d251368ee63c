"""Training datasets: targets, file columns, point-in-time loans (no leakage), samples, encoding."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from tests.factories import credit_codes, source_frame, valid_row
from training.config import load_config
from training.datasets import binary_target, from_frame, from_source_frames
from training.encoding import RowColumns, build_spec
from training.errors import DataError
from training.fit import split_dataset

CFG = load_config()


def tabular(rows: int = 400, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    return pd.DataFrame({
        "income": x,
        "sector": pd.Series(rng.choice(["retail", "factory", "tech"], rows), dtype="str"),
        "owner_id": [f"P{i:05d}" for i in range(rows)],  # identifier: must not become a feature
        "flag": rng.random(rows) < 0.3,
        "opened": pd.to_datetime("2023-01-01") + pd.to_timedelta(rng.integers(0, 700, rows), unit="D"),
        "bad": (rng.random(rows) < 1 / (1 + np.exp(2 + x))).astype(int),
    })


@pytest.mark.parametrize(
    ("values", "positive", "expected"),
    [
        ([0, 1, 1, 0], None, [0, 1, 1, 0]),
        ([True, False, True, True], None, [1, 0, 1, 1]),
        (["good", "bad", "good", "bad"], None, [0, 1, 0, 1]),
        (["ok", "late", "ok", "ok"], "late", [0, 1, 0, 0]),
        ([1, 2, 2, 1], "2", [0, 1, 1, 0]),
    ],
)
def test_binary_targets_are_read(values: list, positive: str | None, expected: list[int]) -> None:
    assert binary_target(pd.Series(values), "t", positive).tolist() == expected


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([0, 1, 2, 1], "not binary: 3 distinct values"),
        ([1, 1, 1], "single value"),
        ([0, 1, None, 1], "1 missing value"),
        (["ok", "late", "ok"], "pass --positive"),
        ([1, 2, 1], "pass --positive"),
    ],
)
def test_bad_targets_are_clear_errors(values: list, message: str) -> None:
    with pytest.raises(DataError, match=message):
        binary_target(pd.Series(values), "t")


def test_file_columns_numbers_text_categories_and_identifiers() -> None:
    ds = from_frame(tabular(), "bad", CFG, date_col="opened")
    assert list(ds.X.columns) == ["income", "sector", "flag"]
    assert ds.categorical == ("sector",)
    assert ds.X["flag"].dtype == np.float64 and ds.X["sector"].dtype == "str"
    assert any("owner_id" in note for note in ds.notes)
    assert ds.dates is not None and ds.rows == 400


def test_missing_target_column_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="no target column 'default'"):
        from_frame(tabular(), "default", CFG)


def test_out_of_time_split_keeps_the_latest_dates_out_of_development() -> None:
    ds = from_frame(tabular(2000), "bad", CFG, date_col="opened")
    split = split_dataset(ds, CFG)
    assert split.kind == "out_of_time"
    assert ds.dates[split.dev].max() < ds.dates[split.oot].min()
    assert 0.2 < len(split.oot) / ds.rows < 0.45
    assert sorted(np.r_[split.train, split.valid, split.oot].tolist()) == list(range(ds.rows))


def test_undated_file_gets_a_random_holdout() -> None:
    split = split_dataset(from_frame(tabular(2000), "bad", CFG), CFG)
    assert split.kind == "random_holdout" and split.oot_from is None


def test_encoding_maps_unseen_and_missing_categories_to_missing() -> None:
    X = pd.DataFrame({"a": [1.0, np.nan], "c": pd.Series(["x", "y"], dtype="str")})
    spec = build_spec(X, ("c",), {"a": 1})
    assert spec.monotone == (1, 0)
    new = pd.DataFrame({"c": pd.Series(["y", "z", None], dtype="str"), "a": [3, None, 2]})
    encoded = spec.encode(new)
    np.testing.assert_array_equal(encoded[:, 0], [3.0, np.nan, 2.0])
    np.testing.assert_array_equal(encoded[:, 1], [1.0, np.nan, np.nan])
    big = pd.concat([new] * 200, ignore_index=True)  # the vectorised path must agree with the one-row path
    np.testing.assert_array_equal(spec.encode(big)[:3], encoded)


def test_encoding_reads_plain_and_nullable_numbers_alike() -> None:
    rows = 600  # above the one-quote size: the column-at-a-time path
    a = np.where(np.arange(rows) % 3 == 0, np.nan, np.arange(rows, dtype=np.float64))
    spec = build_spec(pd.DataFrame({"a": a}), (), {})
    nullable = pd.DataFrame({"a": pd.array([None if np.isnan(v) else v for v in a], dtype="Float64")})
    np.testing.assert_array_equal(spec.encode(pd.DataFrame({"a": a}))[:, 0], a)
    np.testing.assert_array_equal(spec.encode(nullable)[:, 0], a)


def test_vocabulary_from_training_rows_and_columns_of_row_subsets() -> None:
    ds = from_frame(tabular(500), "bad", CFG)
    rows = np.arange(0, 500, 7)
    spec = build_spec(ds.X, ds.categorical, CFG.monotone, rows=rows)
    assert spec == build_spec(ds.X.iloc[rows], ds.categorical, CFG.monotone)
    X = spec.encode(ds.X)
    columns = RowColumns(X, rows)
    assert len(columns) == len(rows)
    for j in range(X.shape[1]):
        np.testing.assert_array_equal(columns.column(j), X[rows, j])


def _loan_frames(loan_day: str, later_overdue: int) -> dict[str, pd.DataFrame]:
    code = credit_codes(1)[0]
    bureau = [valid_row("credit_bureau", code, "2023-12-31", overdue_count_24m=1),
              valid_row("credit_bureau", code, "2024-06-30", overdue_count_24m=later_overdue)]
    return {
        "registry": source_frame("registry", [valid_row("registry", code, "2023-12-31")]),
        "credit_bureau": source_frame("credit_bureau", bureau),
        "loan_outcomes": source_frame("loan_outcomes", [
            valid_row("loan_outcomes", code, loan_day, loan_id="L1", default_12m=True),
            valid_row("loan_outcomes", credit_codes(1, start=5)[0], loan_day, loan_id="L2", default_12m=False),
        ]),
    }


def test_loan_features_are_as_of_the_loan_start_never_later() -> None:
    ds = from_source_frames(_loan_frames("2024-01-31", later_overdue=9), CFG, dt.date(2026, 1, 1))
    assert ds.X.loc[ds.y == 1, "credit_bureau.overdue_count_24m"].tolist() == [1.0]  # not the 9 of June 2024
    assert ds.X.loc[ds.y == 0, "has_credit_bureau"].tolist() == [0.0]  # unknown firm: missing source flag


def test_loans_with_an_open_outcome_window_are_left_out() -> None:
    frames = _loan_frames("2025-06-30", later_overdue=2)
    with pytest.raises(DataError, match="no loan with a known 12-month outcome by 2026-01-01"):
        from_source_frames(frames, CFG, dt.date(2026, 1, 1))
