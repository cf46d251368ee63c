"""A quote snapshot's rows (`api.quoting.snapshot.RowEncoder`): each source's as-of as its calendar day, the same
text whatever the column's type (naive, with a time zone, object) and nothing for a missing one; and which rows of
two populations encode to the same snapshot."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from api.quoting.snapshot import RowEncoder, fast_json


def _day(value: object) -> str | None:  # the definition: the value's own calendar day
    return None if pd.isna(value) else pd.Timestamp(value).date().isoformat()


def test_source_dates_are_each_values_calendar_day_in_every_column_type() -> None:
    moments = [pd.Timestamp("2025-12-31 23:30"), pd.NaT, pd.Timestamp("1999-01-02 00:00"),
               pd.Timestamp("2026-03-01 00:00:01")]
    frame = pd.DataFrame({
        "tax.as_of": pd.Series(moments, dtype="datetime64[ns]"),
        "judicial.as_of": pd.Series(moments, dtype="datetime64[ns]").dt.tz_localize("Asia/Shanghai"),
        "tech.as_of": pd.Series(moments, dtype="datetime64[ns]").dt.tz_localize("UTC").dt.tz_convert("America/Lima"),
        "registry.as_of": pd.Series([dt.datetime(2024, 5, 6, 7), None, dt.datetime(2020, 1, 1), None], dtype=object),
        "power.as_of": pd.Series(moments, dtype="datetime64[s]"),
    })
    encoder = RowEncoder(frame, [])
    for i in range(len(frame)):
        expected = {c[:-6]: d for c in frame.columns if (d := _day(frame[c].iloc[i])) is not None}
        assert encoder.provenance(i) == expected
    assert encoder.provenance(3)["tech"] == "2026-02-28"  # 00:00:01 UTC on 1 March is still February in Lima
    assert encoder.provenance(1) == {}  # every source missing


def test_rows_are_the_same_only_when_they_encode_to_the_same_snapshot() -> None:
    """`RowEncoder.same_rows` (a re-render keeps a firm's parts when it says so): True only where the features and
    source dates would encode to the same JSON; a different float (even -0.0 against 0.0), text, missing value or
    source date, or another set of columns, is False."""
    def frame(revenue: list[float], district: list[object], day: list[object]) -> pd.DataFrame:
        return pd.DataFrame({"credit_code": ["a", "b", "c", "d", "e"], "revenue": revenue,
                             "district": pd.Series(district, dtype=object),
                             "tax.as_of": pd.Series(day, dtype="datetime64[ns]")}).set_index("credit_code")

    days = [pd.Timestamp("2025-01-01")] * 4 + [pd.NaT]
    before = frame([1.0, 0.0, float("nan"), 2.0, 3.0], ["X", "Y", None, "Z", "Z"], days)
    after = frame([1.0, -0.0, float("nan"), 2.0, 3.0], ["X", "Y", None, "W", "Z"],
                  days[:4] + [pd.Timestamp("2025-02-01")])
    columns = ["revenue", "district"]
    old, new = RowEncoder(before, columns), RowEncoder(after, columns)
    rows = np.arange(5)
    same = new.same_rows(old, rows, rows)
    assert same.tolist() == [True, False, True, False, False]
    for i in range(5):  # True exactly where the encoded snapshot is the same
        assert same[i] == (fast_json([new.features(i), new.provenance(i)]) ==
                           fast_json([old.features(i), old.provenance(i)]))
    assert new.same_rows(old, rows[[4, 0]], rows[[0, 0]]).tolist() == [False, True]  # rows matched by position
    assert not RowEncoder(after, ["revenue"]).same_rows(old, rows, rows).any(), "other columns: never the same"
