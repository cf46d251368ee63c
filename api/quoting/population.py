"""One path from features to numbers and quote bodies: `score_rows` and `Population`.

`score_rows` runs the products engine and the risk model on a frame of enterprises (one row or a
million): every product's results under the versions in force and, with a model, the raw score, the
PD and (when asked) the SHAP values. A pre-credit partition calls it on its rows; a `Population` calls
it on blocks of `BLOCK` rows of a date's enterprises and keeps the blocks (least recently used dropped
beyond `MAX_BLOCKS`), so a quote is an array take plus formatting. `indexloan quote`, the API, replay
(a one-row population) and batch runs therefore compute every number with the same code; the engine
and LightGBM compute each row independently, so block size does not change a quote (tested).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from api.quoting.body import RISK_FACTORS, quote_body
from api.quoting.prerender import Narrowing, Rendered, render_firm
from api.quoting.snapshot import RowEncoder, fast_json
from api.quoting.versions import Versions
from scoring import ProductResult, evaluate_all, extract
from scoring.engine import all_fields

BLOCK = 4096
MAX_BLOCKS = 64  # 262,144 enterprises' results per population at most
# Blocks whose quotes are rendered ahead (`Population.render`), at most: a demo firm's five products and
# snapshot are ~26 KB of JSON and the platform's view of its products ~10 KB more, so 32,768 firms are ~1.2 GB
# per worker process. The firms of later blocks are
# quoted through the compute path (the same bytes, from the kept blocks), as before rendering ahead.
MAX_RENDERED_BLOCKS = 8


@dataclass(frozen=True)
class Scored:
    """Engine results of a frame's rows and, with a model, its inputs, raw score, PD and SHAP values."""

    results: dict[str, ProductResult]
    X: np.ndarray | None
    raw: np.ndarray | None
    pd: np.ndarray | None
    contrib: np.ndarray | None


def score_rows(versions: Versions, frame: pd.DataFrame, contributions: bool = True) -> Scored:
    """Every product of `versions` and the risk model on every row of `frame` (index = credit code)."""
    model = versions.model
    X = raw = pd_values = contrib = None
    if model is not None and len(frame):
        X = model.encode(frame)
        raw = model.raw_score(X)
        pd_values = model.calibrator(raw)
        if contributions:
            contrib = model.contributions(X)
    fields, sources = all_fields(list(versions.plans.values()))
    results = evaluate_all(versions.plans, extract(frame, fields, sources), pd_values=pd_values)
    return Scored(results, X, raw, pd_values, contrib)


class Population:
    """A date's enterprises (or one replayed row) under the versions in force: quote bodies and snapshots."""

    def __init__(self, frame: pd.DataFrame, versions: Versions) -> None:
        self.frame = frame
        self.versions = versions
        self.positions = {code: i for i, code in enumerate(frame.index)}
        self.encoder = RowEncoder(frame, versions.columns)
        self._blocks: OrderedDict[int, Scored] = OrderedDict()
        self._lock = threading.Lock()
        # block -> its firms' rendered quote parts; filled by `render` only (a background build), never by a
        # request; a block is published whole, in one dict assignment
        self._rendered: dict[int, list[Rendered]] = {}

    def __len__(self) -> int:
        return len(self.frame)

    def __contains__(self, credit_code: object) -> bool:
        return credit_code in self.positions

    def _compute(self, b: int) -> Scored:
        scored = score_rows(self.versions, self.frame.iloc[b * BLOCK:(b + 1) * BLOCK])
        for r in scored.results.values():
            r.explanation  # noqa: B018 - computed now, once for the block, not per quote
        return scored

    def block(self, position: int) -> tuple[Scored, int]:
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

    def hot_blocks(self) -> list[int]:
        """The blocks computed so far, least recently used first."""
        with self._lock:
            return list(self._blocks)

    def warm(self, blocks: list[int]) -> None:
        """Compute these blocks now (a rebuilt state, before it is swapped in: no quote pays for them)."""
        for b in blocks:
            if b * BLOCK < len(self.frame):
                self.block(b * BLOCK)

    @property
    def blocks(self) -> int:
        return -(-len(self.frame) // BLOCK)

    def render(self, blocks: list[int] | None = None, previous: Population | None = None,
               narrowing: Narrowing | None = None) -> None:
        """Render the quote parts of these blocks' firms (default: every block, up to MAX_RENDERED_BLOCKS),
        for `rendered` to serve; the platform's view too under `narrowing` (its fields per product under this
        state's definitions). Called while a state is built or rebuilt, before or beside its swap.

        A firm whose snapshot is byte for byte the one it had in `previous` (the state this one replaces)
        keeps its parts: the snapshot holds every input of the quote (features, sources' dates, versions with
        their cut-offs; the definitions, hence the platform's fields), which is why a replay from it is identical.
        A small batch re-renders only its firms. A firm whose row of features and source dates is the one it had,
        under the same versions, has that snapshot without encoding it again (`RowEncoder.same_rows`)."""
        comparable = previous is not None and previous.versions.as_of == self.versions.as_of and \
            previous.versions.describe() == self.versions.describe()
        for b in range(self.blocks) if blocks is None else blocks:
            if b in self._rendered or b >= self.blocks or len(self._rendered) >= MAX_RENDERED_BLOCKS:
                continue
            codes = self.frame.index[b * BLOCK:(b + 1) * BLOCK]
            unchanged = self._unchanged(previous, b, codes) if comparable and previous is not None else None
            scored: Scored | None = None
            parts = []
            for i, code in enumerate(codes):
                kept = previous.rendered(code) if unchanged is not None and unchanged[i] else None
                if kept is not None:
                    parts.append(kept)
                    continue
                snapshot = self.snapshot(code)
                snapshot_json = fast_json(snapshot)
                before = previous.rendered(code) if previous is not None else None
                if before is not None and before.snapshot_json == snapshot_json:
                    parts.append(before)
                    continue
                if scored is None:
                    scored, _ = self.block(b * BLOCK)
                parts.append(render_firm(self.versions, scored.results, i, self.risk(scored, i), snapshot,
                                         snapshot_json, narrowing))
            self._rendered[b] = parts

    def _unchanged(self, previous: Population, b: int, codes: pd.Index) -> np.ndarray:
        """Per firm of block `b`: whether its row here is the one it had in `previous` (same versions)."""
        theirs = np.array([previous.positions.get(code, -1) for code in codes], dtype=np.intp)
        known = np.flatnonzero(theirs >= 0)
        unchanged = np.zeros(len(codes), dtype=bool)
        unchanged[known] = self.encoder.same_rows(previous.encoder, known + b * BLOCK, theirs[known])
        return unchanged

    def rendered_blocks(self) -> list[int]:
        return list(self._rendered)

    def rendered(self, credit_code: str) -> Rendered | None:
        """The firm's rendered quote parts, or None (not here, or its block not rendered yet)."""
        position = self.positions.get(credit_code)
        if position is None:
            return None
        b, i = divmod(position, BLOCK)
        found = self._rendered.get(b)
        return None if found is None else found[i]

    def risk(self, block: Scored, i: int, top_k: int = RISK_FACTORS) -> dict[str, Any] | None:
        model = self.versions.model
        if model is None or block.X is None:
            return None
        return model.assessment(block.X[i], block.raw[i], block.pd[i], block.contrib[i], top_k)

    def body(self, credit_code: str, products: list[str], requested_amount: float | None) -> dict[str, Any] | None:
        """The quote body of one enterprise (products in the given order), or None when it is not here."""
        position = self.positions.get(credit_code)
        if position is None:
            return None
        block, i = self.block(position)
        return quote_body(self.versions, block.results, i, self.risk(block, i), products, requested_amount)

    def snapshot(self, credit_code: str) -> dict[str, Any]:
        """What a replay needs of one enterprise: feature values, each source's as-of date, the versions."""
        position = self.positions[credit_code]
        as_of = self.versions.as_of
        return {"format": 1, "as_of": None if as_of is None else as_of.isoformat(),
                "versions": self.versions.describe(), "source_as_of": self.encoder.provenance(position),
                "features": self.encoder.features(position)}
