"""The risk-model configuration (`model.yaml` beside this file, or a file the risk team passes)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from training.calibration import CRITERIA as CALIBRATION_CRITERIA
from training.errors import ConfigError
from training.monotone import ALPHA
from training.scorecard import ScorecardConfig

DEFAULT_CONFIG_FILE = Path(__file__).resolve().parent / "model.yaml"
Calibration = Literal["auto", "isotonic", "platt", "beta"]
CalibrationCriterion = Literal["log_loss", "brier"]  # what `calibration: auto` chooses by (training.calibration)
Validation = Literal["auto", "holdout", "cv"]
CvFinal = Literal["average", "refit"]
CalibrationScores = Literal["as_is", "mean_scale"]


@dataclass(frozen=True)
class StoreConfig:
    categorical: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    segments: dict[str, str] = field(default_factory=dict)


Criterion = Literal["auc", "ks", "brier"]
CRITERIA = ("auc", "ks", "brier")
FAMILY_NAMES = ("lightgbm", "scorecard", "mean", "blend", "ensemble")
ENSEMBLE_STEPS = 20


@dataclass(frozen=True)
class Candidate:
    """One model family (and, for LightGBM, a tree shape) competing in the inner cross-validation."""

    name: str
    family: str  # lightgbm | scorecard | mean (of LightGBM shapes) | blend (best LightGBM or mean + scorecard)
    #              | ensemble (greedy ensemble selection over LightGBM shapes and the scorecard)
    params: dict[str, Any] = field(default_factory=dict)  # LightGBM parameters over `params`
    min_rows: int = 0  # measured only with at least this many development rows (large shapes need data)
    of: tuple[str, ...] = ()  # mean: the LightGBM candidates it averages; ensemble: its possible members
    #                           (empty: every measured one)
    steps: int = ENSEMBLE_STEPS  # ensemble: at most this many greedy selection steps
    monotone: str = "declared"  # lightgbm: declared directions only, or also `inferred` ones (training.monotone)


@dataclass(frozen=True)
class SelectionConfig:
    candidates: tuple[Candidate, ...] = ()  # none: the LightGBM of `params` alone, as before selection
    criterion: Criterion = "auc"
    tie_break: Criterion = "brier"
    tolerance: float | str = "se"  # a number, or "se": the paired per-fold standard error of the difference
    blend_weights: tuple[float, ...] = (0.2, 0.35, 0.5, 0.65, 0.8)  # weight of the LightGBM part
    winner: str = "auto"  # auto (by the criterion) or a candidate's name (every candidate is still measured)


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 7
    params: dict[str, Any] = field(default_factory=dict)
    num_boost_round: int = 1000
    early_stopping_rounds: int = 40
    validation_fraction: float = 0.2
    oot_share: float = 0.3
    calibration: Calibration = "auto"
    calibration_criterion: CalibrationCriterion = "log_loss"  # auto: the lowest cross-validated log-loss (or Brier)
    validation: Validation = "auto"
    cv_folds: int = 5
    cv_repeats: int = 1  # model-family selection: repeated k-fold (each repeat its own shuffle)
    cv_max_rows: int = 200_000
    cv_final: CvFinal = "average"
    calibration_scores: CalibrationScores = "as_is"  # the mean of fold models' calibrator: oof scores as they are
    monotone: dict[str, int] = field(default_factory=dict)
    monotone_alpha: float = ALPHA  # `monotone: inferred` candidates: significance of an inferred direction
    store: StoreConfig = field(default_factory=StoreConfig)
    max_categories: int = 200
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    scorecard: ScorecardConfig = field(default_factory=ScorecardConfig)

    def with_seed(self, seed: int | None) -> TrainConfig:
        return self if seed is None else replace(self, seed=seed)

    def lgb_params(self) -> dict[str, Any]:
        """LightGBM parameters with every seed pinned to `seed` (same data + seed = same model)."""
        return {**self.params, "seed": self.seed, "bagging_seed": self.seed, "feature_fraction_seed": self.seed,
                "data_random_seed": self.seed, "drop_seed": self.seed}


def _check(condition: bool, message: str, path: Path) -> None:
    if not condition:
        raise ConfigError(f"{path}: {message}")


def load_config(path: str | Path | None = None) -> TrainConfig:
    path = Path(path) if path is not None else DEFAULT_CONFIG_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read model configuration {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    _check(isinstance(data, dict), "the configuration must be a mapping", path)
    known = {"seed", "params", "num_boost_round", "early_stopping_rounds", "validation_fraction", "oot_share",
             "calibration", "calibration_criterion", "validation", "cv_folds", "cv_repeats", "cv_max_rows", "cv_final",
             "calibration_scores",
             "monotone", "monotone_alpha", "store",
             "file", "selection", "scorecard"}
    unknown = set(data) - known
    _check(not unknown, f"unknown keys {sorted(unknown)}", path)
    monotone = {str(k): int(v) for k, v in (data.get("monotone") or {}).items()}
    bad = {k: v for k, v in monotone.items() if v not in (-1, 0, 1)}
    _check(not bad, f"monotone directions must be -1, 0 or 1: {bad}", path)
    calibration = data.get("calibration", "auto")
    _check(calibration in ("auto", "isotonic", "platt", "beta"), "calibration must be auto, isotonic, platt or beta",
           path)
    calibration_criterion = data.get("calibration_criterion", CALIBRATION_CRITERIA[0])
    _check(calibration_criterion in CALIBRATION_CRITERIA,
           f"calibration_criterion must be {' or '.join(CALIBRATION_CRITERIA)}, not {calibration_criterion!r}", path)
    validation = data.get("validation", "auto")
    _check(validation in ("auto", "holdout", "cv"), "validation must be auto, holdout or cv", path)
    cv_final = data.get("cv_final", "average")
    _check(cv_final in ("average", "refit"), "cv_final must be average or refit", path)
    calibration_scores = data.get("calibration_scores", "as_is")
    _check(calibration_scores in ("as_is", "mean_scale"), "calibration_scores must be as_is or mean_scale", path)
    params = dict(data.get("params") or {})
    _check("monotone_constraints" not in params, "declare monotone constraints under `monotone:` per feature", path)
    store = data.get("store") or {}
    cfg = TrainConfig(
        seed=int(data.get("seed", 7)),
        params=params,
        num_boost_round=int(data.get("num_boost_round", 1000)),
        early_stopping_rounds=int(data.get("early_stopping_rounds", 40)),
        validation_fraction=float(data.get("validation_fraction", 0.2)),
        oot_share=float(data.get("oot_share", 0.3)),
        calibration=calibration,
        calibration_criterion=calibration_criterion,
        validation=validation,
        cv_folds=int(data.get("cv_folds", 5)),
        cv_repeats=int(data.get("cv_repeats", 1)),
        cv_max_rows=int(data.get("cv_max_rows", 200_000)),
        cv_final=cv_final,
        calibration_scores=calibration_scores,
        monotone=monotone,
        monotone_alpha=float(data.get("monotone_alpha", ALPHA)),
        store=StoreConfig(
            categorical=tuple(store.get("categorical") or ()),
            exclude=tuple(store.get("exclude") or ()),
            segments=dict(store.get("segments") or {}),
        ),
        max_categories=int((data.get("file") or {}).get("max_categories", 200)),
        selection=_selection(data.get("selection"), path),
        scorecard=_scorecard(data.get("scorecard"), path),
    )
    _check(0 < cfg.validation_fraction < 0.9, "validation_fraction must be in (0, 0.9)", path)
    _check(0 < cfg.oot_share < 0.9, "oot_share must be in (0, 0.9)", path)
    _check(cfg.num_boost_round >= 1, "num_boost_round must be >= 1", path)
    _check(2 <= cfg.cv_folds <= 20, "cv_folds must be between 2 and 20", path)
    _check(1 <= cfg.cv_repeats <= 10, "cv_repeats must be between 1 and 10", path)
    _check(0 < cfg.monotone_alpha < 0.5, "monotone_alpha must be in (0, 0.5)", path)
    return cfg


def _selection(data: Any, path: Path) -> SelectionConfig:
    if data is None:
        return SelectionConfig()
    _check(isinstance(data, dict), "selection must be a mapping", path)
    unknown = set(data) - {"candidates", "criterion", "tie_break", "tolerance", "blend_weights", "winner"}
    _check(not unknown, f"unknown selection keys {sorted(unknown)}", path)
    candidates = []
    for item in data.get("candidates") or ():
        _check(isinstance(item, dict) and "name" in item and "family" in item,
               "each selection candidate needs a name and a family", path)
        _check(item["family"] in FAMILY_NAMES, f"candidate {item['name']!r}: family must be one of "
                                               f"{', '.join(FAMILY_NAMES)}", path)
        params = dict(item.get("params") or {})
        _check(not params or item["family"] == "lightgbm", f"candidate {item['name']!r}: only LightGBM "
                                                          "candidates take params", path)
        _check("monotone_constraints" not in params, "declare monotone constraints under `monotone:`", path)
        unknown_keys = set(item) - {"name", "family", "params", "min_rows", "of", "steps", "monotone"}
        _check(not unknown_keys, f"candidate {item['name']!r}: unknown keys {sorted(unknown_keys)}", path)
        min_rows = item.get("min_rows", 0)
        _check(isinstance(min_rows, int) and min_rows >= 0, f"candidate {item['name']!r}: min_rows must be an "
                                                           "integer >= 0", path)
        of = item.get("of") or []
        _check(isinstance(of, list) and (not of or item["family"] in ("mean", "ensemble")),
               f"candidate {item['name']!r}: `of` is a list, for a mean or ensemble candidate only", path)
        steps = item.get("steps", ENSEMBLE_STEPS)
        _check(isinstance(steps, int) and steps >= 1 and ("steps" not in item or item["family"] == "ensemble"),
               f"candidate {item['name']!r}: `steps` is an integer >= 1, for an ensemble candidate only", path)
        monotone = item.get("monotone", "declared")
        _check(monotone in ("declared", "inferred") and (monotone == "declared" or item["family"] == "lightgbm"),
               f"candidate {item['name']!r}: `monotone` is declared or inferred, inferred for lightgbm only", path)
        candidates.append(Candidate(str(item["name"]), str(item["family"]), params, int(min_rows),
                                    tuple(str(x) for x in of), steps, monotone))
    names = [c.name for c in candidates]
    _check(len(set(names)) == len(names), "selection candidate names must be unique", path)
    gbm_names = {c.name for c in candidates if c.family == "lightgbm"}
    for c in candidates:
        _check(c.family != "mean" or (gbm_names and set(c.of) <= gbm_names),
               f"candidate {c.name!r}: a mean needs lightgbm candidates (and `of` names only them)", path)
    card_names = {c.name for c in candidates if c.family == "scorecard"}
    for c in candidates:
        _check(c.family != "ensemble" or (bool(gbm_names | card_names) and set(c.of) <= gbm_names | card_names),
               f"candidate {c.name!r}: an ensemble's members (`of`) are lightgbm and scorecard candidates", path)
        _check(c.family != "ensemble" or len(set(c.of or card_names) & card_names) <= 1,
               f"candidate {c.name!r}: an ensemble takes at most one scorecard (it serves one)", path)
    families = {c.family for c in candidates}
    _check("blend" not in families or {"lightgbm", "scorecard"} <= families,
           "a blend candidate needs a lightgbm and a scorecard candidate", path)
    criterion, tie_break = data.get("criterion", "auc"), data.get("tie_break", "brier")
    _check(criterion in CRITERIA and tie_break in CRITERIA, f"criterion and tie_break: one of {CRITERIA}", path)
    weights = tuple(float(w) for w in data.get("blend_weights") or SelectionConfig().blend_weights)
    _check(all(0 < w < 1 for w in weights), "blend_weights must be in (0, 1)", path)
    tolerance: float | str = data.get("tolerance", "se")
    if tolerance != "se":
        _check(isinstance(tolerance, int | float) and tolerance >= 0, "selection tolerance must be se or a number "
                                                                       ">= 0", path)
        tolerance = float(tolerance)
    winner = str(data.get("winner", "auto"))
    _check(winner == "auto" or winner in names, f"selection winner {winner!r} is not a candidate", path)
    return SelectionConfig(tuple(candidates), criterion, tie_break, tolerance, weights, winner)


def _scorecard(data: Any, path: Path) -> ScorecardConfig:
    if data is None:
        return ScorecardConfig()
    _check(isinstance(data, dict), "scorecard must be a mapping", path)
    known = {"max_bins", "min_bin_share", "rare_share", "min_iv", "l2", "trend"}
    _check(not set(data) - known, f"unknown scorecard keys {sorted(set(data) - known)}", path)
    cfg = ScorecardConfig(int(data.get("max_bins", 8)), float(data.get("min_bin_share", 0.05)),
                          float(data.get("rare_share", 0.01)), float(data.get("min_iv", 0.02)),
                          float(data.get("l2", 1.0)), str(data.get("trend", "auto")))
    _check(cfg.max_bins >= 2 and 0 < cfg.min_bin_share < 0.5 and 0 <= cfg.rare_share < 0.5 and cfg.l2 >= 0,
           "scorecard: max_bins >= 2, min_bin_share in (0, 0.5), rare_share in [0, 0.5), l2 >= 0", path)
    trends = ("auto", "auto_heuristic", "auto_asc_desc", "ascending", "descending", "convex", "concave", "peak",
              "valley", "peak_heuristic", "valley_heuristic")
    _check(cfg.trend in trends, f"scorecard trend must be one of {', '.join(trends)}", path)
    return cfg
