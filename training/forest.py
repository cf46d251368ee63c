"""A LightGBM model's raw score computed by a compiled tree walk, bit for bit LightGBM's own `predict`.

LightGBM's `predict` on a dense matrix spends most of its time per row and per tree outside the comparisons
(row conversion, virtual dispatch, a branchy walk); for the shallow trees a risk model grows this is ~20 ns per
tree and row. Here the model's text (the same file the registry verifies) is turned into flat arrays once and a
numba kernel walks them, a block of rows per tree at a time so that the block's columns and the tree stay in
cache. The result is the same double as LightGBM's, not just close to it:

* each row's score is the sum of its trees' leaf values in tree order, starting from 0.0 (LightGBM's
  `PredictRaw`), whatever the threads and blocks;
* a value with |x| <= 1e-35 (LightGBM's `kZeroThreshold`, a float) is read as 0.0, as LightGBM's dense-row
  conversion drops it;
* numerical splits: NaN is 0.0 unless the split's missing type is NaN; a missing value (zero for missing type
  Zero, NaN for NaN) takes the default direction; otherwise left when x <= threshold;
* categorical splits: NaN, negative and values beyond int32 go right; otherwise the value truncated to an
  integer goes left when its bit is set in the split's bitset.

Models this does not cover (linear trees, several classes or outputs per iteration, averaged random-forest
output) return None from `compile_forest`, and the caller keeps LightGBM's `predict`.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

ZERO_THRESHOLD = float(np.float32(1e-35))  # LightGBM's kZeroThreshold is a float constant
BLOCK_ROWS = 512  # rows per tree pass: the block's columns stay in cache while every tree walks them
MAX_TABLE_SPLITS = 8  # a tree with at most this many splits is a table of 2**splits leaf values
MIN_ROWS_PER_THREAD = 4096  # below this a thread costs more than its share of the walk

_MISSING_NONE, _MISSING_ZERO, _MISSING_NAN = 0, 1, 2  # a split's missing type (numba reads them as constants)


@dataclass(frozen=True)
class CompiledForest:
    """Flat arrays of every tree: node `k` of tree `t` is row `node_start[t] + k`; its leaf `j` is
    `leaf_start[t] + j`; a child < 0 is the leaf ~child (LightGBM's encoding)."""

    num_features: int
    node_start: np.ndarray  # int64 [trees + 1]
    leaf_start: np.ndarray  # int64 [trees + 1]
    feature: np.ndarray  # int32 [nodes]
    threshold: np.ndarray  # float64 [nodes]; for a categorical split, the index of its bitset
    categorical: np.ndarray  # bool [nodes]
    default_left: np.ndarray  # bool [nodes]
    missing: np.ndarray  # int8 [nodes]: 0 none, 1 zero, 2 NaN
    left: np.ndarray  # int32 [nodes]
    right: np.ndarray  # int32 [nodes]
    leaf_value: np.ndarray  # float64 [leaves]
    cat_start: np.ndarray  # int64 [trees + 1]: tree t's bitset boundaries begin at cat_start[t]
    cat_boundary: np.ndarray  # int64: per tree, num_cat + 1 word offsets into cat_words (tree-local)
    cat_word_start: np.ndarray  # int64 [trees + 1]
    cat_words: np.ndarray  # uint32
    table_start: np.ndarray  # int64 [trees + 1]: a tree with few splits has a table (empty for the others)
    table: np.ndarray  # float64: the leaf value for each combination of the tree's split decisions

    @property
    def num_trees(self) -> int:
        return len(self.node_start) - 1

    def raw_score(self, X: np.ndarray, threads: int = 0) -> np.ndarray:
        """Each row's raw score (log-odds), as `booster.predict(X, raw_score=True)` gives it."""
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.num_features:
            raise ValueError(f"expected a 2-D matrix with {self.num_features} columns, got shape {X.shape}")
        if X.dtype != np.float64:
            X = X.astype(np.float64)  # float32 -> float64 is exact, as in LightGBM
        rows = len(X)
        out = np.zeros(rows, dtype=np.float64)
        if rows == 0:
            return out
        kernel = _kernel()
        args = (self.node_start, self.leaf_start, self.feature, self.threshold, self.categorical,
                self.default_left, self.missing, self.left, self.right, self.leaf_value, self.cat_start,
                self.cat_boundary, self.cat_word_start, self.cat_words, self.table_start, self.table,
                ZERO_THRESHOLD, BLOCK_ROWS)
        workers = _workers(threads, rows)
        if workers == 1:
            kernel(X, 0, rows, out, *args)
            return out
        # every row is summed on its own, in tree order: the split between threads changes no bit
        bounds = np.linspace(0, rows, workers + 1).astype(np.int64)
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda k: kernel(X, int(bounds[k]), int(bounds[k + 1]), out, *args), range(workers)))
        return out

    def warm(self) -> None:
        """Load (or compile) the kernel for the layouts callers pass: one row (C) and a column-major matrix."""
        self.raw_score(np.zeros((1, self.num_features)), 1)
        self.raw_score(np.zeros((2, self.num_features), order="F"), 1)


def _workers(threads: int, rows: int) -> int:
    wanted = threads if threads > 0 else (os.cpu_count() or 1)
    return max(1, min(wanted, rows // MIN_ROWS_PER_THREAD))


def _numbers(line: str, kind: Any) -> np.ndarray:
    return np.array(line.split(), dtype=kind) if line.strip() else np.empty(0, dtype=kind)


def probe_rows(forest: CompiledForest, rows: int = 256, seed: int = 0) -> np.ndarray:
    """Rows meant to take the splits both ways and through their missing branches: each column mixes the
    thresholds of its numerical splits and their neighbouring doubles with NaN, zeros, values in the zero band,
    negatives, small, fractional and huge values (categories 0-3, 31, 32). Deterministic; how many splits they
    reach depends on the model (a check, not a proof)."""
    rng = np.random.default_rng(seed)
    X = np.empty((rows, forest.num_features))
    common = np.array([np.nan, 0.0, -0.0, 1e-36, -1e-36, -1.0, -0.5, 0.5, 1.0, 3.0, 31.0, 32.0, 1e12, -1e12, np.inf])
    for j in range(forest.num_features):
        thresholds = forest.threshold[(forest.feature == j) & ~forest.categorical]
        values = np.concatenate([common, thresholds, np.nextafter(thresholds, np.inf),
                                 np.nextafter(thresholds, -np.inf)])
        X[:, j] = rng.choice(values, size=rows)
    return X


def compile_forest(model_text: str) -> CompiledForest | None:
    """The forest of a LightGBM model file's text, or None when the model uses what this walk does not cover
    (or a text this parser does not know)."""
    try:
        return _compile(model_text)
    except (KeyError, ValueError, IndexError):
        return None


def _compile(model_text: str) -> CompiledForest | None:
    head, sep, rest = model_text.partition("\nTree=")
    if not sep:
        return None
    header = dict(line.split("=", 1) for line in head.splitlines() if "=" in line)
    if (int(header.get("num_class", "1")) != 1 or int(header.get("num_tree_per_iteration", "1")) != 1
            or "average_output" in head.splitlines()):
        return None
    num_features = int(header["max_feature_idx"]) + 1
    body = rest.partition("end of trees")[0]
    node_start, leaf_start, cat_start, cat_word_start, table_start = [0], [0], [0], [0], [0]
    parts: dict[str, list[np.ndarray]] = {k: [] for k in (
        "feature", "threshold", "decision", "left", "right", "leaf", "cat_boundary", "cat_words", "table")}
    for block in ("Tree=" + body).split("\nTree="):
        fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if fields.get("is_linear", "0") != "0":
            return None
        num_leaves = int(fields["num_leaves"])
        leaves = _numbers(fields["leaf_value"], np.float64)
        if len(leaves) != num_leaves:
            return None
        internal = num_leaves - 1
        if internal:
            feature = _numbers(fields["split_feature"], np.int32)
            threshold = _numbers(fields["threshold"], np.float64)
            decision = _numbers(fields["decision_type"], np.int16)
            left = _numbers(fields["left_child"], np.int32)
            right = _numbers(fields["right_child"], np.int32)
            if not (len(feature) == len(threshold) == len(decision) == len(left) == len(right) == internal):
                return None
            if feature.max(initial=0) >= num_features:
                return None
        else:
            feature, threshold, decision, left, right = (np.empty(0, k) for k in (
                np.int32, np.float64, np.int16, np.int32, np.int32))
        num_cat = int(fields.get("num_cat", "0"))
        boundary = _numbers(fields.get("cat_boundaries", ""), np.int64) if num_cat else np.zeros(1, np.int64)
        words = _numbers(fields.get("cat_threshold", ""), np.uint32) if num_cat else np.empty(0, np.uint32)
        if num_cat and len(boundary) != num_cat + 1:
            return None
        table = _leaf_table(left, right, leaves) if 0 < internal <= MAX_TABLE_SPLITS else np.empty(0)
        for key, value in (("table", table), ("feature", feature), ("threshold", threshold), ("decision", decision),
                           ("left", left), ("right", right), ("leaf", leaves), ("cat_boundary", boundary),
                           ("cat_words", words)):
            parts[key].append(value)
        node_start.append(node_start[-1] + internal)
        leaf_start.append(leaf_start[-1] + num_leaves)
        cat_start.append(cat_start[-1] + len(boundary))
        cat_word_start.append(cat_word_start[-1] + len(words))
        table_start.append(table_start[-1] + len(table))
    decision = np.concatenate(parts["decision"]).astype(np.int16)
    return CompiledForest(
        num_features=num_features,
        node_start=np.array(node_start, np.int64), leaf_start=np.array(leaf_start, np.int64),
        feature=np.concatenate(parts["feature"]).astype(np.int32),
        threshold=np.concatenate(parts["threshold"]).astype(np.float64),
        categorical=(decision & 1).astype(np.bool_), default_left=((decision >> 1) & 1).astype(np.bool_),
        missing=((decision >> 2) & 3).astype(np.int8),
        left=np.concatenate(parts["left"]).astype(np.int32), right=np.concatenate(parts["right"]).astype(np.int32),
        leaf_value=np.concatenate(parts["leaf"]).astype(np.float64),
        cat_start=np.array(cat_start, np.int64), cat_boundary=np.concatenate(parts["cat_boundary"]).astype(np.int64),
        cat_word_start=np.array(cat_word_start, np.int64),
        cat_words=np.concatenate(parts["cat_words"]).astype(np.uint32),
        table_start=np.array(table_start, np.int64), table=np.concatenate(parts["table"]).astype(np.float64),
    )


def _leaf_table(left: np.ndarray, right: np.ndarray, leaves: np.ndarray) -> np.ndarray:
    """For each code whose bit j says "split j goes left", the value of the leaf the walk reaches."""
    codes = np.arange(2 ** len(left), dtype=np.int64)
    node = np.zeros(len(codes), dtype=np.int64)
    for _ in range(len(left)):  # a walk visits each split at most once
        inside = node >= 0
        here = np.where(inside, node, 0)
        goes_left = ((codes >> here) & 1).astype(bool)
        node = np.where(inside, np.where(goes_left, left[here], right[here]), node)
    if (node >= 0).any():
        raise ValueError("a tree's children do not lead to leaves")
    return leaves[~node]


_KERNEL: Any = None


def _kernel() -> Any:
    """The numba kernel, compiled on first use (and cached on disk by numba): importing numba costs ~0.3 s,
    paid only by a process that scores."""
    global _KERNEL
    if _KERNEL is None:
        import numba

        _KERNEL = numba.njit(nogil=True, cache=True)(_walk)
    return _KERNEL


def _walk(X, start, stop, out, node_start, leaf_start, feature, threshold, categorical, default_left,  # noqa: ANN001
          missing, left, right, leaf_value, cat_start, cat_boundary, cat_word_start, cat_words, table_start, table,
          zero, block):
    trees = len(node_start) - 1
    widest = 1
    for t in range(trees):
        widest = max(widest, node_start[t + 1] - node_start[t])
    # every split of a tree decided for a block of rows first (straight loops over one column, no branches to
    # mispredict), then each row follows its decisions to a leaf
    go_left = np.empty((widest, block), dtype=np.bool_)
    for lo in range(start, stop, block):
        m = min(block, stop - lo)
        for t in range(trees):
            n0 = node_start[t]
            internal = node_start[t + 1] - n0
            l0 = leaf_start[t]
            if internal == 0:  # a one-leaf tree
                for i in range(m):
                    out[lo + i] += leaf_value[l0]
                continue
            for j in range(internal):
                k = n0 + j
                f = feature[k]
                thr = threshold[k]
                if categorical[k]:
                    b0 = cat_start[t] + int(thr)
                    w0 = cat_word_start[t] + cat_boundary[b0]
                    n_words = cat_boundary[b0 + 1] - cat_boundary[b0]
                    for i in range(m):
                        x = X[lo + i, f]
                        hit = False
                        if x > -1.0 and x < 2147483648.0:  # NaN, negative and beyond int32 go right
                            c = int(x)
                            hit = c // 32 < n_words and ((cat_words[w0 + c // 32] >> (c % 32)) & 1) == 1
                        go_left[j, i] = hit
                    continue
                kind = missing[k]
                dl = default_left[k]
                if kind == _MISSING_NAN:
                    for i in range(m):
                        x = X[lo + i, f]
                        x = 0.0 if abs(x) <= zero else x
                        go_left[j, i] = (x <= thr) | (dl & (x != x))
                elif kind == _MISSING_ZERO:  # NaN is read as zero
                    for i in range(m):
                        x = X[lo + i, f]
                        x = 0.0 if (abs(x) <= zero) | (x != x) else x
                        go_left[j, i] = (dl & (x == 0.0)) | ((x != 0.0) & (x <= thr))
                else:  # _MISSING_NONE: NaN is read as zero
                    for i in range(m):
                        x = X[lo + i, f]
                        x = 0.0 if (abs(x) <= zero) | (x != x) else x
                        go_left[j, i] = x <= thr
            if table_start[t + 1] > table_start[t]:  # few splits: the decisions index the tree's table
                t0 = table_start[t]
                for i in range(m):
                    code = 0
                    for j in range(internal):
                        code |= np.int64(go_left[j, i]) << j
                    out[lo + i] += table[t0 + code]
                continue
            for i in range(m):
                node = 0
                while node >= 0:  # arithmetic, not a branch: the data decide, and a branch would mispredict
                    k = n0 + node
                    node = right[k] + np.int32(go_left[node, i]) * (left[k] - right[k])
                out[lo + i] += leaf_value[l0 + ~node]
