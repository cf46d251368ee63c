"""Frame schemas (pandera) built from the source catalogue.

Derived from `features.sources`, so a range or enumeration is declared once and enforced the same way
for every file ingested.
"""

from __future__ import annotations

from functools import cache

import pandas as pd
import pandera.pandas as pa

from features import uscc
from features.sources import FieldSpec, SourceSpec, all_fields, source


def _valid_credit_codes(series: pd.Series) -> pd.Series:
    return pd.Series(uscc.valid_mask(series.to_numpy(dtype=object)), index=series.index)


def _column(spec: FieldSpec) -> pa.Column:
    checks: list[pa.Check] = []
    if spec.ge is not None:
        checks.append(pa.Check.ge(spec.ge))
    if spec.le is not None:
        checks.append(pa.Check.le(spec.le))
    if spec.choices:
        checks.append(pa.Check.isin(list(spec.choices)))
    if spec.pattern:
        checks.append(pa.Check.str_matches(spec.pattern))
    if spec.name == "credit_code":
        checks.append(pa.Check(_valid_credit_codes, element_wise=False, name="valid_credit_code"))
    if spec.kind == "int":
        checks.append(pa.Check(lambda s: (s % 1 == 0), name="whole_number"))
    return pa.Column(checks=checks, nullable=not spec.required, required=spec.name != "consent_ref",
                     description=spec.doc)


@cache
def frame_schema(source_name: str) -> pa.DataFrameSchema:
    """A pandera schema for a typed frame of the source (values already parsed to numbers/dates)."""
    spec: SourceSpec = source(source_name)
    return pa.DataFrameSchema(
        {f.name: _column(f) for f in all_fields(spec)},
        strict=False,
        name=source_name,
    )
