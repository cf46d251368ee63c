"""Reason texts for whole columns at once (the batch's view): each distinct text is rendered once.

A million enterprises have only a few thousand distinct decline-reason combinations, so rows are grouped
by what their text depends on (which reasons fired, the grade, the points as printed), each group's first
row is rendered by the quote's own functions (`scoring.texts.reason_parts` / `row_values` /
`render_reason`) and rows get a category code (`pandas.Categorical`). A PD is nearly unique per firm,
so its place is rendered as a probe and filled with `percent_text`, printed once per group of rows whose
PDs print alike. Risk-factor texts carry the
feature's value: Arrow string kernels join a prefix and a suffix per (feature, direction) around each
value as `scoring.risk_texts.display_value` prints it. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from products.visibility import Audience
from scoring.engine import ProductResult
from scoring.ranking import top_k_positive
from scoring.risk_texts import display_value, model_value, reason_for
from scoring.texts import (
    percent_text,
    points_lost_spec,
    points_text,
    reason_parts,
    render_reason,
    row_values,
)

CODE_SEP = ";"
TEXT_SEP = {"zh": "；", "en": "; "}
LANGS = ("zh", "en")
PROBE = "\x00VALUE\x00"  # stands where a per-row value goes, so a template is split around it once


class FeatureSchema(Protocol):
    """What the risk-factor columns read of the model's inputs (`training.encoding.FeatureSpec`)."""

    @property
    def names(self) -> tuple[str, ...]: ...

    @property
    def categories(self) -> Mapping[str, tuple[str, ...]]: ...


# Every product of a partition prints the same PDs: each is formatted once (a pure function of the float).
_percent_text = lru_cache(maxsize=1 << 18)(percent_text)


def _categorical(codes: np.ndarray, labels: Sequence[str | None]) -> pd.Categorical:
    """Rows -> label via `codes`; labels may repeat (merged) and None means missing."""
    uniq = list(dict.fromkeys(x for x in labels if x is not None))
    pos = {x: i for i, x in enumerate(uniq)}
    remap = np.array([pos[x] if x is not None else -1 for x in labels] + [-1], dtype=np.int32)
    return pd.Categorical.from_codes(remap[codes], categories=pd.Index(uniq, dtype=object))


def _group(*keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First row of each distinct combination of the `keys` and every row's group number
    (hash-based, O(rows); groups numbered by first appearance, so the result follows row order)."""
    group = np.zeros(len(keys[0]), dtype=np.int64)
    size = 1
    for key in keys:
        codes, uniques = pd.factorize(key, use_na_sentinel=False)  # NaN (no PD) is a value of its own
        group, found = pd.factorize(group * len(uniques) + codes)
        size = len(found)
    first = np.full(size, -1, dtype=np.int64)
    first[group[::-1]] = np.arange(len(group))[::-1]  # last write wins: the first row of each group
    return first, group


def _by_percent_text(fractions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows grouped by what `percent_text` prints (first row of each group, every row's group) without printing
    every row: a PD is nearly unique per firm, its two-decimal percentage is not. `percent_text` formats the
    float `x * 100` correctly rounded to hundredths, so x * 100 * 100 rounded to the nearest integer names the
    text, unless it lies within float error of a tie (or is negative, huge, NaN): such a row is a group of its
    own value, printed on its own."""
    with np.errstate(invalid="ignore", over="ignore"):
        hundredths = fractions * 100.0 * 100.0
        nearest = np.floor(hundredths + 0.5)
        sure = (np.isfinite(hundredths) & ~np.signbit(fractions) & (hundredths < 2.0**40)
                & (np.abs(np.abs(hundredths - nearest) - 0.5) > 1e-6))
    return _group(np.where(sure, nearest, -1.0), np.where(sure, 0.0, fractions))


def decline_columns(r: ProductResult) -> dict[str, pd.Categorical]:
    """`reasons` (codes), `reasons_zh`, `reasons_en`: every decline reason of every row, in plan order."""
    cols = [i for i, s in enumerate(r.reason_specs) if s.kind == "decline"]
    parts = [reason_parts(r.plan, r.reason_specs[i]) for i in cols]
    flags = r.reason_flags[:, cols]
    n = r.n

    def fired(name: str) -> np.ndarray:  # rows where a reason printing `name` fired
        users = [c for c, p in enumerate(parts) if name in p.dynamic]
        return flags[:, users].any(axis=1) if users else np.zeros(n, dtype=bool)

    packed = np.packbits(flags, axis=1)
    packed = np.ascontiguousarray(np.pad(packed, ((0, 0), (0, -packed.shape[1] % 8)))).view(np.int64)  # 64 a column
    keys = [*packed.T, np.where(fired("grade"), r.grade, -1), np.where(fired("amount"), r.binding_cny, -1.0)]
    keys += [np.where(flags[:, c], r.points_cents[:, p.indicator], -1) for c, p in enumerate(parts)
             if "points" in p.dynamic and p.indicator is not None]
    with_pd = fired("pd") & ~np.isnan(r.pd)
    keys.append(with_pd)  # a row without a PD prints what the quote prints without one
    first, group = _group(*keys)
    labels: dict[str, list[str]] = {"": [], "zh": [], "en": []}
    for row in first.tolist():
        shown = np.flatnonzero(flags[row])
        labels[""].append(CODE_SEP.join(parts[c].code for c in shown))
        texts = []
        for c in shown:
            values = row_values(r, parts[c], row)
            if "pd" in values:
                values["pd"] = PROBE
            texts.append(render_reason(parts[c], values))
        for lang in LANGS:
            labels[lang].append(TEXT_SEP[lang].join(t[lang] for t in texts))
    out = {"reasons": _categorical(group, labels[""])}
    if not with_pd.any():
        out.update({f"reasons_{lang}": _categorical(group, labels[lang]) for lang in LANGS})
        return out
    # rows whose text carries their PD: one more category per distinct (reasons, PD as printed)
    shown_pd = r.pd[with_pd]
    printed_first, inverse = _by_percent_text(shown_pd)
    printed = pa.array([_percent_text(v) for v in shown_pd[printed_first].tolist()], pa.string())
    combo, combos = pd.factorize(group[with_pd] * len(printed_first) + inverse)
    codes_all = group.copy()
    codes_all[with_pd] = len(first) + combo
    g, v = pa.array(combos // len(printed_first)), pa.array(combos % len(printed_first))
    for lang in LANGS:
        pieces = [t.split(PROBE) for t in labels[lang]]
        # a text may print the PD more than once (two reasons): join the pieces around every probe
        width = max(len(p) for p in pieces)
        columns = [pa.array([p[m] if m < len(p) else "" for p in pieces], pa.string()).take(g) for m in range(width)]
        joined = columns[0]
        for m in range(1, width):
            has = pa.array([len(p) > m for p in pieces]).take(g)
            joined = pc.binary_join_element_wise(joined, pc.if_else(has, printed.take(v), ""), columns[m], "")
        every = pa.concat_arrays([pa.array(labels[lang], pa.string()), joined])
        dedup, uniques = pd.factorize(pd.array(every, dtype=pd.ArrowDtype(pa.string())))
        out[f"reasons_{lang}"] = pd.Categorical.from_codes(dedup[codes_all], categories=pd.Index(
            np.asarray(uniques, dtype=object), dtype=object))
    return out


def top_points_lost(r: ProductResult, k: int) -> dict[str, pd.Categorical]:
    """The `k` indicators with most points lost (the quote's `top_reasons`), code and text: rows are grouped
    by (indicator, what its text prints) and each group's text is the quote's for the group's first row."""
    lost = r.plan.max_cents[None, :] - r.points_cents
    order = top_k_positive(lost, k)
    rows = np.arange(r.n)
    parts = [reason_parts(r.plan, points_lost_spec(ind.code)) for ind in r.plan.indicators]
    uses = {name: np.array([name in p.dynamic for p in parts]) for name in ("grade", "pd")}
    # the usual template prints only the points: render it once per indicator with a probe for them
    probed = {j: {lang: t.split(PROBE) for lang, t in render_reason(p, {"points": PROBE}).items()}
              for j, p in enumerate(parts) if p.dynamic <= {"points"}}
    out: dict[str, pd.Categorical] = {}
    for m in range(order.shape[1]):
        j = order[:, m]
        none = j < 0
        jj = np.where(none, 0, j)
        keys = [j, np.where(none, -1, r.points_cents[rows, jj])]
        keys += [np.where(uses["grade"][jj] & ~none, r.grade, -1)] if uses["grade"].any() else []
        keys += [np.where(uses["pd"][jj] & ~none, r.pd, -1.0)] if uses["pd"].any() else []
        first, group = _group(*keys)
        labels: dict[str, list[str | None]] = {"": [], "zh": [], "en": []}
        for row in first.tolist():
            if none[row]:
                for lst in labels.values():
                    lst.append(None)
                continue
            f = int(j[row])
            if f in probed:
                points = points_text(r.points_cents[row, f])
                text = {lang: points.join(pieces) for lang, pieces in probed[f].items()}
            else:
                text = render_reason(parts[f], row_values(r, parts[f], row))
            labels[""].append(r.plan.indicators[f].code)
            for lang in LANGS:
                labels[lang].append(text[lang])
        for key, lst in labels.items():
            out[f"top_reason_{m + 1}" + (f"_{key}" if key else "")] = _categorical(group, lst)
    return out


def top_contributions(contrib: np.ndarray, k: int) -> np.ndarray:
    """Feature positions by |SHAP| descending, ties by position, -1 once a contribution is zero (the rule of
    `RiskModel`'s risk factors). `contrib` has the base value as its last column."""
    return top_k_positive(np.abs(contrib[:, :-1]), k, overwrite=True)


def _value_texts(name: str, labels: tuple[str, ...] | None, values: np.ndarray) -> tuple[pa.Array, pa.Array]:
    """zh and en display of a column of encoded model inputs: each distinct value is turned into the value
    the quote shows (`model_value`) and printed by `display_value`, once."""
    uniq, inverse = np.unique(values, return_inverse=True)
    shown = [display_value(name, model_value(name, v, labels)) for v in uniq.tolist()]
    take = pa.array(inverse.reshape(-1))
    return pa.array([s.zh for s in shown], pa.string()).take(take), pa.array([s.en for s in shown], pa.string()).take(
        take)


def _around(template: str, values: pa.Array) -> pa.Array:
    before, _, after = template.partition(PROBE)
    n = len(values)
    return pc.binary_join_element_wise(pa.array([before] * n, pa.string()), values,
                                       pa.array([after] * n, pa.string()), "")


def risk_factor_columns(spec: FeatureSchema, X: np.ndarray, contrib: np.ndarray, k: int,
                        audience: Audience = Audience.bank) -> dict[str, Any]:
    """Top-`k` SHAP risk factors per row: feature, contribution, code and zh/en text in the quote's wording
    (`scoring.risk_texts.reason_for`) for the file's readers, `audience` (values they may not see are never
    printed). `spec` describes the model's inputs, `X` is its encoded matrix."""
    names = list(spec.names)
    cat_labels = {names.index(c): v for c, v in spec.categories.items()}
    top = top_contributions(contrib, k)
    n = len(X)
    rows = np.arange(n)
    out: dict[str, Any] = {}
    for m in range(top.shape[1]):
        j = top[:, m]
        has = j >= 0
        jj = np.where(has, j, 0)
        c = np.where(has, contrib[rows, jj], np.nan)
        x = X[rows, jj]
        missing = np.isnan(x)
        # groups of rows sharing one template: (feature, raises?, missing?)
        gkey = np.where(has, jj * 4 + (c > 0) * 2 + missing, -1)
        order = np.argsort(gkey, kind="stable")
        keys, starts = np.unique(gkey[order], return_index=True)
        ends = np.r_[starts[1:], n]
        codes, zh_parts, en_parts = [], [], []
        for key, a, b in zip(keys.tolist(), starts.tolist(), ends.tolist(), strict=True):
            part = order[a:b]
            if key < 0:
                codes.append(None)
                zh_parts.append(pa.nulls(len(part), pa.string()))
                en_parts.append(pa.nulls(len(part), pa.string()))
                continue
            f, raises, miss = key // 4, bool(key & 2), bool(key & 1)
            t = reason_for(names[f], None if miss else PROBE, 1.0 if raises else -1.0, audience)
            codes.append(t["code"])
            if miss or PROBE not in t["en"]:  # no value printed: missing, or one nobody may see
                zh_parts.append(pa.array([t["zh"]] * len(part), pa.string()))
                en_parts.append(pa.array([t["en"]] * len(part), pa.string()))
                continue
            vz, ve = _value_texts(names[f], cat_labels.get(f), x[part])
            zh_parts.append(_around(t["zh"], vz))
            en_parts.append(_around(t["en"], ve))
        back = pa.array(np.argsort(order, kind="stable"))  # sorted position of each row
        code_of_group = np.repeat(np.arange(len(keys)), ends - starts)[np.argsort(order, kind="stable")]
        out[f"risk_factor_{m + 1}"] = pd.Categorical.from_codes(np.where(has, jj, -1),
                                                                categories=pd.Index(names, dtype=object))
        out[f"risk_factor_{m + 1}_contribution"] = c
        out[f"risk_factor_{m + 1}_code"] = _categorical(code_of_group, codes)
        for lang, pieces in (("zh", zh_parts), ("en", en_parts)):
            texts = pa.concat_arrays(pieces).take(back) if pieces else pa.nulls(0, pa.string())
            out[f"risk_factor_{m + 1}_{lang}"] = pd.Series(texts.to_pandas(types_mapper=pd.ArrowDtype)).array
    return out
