"""Turn a raw chunk of a source file into typed good rows and rejected rows with a reason each.

Parsing (text -> numbers, booleans, dates) reports unparseable cells; the pandera frame schema then
checks ranges, enumerations, patterns, required fields and credit codes. A row with any problem is
rejected whole, with every problem listed; nothing is dropped silently.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pandera.errors as pa_errors

from features import uscc
from features.schemas import frame_schema
from features.sources import FieldSpec, all_fields, source

TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1", "1.0"})
FALSE_WORDS = frozenset({"false", "f", "no", "n", "0", "0.0"})
ROW_COLUMN = "_row"  # 1-based data row number in the file (header excluded)
REASON_COLUMN = "_reason"

# Control characters (C0, DEL, C1), the bidirectional formatting characters (marks, embeddings, overrides such
# as U+202E, isolates), zero-width characters, line and paragraph separators and the byte order mark: a text
# holding one can display as something else than what it is, or break a log line or a CSV row.
_UNSAFE_RANGES = ((0x00, 0x1F), (0x7F, 0x9F), (0x061C, 0x061C), (0x200B, 0x200F), (0x2028, 0x202E),
                  (0x2060, 0x2069), (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB))
_UNSAFE_CLASS = "".join(f"\\u{a:04x}" if a == b else f"\\u{a:04x}-\\u{b:04x}" for a, b in _UNSAFE_RANGES)
UNSAFE_CHARACTERS = re.compile(f"[{_UNSAFE_CLASS}]")
# The same rule for an OpenAPI document (a JSON Schema `pattern`, escapes valid in Python and ECMA regexes): texts
# without those characters, and, for a text that must say something, one with a character that is not a space.
SAFE_TEXT_PATTERN = f"^[^{_UNSAFE_CLASS}]*$"
NONBLANK_SAFE_TEXT_PATTERN = f"^[^{_UNSAFE_CLASS}]*[^\\s{_UNSAFE_CLASS}][^{_UNSAFE_CLASS}]*$"
MAX_TEXT_LENGTH = 200  # characters in any text field of a source row (names, districts, references)
EARLIEST_DATE = dt.date(1800, 1, 1)  # no source row (nor an establishment: 老字号 included) is dated before this


def text_problem(value: str, max_length: int) -> str | None:
    """Why a name or free text is refused (too long, or a control or bidi-formatting character), or None."""
    if len(value) > max_length:
        return f"is longer than {max_length} characters ({len(value):,})"
    found = UNSAFE_CHARACTERS.search(value)
    if found:
        return (f"contains the control or bidirectional-formatting character U+{ord(found.group()):04X} "
                f"at position {found.start() + 1}")
    return None


@dataclass
class ValidatedChunk:
    good: pd.DataFrame  # typed, columns in catalogue order, with ROW_COLUMN
    bad: pd.DataFrame  # raw values as text, with ROW_COLUMN and REASON_COLUMN


class FileLayoutError(ValueError):
    """The file as a whole cannot be read as this source (e.g. required columns absent)."""


def check_columns(source_name: str, columns: list[str]) -> None:
    spec = source(source_name)
    expected = [f.name for f in all_fields(spec)]
    missing = [f.name for f in all_fields(spec) if f.required and f.name not in columns]
    unknown = [c for c in columns if c not in expected]
    problems = []
    if missing:
        problems.append(f"missing required columns: {', '.join(missing)}")
    if unknown:
        problems.append(f"unknown columns: {', '.join(unknown)}")
    if problems:
        raise FileLayoutError(f"{source_name}: " + "; ".join(problems))


def _as_text(series: pd.Series) -> pd.Series:
    text = series.astype("string").str.strip()
    return text.mask(text == "")


def _parse(spec: FieldSpec, raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Parsed values and a boolean mask of cells that were present but could not be parsed."""
    if spec.kind in ("int", "float"):
        if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
            values = raw.astype("float64")
            return values, pd.Series(False, index=raw.index)
        text = _as_text(raw)
        values = pd.to_numeric(text, errors="coerce").astype("float64")
        # inf parses as a number but is never a valid figure
        values = values.mask(np.isinf(values))
        return values, text.notna() & values.isna()
    if spec.kind == "bool":
        if pd.api.types.is_bool_dtype(raw):
            return raw.astype("boolean"), pd.Series(False, index=raw.index)
        text = _as_text(raw).str.lower()
        values = pd.Series(pd.NA, index=raw.index, dtype="boolean")
        values[text.isin(TRUE_WORDS).fillna(False).astype(bool)] = True
        values[text.isin(FALSE_WORDS).fillna(False).astype(bool)] = False
        return values, text.notna() & values.isna()
    if spec.kind == "date":
        if pd.api.types.is_datetime64_any_dtype(raw):
            return raw, pd.Series(False, index=raw.index)
        text = _as_text(raw)
        values = pd.to_datetime(text, format="ISO8601", errors="coerce")
        return values, text.notna() & values.isna()
    text = _as_text(raw)
    return text, pd.Series(False, index=raw.index)


def _describe_check(check: str) -> str:
    replacements = {
        "greater_than_or_equal_to": "must be >= ",
        "less_than_or_equal_to": "must be <= ",
        "isin": "must be one of ",
        "str_matches": "must match ",
        "not_nullable": "is required",
        "whole_number": "must be a whole number",
    }
    for key, text in replacements.items():
        if check.startswith(key):
            return text + check[len(key):].strip("()")
    return check


def validate_chunk(source_name: str, raw: pd.DataFrame, first_row: int,
                   ingestion_day: dt.date | None = None) -> ValidatedChunk:
    """Validate `raw` (a chunk read from a file; row numbers start at `first_row`; dates after
    `ingestion_day`, default today, are refused)."""
    spec = source(source_name)
    raw = raw.reset_index(drop=True)
    problems: list[pd.Series] = []  # one Series of messages per problem kind, indexed by row
    typed: dict[str, pd.Series] = {}
    unreadable: dict[str, pd.Index] = {}
    for field in all_fields(spec):
        if field.name not in raw.columns:
            typed[field.name] = pd.Series(pd.NA, index=raw.index, dtype="string")
            continue
        values, unparseable = _parse(field, raw[field.name])
        typed[field.name] = values
        if unparseable.any():
            unreadable[field.name] = raw.index[unparseable]
            bad_text = raw.loc[unparseable, field.name].astype("string")
            problems.append(f"{field.name}: cannot read {field.kind} from '" + bad_text + "'")
    frame = pd.DataFrame(typed)

    # Text: bounded, and no control or bidirectional-formatting characters (checked on the raw cell).
    for field in all_fields(spec):
        if field.kind == "str" and field.name in raw.columns:
            text = raw[field.name].astype("string")
            too_long = text.str.len() > MAX_TEXT_LENGTH
            unsafe = text.str.contains(UNSAFE_CHARACTERS, regex=True)
            for mask in (too_long, unsafe):
                mask = mask.fillna(False).astype(bool)
                if mask.any():
                    problems.append(pd.Series([f"{field.name}: {text_problem(v, MAX_TEXT_LENGTH)}"
                                               for v in text[mask]], index=raw.index[mask]))

    # Dates: none after the day of ingestion (a row dated 2999-12-31 would become every later quote's
    # "latest record"), none before EARLIEST_DATE.
    today = pd.Timestamp(ingestion_day or dt.date.today())
    earliest = pd.Timestamp(EARLIEST_DATE)
    for field in all_fields(spec):
        if field.kind == "date" and field.name in frame.columns:
            values = frame[field.name]
            future = (values > today).fillna(False).astype(bool)
            if future.any():
                problems.append(pd.Series([f"{field.name}: {v:%Y-%m-%d} is after the day of ingestion "
                                           f"({today:%Y-%m-%d})" for v in values[future]], index=raw.index[future]))
            if field.name != "as_of" and "as_of" in frame.columns:
                after = (values > frame["as_of"]).fillna(False).astype(bool) & ~future
                if after.any():
                    problems.append(pd.Series([f"{field.name}: {v:%Y-%m-%d} is after the row's as_of ({a:%Y-%m-%d})"
                                               for v, a in zip(values[after], frame["as_of"][after], strict=True)],
                                              index=raw.index[after]))
            past = (values < earliest).fillna(False).astype(bool)
            if past.any():
                problems.append(pd.Series([f"{field.name}: {v:%Y-%m-%d} is before {EARLIEST_DATE.isoformat()}"
                                           for v in values[past]], index=raw.index[past]))

    try:
        frame_schema(source_name).validate(frame, lazy=True)
    except pa_errors.SchemaErrors as errors:
        cases = errors.failure_cases
        cases = cases[cases["index"].notna()]
        for (column, check), group in cases.groupby(["column", "check"], sort=False):
            if check == "not_nullable" and column in unreadable:
                # already reported as unreadable: do not also call it missing
                group = group[~group["index"].astype(int).isin(unreadable[column])]
            rows = group["index"].astype(int).to_numpy()
            if check == "valid_credit_code":
                messages = [f"credit_code: {uscc.problem(v)}" for v in frame.loc[rows, "credit_code"]]
            else:
                got = group["failure_case"].astype("string").fillna("empty").to_numpy()
                messages = [f"{column}: {_describe_check(str(check))} (got {g})" for g in got]
            problems.append(pd.Series(messages, index=rows))

    # A second row for the same enterprise and date in one file is ambiguous: reject it.
    dup = frame.duplicated(["credit_code", "as_of"], keep="first") & frame["credit_code"].notna()
    if dup.any():
        problems.append(pd.Series("duplicate credit_code and as_of earlier in the file", index=raw.index[dup]))

    row_numbers = pd.Series(np.arange(first_row, first_row + len(raw)), index=raw.index)
    if problems:
        all_problems = pd.concat(problems)
        reasons = all_problems.groupby(level=0, sort=True).agg("; ".join)
    else:
        reasons = pd.Series(dtype="string")
    bad_mask = raw.index.isin(reasons.index)
    bad = raw.loc[bad_mask].astype("string").copy()
    bad.insert(0, ROW_COLUMN, row_numbers[bad_mask])
    bad[REASON_COLUMN] = reasons.reindex(bad.index)
    good = frame.loc[~bad_mask].copy()
    good.insert(0, ROW_COLUMN, row_numbers[~bad_mask])
    return ValidatedChunk(good=good, bad=bad)
