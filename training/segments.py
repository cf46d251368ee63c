"""The five products seen from training: eligibility (report segments) and index scores (baseline).

Both come from the scoring engine evaluating the product definitions on the same point-in-time
features the model trains on; no PD is passed, so eligibility here is the products' own rules only.
"""

from __future__ import annotations

import datetime as dt
import logging

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


def _results(feats: pd.DataFrame, as_of: dt.date | None = None) -> dict | None:
    try:
        from products.catalogue import load_catalogue, reference_rates
        from scoring import compile_all, evaluate_all

        plans = compile_all(load_catalogue(), reference_rates(as_of or dt.date.today()))
        return evaluate_all(plans, feats)
    except Exception as error:  # noqa: BLE001 - segments are optional in a report, never fatal
        log.warning("product evaluation unavailable for training segments: %s", error)
        return None


def gate_eligibility(feats: pd.DataFrame, as_of: dt.date | None = None) -> pd.DataFrame:
    """One boolean column per product: eligible under its definition (empty frame if unavailable)."""
    results = _results(feats, as_of)
    if not results:
        return pd.DataFrame(index=feats.index)
    return pd.DataFrame({code: np.asarray(r.eligible, dtype=bool) for code, r in results.items()},
                        index=feats.index)


def product_indices(feats: pd.DataFrame, as_of: dt.date | None = None) -> pd.DataFrame:
    """One column per product: its index score, NaN when a source the product requires is missing."""
    results = _results(feats, as_of)
    if not results:
        raise RuntimeError("the scoring engine cannot evaluate the product definitions")
    out = {}
    for code, r in results.items():
        missing = [i for i, s in enumerate(r.reason_specs) if s.code == "MISSING_SOURCE"]
        no_source = r.reason_flags[:, missing].any(axis=1) if missing else np.zeros(r.n, bool)
        out[f"index:{code}"] = np.where(no_source, np.nan, r.index_cents / 100.0)
    return pd.DataFrame(out, index=feats.index)
