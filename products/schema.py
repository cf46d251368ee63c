"""The product definition schema (pydantic v2): a scorecard, its gates, limits and prices, without code.

Structure and types are checked by the models (unknown keys are errors: extra="forbid"); rules that
span several parts of a file (weights summing to the scale, grades named in caps, monotone tables,
fields existing in the features catalogue) are checked by `semantic_issues`, which returns each
problem with its path in the file, e.g. `dimensions.capability.indicators[2].weight`.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from products.fields import feature_catalogue

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
NonNeg = Annotated[float, Field(ge=0.0)]
Positive = Annotated[float, Field(gt=0.0)]
Code = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
ReasonCode = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]*$", max_length=64)]
SourcePolicy = Literal["required", "optional"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Text(Strict):
    zh: Annotated[str, Field(min_length=1)]
    en: Annotated[str, Field(min_length=1)]


Scalar = bool | float | str
Operator = Literal["eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "is_true", "is_false"]


class Condition(Strict):
    """One structured comparison `field op value`; what a missing value does is explicit."""

    field: str
    op: Operator
    value: Scalar | list[Scalar] | None = None
    on_missing: Literal["fail", "pass"] = "fail"

    @model_validator(mode="after")
    def _value_fits_operator(self) -> Condition:
        if self.op in ("is_true", "is_false"):
            if self.value is not None:
                raise ValueError(f"operator {self.op} takes no value")
        elif self.op in ("in", "not_in"):
            if not isinstance(self.value, list) or not self.value:
                raise ValueError(f"operator {self.op} needs a non-empty list value")
        elif self.value is None or isinstance(self.value, list):
            raise ValueError(f"operator {self.op} needs a single value")
        return self


class Gate(Strict):
    """A hard gate: all_of or any_of its conditions must hold, else no offer with `reason`."""

    code: Code
    reason: ReasonCode
    all_of: list[Condition] | None = None
    any_of: list[Condition] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> Gate:
        if (self.all_of is None) == (self.any_of is None):
            raise ValueError("a gate needs exactly one of all_of or any_of")
        if not (self.all_of or self.any_of):
            raise ValueError("a gate needs at least one condition")
        return self

    @property
    def conditions(self) -> list[Condition]:
        return self.all_of if self.all_of is not None else (self.any_of or [])


class BenchmarkScoring(Strict):
    """Value to benchmark, capped: fraction = clip((v - zero_at) / (benchmark - zero_at), 0, cap) / cap.

    Full points at zero_at + cap x (benchmark - zero_at). A benchmark under zero_at scores
    lower-is-better indicators (e.g. debt ratio).
    """

    kind: Literal["benchmark"]
    benchmark: float
    zero_at: float = 0.0
    cap: Annotated[float, Field(ge=1.0)] = 1.0

    @model_validator(mode="after")
    def _distinct(self) -> BenchmarkScoring:
        if self.benchmark == self.zero_at:
            raise ValueError("benchmark must differ from zero_at")
        return self


class BinScoring(Strict):
    """Bin table: value < edges[0] scores scores[0]; edges[i-1] <= value < edges[i] scores scores[i]."""

    kind: Literal["bins"]
    edges: Annotated[list[float], Field(min_length=1)]
    scores: list[Fraction]


class CategoricalScoring(Strict):
    kind: Literal["categorical"]
    scores: dict[str, Fraction]
    other: Fraction = 0.0  # a category not listed


class FlagScoring(Strict):
    kind: Literal["flag"]
    true_score: Fraction = 1.0
    false_score: Fraction = 0.0


Scoring = Annotated[
    BenchmarkScoring | BinScoring | CategoricalScoring | FlagScoring, Field(discriminator="kind")
]


class Indicator(Strict):
    code: Code
    name: Text
    field: str
    weight: Positive  # the maximum points
    scoring: Scoring
    on_missing: Literal["zero", "score", "ineligible"]
    missing_score: Fraction | None = None  # fraction of the weight, with on_missing: score
    changeable: bool = True  # may appear in "how to reach the next grade"
    unit: str | None = None

    @model_validator(mode="after")
    def _missing_score(self) -> Indicator:
        if (self.on_missing == "score") != (self.missing_score is not None):
            raise ValueError("missing_score is required with on_missing: score, and only then")
        return self


class Dimension(Strict):
    name: Text
    weight: Positive
    indicators: Annotated[list[Indicator], Field(min_length=1)]


class GradeCut(Strict):
    grade: Annotated[str, Field(min_length=1, max_length=8)]
    min_index: NonNeg
    name: Text | None = None


class Grading(Strict):
    """Grades best first. cutoffs: absolute index cut-offs. rank: cut-offs set by the share of a
    reference population in each grade (calibrated, the min_index values are the defaults until then).
    official_field: use the government's own class when the enterprise has one."""

    method: Literal["cutoffs", "rank"] = "cutoffs"
    grades: Annotated[list[GradeCut], Field(min_length=1)]
    eligible: Annotated[list[str], Field(min_length=1)]
    rank_shares: list[Fraction] | None = None
    official_field: str | None = None


class Segments(Strict):
    """Stages by a numeric field, smallest first (e.g. tax_credit's four sales stages)."""

    field: str
    edges: Annotated[list[float], Field(min_length=1)]
    labels: list[Code]
    names: dict[str, Text]
    on_missing: Literal["ineligible", "first"] = "ineligible"


class LimitBase(Strict):
    """A limit candidate: share x the first present field (x the grade factor when given)."""

    code: Code
    name: Text
    fields: Annotated[list[str], Field(min_length=1)]
    share: Positive
    factor_by_grade: dict[str, NonNeg] | None = None
    on_missing: Literal["skip", "ineligible"] = "ineligible"


class CoefficientBins(Strict):
    kind: Literal["bins"]
    edges: Annotated[list[float], Field(min_length=1)]
    factors: list[Positive]


class CoefficientFlag(Strict):
    kind: Literal["flag"]
    true_factor: Positive
    false_factor: Positive = 1.0


class Coefficient(Strict):
    """A multiplicative limit coefficient (e.g. new_villager's in-locality factors)."""

    code: Code
    name: Text
    field: str
    scoring: Annotated[CoefficientBins | CoefficientFlag, Field(discriminator="kind")]
    on_missing: Positive = 1.0


class PdLimitScaling(Strict):
    """Limit x 1 up to full_until_pd, then linearly down to factor_at_max_pd at the product's max PD."""

    full_until_pd: Fraction
    factor_at_max_pd: Fraction


class LimitRule(Strict):
    max_cny: NonNeg
    cap_by_grade: dict[str, NonNeg] | None = None
    cap_by_segment: dict[str, NonNeg] | None = None
    bases: list[LimitBase] = []
    coefficients: list[Coefficient] = []
    coefficient_cap: Annotated[float, Field(ge=1.0)] = 1.0
    round_down_to: Positive = 10_000
    min_cny: NonNeg = 10_000
    pd_scaling: PdLimitScaling | None = None


Band = Annotated[list[float], Field(min_length=2, max_length=2)]


class RateRule(Strict):
    """Band = reference rate + [low, high] spread (percentage points) by grade or by segment x grade,
    clipped to [floor, ceiling]. PD places the point rate: pd_range[0] -> low end, pd_range[1] -> high."""

    reference: Literal["lpr_1y", "bank_credit_price"]
    spread_by_grade: dict[str, Band] | None = None
    spread_by_cell: dict[str, dict[str, Band]] | None = None
    floor: NonNeg
    ceiling: Positive
    position_without_pd: Fraction = 0.5
    pd_range: Band | None = None  # default [0, max_pd]


class Guarantee(Strict):
    fee_pct: NonNeg | None = None
    fee_pct_by_grade: dict[str, NonNeg] | None = None
    max_fee_pct: NonNeg | None = None
    guarantor: Text | None = None


class Subsidy(Strict):
    share_of_interest: Fraction
    note: Text


class RiskCompensation(Strict):
    loss_share: Fraction
    cap_share_of_balance: Fraction
    note: Text


class Service(Strict):
    promise: Text
    contact_days: Annotated[int, Field(ge=0)] | None = None
    working_days: bool = False
    disbursement_days: Annotated[int, Field(ge=0)] | None = None
    green_channel: bool = False  # a request within the model limit is fast-tracked


class Overlay(Strict):
    """A programme that adjusts other products' offers instead of making its own (e.g. green finance):
    its own scorecard and grade set, per grade, a factor on the base product's limit and a cut of its
    rate in basis points, within the policy maxima the file declares. It has no limit or rate of its own."""

    base_products: Annotated[list[Code], Field(min_length=1)]
    limit_uplift_by_grade: dict[str, Annotated[float, Field(ge=1.0)]]  # x the base limit
    rate_cut_bp_by_grade: dict[str, Annotated[int, Field(ge=0)]]  # basis points off the base rate
    max_limit_uplift: Annotated[float, Field(ge=1.0, le=10.0)]  # policy maximum of the factor
    max_rate_cut_bp: Annotated[int, Field(ge=0, le=1000)]  # policy maximum of the cut
    min_rate_pct: Annotated[float, Field(ge=0.0, le=30.0)]  # the cut never takes a rate under this
    max_limit_cny: NonNeg | None = None  # the uplifted limit never above this


# an overlay's own (unused) terms: no limit, no rate band
OVERLAY_LIMIT = {"max_cny": 0, "min_cny": 0}
OVERLAY_RATE = {"reference": "lpr_1y", "floor": 0, "ceiling": 30}


class Hints(Strict):
    """"How to reach the next grade": a change is suggested only within `max_relative_change` of the
    current value (or one rounding step from zero), its target rounded to a step per indicator unit
    (`round_to`, over the defaults of `scoring.engine.HINT_STEPS`, e.g. CNY 1,000, one patent)."""

    max_relative_change: Annotated[float, Field(gt=0.0, le=100.0)] = 0.5
    round_to: dict[str, Positive] = {}


class ProductDefinition(Strict):
    code: Code
    name: Text
    version: Annotated[str, Field(min_length=1, max_length=32)]
    effective_date: dt.date
    description: Text | None = None
    collateral: Literal["unsecured", "guaranteed", "secured"] = "unsecured"
    scale: Positive
    max_pd: Annotated[float, Field(gt=0.0, le=1.0)]
    quote_valid_days: Annotated[int, Field(ge=1, le=366)] = 30
    sources: dict[str, SourcePolicy]
    gates: list[Gate] = []
    dimensions: Annotated[dict[Code, Dimension], Field(min_length=1)]
    grading: Grading
    segments: Segments | None = None
    limit: LimitRule
    rate: RateRule
    guarantee: Guarantee = Guarantee()
    subsidy: Subsidy | None = None
    risk_compensation: RiskCompensation | None = None
    service: Service
    platform_fields: list[str] | None = None  # what the platform role may see; None = the whole quote
    hints: Hints = Hints()
    reasons: dict[ReasonCode, Text] = {}
    overlay: Overlay | None = None

    @model_validator(mode="before")
    @classmethod
    def _overlay_terms(cls, data: object) -> object:
        """An overlay adjusts its base products' limit and rate: it writes neither of its own."""
        if isinstance(data, dict) and data.get("overlay") is not None:
            data = {"limit": OVERLAY_LIMIT, "rate": OVERLAY_RATE, **data}
        return data

    def indicators(self) -> Iterator[tuple[str, int, Indicator]]:
        for dim_code, dim in self.dimensions.items():
            for i, ind in enumerate(dim.indicators):
                yield dim_code, i, ind

    @property
    def grade_names(self) -> list[str]:
        return [g.grade for g in self.grading.grades]


# --- rules spanning several parts of a file -------------------------------------------------------

TOLERANCE = 1e-6


def _is_monotone(values: list[float]) -> bool:
    up = all(b >= a for a, b in zip(values, values[1:], strict=False))
    down = all(b <= a for a, b in zip(values, values[1:], strict=False))
    return up or down


def semantic_issues(d: ProductDefinition, known_reasons: set[str] = frozenset()) -> list[tuple[str, str]]:
    """Every cross-field problem as (path in the file, message); empty when the definition is sound."""
    issues: list[tuple[str, str]] = []
    add = issues.append
    catalogue = feature_catalogue()
    grades = d.grade_names
    reasons = set(known_reasons) | set(d.reasons)

    def check_field(path: str, name: str, kinds: tuple[str, ...] | None = None) -> None:
        info = catalogue.get(name)
        if info is None:
            add((path, f"unknown feature field {name!r} (not a source field, has_<source> flag or "
                       "derived indicator)"))
            return
        if kinds and info.kind not in kinds:
            add((path, f"field {name!r} is {info.kind}, expected {' or '.join(kinds)}"))
        for src in info.sources:
            if src not in d.sources:
                add((path, f"field {name!r} comes from source {src!r}, which is not declared under "
                           "`sources` (declare it required or optional)"))

    for src in d.sources:
        if f"has_{src}" not in catalogue:
            add((f"sources.{src}", f"unknown source {src!r}"))

    # gates
    for gi, gate in enumerate(d.gates):
        if gate.reason not in reasons:
            add((f"gates[{gi}].reason", f"reason code {gate.reason!r} is not in the reason catalogue"))
        form = "all_of" if gate.all_of is not None else "any_of"
        for ci, cond in enumerate(gate.conditions):
            path = f"gates[{gi}].{form}[{ci}]"
            check_field(f"{path}.field", cond.field)
            info = catalogue.get(cond.field)
            if info is None:
                continue
            values = cond.value if isinstance(cond.value, list) else [cond.value]
            if cond.op in ("is_true", "is_false") and info.kind != "bool":
                add((f"{path}.op", f"{cond.op} needs a bool field, {cond.field!r} is {info.kind}"))
            elif info.kind == "enum" and cond.op not in ("is_true", "is_false"):
                if cond.op not in ("eq", "ne", "in", "not_in"):
                    add((f"{path}.op", f"operator {cond.op} is not defined for enum field {cond.field!r}"))
                bad = [v for v in values if v not in info.choices]
                if bad:
                    add((f"{path}.value", f"{bad} not among {list(info.choices)}"))
            elif info.kind == "number" and cond.op not in ("is_true", "is_false"):
                if any(isinstance(v, bool) or not isinstance(v, int | float) for v in values):
                    add((f"{path}.value", f"numeric field {cond.field!r} needs numeric values"))
            elif info.kind == "bool" and cond.op not in ("is_true", "is_false", "eq", "ne"):
                add((f"{path}.op", f"use is_true / is_false for bool field {cond.field!r}"))

    # dimensions and indicators
    dim_total = sum(dim.weight for dim in d.dimensions.values())
    if not math.isclose(dim_total, d.scale, abs_tol=TOLERANCE):
        add(("dimensions", f"dimension weights sum to {dim_total:g}, expected the scale {d.scale:g}"))
    seen: dict[str, str] = {}
    for dim_code, dim in d.dimensions.items():
        total = sum(ind.weight for ind in dim.indicators)
        if not math.isclose(total, dim.weight, abs_tol=TOLERANCE):
            add((f"dimensions.{dim_code}.indicators",
                 f"indicator weights sum to {total:g}, expected the dimension weight {dim.weight:g}"))
        for i, ind in enumerate(dim.indicators):
            path = f"dimensions.{dim_code}.indicators[{i}]"
            if ind.code in seen:
                add((f"{path}.code", f"indicator code {ind.code!r} already used at {seen[ind.code]}"))
            seen[ind.code] = path
            if round(ind.weight * 100) != ind.weight * 100:
                add((f"{path}.weight", "weights have at most 2 decimals (points are exact to 0.01)"))
            s = ind.scoring
            kinds = {"benchmark": ("number",), "bins": ("number",), "categorical": ("enum",),
                     "flag": ("bool",)}[s.kind]
            check_field(f"{path}.field", ind.field, kinds)
            if isinstance(s, BinScoring):
                _check_bins(issues, f"{path}.scoring", s.edges, s.scores, "scores")
                if not math.isclose(max(s.scores), 1.0):
                    add((f"{path}.scoring.scores", "the best bin must score 1 (the weight is the maximum)"))
            elif isinstance(s, CategoricalScoring):
                info = catalogue.get(ind.field)
                if info is not None:
                    bad = [c for c in s.scores if c not in info.choices]
                    if bad:
                        add((f"{path}.scoring.scores", f"{bad} not among {list(info.choices)}"))
                if not math.isclose(max([*s.scores.values(), s.other]), 1.0):
                    add((f"{path}.scoring.scores", "the best category must score 1"))
            elif isinstance(s, FlagScoring) and not math.isclose(max(s.true_score, s.false_score), 1.0):
                add((f"{path}.scoring", "true_score or false_score must be 1"))

    # grading
    g = d.grading
    if len(set(grades)) != len(grades):
        add(("grading.grades", "grade names must be unique"))
    mins = [c.min_index for c in g.grades]
    for i in range(1, len(mins)):
        if not mins[i] < mins[i - 1]:
            add((f"grading.grades[{i}].min_index",
                 f"cut-offs must be strictly decreasing from the best grade: {mins[i]:g} is not under "
                 f"{mins[i - 1]:g}"))
    if mins[-1] != 0:
        add((f"grading.grades[{len(mins) - 1}].min_index", "the lowest grade must start at 0"))
    if mins[0] > d.scale:
        add(("grading.grades[0].min_index", f"cut-off {mins[0]:g} above the scale {d.scale:g}"))
    for i, e in enumerate(g.eligible):
        if e not in grades:
            add((f"grading.eligible[{i}]", f"unknown grade {e!r}; grades are {grades}"))
    if g.method == "rank":
        if g.rank_shares is None or len(g.rank_shares) != len(grades):
            add(("grading.rank_shares", f"rank grading needs one share per grade ({len(grades)})"))
        elif not math.isclose(sum(g.rank_shares), 1.0, abs_tol=1e-9):
            add(("grading.rank_shares", f"shares sum to {sum(g.rank_shares):g}, expected 1"))
    elif g.rank_shares is not None:
        add(("grading.rank_shares", "rank_shares only apply with method: rank"))
    if g.official_field is not None:
        check_field("grading.official_field", g.official_field, ("enum",))
        info = catalogue.get(g.official_field)
        if info is not None and not set(info.choices) <= set(grades):
            add(("grading.official_field", f"official values {list(info.choices)} must all be grades"))

    # segments
    seg_labels: list[str] = []
    if d.segments is not None:
        s = d.segments
        seg_labels = s.labels
        check_field("segments.field", s.field, ("number",))
        if any(b <= a for a, b in zip(s.edges, s.edges[1:], strict=False)):
            add(("segments.edges", "edges must be strictly increasing"))
        if len(s.labels) != len(s.edges) + 1:
            add(("segments.labels", f"need {len(s.edges) + 1} labels for {len(s.edges)} edges"))
        if set(s.names) != set(s.labels):
            add(("segments.names", "one name per label, no others"))

    if d.overlay is not None:  # no limit, rate or fees of its own: the overlay's rules instead
        return issues + _overlay_issues(d, [x for x in grades if x in g.eligible])

    # limit
    lim = d.limit
    eligible_order = [x for x in grades if x in g.eligible]
    _check_by_grade(issues, "limit.cap_by_grade", lim.cap_by_grade, grades, eligible_order, "down")
    if lim.cap_by_segment is not None:
        if d.segments is None:
            add(("limit.cap_by_segment", "caps by segment need `segments`"))
        else:
            _check_keys(issues, "limit.cap_by_segment", lim.cap_by_segment, seg_labels)
            caps = [lim.cap_by_segment[x] for x in seg_labels if x in lim.cap_by_segment]
            if any(b < a for a, b in zip(caps, caps[1:], strict=False)):
                add(("limit.cap_by_segment", "caps must not decrease from the smallest to the largest stage"))
    if lim.cap_by_grade is None and lim.cap_by_segment is None and not lim.bases:
        add(("limit", "a limit needs a grade cap, a segment cap or a base"))
    for bi, base in enumerate(lim.bases):
        for fi, name in enumerate(base.fields):
            check_field(f"limit.bases[{bi}].fields[{fi}]", name, ("number",))
        _check_by_grade(issues, f"limit.bases[{bi}].factor_by_grade", base.factor_by_grade, grades,
                        eligible_order, "down")
    for ci, coef in enumerate(lim.coefficients):
        path = f"limit.coefficients[{ci}]"
        sc = coef.scoring
        if isinstance(sc, CoefficientBins):
            check_field(f"{path}.field", coef.field, ("number",))
            _check_bins(issues, f"{path}.scoring", sc.edges, sc.factors, "factors")
        else:
            check_field(f"{path}.field", coef.field, ("bool",))
    if lim.min_cny > lim.max_cny:
        add(("limit.min_cny", f"minimum {lim.min_cny:g} above the maximum {lim.max_cny:g}"))
    if lim.pd_scaling is not None and lim.pd_scaling.full_until_pd >= d.max_pd:
        add(("limit.pd_scaling.full_until_pd", f"must be under max_pd {d.max_pd:g}"))

    # rate
    r = d.rate
    if r.floor > r.ceiling:
        add(("rate.floor", f"floor {r.floor:g} above ceiling {r.ceiling:g}"))
    if (r.spread_by_grade is None) == (r.spread_by_cell is None):
        add(("rate", "give exactly one of spread_by_grade or spread_by_cell"))
    if r.spread_by_grade is not None:
        _check_bands(issues, "rate.spread_by_grade", r.spread_by_grade, eligible_order)
    if r.spread_by_cell is not None:
        if d.segments is None:
            add(("rate.spread_by_cell", "spreads by cell need `segments`"))
        else:
            _check_keys(issues, "rate.spread_by_cell", r.spread_by_cell, seg_labels)
            for seg, table in r.spread_by_cell.items():
                _check_bands(issues, f"rate.spread_by_cell.{seg}", table, eligible_order)
            # a bigger stage never prices higher in the same grade (monotone in taxable sales)
            for grade in eligible_order:
                for side in (0, 1):
                    vals = [r.spread_by_cell[s][grade][side] for s in seg_labels
                            if s in r.spread_by_cell and grade in r.spread_by_cell[s]]
                    if any(b > a for a, b in zip(vals, vals[1:], strict=False)):
                        add(("rate.spread_by_cell", f"grade {grade}: spreads must not rise with the stage"))
                        break
    if r.pd_range is not None:
        lo, hi = r.pd_range
        if not 0 <= lo < hi <= 1:
            add(("rate.pd_range", "need 0 <= low < high <= 1"))

    # fees
    gu = d.guarantee
    if gu.fee_pct is not None and gu.fee_pct_by_grade is not None:
        add(("guarantee", "give fee_pct or fee_pct_by_grade, not both"))
    if gu.fee_pct_by_grade is not None:
        _check_keys(issues, "guarantee.fee_pct_by_grade", gu.fee_pct_by_grade, grades)
        missing = [x for x in eligible_order if x not in gu.fee_pct_by_grade]
        if missing:
            add(("guarantee.fee_pct_by_grade", f"no fee for eligible grade(s) {missing}"))
    if gu.max_fee_pct is not None:
        fees = [gu.fee_pct] if gu.fee_pct is not None else list((gu.fee_pct_by_grade or {}).values())
        for fee in fees:
            if fee is not None and fee > gu.max_fee_pct:
                add(("guarantee", f"fee {fee:g}% above the maximum {gu.max_fee_pct:g}%"))

    if d.platform_fields is not None:
        allowed = {"product", "eligible", "reasons", "index", "grade", "tier", "segment", "product_version"}
        for i, f in enumerate(d.platform_fields):
            if f not in allowed:
                add((f"platform_fields[{i}]", f"{f!r} is not a quote field the platform may see; "
                                              f"choose from {sorted(allowed)}"))
    return issues


def _overlay_issues(d: ProductDefinition, eligible_order: list[str]) -> list[tuple[str, str]]:
    issues: list[tuple[str, str]] = []
    ov = d.overlay
    assert ov is not None
    if d.limit != LimitRule.model_validate(OVERLAY_LIMIT):
        issues.append(("limit", "an overlay has no limit of its own (it lifts its base products' limits): "
                                "leave `limit` out"))
    if d.rate != RateRule.model_validate(OVERLAY_RATE):
        issues.append(("rate", "an overlay has no rate of its own (it cuts its base products' rates): "
                               "leave `rate` out"))
    if d.code in ov.base_products:
        issues.append(("overlay.base_products", "an overlay cannot be its own base product"))
    if len(set(ov.base_products)) != len(ov.base_products):
        issues.append(("overlay.base_products", "a base product is named twice"))
    for key, cap, unit in (("limit_uplift_by_grade", ov.max_limit_uplift, "x"),
                           ("rate_cut_bp_by_grade", ov.max_rate_cut_bp, " bp")):
        table = getattr(ov, key)
        _check_by_grade(issues, f"overlay.{key}", table, d.grade_names, eligible_order, "down")
        for grade, value in table.items():
            if value > cap:
                issues.append((f"overlay.{key}.{grade}", f"{value:g}{unit} is above the policy maximum "
                                                         f"{cap:g}{unit} declared in the file"))
    return issues


def _check_keys(issues: list[tuple[str, str]], path: str, table: dict[str, object], allowed: list[str]) -> None:
    for key in table:
        if key not in allowed:
            issues.append((f"{path}.{key}", f"unknown key {key!r}; expected one of {allowed}"))


def _check_by_grade(issues: list[tuple[str, str]], path: str, table: dict[str, float] | None,
                    grades: list[str], eligible_order: list[str], direction: str) -> None:
    """Values per grade: every eligible grade present, never better for a worse grade."""
    if table is None:
        return
    _check_keys(issues, path, table, grades)
    missing = [x for x in eligible_order if x not in table]
    if missing:
        issues.append((path, f"no value for eligible grade(s) {missing}"))
    vals = [table[x] for x in eligible_order if x in table]
    if any(b > a for a, b in zip(vals, vals[1:], strict=False)):
        issues.append((path, "values must not increase from a better to a worse grade"))


def _check_bands(issues: list[tuple[str, str]], path: str, table: dict[str, list[float]],
                 eligible_order: list[str]) -> None:
    _check_keys(issues, path, table, eligible_order)
    for grade, (lo, hi) in table.items():
        if lo > hi:
            issues.append((f"{path}.{grade}", f"band low {lo:g} above high {hi:g}"))
    missing = [x for x in eligible_order if x not in table]
    if missing:
        issues.append((path, f"no band for eligible grade(s) {missing}"))
    bands = [table[x] for x in eligible_order if x in table]
    for side, label in ((0, "low"), (1, "high")):
        vals = [b[side] for b in bands]
        if any(b < a for a, b in zip(vals, vals[1:], strict=False)):
            issues.append((path, f"band {label} ends must not fall from a better to a worse grade"))


def _check_bins(issues: list[tuple[str, str]], path: str, edges: list[float], values: list[float],
                name: str) -> None:
    if any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
        issues.append((f"{path}.edges", "edges must be strictly increasing"))
    if len(values) != len(edges) + 1:
        issues.append((f"{path}.{name}", f"need {len(edges) + 1} {name} for {len(edges)} edges"))
    elif not _is_monotone(values):
        issues.append((f"{path}.{name}", f"{name} must be monotone (one business direction)"))
