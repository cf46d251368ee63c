"""Small hand-built source rows for tests (valid by construction from the catalogue)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

from features import uscc
from features.sources import SOURCES, FieldSpec


def credit_codes(n: int, start: int = 1000) -> list[str]:
    return list(uscc.generate(np.arange(start, start + n) * 7919, np.array(["330302"] * n)))


def _default(spec: FieldSpec) -> object:
    if spec.choices:
        return spec.choices[0]
    if spec.kind == "bool":
        return False
    if spec.kind == "date":
        return "2010-05-01"
    if spec.kind == "str":
        return "C38" if spec.pattern else f"{spec.name}-value"
    low = spec.ge if spec.ge is not None else 0
    return max(low, 1) if spec.kind == "int" else max(float(low), 10.0)


def valid_row(source_name: str, credit_code: str, as_of: str, **overrides: object) -> dict[str, object]:
    row: dict[str, object] = {"credit_code": credit_code, "as_of": as_of}
    for spec in SOURCES[source_name].fields:
        if spec.required:
            row[spec.name] = _default(spec)
    row.update(overrides)
    return row


def write_csv(directory: Path, source_name: str, rows: list[dict[str, object]]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{source_name}.csv"
    frame = pd.DataFrame(rows)
    for column in frame.columns:
        if frame[column].map(lambda v: isinstance(v, bool)).all():
            frame[column] = frame[column].map({True: "true", False: "false"})
    frame.to_csv(path, index=False)
    return path


def source_frame(source_name: str, rows: list[dict[str, object]]) -> pd.DataFrame:
    """A typed frame as the store would return it (dates parsed)."""
    frame = pd.DataFrame(rows)
    frame["as_of"] = pd.to_datetime(frame["as_of"])
    return frame


def date(text: str) -> dt.date:
    return dt.date.fromisoformat(text)
