"""A WoE scorecard on the model's encoded inputs: optbinning's optimal (monotone) bins + a sign-constrained
logistic regression, stored as plain numbers and evaluated with numpy.

Each feature's bins come from `optbinning.OptimalBinning` on the development rows: numeric features with a
declared direction (`monotone:`) get bins whose bad rate is monotone in that direction; the others get the
trend `trend` asks for (`auto`: optbinning picks ascending, descending, a peak or a valley from the data;
`auto_asc_desc`: monotone either way); categorical features (their codes in the training vocabulary) get
groups of categories ordered by bad rate, with categories rarer than `rare_share` pooled into one "rare"
group. Missing values (and, since the encoder codes them as missing, categories never seen in training)
are their own bin with their own weight of evidence, not imputed. The weight of evidence of a bin is its
smoothed log-odds of default minus the sample's (so higher = riskier); for declared features it is made
monotone in the declared direction by weighted isotonic regression. Features whose information value is
below `min_iv` get no points. The logistic regression on the WoE columns has every coefficient >= 0 (a
bin's points keep the order of its WoE, so a declared direction holds for the scorecard whatever the other
features do).

Points (coefficient x WoE) and the intercept are rounded to multiples of 2**-30: every sum of them is
then exact in floating point, in any order, so a row's contributions add up exactly to its raw score.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

QUANTUM = 2.0 ** -30  # points grid: sums of a few hundred points below 2**20 are exact in float64
SMOOTHING = 2.0  # pseudo-rows at the sample's bad rate added to each bin before taking its log-odds
MAX_POINTS = 64.0


def quantize(values: np.ndarray | float) -> np.ndarray:
    return np.round(np.asarray(values, np.float64) / QUANTUM) * QUANTUM


@dataclass(frozen=True)
class ScorecardConfig:
    max_bins: int = 8
    min_bin_share: float = 0.05  # optbinning's min_prebin_size
    rare_share: float = 0.01  # categories below this share of rows are pooled (optbinning's cat_cutoff)
    min_iv: float = 0.02
    l2: float = 1.0  # ridge penalty on the coefficients (on the summed log-loss)
    trend: str = "auto"  # undeclared numeric inputs: optbinning's monotonic_trend (auto, auto_asc_desc, ...)


@dataclass(frozen=True)
class FeatureBins:
    """One feature's points. numeric: bin k holds edges[k-1] <= x < edges[k]; categorical: points by code."""

    kind: str  # "numeric" | "categorical"
    edges: np.ndarray = field(default_factory=lambda: np.empty(0))  # numeric: split points, ascending
    points: np.ndarray = field(default_factory=lambda: np.empty(0))  # numeric: per bin; categorical: per code
    missing: float = 0.0  # points of a missing value (or an unseen category)
    woe: np.ndarray = field(default_factory=lambda: np.empty(0))  # per bin / code, for the model card
    missing_woe: float = 0.0
    coefficient: float = 0.0
    iv: float = 0.0
    missing_rows: int = 0
    rare_codes: tuple[int, ...] = ()

    def score(self, x: np.ndarray) -> np.ndarray:
        out = np.full(len(x), self.missing, dtype=np.float64)
        present = ~np.isnan(x)
        if self.kind == "numeric":
            out[present] = self.points[np.searchsorted(self.edges, x[present], side="right")]
        else:
            codes = x[present].astype(np.int64)
            known = (codes >= 0) & (codes < len(self.points))
            values = np.full(len(codes), self.missing)
            values[known] = self.points[codes[known]]
            out[present] = values
        return out

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "edges": self.edges.tolist(), "points": self.points.tolist(),
                "missing": self.missing, "woe": self.woe.tolist(), "missing_woe": self.missing_woe,
                "coefficient": self.coefficient, "iv": self.iv, "missing_rows": self.missing_rows,
                "rare_codes": list(self.rare_codes)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeatureBins:
        return cls(str(data["kind"]), np.asarray(data["edges"], np.float64), np.asarray(data["points"], np.float64),
                   float(data["missing"]), np.asarray(data["woe"], np.float64), float(data["missing_woe"]),
                   float(data["coefficient"]), float(data["iv"]), int(data["missing_rows"]),
                   tuple(int(c) for c in data["rare_codes"]))


@dataclass(frozen=True)
class Scorecard:
    features: dict[int, FeatureBins]  # feature position -> bins (features without points are absent)
    intercept: float
    n_features: int

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Points per feature [rows, features + 1], the intercept last; each row sums exactly to `raw_score`."""
        out = np.zeros((len(X), self.n_features + 1), dtype=np.float64)
        for j, bins in self.features.items():
            out[:, j] = bins.score(X[:, j])
        out[:, -1] = self.intercept
        return out

    def raw_score(self, X: np.ndarray) -> np.ndarray:
        """Log-odds: intercept + points, added feature by feature (each term moves alone in a sweep)."""
        raw = np.full(len(X), self.intercept, dtype=np.float64)
        for j in sorted(self.features):
            raw += self.features[j].score(X[:, j])
        return raw

    def to_json(self) -> dict[str, Any]:
        return {"intercept": self.intercept, "n_features": self.n_features,
                "features": {str(j): b.to_json() for j, b in sorted(self.features.items())}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Scorecard:
        return cls({int(j): FeatureBins.from_json(b) for j, b in data["features"].items()},
                   float(data["intercept"]), int(data["n_features"]))

    def describe(self, names: tuple[str, ...]) -> list[dict[str, Any]]:
        """Per feature with points: bins, IV, coefficient, missing treatment (for the model card)."""
        rows = []
        for j, b in sorted(self.features.items(), key=lambda kv: -kv[1].iv):
            rows.append({"feature": names[j], "kind": b.kind, "bins": int(len(b.edges) + 1) if b.kind == "numeric"
                         else int(len(np.unique(b.points))), "iv": b.iv, "coefficient": b.coefficient,
                         "missing_rows": b.missing_rows, "missing_points": b.missing,
                         "rare_categories_pooled": len(b.rare_codes)})
        return rows


# ---------------------------------------------------------------------------------------------
# Fitting


def _woe(bad: np.ndarray, rows: np.ndarray, rate: float) -> np.ndarray:
    """Smoothed log-odds of default per bin minus the sample's log-odds."""
    b = bad + SMOOTHING * rate
    g = (rows - bad) + SMOOTHING * (1 - rate)
    return np.log(b / g) - np.log(rate / (1 - rate))


def _isotonic(values: np.ndarray, weights: np.ndarray, increasing: bool) -> np.ndarray:
    from sklearn.isotonic import IsotonicRegression

    if len(values) < 2:
        return values
    iso = IsotonicRegression(increasing=increasing)
    return iso.fit_transform(np.arange(len(values), dtype=np.float64), values, sample_weight=weights)


def _finite(x: np.ndarray) -> np.ndarray:
    """Infinite ratios (e.g. a year-on-year change from zero) binned with the largest / smallest values."""
    x = x.copy()
    finite = np.isfinite(x)
    if finite.any() and not finite[~np.isnan(x)].all():
        x[np.isposinf(x)] = x[finite].max()
        x[np.isneginf(x)] = x[finite].min()
    return x


def _bin_numeric(x: np.ndarray, y: np.ndarray, direction: int, cfg: ScorecardConfig) -> np.ndarray:
    from optbinning import OptimalBinning

    present = ~np.isnan(x)
    if len(np.unique(x[present])) < 2:
        return np.empty(0)
    trend = {1: "ascending", -1: "descending"}.get(direction, cfg.trend)
    ob = OptimalBinning(dtype="numerical", monotonic_trend=trend, max_n_bins=cfg.max_bins,
                        min_prebin_size=cfg.min_bin_share, solver="cp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ob.fit(_finite(x[present]), y[present])
    return np.asarray(ob.splits, np.float64)


def _bin_categorical(codes: np.ndarray, y: np.ndarray, n_codes: int, cfg: ScorecardConfig
                     ) -> tuple[np.ndarray, tuple[int, ...]]:
    """Group index per code (-1 = code absent from these rows) and the codes pooled as rare."""
    from optbinning import OptimalBinning

    present = ~np.isnan(codes)
    c = codes[present].astype(np.int64)
    group = np.full(n_codes, -1, dtype=np.int64)
    seen = np.unique(c)
    if len(seen) == 0:
        return group, ()
    counts = np.bincount(c, minlength=n_codes)
    rare = tuple(int(k) for k in seen if counts[k] < cfg.rare_share * len(c))
    if len(seen) < 2:
        group[seen] = 0
        return group, rare
    ob = OptimalBinning(dtype="categorical", max_n_bins=cfg.max_bins, min_prebin_size=cfg.min_bin_share,
                        cat_cutoff=cfg.rare_share, solver="cp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ob.fit(c, y[present])
        index = np.asarray(ob.transform(seen, metric="indices"), np.int64)
    group[seen] = index
    return group, rare


def _feature_bins(x: np.ndarray, y: np.ndarray, kind: str, direction: int, n_codes: int, rate: float,
                  cfg: ScorecardConfig) -> FeatureBins | None:
    missing = np.isnan(x)
    present = ~missing
    rare: tuple[int, ...] = ()
    if kind == "numeric":
        edges = _bin_numeric(x, y, direction, cfg)
        index = np.searchsorted(edges, x[present], side="right")
        n_bins = len(edges) + 1
        group = None
    else:
        group, rare = _bin_categorical(x, y, n_codes, cfg)
        if (group < 0).all():
            return None
        n_bins = int(group.max()) + 1
        index = group[x[present].astype(np.int64)]
        edges = np.empty(0)
    rows = np.bincount(index, minlength=n_bins).astype(np.float64)
    bad = np.bincount(index, weights=y[present], minlength=n_bins)
    woe = _woe(bad, rows, rate)
    if kind == "numeric" and direction:
        woe = _isotonic(woe, np.maximum(rows, 1e-9), increasing=direction > 0)
    n_missing, bad_missing = float(missing.sum()), float(y[missing].sum())
    missing_woe = float(_woe(np.array([bad_missing]), np.array([n_missing]), rate)[0]) if n_missing else 0.0
    all_rows = np.r_[rows, n_missing]
    all_bad = np.r_[bad, bad_missing]
    share_bad = all_bad / max(all_bad.sum(), 1e-12)
    share_good = (all_rows - all_bad) / max((all_rows - all_bad).sum(), 1e-12)
    iv = float(np.sum((share_bad - share_good) * np.r_[woe, missing_woe]))
    if kind == "categorical":  # points per code: its group's WoE, 0 for codes absent from these rows
        woe = np.where(group >= 0, woe[np.maximum(group, 0)], 0.0)
    return FeatureBins(kind, edges, np.empty(0), 0.0, woe, missing_woe, 0.0, iv, int(n_missing), rare)


def _logistic(W: np.ndarray, y: np.ndarray, l2: float) -> tuple[float, np.ndarray]:
    """Intercept and coefficients >= 0 minimising the summed log-loss + l2/2 |coef|^2 (L-BFGS-B)."""
    from scipy.optimize import minimize

    n, k = W.shape
    rate = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = theta[0] + W @ theta[1:]
        # log(1 + e^z) - y z, stably
        value = float(np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * l2 * theta[1:] @ theta[1:])
        r = 1.0 / (1.0 + np.exp(-z)) - y
        grad = np.r_[r.sum(), W.T @ r + l2 * theta[1:]]
        return value, grad

    start = np.r_[np.log(rate / (1 - rate)), np.full(k, 0.5)]
    bounds = [(None, None)] + [(0.0, None)] * k
    done = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds,
                    options={"maxiter": 1000, "gtol": 1e-8})
    return float(done.x[0]), np.maximum(done.x[1:], 0.0)


def fit_scorecard(X: np.ndarray, y: np.ndarray, kinds: list[str], monotone: tuple[int, ...],
                  n_codes: list[int], cfg: ScorecardConfig | None = None) -> Scorecard:
    """Bins, WoE and a sign-constrained logistic regression on the rows given (encoded model inputs)."""
    cfg = cfg or ScorecardConfig()
    y = np.asarray(y, np.float64)
    rate = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
    kept: dict[int, FeatureBins] = {}
    for j in range(X.shape[1]):
        x = X[:, j]
        if np.isnan(x).all():
            continue
        bins = _feature_bins(x, y, kinds[j], int(monotone[j]) if kinds[j] == "numeric" else 0, n_codes[j], rate,
                             cfg)
        if bins is not None and bins.iv >= cfg.min_iv:
            kept[j] = bins
    order = sorted(kept)
    # the WoE columns, through the same lookup as scoring (points = WoE, coefficient 1)
    unit = {j: FeatureBins(b.kind, b.edges, b.woe, b.missing_woe) for j, b in kept.items()}
    W = np.column_stack([unit[j].score(X[:, j]) for j in order]) if order else np.zeros((len(y), 0))
    intercept, coef = _logistic(W, y, cfg.l2)
    features: dict[int, FeatureBins] = {}
    for j, beta in zip(order, coef, strict=True):
        if beta <= 0:
            continue
        b = kept[j]
        points = quantize(np.clip(beta * b.woe, -MAX_POINTS, MAX_POINTS))
        missing = float(quantize(np.clip(beta * b.missing_woe, -MAX_POINTS, MAX_POINTS)))
        features[j] = FeatureBins(b.kind, b.edges, points, missing, b.woe, b.missing_woe, float(beta), b.iv,
                                  b.missing_rows, b.rare_codes)
    return Scorecard(features, float(quantize(intercept)), X.shape[1])
