"""Evaluate compiled plans on enterprise features: one row or millions, the same vectorised code.

No Python loop runs over enterprises; loops run over the (few) gates, indicators and bases of a plan.
A missing value never raises and never silently scores zero: each definition says what it does,
and every such case is flagged with a reason (a decline, or an informational note).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache, cached_property

import numpy as np
import pandas as pd

from products.fields import feature_catalogue
from scoring.columns import Columns, extract
from scoring.plan import CompiledCondition, Plan
from scoring.ranking import top_k_positive

TOP_REASONS = 3
# default rounding step of a next-grade target per indicator unit (a product's `hints.round_to` overrides)
HINT_STEPS = {"CNY": 1000.0, "CNY/mu": 100.0, "CNY/person": 100.0, "CNY/t": 100.0, "CNY/tce": 100.0,
              "patents": 1.0, "copyrights": 1.0, "awards": 1.0, "persons": 1.0, "points": 1.0, "years": 1.0,
              "times": 0.01, "times/year": 0.01}
SMALL_BATCH = 64  # up to this many rows the indicators are scored as one matrix
NEXT_GRADE_OPTIONS = 3


@dataclass(frozen=True)
class ReasonSpec:
    """One reason a plan can give: a catalogue code plus the values for its text placeholders."""

    code: str
    kind: str  # "decline" (no offer) or "info"
    params: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ProductResult:
    """Arrays over enterprises (rows of `index`) for one product; see scoring.output for JSON."""

    plan: Plan
    columns: Columns  # the inputs, for "from" values in explanations
    index: pd.Index
    eligible: np.ndarray  # bool
    reason_specs: tuple[ReasonSpec, ...]
    reason_flags: np.ndarray  # bool [n, reasons]
    gate_passed: np.ndarray  # bool [n, gates]
    points_cents: np.ndarray  # int64 [n, indicators]
    dimension_cents: np.ndarray  # int64 [n, dimensions]
    index_cents: np.ndarray  # int64 [n] = points_cents.sum(1) exactly
    grade: np.ndarray  # intp [n], index into plan.grades (0 = best)
    grade_official: np.ndarray  # bool: grade is the government's own class
    segment: np.ndarray  # intp [n] (-1 = unknown)
    limit_cny: np.ndarray  # float64, 0 when no offer
    rate_lo_bp: np.ndarray  # int64, -1 when no offer
    rate_hi_bp: np.ndarray
    rate_bp: np.ndarray
    fee_bp: np.ndarray
    subsidy_bp: np.ndarray
    all_in_bp: np.ndarray
    pd: np.ndarray  # float64, NaN = not given
    binding_base: np.ndarray  # intp [n]: the limit base that bound the limit (index into plan.bases), -1 = a cap
    binding_cny: np.ndarray  # float64 [n]: the binding candidate (with its coefficients), capped and rounded down
    # int64 [n, collateral option, OPTION_TERMS]: each option's terms (option 0 = the main terms above)
    option_terms: np.ndarray | None = None
    # float64 [n] / int64 [n]: the subsidy that applies to each row (share of the interest, fixed bp)
    subsidy_share: np.ndarray | None = None
    subsidy_points_bp: np.ndarray | None = None
    overlays: tuple[AppliedOverlay, ...] = ()  # overlays applied to this product's offers (scoring.overlay)

    @property
    def n(self) -> int:
        return len(self.index)

    @cached_property
    def explanation(self) -> Explanation:
        """Top reasons and next-grade options for every row (vectorised, computed on first use so
        a whole-region batch that does not print explanations does not pay for them)."""
        return explain(self)


@dataclass(frozen=True)
class BaseTerms:
    """A product's offer before an overlay adjusted it (arrays over the rows, as in ProductResult)."""

    limit_cny: np.ndarray
    rate_lo_bp: np.ndarray
    rate_hi_bp: np.ndarray
    rate_bp: np.ndarray
    subsidy_bp: np.ndarray
    all_in_bp: np.ndarray


@dataclass(frozen=True)
class AppliedOverlay:
    """One overlay on a product: the overlay's own result, where it applied, by how much, and the terms before."""

    code: str
    result: ProductResult
    applied: np.ndarray  # bool [n]
    uplift: np.ndarray  # float64 [n]: factor on the limit (1 where not applied)
    rate_cut_bp: np.ndarray  # int64 [n]: basis points the rate came down (0 where not applied)
    before: BaseTerms


@dataclass(frozen=True)
class Explanation:
    top_reasons: np.ndarray  # intp [n, TOP_REASONS] indicator index, -1 = none
    next_grade: np.ndarray  # intp [n] grade index to reach, -1 = none (best grade or official class)
    needed_cents: np.ndarray  # int64 [n]
    option_order: np.ndarray  # intp [n, NEXT_GRADE_OPTIONS] indicator index, -1 = none
    option_to: np.ndarray  # float64 [n, indicators] value that alone lifts the grade (NaN = cannot)
    option_gain_cents: np.ndarray  # int64 [n, indicators] points gained by that change
    reachable: np.ndarray  # bool [n]: all changeable indicators together can reach the next grade


def explain(r: ProductResult) -> Explanation:
    # top reasons: indicators with most points lost against their maximum
    lost = r.plan.max_cents[None, :] - r.points_cents
    top = top_k_positive(lost, TOP_REASONS)
    # hints only where every gate passes and no source the assessment needs is missing
    data_missing = [k for k, s in enumerate(r.reason_specs) if s.code in ("MISSING_SOURCE", "SOURCE_NEEDED")]
    blocked = ~r.gate_passed.all(axis=1) | r.reason_flags[:, data_missing].any(axis=1)
    nxt = _next_grade(r.plan, r.columns, r.points_cents, r.index_cents, r.grade, r.grade_official | blocked,
                      r.segment)
    return Explanation(top_reasons=top, **nxt)


def hint_step(plan: Plan, unit: str | None) -> float | None:
    """The rounding step of a next-grade target in `unit` (None: 4 significant digits of the scoring range)."""
    if unit is None:
        return None
    return plan.definition.hints.round_to.get(unit, HINT_STEPS.get(unit))


def _condition(c: CompiledCondition, v: np.ndarray) -> np.ndarray:
    missing = np.isnan(v)
    if c.op == "is_true":
        ok = v > 0.5
    elif c.op == "is_false":
        ok = v < 0.5
    elif c.op == "eq":
        ok = v == c.values[0]
    elif c.op == "ne":
        ok = v != c.values[0]
    elif c.op == "lt":
        ok = v < c.values[0]
    elif c.op == "le":
        ok = v <= c.values[0]
    elif c.op == "gt":
        ok = v > c.values[0]
    elif c.op == "ge":
        ok = v >= c.values[0]
    elif c.op == "in":
        ok = np.isin(v, c.values)
    else:  # not_in
        ok = ~np.isin(v, c.values)
    return np.where(missing, c.pass_when_missing, ok)


OPTION_TERMS = ("rate_lo_bp", "rate_hi_bp", "rate_bp", "fee_bp", "subsidy_bp", "all_in_bp")


def _all(conditions: Sequence[CompiledCondition], cols: Columns, n: int) -> np.ndarray:
    """Rows where every condition holds (all rows when there is none)."""
    ok = np.ones(n, dtype=bool)
    for c in conditions:
        ok &= _condition(c, cols.values[c.field])
    return ok


def _coalesce(cols: Columns, fields: Sequence[str]) -> np.ndarray:
    out = cols.values[fields[0]]
    for f in fields[1:]:
        out = np.where(np.isnan(out), cols.values[f], out)
    return out


def _pd_array(pd_values: object, cols: Columns) -> np.ndarray:
    if pd_values is None:
        return np.full(cols.n, np.nan)
    if isinstance(pd_values, pd.Series):
        return pd_values.reindex(cols.index).to_numpy(dtype=np.float64, na_value=np.nan)
    arr = np.asarray(pd_values, dtype=np.float64)
    if arr.ndim == 0:
        return np.full(cols.n, float(arr))
    if arr.shape != (cols.n,):
        raise ValueError(f"pd has shape {arr.shape}, expected ({cols.n},)")
    if np.any((arr < 0) | (arr > 1)):
        raise ValueError("pd values must lie in [0, 1]")
    return arr


@cache
def reason_specs(plan: Plan) -> tuple[tuple[ReasonSpec, ...], np.ndarray]:
    """The reasons a plan can give, in the fixed column order of `reason_flags`, and which decline."""
    specs = [ReasonSpec("MISSING_SOURCE", "decline", (("source", s),)) for s in plan.required_sources]
    specs += [ReasonSpec(g.reason, "decline", (("gate", g.code),)) for g in plan.gates]
    specs += [ReasonSpec("INDICATOR_MISSING_INELIGIBLE", "decline", (("indicator", i.code),))
              if i.on_missing == "ineligible" else
              ReasonSpec("INDICATOR_MISSING_SCORED", "info", (("indicator", i.code),)) for i in plan.indicators]
    if plan.segment_field is not None and not plan.segment_missing_first:
        specs.append(ReasonSpec("SEGMENT_MISSING", "decline", (("field", plan.segment_field),)))
    specs.append(ReasonSpec("GRADE_NOT_ELIGIBLE", "decline"))
    specs += [ReasonSpec("LIMIT_BASE_SKIPPED", "info", (("base", b.code),)) if b.skip_when_missing else
              ReasonSpec("LIMIT_BASE_MISSING", "decline", (("base", b.code),)) for b in plan.bases]
    specs += [ReasonSpec("PD_ABOVE_MAX", "decline"), ReasonSpec("LIMIT_BELOW_MINIMUM", "decline")]
    # the limit base that bound the limit, with its amount: why the limit is under the minimum, or what set it
    specs += [ReasonSpec("LIMIT_BASE_BELOW_MINIMUM", "decline", (("base", b.code),)) for b in plan.bases]
    specs += [ReasonSpec("LIMIT_BOUND_BY_BASE", "info", (("base", b.code),)) for b in plan.bases]
    # one missing source, one reason: what it caused is said once, by these (see `_one_reason_per_source`)
    specs += [ReasonSpec("SOURCE_NEEDED", "decline", (("source", s),)) for s in plan.optional_sources]
    specs += [ReasonSpec("SOURCE_MISSING_SCORED", "info", (("source", s),)) for s in _plan_sources(plan)]
    return tuple(specs), np.array([s.kind == "decline" for s in specs])


def _plan_sources(plan: Plan) -> tuple[str, ...]:
    return plan.required_sources + plan.optional_sources


@cache
def _reason_causes(plan: Plan) -> tuple[tuple[tuple[int, ...], tuple[str, ...]], ...]:
    """Per reason of `reason_specs`: the plan sources (positions in `_plan_sources`) whose absence can
    cause it, and the fields it reads (it is caused by a missing source only where one of them is missing)."""
    catalogue = feature_catalogue()
    sources = _plan_sources(plan)

    def of(fields: Sequence[str]) -> tuple[tuple[int, ...], tuple[str, ...]]:
        found = [src for f in fields if f in catalogue for src in catalogue[f].sources]
        return tuple(sources.index(src) for src in dict.fromkeys(found) if src in sources), tuple(fields)

    gates = {g.code: g for g in plan.gates}
    indicators = {i.code: i for i in plan.indicators}
    bases = {b.code: b for b in plan.bases}
    out = []
    for spec in reason_specs(plan)[0]:
        p = dict(spec.params)
        if spec.code in ("MISSING_SOURCE", "SOURCE_NEEDED", "SOURCE_MISSING_SCORED"):
            out.append(((), ()))
        elif "gate" in p:
            out.append(of([c.field for c in gates[p["gate"]].conditions]))
        elif spec.code in ("INDICATOR_MISSING_INELIGIBLE", "INDICATOR_MISSING_SCORED"):
            out.append(of([indicators[p["indicator"]].field]))
        elif spec.code == "SEGMENT_MISSING":
            out.append(of([p["field"]]))
        elif spec.code in ("LIMIT_BASE_MISSING", "LIMIT_BASE_SKIPPED"):
            out.append(of(bases[p["base"]].fields))
        else:
            out.append(((), ()))
    return tuple(out)


def _one_reason_per_source(plan: Plan, cols: Columns, flags: np.ndarray) -> np.ndarray:
    """Reasons a missing source caused become one reason naming the source ("no tax data: supply it"):
    declines become MISSING_SOURCE (a required source) or SOURCE_NEEDED (an optional one the firm's
    assessment needed), notes of indicators scored without it become one SOURCE_MISSING_SCORED; a grade
    computed on missing data is not given as a reason of its own. Which rows are declined never changes."""
    specs = reason_specs(plan)[0]
    sources = _plan_sources(plan)
    n_req = len(plan.required_sources)
    if not sources:
        return flags
    missing = [~cols.has[s] for s in sources]
    if not any(m.any() for m in missing):  # the usual single quote: every source there
        return flags
    rows = flags.T.copy()  # one contiguous row per reason: the loop below works on whole reasons
    needed = np.zeros((len(sources), cols.n), dtype=bool)
    scored = np.zeros((len(sources), cols.n), dtype=bool)
    fired = rows.any(axis=1)
    for k, (causes, fields) in enumerate(_reason_causes(plan)):
        if not causes or not fired[k]:
            continue
        unread = np.isnan(cols.values[fields[0]])  # caused by a missing source only where an input is missing
        for f in fields[1:]:
            unread = unread | np.isnan(cols.values[f])
        caused = rows[k] & unread
        target = needed if specs[k].kind == "decline" else scored
        for c in causes:  # the first missing source of the reason's inputs names it
            hit = caused & missing[c]
            target[c] |= hit
            rows[k] &= ~hit
            caused &= ~hit
    first = {sp.code: i for i, sp in reversed(list(enumerate(specs)))}
    opt, note = first.get("SOURCE_NEEDED", 0), first["SOURCE_MISSING_SCORED"]
    rows[:n_req] |= needed[:n_req]  # already set: the source is missing
    rows[opt:opt + len(plan.optional_sources)] = needed[n_req:]
    declined = np.vstack([rows[:n_req], needed[n_req:]])
    rows[note:note + len(sources)] = scored & ~declined  # the decline already names the source
    rows[first["GRADE_NOT_ELIGIBLE"]] &= ~declined.any(axis=0)
    return np.ascontiguousarray(rows.T)
    needed = np.zeros((cols.n, len(sources)), dtype=bool)
    scored = np.zeros((cols.n, len(sources)), dtype=bool)
    flags = flags.copy()
    fired = flags.any(axis=0)
    for k, (causes, fields) in enumerate(_reason_causes(plan)):
        if not causes or not fired[k]:
            continue
        unread = np.column_stack([np.isnan(cols.values[f]) for f in fields]).any(axis=1)
        caused = flags[:, k] & unread & missing[:, list(causes)].any(axis=1)
        if not caused.any():
            continue
        first = np.array(causes)[np.argmax(missing[:, list(causes)], axis=1)]  # the first missing cause
        target = needed if specs[k].kind == "decline" else scored
        target[caused, first[caused]] = True
        flags[:, k] &= ~caused
    start = {s.code: i for i, s in reversed(list(enumerate(specs)))}
    opt, note = start.get("SOURCE_NEEDED", 0), start["SOURCE_MISSING_SCORED"]
    flags[:, :n_req] |= needed[:, :n_req]  # already set: the source is missing
    flags[:, opt:opt + len(plan.optional_sources)] = needed[:, n_req:]
    declined = np.hstack([flags[:, :n_req], needed[:, n_req:]])
    flags[:, note:note + len(sources)] = scored & ~declined  # the decline already names the source
    data_missing = flags[:, :n_req].any(axis=1) | needed[:, n_req:].any(axis=1)
    flags[:, start["GRADE_NOT_ELIGIBLE"]] &= ~data_missing
    return flags


def evaluate(plan: Plan, features: pd.DataFrame | Columns, pd_values: object = None) -> ProductResult:
    """Evaluate one product. `pd_values`: None, a number, an array aligned to the rows, or a Series
    indexed by credit code (from the risk model); NaN = no PD for that enterprise."""
    cols = features if isinstance(features, Columns) else extract(
        features, plan.fields, plan.required_sources + plan.optional_sources)
    n = cols.n
    any_pd = pd_values is not None
    pdv = _pd_array(pd_values, cols)
    specs, decline_cols = reason_specs(plan)
    flags: list[np.ndarray] = []  # column blocks, in the order of `specs`

    flags += [~cols.has[src] for src in plan.required_sources]

    # hard gates
    gate_passed = np.ones((n, len(plan.gates)), dtype=bool)
    for gi, gate in enumerate(plan.gates):
        results = [_condition(c, cols.values[c.field]) for c in gate.conditions]
        ok = results[0]
        for r in results[1:]:
            ok = (ok | r) if gate.any_of else (ok & r)
        gate_passed[:, gi] = ok
    flags.append(~gate_passed)

    # indicator points, in integer cents of a point, all indicators at once
    m = plan.matrix
    k = len(plan.indicators)
    if n <= SMALL_BATCH:  # few rows: numpy call overhead dominates, score all indicators together
        values = np.column_stack([cols.values[f] for f in m.fields]) if k else np.zeros((n, 0))
        frac = m.fractions(values)
    else:  # many rows: one contiguous column per indicator (same formulas, same results)
        frac = np.empty((n, k), order="F")
        for j, ind in enumerate(plan.indicators):
            frac[:, j] = ind.fraction(cols.values[ind.field])
    missing = np.isnan(frac)
    frac = np.where(missing, m.missing_fraction, frac)
    flags.append(missing)
    points = np.rint(frac * m.weight_cents).astype(np.int64)
    dims = np.add.reduceat(points, plan.dimension_starts, axis=1) if k else np.zeros((n, 0), np.int64)
    index_cents = points.sum(axis=1)

    # segment (stage): by a numeric field's edges, or by membership of the value in a group
    if plan.segment_field is not None:
        sv = cols.values[plan.segment_field]
        if plan.segment_groups is not None:
            segment = np.full(n, -1, dtype=np.intp)
            for k in range(len(plan.segment_groups) - 1, -1, -1):  # the first group holding the value
                segment = np.where(np.isin(sv, plan.segment_groups[k]), k, segment)
            seg_missing = segment < 0
        else:
            seg_missing = np.isnan(sv)
            segment = np.searchsorted(plan.segment_edges, sv, side="right").astype(np.intp)
        if plan.segment_missing_first:
            segment = np.where(seg_missing, 0, segment)
        else:
            segment = np.where(seg_missing, -1, segment)
            flags.append(seg_missing[:, None])
    else:
        segment = np.zeros(n, dtype=np.intp)
    seg_idx = np.maximum(segment, 0)

    # grade: cut-offs (absolute, calibrated by rank, or each stage's own), or the official class when present
    if plan.segment_cut_cents is not None:
        grade = len(plan.grades) - (index_cents[:, None] >= plan.segment_cut_cents[seg_idx]).sum(axis=1)
    else:
        grade = len(plan.grades) - np.searchsorted(plan.cut_cents[::-1], index_cents, side="right")
    grade_official = np.zeros(n, dtype=bool)
    if plan.official_field is not None and plan.official_to_grade is not None:
        off = cols.values[plan.official_field]
        grade_official = ~np.isnan(off)
        grade = np.where(grade_official, plan.official_to_grade[np.where(grade_official, off, 0).astype(np.intp)],
                         grade)
    grade = grade.astype(np.intp)
    grade_ok = plan.grade_eligible[grade]
    flags.append(~grade_ok[:, None])

    # limit: min(caps, bases), each x the coefficients that apply to it (capped), PD-scaled, rounded down;
    # the tightest candidate is the binding one (named in the reasons with its amount)
    coefs = [(c, c.factor(cols.values[c.field])) for c in plan.coefficients]

    def coefficient(target: str) -> np.ndarray | float:
        factors = [f for c, f in coefs if c.applies_to is None or target in c.applies_to]
        if not factors:
            return 1.0
        out = factors[0]
        for f in factors[1:]:
            out = out * f
        return np.minimum(out, plan.coefficient_cap)

    base_limit = np.minimum(plan.cap_by_grade[grade] * coefficient("grade_cap"),
                            plan.cap_by_segment[seg_idx] * coefficient("segment_cap"))
    binding = np.full(n, -1, dtype=np.intp)  # the base that bound the limit; -1 = a cap
    for bi, b in enumerate(plan.bases):
        v = _coalesce(cols, b.fields)
        base_missing = np.isnan(v)
        flags.append(base_missing[:, None])
        candidate = b.share * v * b.factor_by_grade[grade] * coefficient(b.code)
        tighter = ~base_missing & (candidate < base_limit)
        binding = np.where(tighter, bi, binding)
        base_limit = np.where(tighter, candidate, base_limit)
    binding_cny = _round_down(np.minimum(base_limit, plan.max_limit), plan.round_down_to)
    limit = base_limit
    limit = np.minimum(limit, plan.max_limit)
    has_pd = ~np.isnan(pdv) if any_pd else np.zeros(n, dtype=bool)
    if plan.pd_full_until is not None and any_pd:
        span = plan.max_pd - plan.pd_full_until
        t = np.minimum(np.maximum((pdv - plan.pd_full_until) / span, 0.0), 1.0)
        limit = np.where(has_pd, limit * (1.0 - t * (1.0 - plan.pd_factor_at_max)), limit)
    limit = _round_down(limit, plan.round_down_to)

    so_far = np.hstack([f if f.ndim == 2 else f[:, None] for f in flags])
    declined_so_far = so_far[:, decline_cols[:so_far.shape[1]]].any(axis=1)
    pd_over = has_pd & (np.where(has_pd, pdv, 0.0) > plan.max_pd) if any_pd else has_pd
    below_min = ~declined_so_far & ~pd_over & (limit < plan.min_limit)
    eligible = ~(declined_so_far | pd_over | below_min)
    binding = np.where(declined_so_far | pd_over, -1, binding)  # no limit was computed: nothing bound it
    bound_by = binding[:, None] == np.arange(len(plan.bases))[None, :]
    reason_flags = np.hstack([so_far, pd_over[:, None], (below_min & (binding < 0))[:, None],
                              below_min[:, None] & bound_by, eligible[:, None] & bound_by,
                              np.zeros((n, len(plan.optional_sources) + len(_plan_sources(plan))), dtype=bool)])
    reason_flags = _one_reason_per_source(plan, cols, reason_flags)

    # rate band and point rate (basis points) per collateral option; PD places the point rate in the band
    p0, p1 = plan.pd_range
    if any_pd:
        placed = np.minimum(np.maximum((pdv - p0) / (p1 - p0), 0.0), 1.0)
        position = np.where(has_pd, placed, plan.position_without_pd)
    else:
        position = plan.position_without_pd
    subsidy_share = np.zeros(n)
    subsidy_points = np.zeros(n, dtype=np.int64)
    decided = np.zeros(n, dtype=bool)
    for sub in plan.subsidies:  # the first subsidy whose conditions hold
        applies = ~decided & _all(sub.conditions, cols, n)
        subsidy_share = np.where(applies, sub.share, subsidy_share)
        subsidy_points = np.where(applies, sub.points_bp, subsidy_points)
        decided |= applies
    none = np.int64(-1)
    terms = []
    for opt in plan.options:
        lo = opt.rate_lo_bp[seg_idx, grade]
        hi = opt.rate_hi_bp[seg_idx, grade]
        rate = np.rint(lo + (hi - lo) * position).astype(np.int64)
        fee = np.where(_all(opt.fee_conditions, cols, n), opt.fee_bp[grade], 0)
        subsidy = subsidy_bp(rate, subsidy_share, subsidy_points)
        offer = eligible & ((lo >= 0) | (plan.definition.overlay is not None))  # an overlay has no band
        lo, hi, rate = (np.where(offer, x, none) for x in (lo, hi, rate))
        fee, subsidy = (np.where(offer, x, 0) for x in (fee, subsidy))
        terms.append((offer, lo, hi, rate, fee, subsidy, np.where(offer, rate + fee - subsidy, none)))
    eligible, lo, hi, rate, fee, subsidy, all_in = terms[0]
    limit = np.where(eligible, limit, 0.0)
    option_terms = np.stack([np.column_stack(t[1:]) for t in terms], axis=1)  # [n, option, 6]

    return ProductResult(
        plan=plan, columns=cols, index=cols.index, eligible=eligible, reason_specs=specs,
        reason_flags=reason_flags,
        gate_passed=gate_passed, points_cents=points, dimension_cents=dims, index_cents=index_cents,
        grade=grade, grade_official=grade_official, segment=segment, limit_cny=limit,
        rate_lo_bp=lo, rate_hi_bp=hi, rate_bp=rate, fee_bp=fee, subsidy_bp=subsidy, all_in_bp=all_in,
        pd=pdv, option_terms=option_terms, binding_base=binding, binding_cny=binding_cny,
        subsidy_share=subsidy_share, subsidy_points_bp=subsidy_points,
    )


def subsidy_bp(rate_bp: np.ndarray, share: np.ndarray | float, points_bp: np.ndarray | int) -> np.ndarray:
    """The interest subsidy of a point rate (bp): a share of the interest plus fixed points, never more than
    the interest, so the subsidised rate stays within [0, rate]. The one rule (quotes and overlays)."""
    return np.minimum(np.rint(rate_bp * share).astype(np.int64) + points_bp, np.maximum(rate_bp, 0))


def _round_down(cny: np.ndarray, step: float) -> np.ndarray:
    return np.floor(np.maximum(cny, 0.0) / step + 1e-9) * step


def _next_grade(plan: Plan, cols: Columns, points: np.ndarray, index_cents: np.ndarray,
                grade: np.ndarray, official: np.ndarray, segment: np.ndarray | None = None
                ) -> dict[str, np.ndarray]:
    """Smallest single changes (share of an indicator's scoring range) that lift the grade one step."""
    n, k = points.shape
    target = np.where((grade > 0) & ~official, grade - 1, -1).astype(np.intp)
    if plan.segment_cut_cents is not None and segment is not None:  # each stage's own cut-offs
        cuts = plan.segment_cut_cents[np.maximum(segment, 0), np.maximum(target, 0)]
    else:
        cuts = plan.cut_cents[np.maximum(target, 0)]
    needed = np.where(target >= 0, cuts - index_cents, 0)
    to = np.full((n, k), np.nan, order="F")
    gain = np.zeros((n, k), dtype=np.int64, order="F")
    capacity = np.zeros(n, dtype=np.int64)
    for j, ind in enumerate(plan.indicators):
        if not ind.changeable:
            continue
        cur = points[:, j]
        capacity += ind.weight_cents - cur
        want = cur + needed  # cents this indicator must reach alone
        ok = (target >= 0) & (want <= ind.weight_cents)
        w = ind.weight_cents
        if ind.kind == "benchmark":
            # smallest fraction f with rint(f * w) >= want, then back to a value
            f = np.minimum(np.maximum((want - 0.5 + 1e-6) / w, 0.0), 1.0)
            span = ind.cap * (ind.benchmark - ind.zero_at)
            value = ind.zero_at + f * span
            # a readable target: rounded to the unit's step (else 4 significant digits of the scoring
            # range), the helpful way
            step = hint_step(plan, ind.unit) or 10.0 ** (np.floor(np.log10(abs(span))) - 3)
            value = (np.ceil(value / step) if span > 0 else np.floor(value / step)) * step
            got = want
        elif ind.kind == "bins":
            bin_cents = np.rint(ind.table * w).astype(np.int64)
            if ind.higher_is_better:
                b = np.searchsorted(bin_cents, want, side="left")  # first bin reaching `want`
                value = ind.edges[np.clip(b - 1, 0, len(ind.edges) - 1)]
                ok &= b >= 1
            else:  # lower is better: the highest bin still reaching `want`; value just under its edge
                b = np.searchsorted(-bin_cents, -want, side="right") - 1
                value = ind.edges[np.clip(b, 0, len(ind.edges) - 1)]
                ok &= (b >= 0) & (b < len(ind.edges))
            got = bin_cents[np.clip(b, 0, len(bin_cents) - 1)]
        elif ind.kind == "categorical":
            cat_cents = np.rint(ind.table * w).astype(np.int64)
            order = np.argsort(cat_cents, kind="stable")
            pos = np.searchsorted(cat_cents[order], want, side="left")
            pick = order[np.clip(pos, 0, len(order) - 1)]
            value = pick.astype(np.float64)  # a category code
            got = cat_cents[pick]
            ok &= got >= want
        else:  # flag
            true_cents = int(round(max(ind.true_score, ind.false_score) * w))
            value = np.full(n, 1.0 if ind.true_score >= ind.false_score else 0.0)
            got = np.full(n, true_cents)
            ok &= true_cents >= want
        if (segment is not None and plan.segment_cut_cents is not None and ind.field == plan.segment_field
                and plan.segment_edges.size):
            # each stage grades on its own cut-offs: a change must keep the enterprise in its stage
            ok &= np.searchsorted(plan.segment_edges, value, side="right") == segment
        if ind.kind in ("benchmark", "bins"):
            # a change the firm can make: within the relative bound of today's value (or one step from
            # zero); a missing value is never a starting point ("supply the data" is said instead)
            now = cols.values[ind.field]
            bound = np.maximum(plan.definition.hints.max_relative_change * np.abs(now),
                               hint_step(plan, ind.unit) or 0.0)
            ok &= ~np.isnan(now) & (np.abs(value - now) <= bound)
        else:
            ok &= ~np.isnan(cols.values[ind.field])
        to[:, j] = np.where(ok, value, np.nan)
        gain[:, j] = np.where(ok, got - cur, 0)
    # order by share of the indicator's range the change covers (unit-free "smallest change")
    effort = np.where(np.isnan(to), np.inf, gain / np.maximum(plan.max_cents, 1)[None, :])
    order = np.argsort(effort, axis=1, kind="stable")[:, :NEXT_GRADE_OPTIONS]
    order = np.where(np.isfinite(np.take_along_axis(effort, order, axis=1)), order, -1)
    return dict(next_grade=target, needed_cents=needed, option_order=order, option_to=to,
                option_gain_cents=gain, reachable=(target >= 0) & (capacity >= needed))


def all_fields(plans: Sequence[Plan]) -> tuple[list[str], list[str]]:
    fields = list(dict.fromkeys(f for p in plans for f in p.fields))
    sources = list(dict.fromkeys(s for p in plans for s in p.required_sources + p.optional_sources))
    return fields, sources


def evaluate_all(plans: Mapping[str, Plan], features: pd.DataFrame | Columns,
                 pd_values: object | Mapping[str, object] = None) -> dict[str, ProductResult]:
    """Evaluate several products, extracting the features once. `pd_values` may be one PD for all
    products or a mapping product code -> PD."""
    if isinstance(features, Columns):
        cols = features
    else:
        fields, sources = all_fields(list(plans.values()))
        cols = extract(features, fields, sources)
    out = {}
    for code, plan in plans.items():
        p = pd_values.get(code) if isinstance(pd_values, Mapping) else pd_values
        out[code] = evaluate(plan, cols, p)
    from scoring.overlay import apply_overlays  # here: scoring.overlay builds on this module's results

    return apply_overlays(out)


def evaluate_batch(plans: Mapping[str, Plan], features: pd.DataFrame, pd_values: object = None,
                   chunk_rows: int = 100_000, workers: int = 2) -> list[dict[str, ProductResult]]:
    """Whole-population run: extract once, evaluate chunks in threads (numpy releases the GIL).
    Returns one dict of results per chunk, in row order; memory stays bounded by the chunk size."""
    fields, sources = all_fields(list(plans.values()))
    cols = extract(features, fields, sources)
    pd_arr = None if pd_values is None or isinstance(pd_values, Mapping) else _pd_array(pd_values, cols)
    bounds = [(s, min(s + chunk_rows, cols.n)) for s in range(0, cols.n, chunk_rows)] or [(0, 0)]

    def run(b: tuple[int, int]) -> dict[str, ProductResult]:
        part = cols.take(slice(*b))
        p = None if pd_arr is None else pd_arr[b[0]:b[1]]
        return evaluate_all(plans, part, p)

    if workers <= 1 or len(bounds) == 1:
        return [run(b) for b in bounds]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(run, bounds))
