"""Model families behind `RiskModel`: raw score (log-odds) and exact per-feature contributions.

- `lightgbm`: a LightGBM booster; contributions are its TreeSHAP values (`pred_contrib`). `model.txt` is
  LightGBM's own text format, as in every model before families existed (format 1 directories).
- `scorecard`: the WoE scorecard of `training.scorecard`; contributions are each feature's points.
- `blend`: weight w on a LightGBM booster and 1 - w on a scorecard, in log-odds; contributions are
  w x TreeSHAP + (1 - w) x points.

For the scorecard and the blend, `model.txt` is one JSON document (the scorecard's numbers and, for the
blend, the booster's text and the weight); raw scores and contributions are multiples of 2**-30, so a
row's contributions plus the base value equal its raw score exactly, in any order of addition. The blend
rounds w x TreeSHAP + (1 - w) x points to that grid and gives the row's rounding residual (at most a few
1e-8) to its largest contribution. Its raw score is w x booster + (1 - w) x scorecard, rounded to the grid:
each term is monotone where the constraints say so, and so is their sum.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from typing import Any

import lightgbm as lgb
import numpy as np

from training.forest import CompiledForest, compile_forest, probe_rows
from training.scorecard import Scorecard, quantize

FAMILIES = ("lightgbm", "scorecard", "blend")
FILE_FORMAT = "indexloan-model-file/1"


_TREE_START = re.compile(r"(?=^Tree=\d+$)", re.M)


def average_boosters(boosters: list[lgb.Booster], weights: list[float] | None = None) -> lgb.Booster:
    """One LightGBM model whose raw score is the mean of `boosters`' (same features and objective), or their
    weighted sum with non-negative `weights` (summing to 1): every tree of every booster, its leaf (and
    internal) values multiplied by its booster's weight (1 / their number by default). TreeSHAP is additive
    over trees, so its values are the same mean (weighted sum) of the boosters' values, and each tree stays
    monotone where the constraints made it so. Trees are written in booster order; the file parses like any
    LightGBM model."""
    if len(boosters) == 1 and (weights is None or weights[0] == 1.0):
        return lgb.Booster(model_str=boosters[0].model_to_string())
    scales = [1.0 / len(boosters)] * len(boosters) if weights is None else [float(w) for w in weights]
    header = tail = None
    blocks: list[str] = []
    for booster, scale in zip(boosters, scales, strict=True):
        text = booster.model_to_string()
        head, _, rest = text.partition("\nTree=0\n")
        body, _, end = ("Tree=0\n" + rest).partition("end of trees")
        if header is None:
            header, tail = head + "\n", "end of trees" + end
        for block in (b for b in _TREE_START.split(body) if b):
            lines = []
            for line in block.split("\n"):
                key, eq, values = line.partition("=")
                if eq and key in ("leaf_value", "internal_value"):
                    line = key + "=" + " ".join(repr(float(v) * scale) for v in values.split())
                lines.append(line)
            blocks.append("\n".join(lines))
    blocks = [re.sub(r"^Tree=\d+\n", "", b) for b in blocks]
    trees = [f"Tree={i}\n{b}" for i, b in enumerate(blocks)]
    assert header is not None and tail is not None
    header = re.sub(r"^tree_sizes=.*$", "tree_sizes=" + " ".join(str(len(t.encode())) for t in trees), header,
                    count=1, flags=re.M)
    return lgb.Booster(model_str=header + "".join(trees) + tail)


class BoosterRawScore:
    """A booster's raw score: the compiled forest's walk where it covers the model (the same bits as LightGBM's
    `predict`, several times faster), LightGBM's `predict` otherwise. Compiled once, on first use."""

    def __init__(self, booster: lgb.Booster) -> None:
        self.booster = booster
        self._forest: CompiledForest | None | bool = False  # False: not compiled yet
        self._compiling = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:  # sent to Dask workers: the booster only; each compiles its own
        return {"booster": self.booster}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["booster"])  # type: ignore[misc]

    def prepare(self) -> None:
        """Compile the forest and load its kernel (numba's start-up, ~0.8 s in a fresh process); idempotent."""
        with self._compiling:
            if self._forest is False:
                forest = compile_forest(self.booster.model_to_string())
                if forest is not None:
                    forest.warm()
                    # checked once against LightGBM itself on rows that take every branch: a LightGBM whose
                    # semantics differ from the walk's keeps its own predict rather than a different number
                    probe = probe_rows(forest)
                    if not np.array_equal(forest.raw_score(probe, 1),
                                          self.booster.predict(probe, raw_score=True, num_threads=1)):
                        logging.getLogger(__name__).warning("compiled forest disagrees with LightGBM; using its "
                                                            "predict")
                        forest = None
                self._forest = forest

    def prepare_in_background(self) -> None:
        """`prepare` on a thread, so that a process loading a model reads its data meanwhile. Not a daemon: a
        process that exits early waits for it rather than stopping the compiler midway."""
        threading.Thread(target=self.prepare, name="forest-prepare").start()

    def __call__(self, X: np.ndarray, threads: int = 0) -> np.ndarray:
        if self._forest is False:
            self.prepare()
        if self._forest is None:
            return self.booster.predict(X, raw_score=True, num_threads=threads)
        return self._forest.raw_score(X, threads)


class LightGBMScorer:
    family = "lightgbm"

    def __init__(self, booster: lgb.Booster) -> None:
        self.booster = booster
        self._raw = BoosterRawScore(booster)

    def raw_score(self, X: np.ndarray, threads: int = 0) -> np.ndarray:
        return self._raw(X, threads)

    def prepare_in_background(self) -> None:
        self._raw.prepare_in_background()

    def contributions(self, X: np.ndarray, threads: int = 0) -> np.ndarray:
        X = np.ascontiguousarray(X)  # TreeSHAP walks rows: ~13% faster on row-major input than on encode's
        return self.booster.predict(X, pred_contrib=True, num_threads=threads)

    def base_value(self, n_features: int) -> float:
        return float(self.booster.predict(np.full((1, n_features), np.nan), pred_contrib=True)[0, -1])

    def to_text(self) -> str:
        return self.booster.model_to_string()

    @property
    def num_trees(self) -> int:
        return self.booster.num_trees()

    def num_features(self) -> int:
        return self.booster.num_feature()


class ScorecardScorer:
    family = "scorecard"
    booster = None

    def __init__(self, scorecard: Scorecard) -> None:
        self.scorecard = scorecard

    def raw_score(self, X: np.ndarray, threads: int = 0) -> np.ndarray:
        return self.scorecard.raw_score(X)

    def prepare_in_background(self) -> None:  # numpy lookups: nothing to compile
        pass

    def contributions(self, X: np.ndarray, threads: int = 0) -> np.ndarray:
        return self.scorecard.contributions(X)

    def base_value(self, n_features: int) -> float:
        return self.scorecard.intercept

    def to_text(self) -> str:
        return json.dumps({"format": FILE_FORMAT, "family": self.family, "scorecard": self.scorecard.to_json()},
                          indent=1, allow_nan=False) + "\n"

    num_trees = 0

    def num_features(self) -> int:
        return self.scorecard.n_features


class BlendScorer:
    family = "blend"

    def __init__(self, booster: lgb.Booster, scorecard: Scorecard, weight: float) -> None:
        self.booster = booster
        self.scorecard = scorecard
        self.weight = float(weight)
        self._base: float | None = None
        self._raw = BoosterRawScore(booster)

    def _combined(self, gbm: np.ndarray, card: np.ndarray) -> np.ndarray:
        return quantize(self.weight * gbm + (1.0 - self.weight) * card)

    def raw_score(self, X: np.ndarray, threads: int = 0) -> np.ndarray:
        return self._combined(self._raw(X, threads), self.scorecard.raw_score(X))

    def prepare_in_background(self) -> None:
        self._raw.prepare_in_background()

    def contributions(self, X: np.ndarray, threads: int = 0) -> np.ndarray:
        X = np.ascontiguousarray(X)
        raw = self.raw_score(X, threads)
        out = self._combined(self.booster.predict(X, pred_contrib=True, num_threads=threads),
                             self.scorecard.contributions(X))
        out = np.ascontiguousarray(out)
        # every value is on the 2**-30 grid and small: these sums are exact
        residual = raw - out.sum(axis=1)
        if residual.any():
            rows = np.flatnonzero(residual)
            top = np.argmax(np.abs(out[rows, :-1]), axis=1)
            out[rows, top] += residual[rows]
        return out

    def base_value(self, n_features: int) -> float:
        phi = self.booster.predict(np.full((1, n_features), np.nan), pred_contrib=True)[0, -1]
        return float(quantize(self.weight * phi + (1.0 - self.weight) * self.scorecard.intercept))

    def to_text(self) -> str:
        return json.dumps({"format": FILE_FORMAT, "family": self.family, "weight": self.weight,
                           "scorecard": self.scorecard.to_json(), "booster": self.booster.model_to_string()},
                          indent=1, allow_nan=False) + "\n"

    @property
    def num_trees(self) -> int:
        return self.booster.num_trees()

    def num_features(self) -> int:
        return self.booster.num_feature()


Scorer = LightGBMScorer | ScorecardScorer | BlendScorer


def load_scorer(family: str, text: str) -> Scorer:
    """Parse `model.txt` of a family (after its sha256 was checked)."""
    if family == "lightgbm":
        return LightGBMScorer(lgb.Booster(model_str=text))
    data: dict[str, Any] = json.loads(text)
    if data.get("format") != FILE_FORMAT or data.get("family") != family:
        raise ValueError(f"model file is not a {family} model ({FILE_FORMAT})")
    scorecard = Scorecard.from_json(data["scorecard"])
    if family == "scorecard":
        return ScorecardScorer(scorecard)
    if family == "blend":
        weight = float(data["weight"])
        if not 0.0 < weight < 1.0:
            raise ValueError(f"blend weight {weight} is not in (0, 1)")
        return BlendScorer(lgb.Booster(model_str=data["booster"]), scorecard, weight)
    raise ValueError(f"unknown model family {family!r}")
