"""The risk-model configuration (`model.yaml` beside this file, or a file the risk team passes)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from training.errors import ConfigError

DEFAULT_CONFIG_FILE = Path(__file__).resolve().parent / "model.yaml"
Calibration = Literal["auto", "isotonic", "platt"]
Validation = Literal["auto", "holdout", "cv"]


@dataclass(frozen=True)
class StoreConfig:
    categorical: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    segments: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 7
    params: dict[str, Any] = field(default_factory=dict)
    num_boost_round: int = 1000
    early_stopping_rounds: int = 40
    validation_fraction: float = 0.2
    oot_share: float = 0.3
    calibration: Calibration = "auto"
    validation: Validation = "auto"
    cv_folds: int = 5
    cv_max_rows: int = 200_000
    monotone: dict[str, int] = field(default_factory=dict)
    store: StoreConfig = field(default_factory=StoreConfig)
    max_categories: int = 200

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
             "calibration", "validation", "cv_folds", "cv_max_rows", "monotone", "store", "file"}
    unknown = set(data) - known
    _check(not unknown, f"unknown keys {sorted(unknown)}", path)
    monotone = {str(k): int(v) for k, v in (data.get("monotone") or {}).items()}
    bad = {k: v for k, v in monotone.items() if v not in (-1, 0, 1)}
    _check(not bad, f"monotone directions must be -1, 0 or 1: {bad}", path)
    calibration = data.get("calibration", "auto")
    _check(calibration in ("auto", "isotonic", "platt"), "calibration must be auto, isotonic or platt", path)
    validation = data.get("validation", "auto")
    _check(validation in ("auto", "holdout", "cv"), "validation must be auto, holdout or cv", path)
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
        validation=validation,
        cv_folds=int(data.get("cv_folds", 5)),
        cv_max_rows=int(data.get("cv_max_rows", 200_000)),
        monotone=monotone,
        store=StoreConfig(
            categorical=tuple(store.get("categorical") or ()),
            exclude=tuple(store.get("exclude") or ()),
            segments=dict(store.get("segments") or {}),
        ),
        max_categories=int((data.get("file") or {}).get("max_categories", 200)),
    )
    _check(0 < cfg.validation_fraction < 0.9, "validation_fraction must be in (0, 0.9)", path)
    _check(0 < cfg.oot_share < 0.9, "oot_share must be in (0, 0.9)", path)
    _check(cfg.num_boost_round >= 1, "num_boost_round must be >= 1", path)
    _check(2 <= cfg.cv_folds <= 20, "cv_folds must be between 2 and 20", path)
    return cfg
