"""A run's inputs: every enterprise's point-in-time features (store or files) and the versions in force."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from api.precredit.run import BatchInputError
from api.precredit.score import BatchContext


def read_feature_files(path: Path, as_of: dt.date) -> pd.DataFrame:
    """A features table (.parquet/.csv with a credit_code column), or a directory of source files (the
    `indexloan demo-data` layout, one file per source) assembled point-in-time as of `as_of`."""
    from features.assemble import point_in_time

    if not path.exists():
        raise BatchInputError(f"--features {path} does not exist")
    if path.is_dir():
        from features.ingest import find_source_files
        from features.store.load import _typed

        found, unknown = find_source_files(path)
        if not found:
            raise BatchInputError(f"--features {path} holds no source files (registry.parquet, tax.csv, ...)")
        frames = {}
        for name, files in found.items():
            parts = [pd.read_parquet(f) if f.suffix == ".parquet" else pd.read_csv(f, dtype={"credit_code": str})
                     for f in files]
            frames[name] = _typed(pd.concat(parts, ignore_index=True), name)
        return point_in_time(frames, as_of)
    try:
        frame = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
    except Exception as error:  # noqa: BLE001 - unreadable file: one message
        raise BatchInputError(f"--features {path} cannot be read: {error}") from None
    if frame.index.name != "credit_code":
        if "credit_code" not in frame.columns:
            raise BatchInputError(f"--features {path} has no credit_code column")
        frame = frame.set_index("credit_code")
    return frame


def load_model(engine: sa.Engine | None, models_dir: str | None, model_dir: Path | None) -> Any | None:
    """A model directory when given, else the registry's champion (None when there is none)."""
    from training.serving import RiskModel

    if model_dir is not None:
        return RiskModel.from_dir(model_dir)
    if engine is None:
        return None
    from training.registry import Registry

    registry = Registry(engine, models_dir)
    return registry.load() if registry.champion() is not None else None


def build_context(features: pd.DataFrame, as_of: dt.date, products: list[str] | None, reasons: int,
                  model: Any | None) -> tuple[BatchContext, dict[str, Any], pd.DataFrame]:
    """The plans (rank cut-offs calibrated on this population, as the quote path does), the context,
    a description of the versions, and the features narrowed to the columns the run reads."""
    from api.quoting.service import build_versions
    from products.catalogue import load_catalogue, reference_rates

    if reasons < 0:
        raise BatchInputError("--reasons must be 0 or more")
    if len(features) == 0:
        raise BatchInputError(f"no enterprises to score: the store or the feature files hold none as of "
                              f"{as_of.isoformat()}")
    definitions = load_catalogue()
    if products:
        unknown = [p for p in products if p not in definitions]
        if unknown:
            raise BatchInputError(f"unknown product(s) {', '.join(unknown)}; known: {', '.join(definitions)}")
        definitions = {p: definitions[p] for p in dict.fromkeys(products)}
    try:
        versions = build_versions(definitions, reference_rates(as_of), model, features)
    except ValueError as error:  # e.g. no reference rate in force on that date
        raise BatchInputError(f"cannot price as of {as_of.isoformat()}: {error}") from None
    used = [c for c in versions.columns if c in features.columns]
    describe = {"as_of": as_of.isoformat(), **versions.describe()}
    return BatchContext(versions.plans, model, reasons), describe, features[used]
