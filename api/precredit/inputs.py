"""A run's inputs: every enterprise's point-in-time features (store or files) and the versions in force."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from api.precredit.run import BatchInputError, NotInForceError
from api.precredit.score import BatchContext
from products.schema import ProductDefinition
from training.serving import RiskModel


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


def load_model(engine: sa.Engine | None, models_dir: str | None, model_dir: Path | None) -> RiskModel | None:
    """A model directory when given, else the registry's champion (None when there is none)."""
    if model_dir is not None:
        return RiskModel.from_dir(model_dir)
    if engine is None:
        return None
    from training.registry import Registry

    registry = Registry(engine, models_dir)
    return registry.load() if registry.champion() is not None else None


def _with_overlays(as_of: dt.date, products: list[str] | None,
                   definitions: Sequence[ProductDefinition] | None = None) -> list[str] | None:
    """The products asked for and the overlays in force on any of them: a product's numbers never depend on
    which other products a run is narrowed to (a quote applies every overlay in force)."""
    if not products:
        return products
    from api.quoting.versions import definitions_in_force
    from products.catalogue import load_catalogue

    known = list(definitions) if definitions is not None else list(load_catalogue().values())
    overlays = [d.code for d in definitions_in_force(known, as_of).values()
                if d.overlay is not None and set(d.overlay.base_products) & set(products)]
    return list(dict.fromkeys([*products, *overlays]))


def run_columns(as_of: dt.date, products: list[str] | None, model: RiskModel | None,
                definitions: Sequence[ProductDefinition] | None = None) -> list[str] | None:
    """The feature columns a run reads (its versions' columns: calibration changes cut-offs, not fields),
    known before any features are read, so that only those are read; None when the versions cannot be
    built (then `build_context` says why, after the usual checks on the features)."""
    from api.quoting.versions import VersionsError, versions_for

    try:
        return versions_for(as_of, None, model, _with_overlays(as_of, products, definitions), definitions).columns
    except VersionsError:
        return None


def build_context(features: pd.DataFrame, as_of: dt.date, products: list[str] | None, reasons: int,
                  model: RiskModel | None, definitions: Sequence[ProductDefinition] | None = None
                  ) -> tuple[BatchContext, dict[str, Any], pd.DataFrame]:
    """The versions in force on `as_of` (the quote path's builder: rank cut-offs calibrated on this
    population), the context, a description of the versions, and the features narrowed to the columns
    the run reads. `definitions`: every known version (the store's: `ProductVersions.published()`;
    default the seed files)."""
    from api.quoting.versions import VersionsError, versions_for

    if reasons < 0:
        raise BatchInputError("--reasons must be 0 or more")
    if len(features) == 0:
        raise BatchInputError(f"no enterprises to score: the store or the feature files hold none as of "
                              f"{as_of.isoformat()}")
    try:
        versions = versions_for(as_of, features, model, _with_overlays(as_of, products, definitions), definitions)
    except VersionsError as error:
        raise NotInForceError(f"--{error.field.replace('_', '-')}: {error.message}") from None
    used = [c for c in versions.columns if c in features.columns]
    describe = {"as_of": as_of.isoformat(), **versions.describe()}
    return BatchContext(versions, reasons), describe, features[used]
