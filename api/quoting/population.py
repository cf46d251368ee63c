"""Today's population prepared for the quote path: a quote is a row take from arrays, not pandas work.

Rows are evaluated in blocks of `BLOCK` with the batch code (features extracted to arrays, the risk
model's raw score, PD and SHAP values, every product's results and explanations): ~18 us a row
against ~200 us in blocks of 64 and ~3 ms one row at a time (measured on 20,000 demo enterprises).
A block is computed on the first quote of any of its enterprises and kept (least recently used
blocks are dropped beyond `MAX_BLOCKS`), so the per-quote cost is formatting. The engine and LightGBM
compute each row independently; tests check that every enterprise's quote and snapshot equal those
of the one-row path (the path a replay takes).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from api.quoting.snapshot import RowEncoder
from scoring import ProductResult, evaluate_all, extract
from scoring.engine import all_fields

BLOCK = 4096
MAX_BLOCKS = 64  # 262,144 enterprises' results per process at most


@dataclass(frozen=True)
class Block:
    results: dict[str, ProductResult]
    X: np.ndarray | None  # model matrix, raw score, PD and SHAP values of the block's rows
    raw: np.ndarray | None
    pd: np.ndarray | None
    contrib: np.ndarray | None


class Population:
    def __init__(self, frame: pd.DataFrame, versions: Any) -> None:  # versions: api.quoting.Versions
        self.frame = frame
        self.versions = versions
        self.positions = {code: i for i, code in enumerate(frame.index)}
        self.encoder = RowEncoder(frame, versions.columns)
        self._fields, self._sources = all_fields(list(versions.plans.values()))
        self._blocks: OrderedDict[int, Block] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.frame)

    def _compute(self, b: int) -> Block:
        part = self.frame.iloc[b * BLOCK:(b + 1) * BLOCK]
        model = self.versions.model
        X = raw = pd_values = contrib = None
        if model is not None:
            X = model.encode(part)
            raw, pd_values, contrib = model.scores(X)
        results = evaluate_all(self.versions.plans, extract(part, self._fields, self._sources), pd_values=pd_values)
        for r in results.values():
            r.explanation  # noqa: B018 - computed now, once for the block, not per quote
        return Block(results, X, raw, pd_values, contrib)

    def block(self, position: int) -> tuple[Block, int]:
        """The block holding row `position`, and the row's index inside it."""
        b, i = divmod(position, BLOCK)
        with self._lock:
            found = self._blocks.get(b)
            if found is not None:
                self._blocks.move_to_end(b)
                return found, i
        computed = self._compute(b)  # outside the lock: a rare duplicate computation is harmless
        with self._lock:
            self._blocks[b] = computed
            while len(self._blocks) > MAX_BLOCKS:
                self._blocks.popitem(last=False)
        return computed, i

    def risk(self, block: Block, i: int, top_k: int) -> dict[str, Any] | None:
        model = self.versions.model
        if model is None:
            return None
        return model.assessment(block.X[i], block.raw[i], block.pd[i], block.contrib[i], top_k)
