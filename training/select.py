"""Model-family selection by inner cross-validation on the development sample only.

Every candidate of `selection.candidates` (LightGBM at a few tree shapes, the WoE scorecard, and the blend
of the best LightGBM shape with the scorecard in log-odds) is scored out of fold on the development rows,
with the same folds for all: the k folds of `cv` validation (`cv_repeats` times, each repeat shuffled anew: a
row's out-of-fold score is then the mean of its out-of-fold models, one per repeat), or the one validation
fold of `holdout`.
The out-of-time (or evaluation) rows are never used. Figures per candidate: AUC and KS of the raw score per
fold, and the Brier score of its calibrated PD (each out-of-fold row calibrated by a calibrator fitted on
the other rows, as the final calibration would be) - mean and standard deviation over folds. The winner
has the best `criterion` (AUC unless configured); candidates within `tolerance` of it are a tie, which the
`tie_break` measure (Brier unless configured) decides, then the order of the list. `tolerance: se` makes the
margin data-driven: a candidate ties when it is behind the leader by at most the standard error of their
paired per-fold differences (a difference the folds cannot tell from noise).

A `mean` candidate averages LightGBM shapes already measured (no training of its own). The blend's weight is
chosen from `blend_weights` on the other folds' out-of-fold scores for each fold
(cross-fitted, so its figures are out of sample too), and on all of them for the final model. An `ensemble`
candidate weighs the measured LightGBM shapes and the scorecard by greedy ensemble selection on their
out-of-fold scores (`training.ensemble`), cross-fitted the same way; no training of its own either.

The winner is then the final model: with `cv`, its LightGBM part is the mean of its k fold models (one
LightGBM file holding all their trees, each scaled by 1/k; `cv_final: refit` instead trains one model on
every development row with the mean of their rounds) and its scorecard is refitted on every development
row; it is calibrated on its out-of-fold scores. With `holdout`, the fold model itself, calibrated on the
validation fold.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
from sklearn.model_selection import StratifiedKFold

from training import metrics as m
from training.calibration import fit_calibrator
from training.config import Candidate, TrainConfig
from training.encoding import FeatureSpec
from training.ensemble import greedy_weights
from training.families import BlendScorer, LightGBMScorer, ScorecardScorer, Scorer, average_boosters
from training.fit import Progress, Split, _early_stopped, lgb_feature_names, validation_mode
from training.monotone import Inferred, infer_directions, with_inferred
from training.scorecard import Scorecard, fit_scorecard

CALIBRATION_PARTS = 5
FIGURE_CRITERION = "brier"  # `calibration: auto` in a candidate's cross-fitted Brier figure (cross_fitted_pd)
SIGN = {"auc": 1.0, "ks": 1.0, "brier": -1.0}


@dataclass
class Folds:
    mode: str  # "cv" | "holdout"
    pairs: list[tuple[np.ndarray, np.ndarray]]  # (rows fitted, rows scored) per fold; with repeats, repeat by repeat
    rows: np.ndarray  # the out-of-fold rows (development in cv, the validation fold in holdout)
    fold_of: np.ndarray  # fold number of each of `rows` in the first repeat (the folds the figures are given by)
    repeats: int = 1  # cv_repeats: each row is scored out of fold once per repeat, by a model of that repeat


@dataclass
class Evaluated:
    candidate: Candidate
    oof: np.ndarray  # out-of-fold raw score of each of Folds.rows
    figures: dict[str, Any]
    iterations: list[int] = field(default_factory=list)  # LightGBM: early-stopped rounds per fold
    models: list[Any] = field(default_factory=list)  # fold models (holdout: the final model)
    params: dict[str, Any] | None = None
    weight: float | None = None  # blend: weight of the LightGBM part (final)
    fold_weights: list[float] = field(default_factory=list)
    grown: list[int] = field(default_factory=list)  # LightGBM: rounds grown per fold (best + patience at most)
    gbm_oof: np.ndarray | None = None  # blend: its LightGBM part's out-of-fold raw score
    card_oof: np.ndarray | None = None  # blend: its scorecard's out-of-fold raw score
    parts: list[Evaluated] = field(default_factory=list)  # mean (or a blend of it): the LightGBM shapes averaged
    part_weights: list[float] | None = None  # ensemble: the weight of each of `parts` (None: equal)
    family: str = ""  # the family it is served as (lightgbm, scorecard, blend); empty: its candidate's
    inferred: list[dict[int, Inferred]] = field(default_factory=list)  # `monotone: inferred`: per fold model

    @property
    def served(self) -> str:
        """The family the final model is served as: a mean is one booster, an ensemble what its weights hold."""
        return self.family or ("lightgbm" if self.candidate.family == "mean" else self.candidate.family)


@dataclass
class Selected:
    scorer: Scorer
    winner: Evaluated
    folds: Folds
    cal_rows: np.ndarray
    cal_raw: np.ndarray
    report: dict[str, Any]


def make_folds(y: np.ndarray, split: Split, cfg: TrainConfig) -> Folds:
    dev = split.dev
    if validation_mode(cfg, len(dev)) == "holdout":
        return Folds("holdout", [(split.train, split.valid)], split.valid, np.zeros(len(split.valid), np.int64))
    pairs, fold_of = [], np.empty(len(dev), np.int64)
    for repeat in range(cfg.cv_repeats):
        splitter = StratifiedKFold(n_splits=cfg.cv_folds, shuffle=True, random_state=cfg.seed + repeat)
        for k, (a, b) in enumerate(splitter.split(dev, y[dev])):
            pairs.append((dev[a], dev[b]))
            if repeat == 0:
                fold_of[b] = k
    return Folds("cv", pairs, dev, fold_of, cfg.cv_repeats)


def _pair_positions(folds: Folds) -> list[np.ndarray]:
    """Positions within `folds.rows` (sorted) of each pair's scored rows."""
    return [np.searchsorted(folds.rows, scored) for _, scored in folds.pairs]


def _positions(folds: Folds) -> list[np.ndarray]:
    """Positions within `folds.rows` of each fold's scored rows (of the first repeat)."""
    return [np.flatnonzero(folds.fold_of == k) for k in range(len(folds.pairs) // folds.repeats)]


def _metric_groups(y: np.ndarray, folds: Folds, seed: int) -> list[np.ndarray]:
    """Groups of out-of-fold positions measured separately: the folds, or with one fold (holdout) stratified
    parts of it (for cross-fitting the blend weight)."""
    if len(folds.pairs) > 1:
        return _positions(folds)
    yy = y[folds.rows]
    parts = min(CALIBRATION_PARTS, int(min(yy.sum(), len(yy) - yy.sum())))
    if parts < 2:
        return [np.arange(len(yy))]
    splitter = StratifiedKFold(n_splits=parts, shuffle=True, random_state=seed)
    return [b for _, b in splitter.split(yy, yy)]


def cross_fitted_pd(raw: np.ndarray, y: np.ndarray, cfg: TrainConfig) -> np.ndarray:
    """Calibrated PD of each row from a calibrator that never saw it (stratified parts), for a candidate's Brier
    figure. With `calibration: auto` the method is chosen here by cross-validated Brier (FIGURE_CRITERION), whatever
    `calibration_criterion` says for the final calibrator: the figure is a Brier score, each candidate's measured
    with its own best-Brier calibration, and which candidate wins does not move with the final calibrator's rule
    (choosing by log-loss here too turned one German outer fold's Brier tie-break to the blend: docs §7, sixth
    round)."""
    parts = min(CALIBRATION_PARTS, int(min(y.sum(), len(y) - y.sum())))
    if parts < 2:
        return fit_calibrator(raw, y, cfg.calibration, cfg.seed, FIGURE_CRITERION)[0](raw)
    p = np.empty(len(y))
    for a, b in StratifiedKFold(n_splits=parts, shuffle=True, random_state=cfg.seed).split(raw, y):
        p[b] = fit_calibrator(raw[a], y[a], cfg.calibration, cfg.seed, FIGURE_CRITERION)[0](raw[b])
    return p


def figures(raw: np.ndarray, y_rows: np.ndarray, folds: Folds, cfg: TrainConfig) -> dict[str, Any]:
    p = cross_fitted_pd(raw, y_rows, cfg)
    per_fold = []
    for pos in _positions(folds):
        yy = y_rows[pos]
        per_fold.append({"rows": int(len(pos)), "auc": m.auc(yy, raw[pos]), "ks": m.ks(yy, raw[pos]),
                         "brier": m.brier(yy, p[pos])})
    out: dict[str, Any] = {}
    for key in ("auc", "ks", "brier"):
        values = np.array([f[key] for f in per_fold], np.float64)
        out[key] = float(np.nanmean(values))
        out[f"{key}_sd"] = float(np.nanstd(values))
    out["pooled_brier"] = m.brier(y_rows, p)
    out["folds"] = per_fold
    table = m.calibration_table(y_rows, p)
    out["reliability"] = {"mean_pd": table["mean_pd"].tolist(), "default_rate": table["default_rate"].tolist()}
    return out


def _lgb_params(cfg: TrainConfig, spec: FeatureSpec, candidate: Candidate) -> dict[str, Any]:
    return {**cfg.lgb_params(), **candidate.params, "monotone_constraints": list(spec.monotone), "num_threads": 0}


def _kinds(spec: FeatureSpec) -> tuple[list[str], list[int]]:
    kinds = ["categorical" if n in spec.categories else "numeric" for n in spec.names]
    codes = [len(spec.categories.get(n, ())) for n in spec.names]
    return kinds, codes


def _scorecard(X: np.ndarray, y: np.ndarray, rows: np.ndarray, spec: FeatureSpec, cfg: TrainConfig) -> Scorecard:
    kinds, codes = _kinds(spec)
    return fit_scorecard(X[rows], y[rows], kinds, spec.monotone, codes, cfg.scorecard)


def open_features(spec: FeatureSpec, cfg: TrainConfig) -> frozenset[str]:
    """The inputs a direction may be inferred for: numeric, and not named under `monotone:` (declared wins)."""
    return frozenset(n for n in spec.names if n not in spec.categories and n not in cfg.monotone)


def inferred_on(X: np.ndarray, y: np.ndarray, rows: np.ndarray, spec: FeatureSpec, cfg: TrainConfig
                ) -> dict[int, Inferred]:
    return infer_directions(X, y, rows, spec.names, open_features(spec, cfg), cfg.monotone_alpha)


def evaluate_lightgbm(candidate: Candidate, X: np.ndarray, y: np.ndarray, spec: FeatureSpec, folds: Folds,
                      cfg: TrainConfig, progress: Progress | None) -> Evaluated:
    params = _lgb_params(cfg, spec, candidate)
    oof = np.zeros(len(folds.rows))
    iterations, models, grown, inferred = [], [], [], []
    for k, ((fit_rows, eval_rows), pos) in enumerate(zip(folds.pairs, _pair_positions(folds), strict=True)):
        fold_params = params
        if candidate.monotone == "inferred":  # from this fold's training rows only: its figures stay honest
            inferred.append(inferred_on(X, y, fit_rows, spec, cfg))
            fold_params = {**params, "monotone_constraints": with_inferred(spec.monotone, inferred[-1])}
        booster, best, ran = _early_stopped(fold_params, X, y, fit_rows, eval_rows, spec, cfg,
                                          f"{candidate.name}: fold {k + 1}/{len(folds.pairs)}", progress)
        # with repeats, a row's out-of-fold score is the mean of its one out-of-fold model per repeat
        oof[pos] += booster.predict(X[eval_rows], raw_score=True, num_iteration=best) / folds.repeats
        iterations.append(best)
        grown.append(ran)
        models.append(lgb.Booster(model_str=booster.model_to_string(num_iteration=best)))
    figs = figures(oof, y[folds.rows], folds, cfg)
    figs["trees"] = float(np.mean(iterations))
    if candidate.monotone == "inferred":
        figs["inferred_monotone"] = {spec.names[j]: [fold[j].direction if j in fold else 0 for fold in inferred]
                                     for j in sorted(set().union(*inferred))}
    return Evaluated(candidate, oof, figs, iterations, models, params, grown=grown, inferred=inferred)


def evaluate_scorecard(candidate: Candidate, X: np.ndarray, y: np.ndarray, spec: FeatureSpec, folds: Folds,
                       cfg: TrainConfig, progress: Progress | None) -> Evaluated:
    oof = np.zeros(len(folds.rows))
    models = []
    for k, ((fit_rows, eval_rows), pos) in enumerate(zip(folds.pairs, _pair_positions(folds), strict=True)):
        if progress is not None:
            progress(f"{candidate.name}: fold {k + 1}/{len(folds.pairs)}", k, len(folds.pairs))
        card = _scorecard(X, y, fit_rows, spec, cfg)
        oof[pos] += card.raw_score(X[eval_rows]) / folds.repeats
        models.append(card)
    figs = figures(oof, y[folds.rows], folds, cfg)
    figs["features_with_points"] = float(np.mean([len(c.features) for c in models]))
    return Evaluated(candidate, oof, figs, models=models if folds.mode == "holdout" else [])


def evaluate_mean(candidate: Candidate, shapes: list[Evaluated], y: np.ndarray, folds: Folds,
                  cfg: TrainConfig) -> Evaluated:
    """The mean in log-odds of LightGBM shapes already measured on the same folds: its out-of-fold score is the
    mean of theirs, and its model per fold one booster holding all their fold trees, each scaled by 1/S (exact
    TreeSHAP, monotone where every shape is). Shapes err differently (depth 1 misses interactions, deeper ones
    overfit small data), so their mean often ranks and calibrates better than the best one alone."""
    oof = np.mean([s.oof for s in shapes], axis=0)
    models = [average_boosters([s.models[k] for s in shapes]) for k in range(len(shapes[0].models))]
    iterations = [int(sum(s.iterations[k] for s in shapes)) for k in range(len(shapes[0].iterations))]
    grown = [int(sum(s.grown[k] for s in shapes)) for k in range(len(shapes[0].grown))]
    figs = figures(oof, y[folds.rows], folds, cfg)
    figs["trees"] = float(np.mean(iterations))
    figs["shapes"] = [s.candidate.name for s in shapes]
    params = {"mean_of": {s.candidate.name: {k: v for k, v in (s.params or {}).items() if k != "monotone_constraints"}
                          for s in shapes}}
    return Evaluated(candidate, oof, figs, iterations, models, params, grown=grown, parts=list(shapes))


def mean_shapes(candidate: Candidate, measured: list[Evaluated]) -> list[Evaluated]:
    """The LightGBM shapes a mean candidate averages: those named in its `of` (when measured), else all."""
    shapes = [r for r in measured if r.candidate.family == "lightgbm"]
    return [r for r in shapes if r.candidate.name in candidate.of] if candidate.of else shapes


def _weight_measure(cfg: TrainConfig) -> str:
    return cfg.selection.criterion if cfg.selection.criterion in ("auc", "ks") else "auc"


def _best_weight(gbm: np.ndarray, card: np.ndarray, y: np.ndarray, groups: list[np.ndarray],
                 weights: tuple[float, ...], measure: str) -> float:
    fn = m.auc if measure == "auc" else m.ks
    scores = []
    for w in weights:
        raw = w * gbm + (1 - w) * card
        scores.append(float(np.nanmean([fn(y[g], raw[g]) for g in groups])) if groups else float("nan"))
    return float(weights[int(np.nanargmax(scores))])


def evaluate_blend(candidate: Candidate, gbm: Evaluated, card: Evaluated, y: np.ndarray, folds: Folds,
                   cfg: TrainConfig) -> Evaluated:
    y_rows = y[folds.rows]
    groups = _metric_groups(y, folds, cfg.seed)
    weights = cfg.selection.blend_weights
    measure = _weight_measure(cfg)
    oof = np.empty(len(folds.rows))
    fold_weights = []
    for k, g in enumerate(groups):
        others = [h for j, h in enumerate(groups) if j != k]
        w = _best_weight(gbm.oof, card.oof, y_rows, others, weights, measure)
        oof[g] = w * gbm.oof[g] + (1 - w) * card.oof[g]
        fold_weights.append(w)
    final_w = _best_weight(gbm.oof, card.oof, y_rows, groups, weights, measure)
    figs = figures(oof, y_rows, folds, cfg)
    figs["weight"] = final_w
    figs["fold_weights"] = fold_weights
    figs["lightgbm_part"] = gbm.candidate.name
    final_oof = final_w * gbm.oof + (1 - final_w) * card.oof
    blended = Evaluated(candidate, final_oof, figs, gbm.iterations, gbm.models, gbm.params, final_w, fold_weights,
                        gbm.grown, gbm_oof=gbm.oof, card_oof=card.oof, parts=gbm.parts, inferred=gbm.inferred)
    if folds.mode == "holdout":
        blended.models = [BlendScorer(gbm.models[0], card.models[0], final_w)]
    return blended


def ensemble_members(candidate: Candidate, measured: list[Evaluated]) -> list[Evaluated]:
    """The candidates an ensemble may weigh: the LightGBM shapes and the scorecard named in its `of` (when
    measured), else all of them, in the order of the list."""
    members = [r for r in measured if r.candidate.family in ("lightgbm", "scorecard")]
    return [r for r in members if r.candidate.name in candidate.of] if candidate.of else members


def evaluate_ensemble(candidate: Candidate, members: list[Evaluated], y: np.ndarray, folds: Folds,
                      cfg: TrainConfig) -> Evaluated:
    """Greedy ensemble selection over `members`' out-of-fold scores: for each fold the weights learnt on the
    other folds' out-of-fold scores (cross-fitted, so its figures are out of sample), for the final model on
    all of them. Served as the weighted sum of the members' raw scores: the LightGBM members' fold models in
    one booster per fold (each tree scaled by its member's share of the LightGBM weight) and, when the
    scorecard has weight, a blend of that booster and the scorecard (weight = the LightGBM members' total)."""
    y_rows = y[folds.rows]
    scores = np.array([r.oof for r in members])
    names = [r.candidate.name for r in members]
    groups = _metric_groups(y, folds, cfg.seed)
    oof = np.empty(len(folds.rows))
    fold_weights = []
    for k, g in enumerate(groups):
        fit = np.concatenate([h for j, h in enumerate(groups) if j != k]) if len(groups) > 1 else g
        w = greedy_weights(scores[:, fit], y_rows[fit], candidate.steps)
        oof[g] = w @ scores[:, g]
        fold_weights.append({n: float(v) for n, v in zip(names, w, strict=True) if v > 0})
    weights = greedy_weights(scores, y_rows, candidate.steps)
    figs = figures(oof, y_rows, folds, cfg)
    figs["weight"] = {n: float(v) for n, v in zip(names, weights, strict=True) if v > 0}
    figs["fold_weights"] = fold_weights
    figs["members"] = names
    chosen = [(r, float(v)) for r, v in zip(members, weights, strict=True) if v > 0]
    gbms = [(r, v) for r, v in chosen if r.candidate.family == "lightgbm"]
    cards = [(r, v) for r, v in chosen if r.candidate.family == "scorecard"]
    card_weight = cards[0][1] if cards else 0.0
    result = Evaluated(candidate, weights @ scores, figs, family="scorecard" if not gbms else
                       "lightgbm" if not cards else "blend")
    if cards:
        result.card_oof = cards[0][0].oof
    if not gbms:
        result.models = cards[0][0].models
        return result
    total = sum(v for _, v in gbms)
    shares = [v / total for _, v in gbms]
    parts = [r for r, _ in gbms]
    result.parts, result.part_weights = parts, shares
    result.models = [average_boosters([r.models[k] for r in parts], shares) for k in range(len(parts[0].models))]
    result.iterations = [int(sum(r.iterations[k] for r in parts)) for k in range(len(parts[0].iterations))]
    result.grown = [int(sum(r.grown[k] for r in parts)) for k in range(len(parts[0].grown))]
    result.gbm_oof = np.array(shares) @ np.array([r.oof for r in parts])
    result.params = {"ensemble_of": {r.candidate.name: {k: v for k, v in (r.params or {}).items()
                                                       if k != "monotone_constraints"} for r in parts}}
    result.weight = 1.0 - card_weight if cards else None
    figs["trees"] = float(np.mean(result.iterations))
    if folds.mode == "holdout" and cards:
        result.models = [BlendScorer(result.models[0], cards[0][0].models[0], float(result.weight))]
    return result


def choose(results: list[Evaluated], cfg: TrainConfig) -> tuple[Evaluated, str]:
    """The winner by the declared criterion (ties within `tolerance` go to the tie-break), and why."""
    sel = cfg.selection
    crit, tie = sel.criterion, sel.tie_break
    if sel.winner != "auto":
        forced = next(r for r in results if r.candidate.name == sel.winner)
        return forced, (f"{forced.candidate.name} is the configured winner (selection.winner); its inner-CV "
                        f"{crit.upper()} is {forced.figures[crit]:.4f}, the best is "
                        f"{max(SIGN[crit] * r.figures[crit] for r in results) * SIGN[crit]:.4f}")
    key = {r.candidate.name: SIGN[crit] * r.figures[crit] for r in results}
    leader = max(results, key=lambda r: (key[r.candidate.name], -results.index(r)))
    best = key[leader.candidate.name]
    margins = {r.candidate.name: tie_margin(leader, r, crit, sel.tolerance) for r in results}
    tied = [r for r in results if key[r.candidate.name] >= best - margins[r.candidate.name]]
    winner = max(tied, key=lambda r: (SIGN[tie] * r.figures[tie], -results.index(r)))
    others = [r for r in results if r is not winner]
    for r in results:
        r.figures["tie_margin"] = margins[r.candidate.name]
    rule = ("the standard error of the paired per-fold difference" if sel.tolerance == "se"
            else f"the tolerance {sel.tolerance}")

    def show(r: Evaluated, k: str) -> str:
        return f"{r.candidate.name} {r.figures[k]:.4f}"

    if len(tied) == 1:
        runner = max(others, key=lambda r: key[r.candidate.name]) if others else None
        reason = (f"{winner.candidate.name} has the best inner-CV {crit.upper()} ({winner.figures[crit]:.4f}"
                  + (f"; next {show(runner, crit)}, further behind than {rule})" if runner else ")"))
    else:
        rest = ", ".join(show(r, tie) for r in tied if r is not winner)
        reason = (f"{len(tied)} candidates are within {rule} of the best inner-CV {crit.upper()} "
                  f"({leader.candidate.name} {best * SIGN[crit]:.4f}): {', '.join(show(r, crit) for r in tied)}; "
                  f"the tie-break {tie} chose {winner.candidate.name} ({winner.figures[tie]:.4f} against {rest})")
    return winner, reason


def tie_margin(leader: Evaluated, other: Evaluated, crit: str, tolerance: float | str) -> float:
    """How far behind the leader `other` may be and still tie: a number, or with `se` the standard error of the
    per-fold differences of the criterion between the two (paired: same folds), 0 for the leader itself. With a
    single fold (holdout) there is no standard error: only exact ties."""
    if other is leader:
        return 0.0
    if tolerance != "se":
        return float(tolerance)
    a = np.array([f[crit] for f in leader.figures["folds"]], np.float64)
    b = np.array([f[crit] for f in other.figures["folds"]], np.float64)
    if len(a) < 2:
        return 0.0
    diff = SIGN[crit] * (a - b)
    return float(np.std(diff, ddof=1) / np.sqrt(len(diff)))


@dataclass(frozen=True)
class AveragingScale:
    """How the mean of k fold models scores compared with one fold model, for calibrating the mean.

    The calibrator learns from out-of-fold scores, each of one fold model; the final model is the mean of the
    k fold models, whose scores vary less (their errors partly cancel). Taking an out-of-fold score as the sum
    of the signal and one model's error, the best Platt slope for the mean is the out-of-fold slope divided
    by `ratio` = Var(mean's score) / Var(one model's score). The out-of-fold scores are therefore mapped to
    the mean's scale, `centre_mean + ratio x (score - centre_oof)`, before the calibrator is fitted: it then
    applies to the final model's raw score as it is. Both variances are measured on the same development
    rows (each model has trained on the same share of them), so the in-sample part cancels in the ratio.
    """

    ratio: float
    centre_oof: float
    centre_mean: float

    def apply(self, oof: np.ndarray) -> np.ndarray:
        return self.centre_mean + self.ratio * (np.asarray(oof, np.float64) - self.centre_oof)

    def describe(self) -> dict[str, Any]:
        return {"method": "out-of-fold scores mapped to the scale of the mean of the fold models",
                "variance_ratio": self.ratio, "centre_oof": self.centre_oof, "centre_mean": self.centre_mean}


def scale_of_mean(each: np.ndarray, oof: np.ndarray, repeats: int = 1) -> AveragingScale:
    """`each`: the fold models' raw scores of the same development rows (models x rows, repeat by repeat);
    `oof`: the out-of-fold scores to be mapped. With repeats an out-of-fold score is the mean of one model per
    repeat, so its spread is compared with that of such means (the k-th fold model of every repeat)."""
    mean = each.mean(axis=0)
    like_oof = each.reshape(repeats, -1, each.shape[1]).mean(axis=0)
    single = float(np.mean(like_oof.var(axis=1)))
    ratio = float(np.clip(mean.var() / single, 0.0, 1.0)) if single > 0 else 1.0
    return AveragingScale(ratio, float(np.mean(oof)), float(mean.mean()))


def averaging_scale(models: list[lgb.Booster], X_dev: np.ndarray, oof: np.ndarray, repeats: int = 1
                    ) -> AveragingScale:
    return scale_of_mean(np.array([b.predict(X_dev, raw_score=True) for b in models]), oof, repeats)


def _final_lightgbm(X: np.ndarray, y: np.ndarray, rows: np.ndarray, spec: FeatureSpec, winner: Evaluated,
                    cfg: TrainConfig, progress: Progress | None, dev_wide: dict[int, Inferred]) -> lgb.Booster:
    """cv: the mean of the k fold models (`cv_final: average`, each early-stopped on its own fold), or one
    model refitted on every development row with the mean of their rounds (`cv_final: refit`); `dev_wide`: the
    directions inferred on those rows (`development_directions`)."""
    if cfg.cv_final == "average":
        return average_boosters(winner.models)
    if winner.parts:  # a mean of shapes (or an ensemble): each shape refitted, then averaged (weighted)
        return average_boosters([_final_lightgbm(X, y, rows, spec, part, cfg, progress, dev_wide)
                                 for part in winner.parts], winner.part_weights)
    params, iterations = winner.params or {}, winner.iterations
    if winner.inferred:  # the directions of all development rows (the fold models had their own folds')
        params = {**params, "monotone_constraints": with_inferred(spec.monotone, dev_wide)}
    rounds = max(1, round(float(np.mean(iterations))))
    full = lgb.Dataset(X[rows], y[rows], feature_name=lgb_feature_names(spec.names),
                       categorical_feature=spec.categorical_indices, free_raw_data=True)

    def report(env: lgb.callback.CallbackEnv) -> None:
        if progress is not None:
            progress("training on all development rows", env.iteration + 1, env.end_iteration)

    booster = lgb.train(params, full, num_boost_round=rounds, callbacks=[report])
    return lgb.Booster(model_str=booster.model_to_string())


def _grown_with(part: Evaluated, dev_wide: dict[int, Inferred], spec: FeatureSpec, folds: Folds,
                cfg: TrainConfig) -> list[list[int]]:
    """The constraints of each LightGBM model a final model is made of (the fold models, or the refit)."""
    if not part.inferred:
        return [list(spec.monotone)]
    if cfg.cv_final == "average" or folds.mode == "holdout":
        return [with_inferred(spec.monotone, fold) for fold in part.inferred]
    return [with_inferred(spec.monotone, dev_wide)]


def _lightgbm_parts(winner: Evaluated) -> list[Evaluated]:
    """The measured LightGBM candidates the final model's LightGBM part is made of (none: served as a scorecard)."""
    if winner.served == "scorecard":
        return []
    return winner.parts or [winner]


def development_directions(winner: Evaluated, X: np.ndarray, y: np.ndarray, folds: Folds, spec: FeatureSpec,
                           cfg: TrainConfig) -> dict[int, Inferred]:
    """The directions inferred on all development rows, for a winner with `monotone: inferred` parts under cv
    (a refitted final model is grown with them; the card shows them either way); empty otherwise. Inferred once:
    the final model and its card take the same result."""
    if folds.mode != "cv" or not any(p.inferred for p in _lightgbm_parts(winner)):
        return {}
    return inferred_on(X, y, folds.rows, spec, cfg)


def inferred_card(winner: Evaluated, scorer: Scorer, dev_wide: dict[int, Inferred], folds: Folds,
                  spec: FeatureSpec, cfg: TrainConfig) -> dict[str, Any] | None:
    """For a winner with inferred directions: per inferred feature the direction found on each inner fold's
    training rows and on all development rows (`dev_wide`, from `development_directions`: Spearman's rho and p:
    why), and the direction the final model holds: the one every LightGBM model it is made of was grown with (and,
    in a blend, that the scorecard's points follow too); 0 when they differ (the final model is then not
    guaranteed monotone in it)."""
    parts = _lightgbm_parts(winner)
    if not any(p.inferred for p in parts):
        return None
    grown = [c for p in parts for c in _grown_with(p, dev_wide, spec, folds, cfg)]
    card = getattr(scorer, "scorecard", None)
    features: dict[str, Any] = {}
    for j in sorted({j for p in parts for fold in p.inferred for j in fold} | set(dev_wide)):
        directions = {c[j] for c in grown}
        held = directions.pop() if len(directions) == 1 else 0
        bins = card.features.get(j) if card is not None else None
        if held and bins is not None and (np.diff(bins.points) * held < 0).any():
            held = 0  # the blend's scorecard part turns the other way somewhere
        features[spec.names[j]] = {
            "folds": [[fold[j].direction if j in fold else 0 for fold in p.inferred] for p in parts if p.inferred],
            "development": dev_wide[j].describe() if j in dev_wide else None,
            "held": held,
        }
    return {"alpha": cfg.monotone_alpha,
            "rule": ("Spearman's rank correlation with the outcome significant (two-sided p < alpha) and no half "
                     "of the input's range (below / at or below / at or above / above its median) turning the other "
                     "way (one-sided p < alpha); inferred on each inner fold's training rows for the fold models, on "
                     "all development rows for a refitted model; declared directions always win"),
            "features": features}


def build_winner(winner: Evaluated, X: np.ndarray, y: np.ndarray, spec: FeatureSpec, folds: Folds,
                 cfg: TrainConfig, progress: Progress | None = None, dev_wide: dict[int, Inferred] | None = None
                 ) -> tuple[Scorer, np.ndarray, AveragingScale | None]:
    """The final model of a measured candidate, and the raw scores of `folds.rows` its calibrator learns from;
    `dev_wide`: `development_directions` if the caller has them (else inferred here when a refit needs them)."""
    family = winner.served
    scorer: Scorer
    cal_raw, scale = winner.oof, None
    if folds.mode == "holdout":
        model = winner.models[0]
        scorer = (LightGBMScorer(model) if family == "lightgbm" else ScorecardScorer(model)
                  if family == "scorecard" else model)
        return scorer, cal_raw, scale
    dev = folds.rows
    if family == "scorecard":
        return ScorecardScorer(_scorecard(X, y, dev, spec, cfg)), cal_raw, scale
    if dev_wide is None:
        dev_wide = development_directions(winner, X, y, folds, spec, cfg) if cfg.cv_final == "refit" else {}
    booster = _final_lightgbm(X, y, dev, spec, winner, cfg, progress, dev_wide)
    gbm_oof = winner.oof if family == "lightgbm" else winner.gbm_oof
    if cfg.cv_final == "average" and cfg.calibration_scores == "mean_scale":
        scale = averaging_scale(winner.models, X[dev], gbm_oof, folds.repeats)
        gbm_oof = scale.apply(gbm_oof)
    if family == "lightgbm":
        return LightGBMScorer(booster), gbm_oof, scale
    w = float(winner.weight)
    return BlendScorer(booster, _scorecard(X, y, dev, spec, cfg), w), w * gbm_oof + (1 - w) * winner.card_oof, scale


def measure_candidates(X: np.ndarray, y: np.ndarray, split: Split, spec: FeatureSpec, cfg: TrainConfig,
                       progress: Progress | None = None) -> tuple[Folds, list[Evaluated], dict[str, float]]:
    """Every configured candidate scored out of fold on the same folds of the development rows, in their order."""
    folds = make_folds(y, split, cfg)
    results: list[Evaluated] = []
    timings: dict[str, float] = {}
    best_gbm = card = None
    dev_rows = len(split.dev)
    skipped = [c for c in cfg.selection.candidates if c.min_rows > dev_rows]
    for candidate in cfg.selection.candidates:
        if candidate in skipped:
            continue
        start = time.perf_counter()
        if candidate.family == "lightgbm":
            result = evaluate_lightgbm(candidate, X, y, spec, folds, cfg, progress)
            if best_gbm is None or (SIGN[cfg.selection.criterion] * result.figures[cfg.selection.criterion]
                                    > SIGN[cfg.selection.criterion] * best_gbm.figures[cfg.selection.criterion]):
                best_gbm = result
        elif candidate.family == "scorecard":
            result = card = evaluate_scorecard(candidate, X, y, spec, folds, cfg, progress)
        else:
            continue  # blends after every LightGBM shape and the scorecard are known
        results.append(result)
        timings[candidate.name] = time.perf_counter() - start
    for candidate in cfg.selection.candidates:  # means after every LightGBM shape is known
        shapes = mean_shapes(candidate, results) if candidate.family == "mean" else []
        if len(shapes) >= 2 and candidate not in skipped:
            assert best_gbm is not None
            start = time.perf_counter()
            result = evaluate_mean(candidate, shapes, y, folds, cfg)
            if SIGN[cfg.selection.criterion] * result.figures[cfg.selection.criterion] > \
                    SIGN[cfg.selection.criterion] * best_gbm.figures[cfg.selection.criterion]:
                best_gbm = result
            results.append(result)
            timings[candidate.name] = time.perf_counter() - start
    for candidate in cfg.selection.candidates:
        if candidate.family == "blend" and best_gbm is not None and card is not None and candidate not in skipped:
            start = time.perf_counter()
            results.append(evaluate_blend(candidate, best_gbm, card, y, folds, cfg))
            timings[candidate.name] = time.perf_counter() - start
    for candidate in cfg.selection.candidates:
        members = ensemble_members(candidate, results) if candidate.family == "ensemble" else []
        if members and candidate not in skipped:
            start = time.perf_counter()
            results.append(evaluate_ensemble(candidate, members, y, folds, cfg))
            timings[candidate.name] = time.perf_counter() - start
    order = [c.name for c in cfg.selection.candidates]
    results.sort(key=lambda r: order.index(r.candidate.name))
    return folds, results, timings


def select_model(X: np.ndarray, y: np.ndarray, split: Split, spec: FeatureSpec, cfg: TrainConfig,
                 progress: Progress | None = None) -> Selected:
    folds, results, timings = measure_candidates(X, y, split, spec, cfg, progress)
    dev_rows = len(split.dev)
    measured = {r.candidate.name for r in results}
    skipped = [c for c in cfg.selection.candidates if c.name not in measured]
    winner, reason = choose(results, cfg)
    family = winner.served
    if progress is not None:
        progress(f"training the winner ({winner.candidate.name})", 0, 1)
    dev_wide = development_directions(winner, X, y, folds, spec, cfg)
    scorer, cal_raw, scale = build_winner(winner, X, y, spec, folds, cfg, progress, dev_wide)
    inferred = inferred_card(winner, scorer, dev_wide, folds, spec, cfg)
    report = {
        "mode": folds.mode, "folds": len(folds.pairs) // folds.repeats, "rows": int(len(folds.rows)),
        **({"repeats": folds.repeats} if folds.repeats > 1 else {}),  # absent: one (cards before repeats too)
        "criterion": cfg.selection.criterion, "tie_break": cfg.selection.tie_break,
        "tolerance": cfg.selection.tolerance, "blend_weights": list(cfg.selection.blend_weights),
        "winner": winner.candidate.name, "family": family, "reason": reason,
        "candidates": [{"name": r.candidate.name, "family": r.candidate.family, "params": r.candidate.params,
                        "seconds": round(timings.get(r.candidate.name, 0.0), 2),
                        **({"monotone": "inferred"} if r.candidate.monotone == "inferred" else {}),
                        **{k: v for k, v in r.figures.items()}} for r in results],
        "skipped": [{"name": c.name, "family": c.family, "min_rows": c.min_rows,
                     "reason": (f"fewer than {c.min_rows} development rows ({dev_rows})" if c.min_rows > dev_rows
                                else "needs two measured lightgbm candidates" if c.family == "mean"
                                else "needs a measured lightgbm or scorecard candidate" if c.family == "ensemble"
                                else "needs a measured lightgbm and scorecard candidate")} for c in skipped],
        "calibration_scores": (scale.describe() if scale is not None else
                               {"method": "out-of-fold scores as they are"}),
        **({"inferred_monotone": inferred} if inferred is not None else {}),  # absent: nothing inferred
    }
    return Selected(scorer, winner, folds, folds.rows, cal_raw, report)
