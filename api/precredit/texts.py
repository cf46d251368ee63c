"""Reason texts for whole columns at once: each distinct text is rendered once, rows get a category code.

A million enterprises have only a few thousand distinct decline-reason combinations, so the texts are
keyed by what they depend on (which reasons fired, the grade, the PD as printed), rendered with the
catalogue's templates (`scoring.output.reason_text`, the quote path's own wording) and handed out as
`pandas.Categorical` columns. Risk-factor texts carry the feature's value, so they are built with
Arrow string kernels from a prefix and a suffix per (feature, direction) around the formatted value.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.sources import SOURCES
from scoring.engine import ProductResult, ReasonSpec
from scoring.output import reason_text
from training.reasons import _RANK_LABELS, display_value, reason_for

CODE_SEP = ";"
RANK_FEATURES = frozenset(_RANK_LABELS)
TEXT_SEP = {"zh": "；", "en": "; "}


class _Probe(str):
    """Stands where the value goes in a template, so the template can be split around it once."""


PROBE = _Probe("\x00VALUE\x00")


def _cents(c: int) -> str:
    return f"{round(int(c) / 100, 2):g}"


def spec_params(r: ProductResult, spec: ReasonSpec) -> dict[str, str]:
    """The placeholders of one reason that do not depend on the row (same as a quote's)."""
    plan = r.plan
    params = dict(spec.params)
    if "source" in params:
        src = SOURCES.get(params["source"])
        params.update(source_zh=src.provider_zh if src else params["source"],
                      source_en=params["source"].replace("_", " "))
    if "indicator" in params:
        ind = next(i for i in plan.indicators if i.code == params["indicator"])
        params.update(indicator_zh=ind.name.zh, indicator_en=ind.name.en, max=_cents(ind.weight_cents))
    if "base" in params:
        base = next(b for b in plan.bases if b.code == params["base"])
        params.update(base_zh=base.name.zh, base_en=base.name.en)
    params.update(eligible="/".join(plan.definition.grading.eligible), max_pd=f"{plan.max_pd:.2%}")
    return params


def _categorical(codes: np.ndarray, labels: Sequence[str | None]) -> pd.Categorical:
    """Rows -> label via `codes`; labels may repeat (merged) and None means missing."""
    uniq = list(dict.fromkeys(x for x in labels if x is not None))
    pos = {x: i for i, x in enumerate(uniq)}
    remap = np.array([pos[x] if x is not None else -1 for x in labels] + [-1], dtype=np.int32)
    return pd.Categorical.from_codes(remap[codes], categories=pd.Index(uniq, dtype=object))


def _group(*keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First row of each distinct combination of the integer `keys` and every row's group number
    (hash-based, O(rows); groups numbered by first appearance, so the result follows row order)."""
    group = np.zeros(len(keys[0]), dtype=np.int64)
    size = 1
    for key in keys:
        codes, uniques = pd.factorize(key)
        group, found = pd.factorize(group * len(uniques) + codes)
        size = len(found)
    first = np.full(size, -1, dtype=np.int64)
    first[group[::-1]] = np.arange(len(group))[::-1]  # last write wins: the first row of each group
    return first, group


def decline_columns(r: ProductResult) -> dict[str, pd.Categorical]:
    """`reasons` (codes), `reasons_zh`, `reasons_en`: every decline reason of every row, in plan order."""
    specs = r.reason_specs
    cols = [i for i, s in enumerate(specs) if s.kind == "decline"]
    flags = r.reason_flags[:, cols]
    n = r.n
    codes = [specs[i].code for i in cols]
    # the grade and the PD appear in two texts only; keep the grade out of the key unless its reason fired,
    # and render the PD's place as a probe, filled per row afterwards (a PD is nearly unique per firm)
    grade_col = codes.index("GRADE_NOT_ELIGIBLE") if "GRADE_NOT_ELIGIBLE" in codes else None
    pd_col = codes.index("PD_ABOVE_MAX") if "PD_ABOVE_MAX" in codes else None
    grade_key = np.where(flags[:, grade_col], r.grade, -1) if grade_col is not None else np.full(n, -1)
    packed = np.packbits(flags, axis=1)
    packed = np.ascontiguousarray(np.pad(packed, ((0, 0), (0, -packed.shape[1] % 8)))).view(np.int64)  # 64 a column
    first, group = _group(*packed.T, grade_key)
    static = [spec_params(r, specs[i]) for i in cols]
    labels: dict[str, list[str]] = {"": [], "zh": [], "en": []}
    for row in first:
        fired = np.flatnonzero(flags[row])
        labels[""].append(CODE_SEP.join(codes[j] for j in fired))
        texts = [reason_text(codes[j], dict(static[j], grade=r.plan.grades[r.grade[row]], pd=PROBE),
                             r.plan.reasons) for j in fired]
        for lang in ("zh", "en"):
            labels[lang].append(TEXT_SEP[lang].join(t[lang] for t in texts))
    out = {"reasons": _categorical(group, labels[""])}
    hit = flags[:, pd_col] if pd_col is not None else np.zeros(n, dtype=bool)
    if not hit.any():
        out.update({f"reasons_{lang}": _categorical(group, labels[lang]) for lang in ("zh", "en")})
        return out
    # rows whose text carries their PD: one more category per distinct (reasons, PD as printed)
    values, inverse = np.unique(r.pd[hit], return_inverse=True)
    shown = [f"{v:.2%}" for v in values]
    combo, combos = pd.factorize(group[hit] * len(values) + inverse.reshape(-1))
    codes_all = group.copy()
    codes_all[hit] = len(first) + combo
    g, v = pa.array(combos // len(values)), pa.array(combos % len(values))
    middle = pa.array(shown, pa.string()).take(v)
    for lang in ("zh", "en"):
        split = [t.partition(PROBE) for t in labels[lang]]
        extra = pc.binary_join_element_wise(pa.array([b for b, _, _ in split], pa.string()).take(g), middle,
                                            pa.array([a for _, _, a in split], pa.string()).take(g), "")
        every = pa.concat_arrays([pa.array(labels[lang], pa.string()), extra])
        dedup, uniques = pd.factorize(pd.array(every, dtype=pd.ArrowDtype(pa.string())))
        out[f"reasons_{lang}"] = pd.Categorical.from_codes(dedup[codes_all], categories=pd.Index(
            np.asarray(uniques, dtype=object), dtype=object))
    return out


def top_k_stable(values: np.ndarray, k: int, overwrite: bool = False) -> np.ndarray:
    """Column positions of the `k` largest values per row, ties to the lower position: the first `k` of a
    stable descending argsort, found by `k` argmax passes (argmax returns the first maximum).
    `overwrite`: `values` (float64) may be used as scratch space."""
    work = values if overwrite else values.astype(np.float64, copy=True)
    out = np.empty((len(work), min(k, work.shape[1])), dtype=np.intp)
    rows = np.arange(len(work))
    for m in range(out.shape[1]):
        out[:, m] = np.argmax(work, axis=1)
        work[rows, out[:, m]] = -np.inf
    return out


def top_points_lost(r: ProductResult, k: int) -> dict[str, pd.Categorical]:
    """The `k` indicators with most points lost (the quote's `top_reasons` order), code and text."""
    lost = r.plan.max_cents[None, :] - r.points_cents
    order = top_k_stable(lost, k)
    rows = np.arange(r.n)
    # each indicator's text with a probe where the points go; filled once per distinct (indicator, points)
    templates = []
    for ind in r.plan.indicators:
        spec = ReasonSpec("POINTS_LOST", "info", (("indicator", ind.code),))
        text = reason_text("POINTS_LOST", {**spec_params(r, spec), "points": PROBE}, r.plan.reasons)
        templates.append({lang: text[lang].partition(PROBE) for lang in ("zh", "en")})
    out: dict[str, pd.Categorical] = {}
    for m in range(order.shape[1]):
        j = order[:, m]
        points = r.points_cents[rows, j]
        none = lost[rows, j] <= 0
        first, group = _group(np.where(none, -1, j), np.where(none, 0, points))
        labels: dict[str, list[str | None]] = {"": [], "zh": [], "en": []}
        for row in first.tolist():
            if none[row]:
                for v in labels.values():
                    v.append(None)
                continue
            jj = int(j[row])
            shown = _cents(points[row])
            labels[""].append(r.plan.indicators[jj].code)
            for lang in ("zh", "en"):
                before, _, after = templates[jj][lang]
                labels[lang].append(before + shown + after)
        for key, values in labels.items():
            out[f"top_reason_{m + 1}" + (f"_{key}" if key else "")] = _categorical(group, values)
    return out


def top_contributions(contrib: np.ndarray, k: int) -> np.ndarray:
    """Feature positions by |SHAP| descending, ties by position (`RiskModel.explain`'s stable order),
    -1 once a contribution is zero."""
    top = top_k_stable(np.abs(contrib[:, :-1]), k, overwrite=True)
    picked = np.take_along_axis(contrib[:, :-1], top, axis=1)
    return np.where(picked != 0, top, -1)


def _bool_features() -> frozenset[str]:
    return frozenset([f"has_{name}" for name in SOURCES]
                     + [f"{name}.{f.name}" for name, spec in SOURCES.items() for f in spec.fields if f.kind == "bool"])


def _value_texts(name: str, labels: tuple[str, ...] | None, is_bool: bool, values: np.ndarray
                 ) -> tuple[pa.Array, pa.Array]:
    """zh and en display of a column of model inputs, as `RiskModel` + `display_value` print one value;
    each distinct value is formatted once."""
    uniq, inverse = np.unique(values, return_inverse=True)
    if labels is not None:
        en = [labels[int(v)] for v in uniq]
        zh = en
    elif is_bool:
        en = ["yes" if v else "no" for v in uniq]
        zh = ["是" if v else "否" for v in uniq]
    elif name in RANK_FEATURES:
        en = [display_value(name, float(v)) for v in uniq]
        zh = en
    else:  # display_value's rule for numbers, inlined: it runs once per distinct value of a million rows
        en = [f"{int(v):,}" if v.is_integer() and abs(v) >= 1 else f"{v:.4g}" for v in uniq.tolist()]
        zh = en
    take = pa.array(inverse.reshape(-1))
    return pa.array(zh, pa.string()).take(take), pa.array(en, pa.string()).take(take)


def _around(template: str, values: pa.Array) -> pa.Array:
    before, _, after = template.partition(PROBE)
    n = len(values)
    return pc.binary_join_element_wise(pa.array([before] * n, pa.string()), values,
                                       pa.array([after] * n, pa.string()), "")


def risk_factor_columns(spec: object, X: np.ndarray, contrib: np.ndarray, k: int) -> dict[str, object]:
    """Top-`k` SHAP risk factors per row: feature, contribution, code and zh/en text in the quote's wording
    (`training.reasons.reason_for`). `spec` is the model's FeatureSpec, `X` its encoded inputs."""
    names = spec.names  # type: ignore[attr-defined]
    cat_labels = {names.index(c): v for c, v in spec.categories.items()}  # type: ignore[attr-defined]
    bools = _bool_features()
    top = top_contributions(contrib, k)
    n = len(X)
    rows = np.arange(n)
    out: dict[str, object] = {}
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
            t = reason_for(names[f], None if miss else PROBE, 1.0 if raises else -1.0)
            codes.append(t["code"])
            if miss:
                zh_parts.append(pa.array([t["zh"]] * len(part), pa.string()))
                en_parts.append(pa.array([t["en"]] * len(part), pa.string()))
                continue
            vz, ve = _value_texts(names[f], cat_labels.get(f), names[f] in bools, x[part])
            zh_parts.append(_around(t["zh"], vz))
            en_parts.append(_around(t["en"], ve))
        back = pa.array(np.argsort(order, kind="stable"))  # sorted position of each row
        code_of_group = np.repeat(np.arange(len(keys)), ends - starts)[np.argsort(order, kind="stable")]
        out[f"risk_factor_{m + 1}"] = pd.Categorical.from_codes(np.where(has, jj, -1),
                                                                categories=pd.Index(names, dtype=object))
        out[f"risk_factor_{m + 1}_contribution"] = c
        out[f"risk_factor_{m + 1}_code"] = _categorical(code_of_group, codes)
        for lang, parts in (("zh", zh_parts), ("en", en_parts)):
            texts = pa.concat_arrays(parts).take(back) if parts else pa.nulls(0, pa.string())
            out[f"risk_factor_{m + 1}_{lang}"] = pd.Series(texts.to_pandas(types_mapper=pd.ArrowDtype)).array
    return out
