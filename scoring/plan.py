"""Compile a product definition once into a numpy-friendly plan (pure: no I/O).

All money limits stay in CNY (float64); points are integer cents of a point (int64) so that the
points per indicator add up exactly to the index; rates and fees are integer basis points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from products.fields import feature_catalogue
from products.schema import (
    BenchmarkScoring,
    BinScoring,
    CategoricalScoring,
    CoefficientBins,
    FlagScoring,
    Guarantee,
    ProductDefinition,
    Text,
)
from scoring.columns import text_code


@dataclass(frozen=True)
class CompiledCondition:
    field: str
    op: str
    values: np.ndarray  # numeric (enum codes, 1.0/0.0 for bools)
    pass_when_missing: bool


@dataclass(frozen=True)
class CompiledSubsidy:
    share: float  # of the interest (0 when given in points)
    points_bp: int  # basis points off the rate (0 when given as a share)
    conditions: tuple[CompiledCondition, ...]  # all must hold


@dataclass(frozen=True)
class CompiledOption:
    """One collateral option's prices: its band per [segment, grade] and its fee per grade."""

    code: str
    name: Text
    rate_lo_bp: np.ndarray  # [segment, grade], -1 = no band
    rate_hi_bp: np.ndarray
    fee_bp: np.ndarray  # per grade
    fee_conditions: tuple[CompiledCondition, ...]  # the fee is charged only when all hold


@dataclass(frozen=True)
class CompiledGate:
    code: str
    reason: str
    any_of: bool
    conditions: tuple[CompiledCondition, ...]


@dataclass(frozen=True)
class CompiledIndicator:
    code: str
    name: Text
    dimension: int
    field: str
    weight_cents: int
    kind: str  # benchmark | bins | categorical | flag
    # benchmark
    zero_at: float = 0.0
    benchmark: float = 1.0
    cap: float = 1.0
    # bins: edges, fraction per bin; categorical: fraction per choice code
    edges: np.ndarray = field(default_factory=lambda: np.empty(0))
    table: np.ndarray = field(default_factory=lambda: np.empty(0))
    true_score: float = 1.0
    false_score: float = 0.0
    on_missing: str = "zero"
    missing_fraction: float = 0.0
    changeable: bool = True
    higher_is_better: bool = True
    unit: str | None = None
    choices: tuple[str, ...] = ()

    def fraction(self, v: np.ndarray) -> np.ndarray:
        """Share of the weight earned by each value; NaN where the value is missing."""
        if self.kind == "benchmark":
            x = (v - self.zero_at) / (self.benchmark - self.zero_at)
            return np.minimum(np.maximum(x, 0.0), self.cap) / self.cap  # NaN stays NaN
        if self.kind == "bins":
            out = self.table[np.searchsorted(self.edges, v, side="right")]
        elif self.kind == "categorical":
            out = self.table[np.where(np.isnan(v), 0, v).astype(np.intp)]
        else:
            out = np.where(v > 0.5, self.true_score, self.false_score)
        return np.where(np.isnan(v), np.nan, out)


@dataclass(frozen=True)
class CompiledBase:
    code: str
    name: Text
    fields: tuple[str, ...]
    share: float
    factor_by_grade: np.ndarray  # per grade index (0 where not eligible)
    skip_when_missing: bool


@dataclass(frozen=True)
class CompiledCoefficient:
    code: str
    name: Text
    field: str
    edges: np.ndarray | None
    factors: np.ndarray  # per bin, or [false, true] for a flag
    on_missing: float
    applies_to: tuple[str, ...] | None = None  # grade_cap, segment_cap, base codes; None = the whole limit

    def factor(self, v: np.ndarray) -> np.ndarray:
        if self.edges is not None:
            out = self.factors[np.searchsorted(self.edges, v, side="right")]
        else:
            out = np.where(v > 0.5, self.factors[1], self.factors[0])
        return np.where(np.isnan(v), self.on_missing, out)


@dataclass(frozen=True)
class IndicatorMatrix:
    """All indicators of a plan scored together on an [n, k] value matrix: a handful of numpy calls
    per kind instead of several per indicator (this is what keeps a single quote well under 2 ms)."""

    fields: tuple[str, ...]
    weight_cents: np.ndarray  # [k]
    missing_fraction: np.ndarray  # [k]
    ineligible_when_missing: np.ndarray  # bool [k]
    bench_idx: np.ndarray
    bench_zero: np.ndarray
    bench_span: np.ndarray  # benchmark - zero_at
    bench_cap: np.ndarray
    bins_idx: np.ndarray
    bins_edges: np.ndarray  # [kb, max edges], padded with +inf
    bins_table: np.ndarray  # [kb, max edges + 1]
    cat_idx: np.ndarray
    cat_table: np.ndarray  # [kc, max choices]
    flag_idx: np.ndarray
    flag_true: np.ndarray
    flag_false: np.ndarray

    def fractions(self, values: np.ndarray) -> np.ndarray:
        """Share of each weight earned, [n, k]; NaN where the value is missing."""
        frac = np.empty(values.shape)
        if self.bench_idx.size:
            x = (values[:, self.bench_idx] - self.bench_zero) / self.bench_span
            frac[:, self.bench_idx] = np.minimum(np.maximum(x, 0.0), self.bench_cap) / self.bench_cap
        if self.bins_idx.size:
            v = values[:, self.bins_idx]
            rank = (v[:, :, None] >= self.bins_edges[None, :, :]).sum(axis=2)
            frac[:, self.bins_idx] = self.bins_table[np.arange(self.bins_idx.size)[None, :], rank]
        if self.cat_idx.size:
            v = values[:, self.cat_idx]
            codes = np.where(np.isnan(v), 0, v).astype(np.intp)
            frac[:, self.cat_idx] = self.cat_table[np.arange(self.cat_idx.size)[None, :], codes]
        if self.flag_idx.size:
            frac[:, self.flag_idx] = np.where(values[:, self.flag_idx] > 0.5, self.flag_true, self.flag_false)
        return np.where(np.isnan(values), np.nan, frac)


def _indicator_matrix(indicators: tuple[CompiledIndicator, ...]) -> IndicatorMatrix:
    def idx(kind: str) -> np.ndarray:
        return np.array([j for j, i in enumerate(indicators) if i.kind == kind], dtype=np.intp)

    bench, bins, cat, flag = idx("benchmark"), idx("bins"), idx("categorical"), idx("flag")
    max_e = max([len(indicators[j].edges) for j in bins], default=0)
    edges = np.full((len(bins), max_e), np.inf)
    table = np.zeros((len(bins), max_e + 1))
    for r, j in enumerate(bins):
        e, t = indicators[j].edges, indicators[j].table
        edges[r, :len(e)] = e
        table[r, :len(t)] = t
    max_c = max([len(indicators[j].table) for j in cat], default=0)
    cat_table = np.zeros((len(cat), max_c))
    for r, j in enumerate(cat):
        cat_table[r, :len(indicators[j].table)] = indicators[j].table
    return IndicatorMatrix(
        fields=tuple(i.field for i in indicators),
        weight_cents=np.array([i.weight_cents for i in indicators], dtype=np.float64),
        missing_fraction=np.array([i.missing_fraction for i in indicators]),
        ineligible_when_missing=np.array([i.on_missing == "ineligible" for i in indicators], dtype=bool),
        bench_idx=bench,
        bench_zero=np.array([indicators[j].zero_at for j in bench]),
        bench_span=np.array([indicators[j].benchmark - indicators[j].zero_at for j in bench]),
        bench_cap=np.array([indicators[j].cap for j in bench]),
        bins_idx=bins, bins_edges=edges, bins_table=table,
        cat_idx=cat, cat_table=cat_table,
        flag_idx=flag,
        flag_true=np.array([indicators[j].true_score for j in flag]),
        flag_false=np.array([indicators[j].false_score for j in flag]),
    )


@dataclass(frozen=True, eq=False)  # identity hash: plans are cached per object
class Plan:
    definition: ProductDefinition
    code: str
    version: str
    reference_rate_name: str
    reference_rate_pct: float
    required_sources: tuple[str, ...]
    optional_sources: tuple[str, ...]
    fields: tuple[str, ...]  # every feature column the plan reads
    gates: tuple[CompiledGate, ...]
    indicators: tuple[CompiledIndicator, ...]
    matrix: IndicatorMatrix
    dimension_codes: tuple[str, ...]
    dimension_starts: np.ndarray  # first indicator of each dimension (indicators are grouped)
    max_cents: np.ndarray  # per indicator
    grades: tuple[str, ...]  # best first
    cut_cents: np.ndarray  # min index per grade in cents, best first
    cuts_calibrated: bool
    grade_eligible: np.ndarray  # bool per grade
    official_field: str | None
    official_to_grade: np.ndarray | None  # official choice code -> grade index
    segment_field: str | None
    segment_edges: np.ndarray
    segment_groups: tuple[np.ndarray, ...] | None  # value codes per label (membership segments)
    segment_cut_cents: np.ndarray | None  # [segment, grade] cut-offs when each stage grades on its own
    segment_labels: tuple[str, ...]
    segment_missing_first: bool
    cap_by_grade: np.ndarray  # CNY per grade (inf = no cap)
    cap_by_segment: np.ndarray  # CNY per segment (inf = no cap)
    bases: tuple[CompiledBase, ...]
    coefficients: tuple[CompiledCoefficient, ...]
    coefficient_cap: float
    max_limit: float
    min_limit: float
    round_down_to: float
    pd_full_until: float | None
    pd_factor_at_max: float
    max_pd: float
    rate_lo_bp: np.ndarray  # [segment, grade] annual rate in basis points, -1 = no band
    rate_hi_bp: np.ndarray
    position_without_pd: float
    pd_range: tuple[float, float]
    fee_bp: np.ndarray  # per grade (the main collateral option)
    options: tuple[CompiledOption, ...]  # collateral options, the main one first
    subsidies: tuple[CompiledSubsidy, ...]  # the first whose conditions hold applies
    reasons: dict[str, Text]


def _bp(pct: float) -> int:
    return int(round(pct * 100))


def _condition(cond, catalogue) -> CompiledCondition:  # noqa: ANN001 - schema Condition
    info = catalogue[cond.field]
    raw = cond.value if isinstance(cond.value, list) else [cond.value]
    if cond.op in ("is_true", "is_false"):
        values = np.empty(0)
    elif info.kind == "text":
        values = np.array([text_code(str(v)) for v in raw], dtype=np.float64)
    elif info.kind == "enum":
        values = np.array([info.choices.index(v) for v in raw], dtype=np.float64)
    else:
        values = np.array([float(v) for v in raw], dtype=np.float64)
    return CompiledCondition(cond.field, cond.op, values, cond.on_missing == "pass")


def _indicator(ind, dim: int, catalogue) -> CompiledIndicator:  # noqa: ANN001 - schema Indicator
    s = ind.scoring
    common = dict(
        code=ind.code, name=ind.name, dimension=dim, field=ind.field, weight_cents=int(round(ind.weight * 100)),
        kind=s.kind, on_missing=ind.on_missing, missing_fraction=ind.missing_score or 0.0,
        changeable=ind.changeable, unit=ind.unit,
    )
    if isinstance(s, BenchmarkScoring):
        return CompiledIndicator(**common, zero_at=s.zero_at, benchmark=s.benchmark, cap=s.cap,
                                 higher_is_better=s.benchmark > s.zero_at)
    if isinstance(s, BinScoring):
        return CompiledIndicator(**common, edges=np.array(s.edges, dtype=np.float64),
                                 table=np.array(s.scores, dtype=np.float64),
                                 higher_is_better=s.scores[-1] >= s.scores[0])
    if isinstance(s, CategoricalScoring):
        choices = catalogue[ind.field].choices
        table = np.array([s.scores.get(c, s.other) for c in choices], dtype=np.float64)
        return CompiledIndicator(**common, table=table, choices=choices)
    assert isinstance(s, FlagScoring)
    return CompiledIndicator(**common, true_score=s.true_score, false_score=s.false_score,
                             higher_is_better=s.true_score >= s.false_score)


def _fees(gu: Guarantee, gi: dict[str, int], n_grades: int) -> np.ndarray:
    fee = np.zeros(n_grades, dtype=np.int64)
    if gu.fee_pct is not None:
        fee[:] = _bp(gu.fee_pct)
    for g, v in (gu.fee_pct_by_grade or {}).items():
        fee[gi[g]] = _bp(v)
    return fee


def compile_plan(d: ProductDefinition, reference_rates: dict[str, float]) -> Plan:
    """A plan for one product under the given reference rates (annual %, e.g. {'lpr_1y': 3.0})."""
    catalogue = feature_catalogue()
    if d.rate.reference not in reference_rates:
        raise ValueError(f"{d.code}: no value for reference rate {d.rate.reference!r}")
    grades = tuple(d.grade_names)
    gi = {g: i for i, g in enumerate(grades)}
    n_grades = len(grades)
    eligible = np.array([g in d.grading.eligible for g in grades])

    fields: list[str] = []
    gates = []
    for gate in d.gates:
        conds = tuple(_condition(c, catalogue) for c in gate.conditions)
        fields += [c.field for c in conds]
        gates.append(CompiledGate(gate.code, gate.reason, gate.any_of is not None, conds))

    indicators = []
    starts = []
    for di, dim in enumerate(d.dimensions.values()):
        starts.append(len(indicators))
        for ind in dim.indicators:
            indicators.append(_indicator(ind, di, catalogue))
            fields.append(ind.field)

    official_to_grade = None
    if d.grading.official_field:
        fields.append(d.grading.official_field)
        choices = catalogue[d.grading.official_field].choices
        official_to_grade = np.array([gi[c] for c in choices], dtype=np.intp)

    seg = d.segments
    seg_labels: tuple[str, ...] = tuple(seg.labels) if seg else ("all",)
    segment_groups = None
    if seg:
        fields.append(seg.field)
        if seg.groups is not None:
            info = catalogue[seg.field]
            code = (lambda v: float(info.choices.index(v))) if info.kind == "enum" else text_code
            segment_groups = tuple(np.array([code(v) for v in seg.groups[label]], dtype=np.float64)
                                   for label in seg.labels)
    segment_cut_cents = None
    if d.grading.cutoffs_by_segment is not None:
        segment_cut_cents = np.array([[int(round(d.grading.cutoffs_by_segment[label][g] * 100)) for g in grades]
                                      for label in seg_labels], dtype=np.int64)

    lim = d.limit
    cap_by_grade = np.full(n_grades, np.inf)
    for g, v in (lim.cap_by_grade or {}).items():
        cap_by_grade[gi[g]] = v
    cap_by_segment = np.full(len(seg_labels), np.inf)
    for s, v in (lim.cap_by_segment or {}).items():
        cap_by_segment[seg_labels.index(s)] = v
    bases = []
    for b in lim.bases:
        factors = np.ones(n_grades)
        if b.factor_by_grade is not None:
            factors = np.array([b.factor_by_grade.get(g, 0.0) for g in grades])
        bases.append(CompiledBase(b.code, b.name, tuple(b.fields), b.share, factors, b.on_missing == "skip"))
        fields += b.fields
    coefficients = []
    for c in lim.coefficients:
        applies = tuple(c.applies_to) if c.applies_to is not None else None
        if isinstance(c.scoring, CoefficientBins):
            coefficients.append(CompiledCoefficient(c.code, c.name, c.field, np.array(c.scoring.edges),
                                                    np.array(c.scoring.factors), c.on_missing, applies))
        else:
            coefficients.append(CompiledCoefficient(c.code, c.name, c.field, None,
                                                    np.array([c.scoring.false_factor, c.scoring.true_factor]),
                                                    c.on_missing, applies))
        fields.append(c.field)

    r = d.rate
    ref = reference_rates[r.reference]
    tables = r.spread_by_cell or {"all": r.spread_by_grade or {}}
    options = []
    for opt in d.collateral_choices():
        floor = opt.rate_floor if opt.rate_floor is not None else r.floor
        lo = np.full((len(seg_labels), n_grades), -1, dtype=np.int64)
        hi = lo.copy()
        for si, label in enumerate(seg_labels):
            for g, (s_lo, s_hi) in tables.get(label, {}).items():
                # the band is clipped to [floor, ceiling]: no quote is ever under the option's floor
                lo[si, gi[g]] = _bp(min(max(ref + s_lo + opt.spread_shift_pp, floor), r.ceiling))
                hi[si, gi[g]] = _bp(min(max(ref + s_hi + opt.spread_shift_pp, floor), r.ceiling))
        gu = opt.guarantee or Guarantee()
        conds = tuple(_condition(c, catalogue) for c in gu.when)
        fields += [c.field for c in conds]
        options.append(CompiledOption(opt.code, opt.name, lo, hi, _fees(gu, gi, n_grades), conds))
    subsidies = []
    for sub in d.subsidy:
        conds = tuple(_condition(c, catalogue) for c in sub.when)
        fields += [c.field for c in conds]
        subsidies.append(CompiledSubsidy(sub.share_of_interest or 0.0, _bp(sub.points_pp or 0.0), conds))
    main = options[0]

    pd_range = tuple(r.pd_range) if r.pd_range else (0.0, d.max_pd)
    sources = tuple(d.sources)
    return Plan(
        definition=d, code=d.code, version=d.version,
        reference_rate_name=r.reference, reference_rate_pct=ref,
        required_sources=tuple(s for s in sources if d.sources[s] == "required"),
        optional_sources=tuple(s for s in sources if d.sources[s] == "optional"),
        fields=tuple(dict.fromkeys(fields)),
        gates=tuple(gates), indicators=tuple(indicators), matrix=_indicator_matrix(tuple(indicators)),
        dimension_codes=tuple(d.dimensions), dimension_starts=np.array(starts, dtype=np.intp),
        max_cents=np.array([i.weight_cents for i in indicators], dtype=np.int64),
        grades=grades,
        cut_cents=np.array([int(round(c.min_index * 100)) for c in d.grading.grades], dtype=np.int64),
        cuts_calibrated=False,
        grade_eligible=eligible,
        official_field=d.grading.official_field, official_to_grade=official_to_grade,
        segment_field=seg.field if seg else None,
        segment_edges=np.array(seg.edges if seg and seg.edges else [], dtype=np.float64),
        segment_groups=segment_groups, segment_cut_cents=segment_cut_cents,
        segment_labels=seg_labels, segment_missing_first=bool(seg and seg.on_missing == "first"),
        cap_by_grade=cap_by_grade, cap_by_segment=cap_by_segment,
        bases=tuple(bases), coefficients=tuple(coefficients), coefficient_cap=lim.coefficient_cap,
        max_limit=lim.max_cny, min_limit=lim.min_cny, round_down_to=lim.round_down_to,
        pd_full_until=lim.pd_scaling.full_until_pd if lim.pd_scaling else None,
        pd_factor_at_max=lim.pd_scaling.factor_at_max_pd if lim.pd_scaling else 1.0,
        max_pd=d.max_pd,
        rate_lo_bp=main.rate_lo_bp, rate_hi_bp=main.rate_hi_bp, position_without_pd=r.position_without_pd,
        pd_range=(float(pd_range[0]), float(pd_range[1])),
        fee_bp=main.fee_bp, options=tuple(options), subsidies=tuple(subsidies),
        reasons=dict(d.reasons),
    )


def with_rank_cutoffs(plan: Plan, index_cents: np.ndarray) -> Plan:
    """Set rank-graded cut-offs from a reference population's index (e.g. the whole region).

    The best grade takes the top `rank_shares[0]` of the population and so on; ties stay together
    (a cut-off is an index value), so one enterprise's grade is the same in a quote and in a batch.
    """
    g = plan.definition.grading
    if g.method != "rank" or g.rank_shares is None:
        raise ValueError(f"{plan.code}: grading is not by rank")
    values = np.sort(np.asarray(index_cents, dtype=np.int64))
    if values.size == 0:
        return plan
    cuts = []
    above = 0.0
    for share in g.rank_shares[:-1]:
        above += share
        q = int(math.floor((1.0 - above) * values.size))
        cuts.append(int(values[min(max(q, 0), values.size - 1)]))
    cuts.append(0)
    # keep strictly decreasing cut-offs even on a flat population
    for i in range(len(cuts) - 2, -1, -1):
        cuts[i] = max(cuts[i], cuts[i + 1] + 1)
    return replace(plan, cut_cents=np.array(cuts, dtype=np.int64), cuts_calibrated=True)
