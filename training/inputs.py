"""How the model sees each input: type, missing share, categories, rare categories, and what the chosen
family does with missing values and categories (the model card's "categorical and missing data" part).

Nothing is imputed: a missing value reaches the model as missing (NaN) and is information in its own
right. LightGBM sends it down the side of each split that fits the training rows best; the scorecard
gives it its own bin and weight of evidence. A category the training rows never had is encoded as
missing. Text columns with more distinct values than `file.max_categories` and than half their rows look like
identifiers and are left out (listed in the notes); other high-cardinality text stays a category.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from training.datasets import Dataset
from training.encoding import FeatureSpec, RowColumns

RARE_SHARE_DEFAULT = 0.01

TREATMENT = {
    "lightgbm": {"missing": "own branch: each split sends missing values to the side learned from the training rows",
                 "categorical": "LightGBM categorical splits (one-vs-rest up to max_cat_to_onehot categories, else "
                                "grouped by gradient with cat_smooth); a category unseen in training = missing"},
    "scorecard": {"missing": "own bin with its own weight of evidence (points 0 when too few rows had it)",
                  "categorical": "categories grouped by bad rate (optbinning), those below rare_share of rows pooled "
                                 "into one group; a category unseen in training = missing"},
}


def describe_inputs(ds: Dataset, spec: FeatureSpec, dev: RowColumns, scorer: Any) -> dict[str, Any]:
    """Per input its kind, missing share and categories on the development rows (`dev`: their encoded columns)."""
    family = scorer.family
    families = ("lightgbm", "scorecard") if family == "blend" else (family,)
    card = getattr(scorer, "scorecard", None)
    rare_share = RARE_SHARE_DEFAULT
    rows = []
    for j, name in enumerate(spec.names):
        column = dev.column(j)
        missing = float(np.isnan(column).mean()) if len(column) else 0.0
        entry: dict[str, Any] = {"feature": name, "kind": "categorical" if name in spec.categories else "numeric",
                                 "missing_share_dev": missing}
        if name in spec.categories:
            codes = column[~np.isnan(column)].astype(np.int64)
            counts = np.bincount(codes, minlength=len(spec.categories[name])) if len(codes) else np.zeros(0)
            entry["categories"] = len(spec.categories[name])
            entry["rare_categories"] = int(((counts > 0) & (counts < rare_share * max(len(codes), 1))).sum())
        if card is not None and j in card.features:
            bins = card.features[j]
            entry["scorecard_missing_points"] = bins.missing
            entry["scorecard_rare_pooled"] = len(bins.rare_codes)
        rows.append(entry)
    left_out = [n for n in ds.notes if "left out" in n]
    return {
        "features": rows,
        "missing_any": int(sum(1 for r in rows if r["missing_share_dev"] > 0)),
        "categorical": [r["feature"] for r in rows if r["kind"] == "categorical"],
        "left_out": left_out,
        "treatment": {f: TREATMENT[f] for f in families},
        "imputation": "none: missing values reach the model as missing",
    }
