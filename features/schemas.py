"""Record models (pydantic) and frame schemas (pandera) built from the source catalogue.

Both are derived from `features.sources`, so a range or enumeration is declared once and enforced
the same way for one record (API) and for a whole file (ingestion).
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from typing import Annotated, Any, Literal

import pandas as pd
import pandera.pandas as pa
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from features import uscc
from features.sources import FieldSpec, SourceSpec, all_fields, source

_PY_TYPES: dict[str, Any] = {"str": str, "int": int, "float": float, "bool": bool, "date": dt.date}


def _record_annotation(spec: FieldSpec) -> Any:
    if spec.kind == "enum":
        base: Any = Literal[spec.choices]  # type: ignore[valid-type]
    else:
        base = _PY_TYPES[spec.kind]
    constraints: dict[str, Any] = {"description": spec.doc}
    if spec.ge is not None:
        constraints["ge"] = spec.ge
    if spec.le is not None:
        constraints["le"] = spec.le
    if spec.pattern:
        constraints["pattern"] = spec.pattern
    annotated: Any = Annotated[base, Field(**constraints)]
    if spec.name == "credit_code":
        annotated = Annotated[annotated, AfterValidator(uscc.validate)]
    return annotated if spec.required else annotated | None


@cache
def record_model(source_name: str) -> type[BaseModel]:
    """A pydantic model for one row of the source (strict about unknown fields)."""
    spec = source(source_name)
    fields: dict[str, Any] = {}
    for f in all_fields(spec):
        annotation = _record_annotation(f)
        fields[f.name] = (annotation, ...) if f.required else (annotation, None)
    model_name = "".join(part.title() for part in spec.name.split("_")) + "Record"
    return create_model(model_name, __config__=ConfigDict(extra="forbid", frozen=True), **fields)


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
