"""Scoring a labelled file with a trained model: discrimination, calibration and stability."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training import metrics as m
from training.datasets import binary_target, read_table, table_columns
from training.errors import DataError
from training.serving import RiskModel


def evaluate_file(model: RiskModel, path: str | Path, target: str, positive: str | None = None) -> dict[str, Any]:
    """AUC, Gini, KS, Brier and PSI against the model's development sample, for a file with outcomes."""
    columns = table_columns(path)
    if target not in columns:
        raise DataError(f"{path} has no target column {target!r}; columns: {', '.join(map(str, columns))}")
    frame = read_table(path, columns=[*model.spec.names, target])  # only what the model and the target need
    if frame.empty:
        raise DataError(f"{path} has no rows")
    y = binary_target(frame[target], target, positive)
    missing = model.spec.missing_columns(frame)
    if missing:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise DataError(f"{path} lacks {len(missing)} of the model's {len(model.spec.names)} features: {shown}")
    p = model.predict(frame)
    out: dict[str, Any] = {"model_version": model.model_version, **m.summary(y, p)}
    reference = model.metadata.get("score_reference")
    out["psi_vs_development"] = m.psi_against(reference, p) if reference else None
    return out
