"""What-if simulation: a date's whole population scored under a draft and under the version in force.

Both versions go through the quote's one path: `api.quoting.versions` builds them (the draft's rank
cut-offs calibrated on the same population as the active version's), `side_by_side` puts them in one
`Versions` as the plans "before" and "after", and `api.quoting.population.score_rows` scores blocks of
rows under both at once (the risk model runs once per row). So every firm's before/after numbers are the
numbers a quote gives it, and the figures add up exactly to quoting the firms one by one (tested).

Per grade, before and after: enterprises, eligible, total and average limits, average rate, expected
loss (PD x LGD x limit, LGD from settings.simulation_lgd); the grade migration matrix; the firms whose
eligibility, grade, limit or rate changes (`changed`), of which `grade_changed`; a sample of them with
their quotes' reasons (`scoring.output.quote_dict`, the one formatter).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from api.quoting.population import score_rows
from api.quoting.versions import (
    Versions,
    VersionsError,
    definition_sha,
    definitions_in_force,
    side_by_side,
    versions_with,
)
from products.schema import ProductDefinition
from scoring import quote_dict
from training.serving import RiskModel

BLOCK = 65_536  # rows scored per call: bounded memory, progress between blocks
SAMPLE = 20  # changed firms shown with their reasons
SIDES = ("before", "after")

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Side:
    """One version's numbers for every row (arrays in the population's order)."""

    eligible: np.ndarray  # bool
    grade: np.ndarray  # intp index into `grades`
    grades: tuple[str, ...]
    index_cents: np.ndarray  # int64
    limit_cny: np.ndarray  # float64 (0 without an offer)
    rate_bp: np.ndarray  # int64, -1 without an offer
    pd: np.ndarray  # float64, NaN without a model

    def grade_labels(self) -> np.ndarray:
        return np.asarray(self.grades, dtype=object)[self.grade]


@dataclass(frozen=True)
class Simulation:
    as_of: dt.date
    product: str
    draft: ProductDefinition
    active: ProductDefinition
    versions: Versions  # the "before" and "after" plans
    codes: pd.Index  # credit codes, the population's order
    before: Side
    after: Side
    lgd: float
    sample: list[dict[str, Any]]

    @property
    def changed_mask(self) -> np.ndarray:
        b, a = self.before, self.after
        rate_b = np.where(b.eligible, b.rate_bp, -1)
        rate_a = np.where(a.eligible, a.rate_bp, -1)
        return ((b.eligible != a.eligible) | (b.grade_labels() != a.grade_labels()) | (b.limit_cny != a.limit_cny)
                | (rate_b != rate_a))

    @property
    def grade_changed_mask(self) -> np.ndarray:
        return self.before.grade_labels() != self.after.grade_labels()

    def changed_codes(self) -> list[str]:
        return [str(c) for c in self.codes[self.changed_mask]]

    def changes_frame(self) -> pd.DataFrame:
        """Every firm that changes: before and after eligibility, grade, limit and rate (for a CSV)."""
        mask = self.changed_mask
        out = pd.DataFrame(index=pd.Index(self.codes[mask], name="credit_code"))
        for name, side in (("before", self.before), ("after", self.after)):
            out[f"{name}_eligible"] = side.eligible[mask]
            out[f"{name}_grade"] = side.grade_labels()[mask]
            out[f"{name}_limit_cny"] = side.limit_cny[mask].astype(np.int64)
            out[f"{name}_rate_pct"] = np.where(side.eligible[mask] & (side.rate_bp[mask] >= 0),
                                               side.rate_bp[mask] / 100, np.nan)
        return out

    def summary(self) -> dict[str, Any]:
        """The JSON summary `indexloan products simulate --json` prints and the API job returns."""
        changed = self.changed_mask
        return {
            "as_of": self.as_of.isoformat(),
            "enterprises": len(self.codes),
            "lgd": self.lgd,
            "model_version": self.versions.model_version,
            "products": {self.product: {
                "before": _version_info(self.active),
                "after": _version_info(self.draft),
                "changed": int(changed.sum()),
                "grade_changed": int(self.grade_changed_mask.sum()),
                "eligibility_changed": int((self.before.eligible != self.after.eligible).sum()),
                "figures": {"before": _figures(self.before, self.lgd), "after": _figures(self.after, self.lgd)},
                "migration": self.migration(),
                "sample": self.sample,
            }},
        }

    def migration(self) -> dict[str, dict[str, int]]:
        """Grade before -> grade after -> enterprises (every pair that occurs)."""
        pairs = pd.DataFrame({"b": self.before.grade_labels(), "a": self.after.grade_labels()})
        counts = pairs.groupby(["b", "a"], sort=False).size()
        order_b = {g: i for i, g in enumerate(self.before.grades)}
        order_a = {g: i for i, g in enumerate(self.after.grades)}
        out: dict[str, dict[str, int]] = {}
        for (b, a), n in sorted(counts.items(), key=lambda kv: (order_b[kv[0][0]], order_a[kv[0][1]])):
            out.setdefault(str(b), {})[str(a)] = int(n)
        return out


def _version_info(d: ProductDefinition) -> dict[str, Any]:
    return {"version": d.version, "effective_date": d.effective_date.isoformat(), "sha256": definition_sha(d)}


def _money(x: float) -> int:
    return int(round(float(x)))


def _figures(side: Side, lgd: float) -> dict[str, Any]:
    """Per grade and in total: enterprises, eligible, limits, average rate, expected loss."""
    labels = side.grade_labels()

    def block(rows: np.ndarray) -> dict[str, Any]:
        offer = rows & side.eligible
        n = int(offer.sum())
        limits = side.limit_cny[offer]
        rates = side.rate_bp[offer & (side.rate_bp >= 0)]
        pd_values = side.pd[offer]
        with_pd = not np.isnan(pd_values).any() if n else not np.isnan(side.pd).all()
        el = float((pd_values * lgd * limits).sum()) if with_pd else None
        return {"enterprises": int(rows.sum()), "eligible": n, "total_limit_cny": _money(limits.sum()),
                "average_limit_cny": _money(limits.mean()) if n else 0,
                "average_rate_pct": round(float(rates.mean()) / 100, 4) if len(rates) else None,
                "expected_loss_cny": None if el is None else round(el, 2)}

    total = block(np.ones(len(labels), dtype=bool))
    grades = {g: block(labels == g) for g in side.grades if (labels == g).any()}
    return {"total": total, "grades": grades}


def _side(result: Any) -> dict[str, np.ndarray]:
    return {"eligible": result.eligible, "grade": result.grade, "index_cents": result.index_cents,
            "limit_cny": result.limit_cny, "rate_bp": result.rate_bp, "pd": result.pd}


def _reasons(quote: dict[str, Any]) -> list[dict[str, Any]]:
    items = quote["reasons"] if not quote["eligible"] else quote["top_reasons"][:2]
    return [{k: r[k] for k in ("code", "zh", "en") if k in r} for r in items]


def _view(quote: dict[str, Any]) -> dict[str, Any]:
    return {"eligible": quote["eligible"], "index": quote["index"], "grade": quote["grade"],
            "limit_cny": quote["limit_cny"], "rate": quote["rate"], "reasons": _reasons(quote)}


def _sample(versions: Versions, features: pd.DataFrame, codes: Sequence[str]) -> list[dict[str, Any]]:
    """The sampled firms' quotes under both versions (the quote's formatter, so the reasons are a quote's)."""
    if not codes:
        return []
    scored = score_rows(versions, features.loc[list(codes)], contributions=False)
    out = []
    for i, code in enumerate(codes):
        before, after = (quote_dict(scored.results[s], i) for s in SIDES)
        why = [f"index {before['index']:g} -> {after['index']:g}"] if before["index"] != after["index"] else []
        if before["grade"] != after["grade"]:
            why.append(f"grade {before['grade']} -> {after['grade']} (评级变化)")
        if before["eligible"] != after["eligible"]:
            why.append("now eligible (变为可贷)" if after["eligible"] else "no longer eligible (不再可贷)")
        out.append({"credit_code": code, "before": _view(before), "after": _view(after), "why": why})
    return out


def simulate(features: pd.DataFrame, draft: ProductDefinition, known: Sequence[ProductDefinition], as_of: dt.date,
             model: RiskModel | None, lgd: float, progress: Progress | None = None, sample: int = SAMPLE
             ) -> Simulation:
    """Score `features` (a date's whole population, index = credit code) under `draft` and under the version
    of the same product in force on `as_of` among `known` (seeds + approved versions)."""
    code = draft.code
    active = definitions_in_force(known, as_of).get(code)
    if active is None:
        raise VersionsError("draft", f"product {code!r} has no version in force on {as_of.isoformat()} to compare "
                                     f"the draft with; 该日期无可比较的生效版本")
    if not len(features):
        raise VersionsError("as_of", f"no enterprises in the store as of {as_of.isoformat()}; 该日期无企业数据")
    before = versions_with(as_of, {code: active}, features, model)
    after = versions_with(as_of, {code: draft}, features, model)
    pair = side_by_side(before, after, code)
    columns = [c for c in pair.columns if c in features.columns]
    frame = features[columns]
    n = len(frame)
    parts: dict[str, list[dict[str, np.ndarray]]] = {s: [] for s in SIDES}
    if progress is not None:
        progress(0, n)
    for start in range(0, n, BLOCK):
        scored = score_rows(pair, frame.iloc[start:start + BLOCK], contributions=False)
        for s in SIDES:
            parts[s].append(_side(scored.results[s]))
        if progress is not None:
            progress(min(start + BLOCK, n), n)
    sides = {s: Side(grades=pair.plans[s].grades, **{k: np.concatenate([p[k] for p in parts[s]]) for k in parts[s][0]})
             for s in SIDES}
    result = Simulation(as_of, code, draft, active, pair, frame.index, sides["before"], sides["after"], lgd, [])
    changed = result.codes[result.changed_mask]
    picked = [str(c) for c in changed[:sample]]  # the population's order: credit-code order in the store
    return Simulation(as_of, code, draft, active, pair, frame.index, sides["before"], sides["after"], lgd,
                      _sample(pair, frame, picked))
