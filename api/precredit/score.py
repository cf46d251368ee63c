"""One partition of a pre-credit run: features in, one decision row per enterprise out (no I/O).

The same path as a quote: `api.quoting.population.score_rows` (every product under the versions in
force, the risk model's PD and SHAP values) on the whole partition at once, then the columnar view of
the one reason formatter. Called in-process by the local engine and inside Dask workers by the Dask
engine, so both engines produce the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from api.quoting.population import score_rows
from api.quoting.versions import Versions
from api.visibility import BATCH_AUDIENCE
from scoring import Plan
from scoring.columnar import decline_columns, risk_factor_columns, top_points_lost
from training.serving import RiskModel


@dataclass(frozen=True)
class BatchContext:
    """What every partition needs besides its rows: the versions in force and the options."""

    versions: Versions
    reasons: int  # top-K explanations per row; 0 = none

    @property
    def plans(self) -> dict[str, Plan]:
        return self.versions.plans

    @property
    def model(self) -> RiskModel | None:
        return self.versions.model

    @property
    def model_version(self) -> str | None:
        return None if self.model is None else self.model.model_version


def _pct(bp: np.ndarray) -> np.ndarray:
    return np.where(bp >= 0, bp / 100.0, np.nan)


def _tier(result: Any) -> pd.Categorical:
    plan = result.plan
    grades = list(plan.grades)
    if plan.segment_field is None:
        return pd.Categorical.from_codes(result.grade, categories=pd.Index(grades, dtype=object))
    labels = [f"{s}/{g}" for s in plan.segment_labels for g in grades] + grades  # segment unknown: grade only
    seg = np.where(result.segment >= 0, result.segment, len(plan.segment_labels))
    return pd.Categorical.from_codes(seg * len(grades) + result.grade, categories=pd.Index(labels, dtype=object))


def score_partition(ctx: BatchContext, features: pd.DataFrame) -> pd.DataFrame:
    """Decisions for every enterprise (row) of `features` on every product of `ctx`, in row order."""
    n = len(features)
    pd_values = X = contrib = None
    results: dict[str, Any] = {}
    if n:
        scored = score_rows(ctx.versions, features, contributions=ctx.reasons > 0)
        pd_values, X, contrib, results = scored.pd, scored.X, scored.contrib, scored.results
    out: dict[str, Any] = {
        "credit_code": features.index.to_numpy(dtype=object),
        "pd": pd_values if pd_values is not None else np.full(n, np.nan),
        "model_version": pd.Categorical([ctx.model_version] * n) if ctx.model is not None
        else pd.Categorical.from_codes(np.full(n, -1), categories=pd.Index([], dtype=object)),
    }
    for code, r in results.items():
        grades = pd.Index(list(r.plan.grades), dtype=object)
        cols: dict[str, Any] = {
            "eligible": r.eligible,
            "index": r.index_cents / 100.0,
            "grade": pd.Categorical.from_codes(r.grade, categories=grades),
            "tier": _tier(r),
            "limit_cny": r.limit_cny.astype(np.int64),
            "rate_lo_pct": _pct(r.rate_lo_bp),
            "rate_hi_pct": _pct(r.rate_hi_bp),
            "rate_pct": _pct(r.rate_bp),
            "fee_pct": _pct(r.fee_bp),
            "subsidy_pct": _pct(r.subsidy_bp),
            **decline_columns(r),
        }
        if ctx.reasons > 0:
            cols.update(top_points_lost(r, ctx.reasons))
        if r.overlays:  # the base terms, then each overlay: the quote's base_terms / overlays
            before = r.overlays[0].before
            cols.update({"base_limit_cny": before.limit_cny.astype(np.int64), "base_rate_pct": _pct(before.rate_bp)})
            for o in r.overlays:
                cols.update({f"{o.code}.applied": o.applied, f"{o.code}.limit_uplift": o.uplift,
                             f"{o.code}.rate_cut_bp": o.rate_cut_bp})
        out.update({f"{code}.{k}": v for k, v in cols.items()})
    if contrib is not None:
        out.update(risk_factor_columns(ctx.model.spec, X, contrib, ctx.reasons, BATCH_AUDIENCE))
    return pd.DataFrame(out, index=pd.RangeIndex(n))
