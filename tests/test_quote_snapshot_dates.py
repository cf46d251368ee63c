"""A quote snapshot's source dates (`RowEncoder.provenance`): each source's as-of as its calendar day, the same
text whatever the column's type (naive, with a time zone, object) and nothing for a missing one."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from api.quoting.snapshot import RowEncoder


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
