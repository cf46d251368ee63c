"""The risk model as the scoring engine uses it: PD, SHAP risk factors, model version.

Artifacts are read into memory, their sha256 checked against the registry (or the directory's
metadata), and only then parsed: a changed file is refused, never loaded. One row and a batch go
through the same numpy code, and each row's raw score is computed on its own (`training.forest`, LightGBM's
own arithmetic), so a quote and a whole-region run give bit-identical numbers for the same enterprise.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from scoring.ranking import top_k_positive
from scoring.risk_texts import model_value, reason_for
from scoring.texts import json_number
from training import artifacts as art
from training.calibration import Calibrator
from training.encoding import FeatureSpec
from training.errors import ArtifactIntegrityError
from training.families import FAMILIES, Scorer, load_scorer

SINGLE_THREAD_ROWS = 64  # below this, threads cost more than they save


@dataclass(frozen=True)
class RiskFactor:
    feature: str
    value: Any  # as the model saw it: number, category text, yes/no flag or None (missing)
    contribution: float  # SHAP value in log-odds; all of them plus base_value = raw score
    code: str
    zh: str
    en: str

    def to_json(self) -> dict[str, Any]:
        # Flat code/zh/en, the shape of the scorecard's reasons (one catalogue, one format).
        value = json_number(self.value) if isinstance(self.value, float) else self.value  # infinity as text
        return {"feature": self.feature, "value": value, "contribution": self.contribution,
                "code": self.code, "zh": self.zh, "en": self.en}


def _read_verified(directory: Path, expected: dict[str, str]) -> dict[str, bytes]:
    """Each file's bytes, after checking them (the checked bytes are the ones parsed)."""
    out = {}
    for name, digest in expected.items():
        path = directory / name
        try:
            data = path.read_bytes()
        except OSError:
            raise ArtifactIntegrityError(f"artifact {path} is missing or unreadable") from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise ArtifactIntegrityError(
                f"artifact {path} failed its integrity check: sha256 {actual[:12]}... differs from the recorded "
                f"{digest[:12]}...; the file was changed or corrupted and will not be loaded")
        out[name] = data
    return out


class RiskModel:
    """A loaded, verified PD model of any family (LightGBM, scorecard, blend). Thread-safe for prediction
    (the compiled forest and LightGBM's predict are re-entrant; the scorecard is numpy lookups)."""

    def __init__(self, scorer: Scorer, calibrator: Calibrator, spec: FeatureSpec, metadata: dict[str, Any],
                 model_version: str) -> None:
        self.scorer = scorer
        self.family = scorer.family
        self.booster = scorer.booster  # the LightGBM part (None for a scorecard)
        self.calibrator = calibrator
        self.spec = spec
        self.metadata = metadata
        self.model_version = model_version
        self.base_value = float(metadata["base_value"])
        self._cat_labels = {spec.names.index(c): values for c, values in spec.categories.items()}

    @classmethod
    def from_dir(cls, directory: str | Path, expected: dict[str, str] | None = None,
                 model_version: str | None = None) -> RiskModel:
        """Load from a model directory; `expected` = registry digests (else the directory's own metadata)."""
        directory = Path(directory)
        if not directory.is_dir():
            raise ArtifactIntegrityError(f"model directory {directory} does not exist")
        if expected is None:  # no registry: the directory's metadata vouches for the other files
            meta = art.read_metadata(directory)
            meta_digest = hashlib.sha256((directory / art.METADATA_FILE).read_bytes()).hexdigest()
            expected = {**meta["artifacts"], art.METADATA_FILE: meta_digest}
        files = _read_verified(directory, expected)
        try:
            meta = json.loads(files[art.METADATA_FILE])
        except (KeyError, ValueError):
            raise ArtifactIntegrityError(f"{directory / art.METADATA_FILE} is missing or unreadable") from None
        for name in (art.MODEL_FILE, art.CALIBRATOR_FILE, art.REPORT_FILE):
            if meta.get("artifacts", {}).get(name) != expected.get(name):
                raise ArtifactIntegrityError(f"{directory / name} does not match the digest in {art.METADATA_FILE}")
        family = art.model_family(meta)
        if family not in FAMILIES:
            raise ArtifactIntegrityError(f"model in {directory}: unknown model family {family!r}")
        try:
            scorer = load_scorer(family, files[art.MODEL_FILE].decode("utf-8"))
            calibrator = Calibrator.from_dict(joblib.load(io.BytesIO(files[art.CALIBRATOR_FILE])))
            spec = FeatureSpec.from_json(meta["features"])
        except Exception as e:  # noqa: BLE001 - a hash-consistent but unusable artifact
            raise ArtifactIntegrityError(f"model in {directory} cannot be loaded: {e}") from None
        if scorer.num_features() != len(spec.names):
            raise ArtifactIntegrityError(f"model in {directory}: the {family} model has {scorer.num_features()} "
                                         f"features, the metadata lists {len(spec.names)}")
        version = model_version or art.model_id_from_digests(expected)
        scorer.prepare_in_background()  # the compiled walk is ready by the time the caller's rows are read
        return cls(scorer, calibrator, spec, meta, version)

    # ------------------------------------------------------------------ numbers

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.spec.names

    def encode(self, features: pd.DataFrame) -> np.ndarray:
        return self.spec.encode(features)

    def _threads(self, rows: int) -> int:
        return 1 if rows < SINGLE_THREAD_ROWS else 0

    def raw_score(self, features: pd.DataFrame | np.ndarray) -> np.ndarray:
        X = features if isinstance(features, np.ndarray) else self.encode(features)
        return self.scorer.raw_score(X, self._threads(len(X)))

    def predict(self, features: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Calibrated probability of default per row."""
        return self.calibrator(self.raw_score(features))

    def contributions(self, features: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Per-feature contributions in log-odds [rows, features + 1], the base value last: TreeSHAP for LightGBM,
        points for a scorecard, their weighted sum for a blend (the last two add up exactly to `raw_score`)."""
        X = features if isinstance(features, np.ndarray) else self.encode(features)
        return self.scorer.contributions(X, self._threads(len(X)))

    # ------------------------------------------------------------------ explanations

    def _factors(self, X_row: np.ndarray, contrib_row: np.ndarray, top_k: int) -> list[RiskFactor]:
        """The `top_k` features by |SHAP|, ties to the lower position, none with a zero contribution: the rule
        (and the texts) of the batch's `scoring.columnar.risk_factor_columns`."""
        values = contrib_row[:-1]
        out = []
        for j in top_k_positive(np.abs(values)[None, :], top_k, overwrite=True)[0].tolist():
            if j < 0:
                break
            c = float(values[j])
            name = self.spec.names[j]
            value = model_value(name, float(X_row[j]), self._cat_labels.get(j))
            text = reason_for(name, value, c)
            out.append(RiskFactor(name, value, c, text["code"], text["zh"], text["en"]))
        return out

    def scores(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(raw score, calibrated PD, SHAP contributions) for an encoded matrix. Each row is computed
        independently, so a block of rows gives the same numbers as one row at a time."""
        raw = self.raw_score(X)
        return raw, self.calibrator(raw), self.contributions(X)

    def assessment(self, X_row: np.ndarray, raw: float, pd_value: float, contrib_row: np.ndarray,
                   top_k: int = 5) -> dict[str, Any]:
        """The quote fields of one row from its `scores`."""
        return {"pd": float(pd_value), "model_version": self.model_version, "raw_score": float(raw),
                "base_value": self.base_value,
                "risk_factors": [f.to_json() for f in self._factors(X_row, contrib_row, top_k)]}

    def assess(self, features: pd.DataFrame, top_k: int = 5) -> list[dict[str, Any]]:
        """The quote fields per row: pd, model_version, raw_score, base_value and risk_factors."""
        X = self.encode(features)
        raw, pd_values, contrib = self.scores(X)
        return [self.assessment(X[i], raw[i], pd_values[i], contrib[i], top_k) for i in range(len(X))]


class ModelCache:
    """Verified models by id for the quote path: the champion (re-read from the registry at most every
    `ttl_seconds`) and any older version a replayed quote names. Artifacts are hashed once per load."""

    def __init__(self, registry: Any, ttl_seconds: float = 30.0) -> None:
        self.registry = registry
        self.ttl_seconds = ttl_seconds
        self._models: dict[str, RiskModel] = {}
        self._champion: tuple[float, str | None] = (-math.inf, None)
        self._lock = threading.Lock()

    def get(self, model_id: str) -> RiskModel:
        """The model of a stored quote (e.g. to replay it); UnknownModelError if never registered."""
        with self._lock:
            full = self.registry.resolve_id(model_id)
            if full not in self._models:
                self._models[full] = self.registry.load(full)
            return self._models[full]

    def champion(self) -> RiskModel | None:
        """The current champion, or None when no model has been promoted (quotes then carry no PD)."""
        now = time.monotonic()
        checked, model_id = self._champion
        if now - checked > self.ttl_seconds:
            record = self.registry.champion()
            model_id = record.id if record is not None else None
            self._champion = (now, model_id)
        return self.get(model_id) if model_id is not None else None
