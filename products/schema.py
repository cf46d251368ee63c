"""The product definition schema (pydantic v2): a scorecard, its gates, limits and prices, without code.

Structure and types are checked by the models (unknown keys are errors: extra="forbid"); rules that
span several parts of a file (weights summing to the scale, grades named in caps, monotone tables,
fields existing in the features catalogue) are checked by `semantic_issues`, which returns each
problem with its path in the file, e.g. `dimensions.capability.indicators[2].weight`.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from products.fields import feature_catalogue


def _unit(unit: str, **bounds: float) -> Any:
    """A number's unit (shown in the JSON schema and docs/products.md) and its bounds."""
    return Field(json_schema_extra={"unit": unit}, **bounds)


# Units, one per kind of number (docs/products.md lists every key with its unit):
#   fraction: 0..1 (0.4 = 40%); percent: annual %, 3.2 = 3.2%; percentage points: a spread or
#   a shift of a percent; CNY: yuan; points: index points; factor: a multiplier; days: calendar or
#   working days; "field": the unit of the feature field compared (CNY, persons, a ratio, ...).
Fraction = Annotated[float, _unit("fraction", ge=0.0, le=1.0)]
Pct = Annotated[float, _unit("percent", ge=0.0, le=100.0)]
PP = Annotated[float, _unit("percentage points", ge=-100.0, le=100.0)]
Cny = Annotated[float, _unit("CNY", ge=0.0, le=1e13)]
Weight = Annotated[float, _unit("points", gt=0.0, le=100_000.0)]
IndexPoints = Annotated[float, _unit("points", ge=0.0, le=100_000.0)]
Factor = Annotated[float, _unit("factor", gt=0.0, le=100.0)]
GradeFactor = Annotated[float, _unit("factor", ge=0.0, le=100.0)]
Cap = Annotated[float, _unit("factor", ge=1.0, le=100.0)]
Days = Annotated[int, _unit("days", ge=0, le=366)]
Threshold = Annotated[float, _unit("field", ge=-1e15, le=1e15)]
NonNeg = Annotated[float, Field(ge=0.0)]
Positive = Annotated[float, Field(gt=0.0)]
Label = Annotated[str, Field(min_length=1, max_length=64)]
Code = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
ReasonCode = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]*$", max_length=64)]
SourcePolicy = Literal["required", "optional"]
CollateralKind = Literal["unsecured", "guaranteed", "secured"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Text(Strict):
    zh: Annotated[str, Field(min_length=1)]
    en: Annotated[str, Field(min_length=1)]


Scalar = bool | Threshold | Label
Operator = Literal["eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "is_true", "is_false"]


class Condition(Strict):
    """One structured comparison `field op value`; what a missing value does is explicit."""

    field: str
    op: Operator
    value: Scalar | Annotated[list[Scalar], Field(max_length=500)] | None = None
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
    benchmark: Threshold
    zero_at: Threshold = 0.0
    cap: Cap = 1.0

    @model_validator(mode="after")
    def _distinct(self) -> BenchmarkScoring:
        if self.benchmark == self.zero_at:
            raise ValueError("benchmark must differ from zero_at")
        return self


class BinScoring(Strict):
    """Bin table: value < edges[0] scores scores[0]; edges[i-1] <= value < edges[i] scores scores[i]."""

    kind: Literal["bins"]
    edges: Annotated[list[Threshold], Field(min_length=1, max_length=100)]
    scores: Annotated[list[Fraction], Field(max_length=101)]


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
    weight: Weight  # the maximum points
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
    weight: Weight
    indicators: Annotated[list[Indicator], Field(min_length=1)]


class GradeCut(Strict):
    grade: Annotated[str, Field(min_length=1, max_length=8)]
    min_index: IndexPoints
    name: Text | None = None


class Grading(Strict):
    """Grades best first. cutoffs: absolute index cut-offs. rank: cut-offs set by the share of a
    reference population in each grade (calibrated, the min_index values are the defaults until then).
    official_field: use the government's own class when the enterprise has one.
    cutoffs_by_segment: per segment (stage), its own cut-offs per grade (grades inside each stage)."""

    method: Literal["cutoffs", "rank"] = "cutoffs"
    grades: Annotated[list[GradeCut], Field(min_length=1)]
    eligible: Annotated[list[str], Field(min_length=1)]
    rank_shares: list[Fraction] | None = None
    official_field: str | None = None
    cutoffs_by_segment: dict[str, dict[str, IndexPoints]] | None = None


class Segments(Strict):
    """Stages, smallest first: by a numeric field's `edges` (e.g. tax_credit's four sales stages), or
    by membership of a text or enum field's value in `groups` (label -> values)."""

    field: str
    edges: Annotated[list[Threshold], Field(min_length=1, max_length=50)] | None = None
    groups: dict[str, Annotated[list[Label], Field(min_length=1)]] | None = None
    labels: list[Code]
    names: dict[str, Text]
    on_missing: Literal["ineligible", "first"] = "ineligible"

    @model_validator(mode="after")
    def _one_form(self) -> Segments:
        if (self.edges is None) == (self.groups is None):
            raise ValueError("segments need exactly one of edges (a numeric field) or groups (a text or enum field)")
        return self


class LimitBase(Strict):
    """A limit candidate: share x the first present field (x the grade factor when given)."""

    code: Code
    name: Text
    fields: Annotated[list[str], Field(min_length=1)]
    share: Annotated[float, _unit("fraction", gt=0.0, le=10.0)]
    factor_by_grade: dict[str, GradeFactor] | None = None
    on_missing: Literal["skip", "ineligible"] = "ineligible"


class CoefficientBins(Strict):
    kind: Literal["bins"]
    edges: Annotated[list[Threshold], Field(min_length=1, max_length=100)]
    factors: Annotated[list[Factor], Field(max_length=101)]


class CoefficientFlag(Strict):
    kind: Literal["flag"]
    true_factor: Factor
    false_factor: Factor = 1.0


class Coefficient(Strict):
    """A multiplicative limit coefficient (e.g. new_villager's in-locality factors). `applies_to` names
    what it multiplies: grade_cap, segment_cap or a base code; absent = the whole limit."""

    code: Code
    name: Text
    field: str
    scoring: Annotated[CoefficientBins | CoefficientFlag, Field(discriminator="kind")]
    on_missing: Factor = 1.0
    applies_to: Annotated[list[str], Field(min_length=1)] | None = None


class PdLimitScaling(Strict):
    """Limit x 1 up to full_until_pd, then linearly down to factor_at_max_pd at the product's max PD."""

    full_until_pd: Fraction
    factor_at_max_pd: Fraction


class LimitRule(Strict):
    max_cny: Cny  # (an overlay, lending nothing itself, has 0; min_cny > max_cny is refused)
    cap_by_grade: dict[str, Cny] | None = None
    cap_by_segment: dict[str, Cny] | None = None
    bases: list[LimitBase] = []
    coefficients: list[Coefficient] = []
    coefficient_cap: Cap = 1.0
    round_down_to: Annotated[float, _unit("CNY", gt=0.0, le=1e9)] = 10_000
    min_cny: Cny = 10_000
    pd_scaling: PdLimitScaling | None = None


Band = Annotated[list[PP], Field(min_length=2, max_length=2)]


class RateRule(Strict):
    """Band = reference rate + [low, high] spread (percentage points) by grade or by segment x grade,
    clipped to [floor, ceiling] (annual percent). PD places the point rate: pd_range[0] -> low end,
    pd_range[1] -> high. stage_tilt: which stages may price cheaper in the same grade."""

    reference: Literal["lpr_1y", "bank_credit_price"]
    spread_by_grade: dict[str, Band] | None = None
    spread_by_cell: dict[str, dict[str, Band]] | None = None
    floor: Pct
    ceiling: Annotated[float, _unit("percent", gt=0.0, le=100.0)]
    position_without_pd: Fraction = 0.5
    pd_range: Annotated[list[Fraction], Field(min_length=2, max_length=2)] | None = None  # default [0, max_pd]
    stage_tilt: Literal["larger_cheaper", "smaller_cheaper", "free"] = "larger_cheaper"


class Guarantee(Strict):
    """The annual guarantee fee (percent of the loan), charged only when every `when` condition holds."""

    fee_pct: Pct | None = None
    fee_pct_by_grade: dict[str, Pct] | None = None
    max_fee_pct: Pct | None = None
    when: list[Condition] = []
    guarantor: Text | None = None


class Subsidy(Strict):
    """An interest subsidy: a share of the interest or percentage points off the rate, when every
    `when` condition holds (e.g. the district that funds it). Of several, the first that applies counts."""

    share_of_interest: Fraction | None = None
    points_pp: Annotated[float, _unit("percentage points", gt=0.0, le=100.0)] | None = None
    when: list[Condition] = []
    note: Text

    @model_validator(mode="after")
    def _one_form(self) -> Subsidy:
        if (self.share_of_interest is None) == (self.points_pp is None):
            raise ValueError("a subsidy needs exactly one of share_of_interest or points_pp")
        return self


class CollateralOption(Strict):
    """One way to take the loan (credit only, guaranteed, secured) with its own rate floor, spread
    shift and fee; the option whose code is the product's `collateral` gives the quote's main terms."""

    code: CollateralKind
    name: Text
    rate_floor: Pct | None = None  # default rate.floor
    spread_shift_pp: PP = 0.0
    guarantee: Guarantee | None = None  # None: no guarantee fee


class RiskCompensation(Strict):
    loss_share: Fraction
    cap_share_of_balance: Fraction
    note: Text


class Service(Strict):
    promise: Text
    contact_days: Days | None = None
    working_days: bool = False
    disbursement_days: Days | None = None
    green_channel: bool = False  # a request within the model limit is fast-tracked


class Overlay(Strict):
    """A programme that adjusts other products' offers instead of making its own (e.g. green finance):
    its own scorecard and grade set, per grade, a factor on the base product's limit and a cut of its
    rate in basis points, within the policy maxima the file declares. It has no limit or rate of its own."""

    base_products: Annotated[list[Code], Field(min_length=1)]
    limit_uplift_by_grade: dict[str, Annotated[float, _unit("factor", ge=1.0, le=10.0)]]  # x the base limit
    rate_cut_bp_by_grade: dict[str, Annotated[int, _unit("basis points", ge=0, le=1000)]]  # off the base rate
    max_limit_uplift: Annotated[float, _unit("factor", ge=1.0, le=10.0)]  # policy maximum of the factor
    max_rate_cut_bp: Annotated[int, _unit("basis points", ge=0, le=1000)]  # policy maximum of the cut
    min_rate_pct: Pct  # the cut never takes a rate under this
    max_limit_cny: Cny | None = None  # the uplifted limit never above this


# an overlay's own (unused) terms: no limit to speak of, no rate band
OVERLAY_LIMIT = {"max_cny": 1, "min_cny": 0}
OVERLAY_RATE = {"reference": "lpr_1y", "floor": 0, "ceiling": 30}


class Hints(Strict):
    """"How to reach the next grade": a change is suggested only within `max_relative_change` of the
    current value (or one rounding step from zero), its target rounded to a step per indicator unit
    (`round_to`, over the defaults of `scoring.engine.HINT_STEPS`, e.g. CNY 1,000, one patent)."""

    max_relative_change: Annotated[float, _unit("fraction", gt=0.0, le=100.0)] = 0.5
    round_to: dict[str, Annotated[float, _unit("the indicator's unit", gt=0.0, le=1e9)]] = {}


class ProductDefinition(Strict):
    code: Code
    name: Text
    version: Annotated[str, Field(min_length=1, max_length=32)]
    effective_date: dt.date
    description: Text | None = None
    collateral: CollateralKind = "unsecured"
    collateral_options: list[CollateralOption] = []
    scale: Weight
    max_pd: Annotated[float, _unit("fraction", gt=0.0, le=1.0)]
    quote_valid_days: Annotated[int, _unit("days", ge=1, le=366)] = 30
    sources: dict[str, SourcePolicy]
    gates: list[Gate] = []
    dimensions: Annotated[dict[Code, Dimension], Field(min_length=1)]
    grading: Grading
    segments: Segments | None = None
    limit: LimitRule
    rate: RateRule
    guarantee: Guarantee = Guarantee()
    subsidy: list[Subsidy] = []
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

    @field_validator("subsidy", mode="before")
    @classmethod
    def _one_subsidy_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else [] if value is None else value

    def indicators(self) -> Iterator[tuple[str, int, Indicator]]:
        for dim_code, dim in self.dimensions.items():
            for i, ind in enumerate(dim.indicators):
                yield dim_code, i, ind

    @property
    def grade_names(self) -> list[str]:
        return [g.grade for g in self.grading.grades]

    def collateral_choices(self) -> list[CollateralOption]:
        """The options a quote prices, the main one first (one implicit option when none is declared)."""
        if not self.collateral_options:
            return [CollateralOption(code=self.collateral, name=Text(zh=self.collateral, en=self.collateral),
                                     guarantee=self.guarantee)]
        main = [o for o in self.collateral_options if o.code == self.collateral]
        return main + [o for o in self.collateral_options if o.code != self.collateral]


# --- rules spanning several parts of a file -------------------------------------------------------

TOLERANCE = 1e-6
COLLATERAL_NAMES = {"unsecured": Text(zh="信用", en="Credit only"),
                    "guaranteed": Text(zh="担保", en="Guaranteed"),
                    "secured": Text(zh="抵押", en="Secured")}
SECTIONS = tuple(ProductDefinition.model_fields)


def _is_monotone(values: list[float]) -> bool:
    up = all(b >= a for a, b in zip(values, values[1:], strict=False))
    down = all(b <= a for a, b in zip(values, values[1:], strict=False))
    return up or down


def bilingual(en: str, zh: str) -> str:
    """One problem's message in English and Chinese (the CLI and the API print it as is)."""
    return f"{en} / {zh}"


class _Issues(list):
    """(path, message) pairs; `add` takes the English and the Chinese message."""

    def add(self, path: str, en: str, zh: str) -> None:
        self.append((path, bilingual(en, zh)))


def semantic_issues(d: ProductDefinition, known_reasons: set[str] = frozenset(), policy: Any = None,
                    valid: set[str] | frozenset[str] | None = None, authoring: bool = True) -> list[tuple[str, str]]:
    """Every cross-field problem as (path in the file, message); empty when the definition is sound.

    `valid`: the top-level sections that passed the structural checks (None = all). Checks needing a
    section that did not are skipped, so one pass reports the semantic problems of every sound section
    next to the structural ones. `policy`: the bank's maxima (`products.policy.Policy`; default the
    policy file of the settings). `authoring=False` (a stored definition rebuilt for replay): only the
    rules the engine needs, not the authoring rules added since (policy maxima, reachable cells)."""
    if not authoring:
        from products.policy import PERMISSIVE

        policy = PERMISSIVE
    elif policy is None:
        from products.policy import default_policy

        policy = default_policy()
    ok = set(SECTIONS) if valid is None else set(valid)

    def need(*sections: str) -> bool:
        return all(x in ok for x in sections)

    issues = _Issues()
    add = issues.add
    catalogue = feature_catalogue()
    grades = d.grade_names if need("grading") else []
    eligible_order = [x for x in grades if x in d.grading.eligible] if need("grading") else []
    reasons = set(known_reasons) | (set(d.reasons) if need("reasons") else set())
    seg_labels: list[str] = list(d.segments.labels) if need("segments") and d.segments is not None else []

    def check_field(path: str, name: str, kinds: tuple[str, ...] | None = None) -> None:
        info = catalogue.get(name)
        if info is None:
            add(path, f"unknown feature field {name!r} (not a source field, has_<source> flag or derived "
                      "indicator)", f"未知的特征字段 {name!r}（不是数据源字段、has_<数据源> 标志或衍生指标）")
            return
        if kinds and info.kind not in kinds:
            add(path, f"field {name!r} is {info.kind}, expected {' or '.join(kinds)}",
                f"字段 {name!r} 的类型是 {info.kind}，此处需要 {' 或 '.join(kinds)}")
        if need("sources"):
            for src in info.sources:
                if src not in d.sources:
                    add(path, f"field {name!r} comes from source {src!r}, which is not declared under `sources` "
                              "(declare it required or optional)",
                        f"字段 {name!r} 来自数据源 {src!r}，但 `sources` 未声明该数据源"
                        "（请声明为 required 或 optional）")

    def check_condition(path: str, cond: Condition) -> None:
        check_field(f"{path}.field", cond.field)
        info = catalogue.get(cond.field)
        if info is None:
            return
        values = cond.value if isinstance(cond.value, list) else [cond.value]
        if cond.op in ("is_true", "is_false"):
            if info.kind != "bool":
                add(f"{path}.op", f"{cond.op} needs a bool field, {cond.field!r} is {info.kind}",
                    f"{cond.op} 只适用于布尔字段，{cond.field!r} 的类型是 {info.kind}")
        elif info.kind in ("enum", "text"):
            if cond.op not in ("eq", "ne", "in", "not_in"):
                add(f"{path}.op", f"operator {cond.op} is not defined for {info.kind} field {cond.field!r} "
                                  "(use eq, ne, in or not_in)",
                    f"{info.kind} 字段 {cond.field!r} 不支持运算符 {cond.op}（请用 eq、ne、in 或 not_in）")
            not_text = [v for v in values if not isinstance(v, str)]
            if not_text:
                add(f"{path}.value", f"{info.kind} field {cond.field!r} needs text values, got {not_text}",
                    f"{info.kind} 字段 {cond.field!r} 需要文本值，实际为 {not_text}")
            elif info.choices:
                bad = [v for v in values if v not in info.choices]
                if bad:
                    add(f"{path}.value", f"{bad} not among {list(info.choices)}",
                        f"{bad} 不在可选值 {list(info.choices)} 之中")
            elif info.pattern:
                bad = [v for v in values if not re.fullmatch(info.pattern, v)]
                if bad:
                    add(f"{path}.value", f"{bad} do not match the form {info.pattern} of {cond.field!r}",
                        f"{bad} 不符合字段 {cond.field!r} 的格式 {info.pattern}")
        elif info.kind == "number":
            if any(isinstance(v, bool) or not isinstance(v, int | float) for v in values):
                add(f"{path}.value", f"numeric field {cond.field!r} needs numeric values",
                    f"数值字段 {cond.field!r} 需要数值")
        elif info.kind == "bool" and cond.op not in ("eq", "ne"):
            add(f"{path}.op", f"use is_true / is_false for bool field {cond.field!r}",
                f"布尔字段 {cond.field!r} 请用 is_true / is_false")

    if need("sources"):
        for src in d.sources:
            if f"has_{src}" not in catalogue:
                add(f"sources.{src}", f"unknown source {src!r}", f"未知的数据源 {src!r}")

    if need("gates"):
        for gi, gate in enumerate(d.gates):
            if gate.reason not in reasons and need("reasons"):
                add(f"gates[{gi}].reason", f"reason code {gate.reason!r} is not in the reason catalogue",
                    f"原因代码 {gate.reason!r} 不在原因目录中")
            form = "all_of" if gate.all_of is not None else "any_of"
            for ci, cond in enumerate(gate.conditions):
                check_condition(f"gates[{gi}].{form}[{ci}]", cond)

    if need("dimensions", "scale"):
        dim_total = sum(dim.weight for dim in d.dimensions.values())
        if not math.isclose(dim_total, d.scale, abs_tol=TOLERANCE):
            add("dimensions", f"dimension weights sum to {dim_total:g}, expected the scale {d.scale:g}",
                f"维度权重合计 {dim_total:g}，应等于总分 {d.scale:g}")
    if need("dimensions"):
        _indicator_issues(d, add, check_field, catalogue)

    if need("grading"):
        _grading_issues(d, add, check_field, catalogue, grades, need("scale"))
        if need("segments") and d.grading.cutoffs_by_segment is not None:
            _segment_cutoff_issues(d, add, grades, seg_labels)
        if authoring and need("dimensions", "segments", "gates"):
            for path, en, zh in unreachable_cells(d):
                add(path, en, zh)

    if need("segments") and d.segments is not None:
        s = d.segments
        if s.edges is not None:
            check_field("segments.field", s.field, ("number",))
            if any(b <= a for a, b in zip(s.edges, s.edges[1:], strict=False)):
                add("segments.edges", "edges must be strictly increasing", "分档边界必须严格递增")
            if len(s.labels) != len(s.edges) + 1:
                add("segments.labels", f"need {len(s.edges) + 1} labels for {len(s.edges)} edges",
                    f"{len(s.edges)} 个边界需要 {len(s.edges) + 1} 个标签")
        else:
            check_field("segments.field", s.field, ("enum", "text"))
            if list(s.groups or {}) != list(s.labels):
                add("segments.groups", "one group per label, in the order of `labels`",
                    "每个标签一组取值，顺序与 `labels` 相同")
            seen_values: dict[str, str] = {}
            for label, values in (s.groups or {}).items():
                for v in values:
                    if v in seen_values:
                        add(f"segments.groups.{label}", f"{v!r} is already in group {seen_values[v]!r}",
                            f"{v!r} 已在分组 {seen_values[v]!r} 中")
                    seen_values[v] = label
                check_condition(f"segments.groups.{label}",
                                Condition(field=s.field, op="in", value=list(values)))
        if set(s.names) != set(s.labels):
            add("segments.names", "one name per label, no others", "每个标签一个名称，不能多也不能少")

    if need("overlay") and d.overlay is not None:  # no limit, rate or fees of its own: the overlay's rules
        _overlay_issues(d, add, eligible_order)
        return issues

    if need("limit"):
        _limit_issues(d, add, check_field, policy, grades, eligible_order, seg_labels, need)

    if need("rate"):
        _rate_issues(d, add, policy, eligible_order, seg_labels, need("segments"))

    if need("guarantee"):
        _fee_issues("guarantee", d.guarantee, add, check_condition, policy, grades, eligible_order)
        if need("collateral_options") and d.collateral_options and (
                d.guarantee.fee_pct is not None or d.guarantee.fee_pct_by_grade is not None):
            add("guarantee", "with collateral_options each option declares its own fee; leave "
                             "guarantee without fee_pct or fee_pct_by_grade",
                "声明了 collateral_options 时各担保方式各自声明担保费，"
                "guarantee 中不能再写 fee_pct 或 fee_pct_by_grade")
    if need("collateral_options", "collateral") and d.collateral_options:
        codes = [o.code for o in d.collateral_options]
        if len(set(codes)) != len(codes):
            add("collateral_options", "each collateral option at most once", "每种担保方式只能出现一次")
        if d.collateral not in codes:
            add("collateral", f"the main collateral {d.collateral!r} is not among the options {codes}",
                f"主担保方式 {d.collateral!r} 不在 collateral_options {codes} 之中")
        for oi, opt in enumerate(d.collateral_options):
            path = f"collateral_options[{oi}]"
            if opt.guarantee is not None:
                _fee_issues(f"{path}.guarantee", opt.guarantee, add, check_condition, policy, grades,
                            eligible_order)
            if opt.rate_floor is not None and need("rate"):
                _rate_bounds(add, f"{path}.rate_floor", opt.rate_floor, policy)
                if opt.rate_floor > d.rate.ceiling:
                    add(f"{path}.rate_floor", f"floor {opt.rate_floor:g}% above the ceiling {d.rate.ceiling:g}%",
                        f"利率下限 {opt.rate_floor:g}% 高于上限 {d.rate.ceiling:g}%")
            if not policy.spread_pp_min <= opt.spread_shift_pp <= policy.spread_pp_max:
                add(f"{path}.spread_shift_pp", f"shift {opt.spread_shift_pp:g} pp outside the policy's "
                                               f"[{policy.spread_pp_min:g}, {policy.spread_pp_max:g}] pp",
                    f"利差调整 {opt.spread_shift_pp:g} 个百分点超出政策范围 [{policy.spread_pp_min:g}, "
                    f"{policy.spread_pp_max:g}]")

    if need("subsidy"):
        floors = [d.rate.floor] if need("rate") else []
        if need("rate", "collateral_options"):
            floors += [o.rate_floor for o in d.collateral_options if o.rate_floor is not None]
        for si, sub in enumerate(d.subsidy):
            path = f"subsidy[{si}]"
            for ci, cond in enumerate(sub.when):
                check_condition(f"{path}.when[{ci}]", cond)
            if sub.share_of_interest is not None and sub.share_of_interest > policy.subsidy_share_max:
                add(f"{path}.share_of_interest", f"subsidy share {sub.share_of_interest:g} above the policy "
                                                 f"maximum {policy.subsidy_share_max:g} of the interest",
                    f"贴息比例 {sub.share_of_interest:g} 超过政策上限（利息的 {policy.subsidy_share_max:g}）")
            if sub.points_pp is not None:
                if sub.points_pp > policy.subsidy_points_max_pp:
                    add(f"{path}.points_pp", f"subsidy of {sub.points_pp:g} pp above the policy maximum "
                                             f"{policy.subsidy_points_max_pp:g} pp",
                        f"贴息 {sub.points_pp:g} 个百分点超过政策上限 {policy.subsidy_points_max_pp:g} 个百分点")
                if floors and sub.points_pp > min(floors):
                    add(f"{path}.points_pp", f"a subsidy of {sub.points_pp:g} pp would take a rate at the floor "
                                             f"{min(floors):g}% below 0",
                        f"贴息 {sub.points_pp:g} 个百分点会使处于下限 {min(floors):g}% 的利率变为负数")
        if len(d.subsidy) > 1 and any(not sub.when for sub in d.subsidy[:-1]):
            first = next(i for i, sub in enumerate(d.subsidy) if not sub.when)
            add(f"subsidy[{first}].when", "a subsidy without conditions applies always: the ones after it "
                                          "never would (put it last)",
                "无条件的贴息总是适用，排在其后的贴息永远不会生效（请放在最后）")

    if need("risk_compensation") and d.risk_compensation is not None:
        rc = d.risk_compensation
        for key in ("loss_share", "cap_share_of_balance"):
            v = getattr(rc, key)
            if v > policy.risk_compensation_share_max:
                add(f"risk_compensation.{key}", f"{v:g} above the policy maximum "
                                                f"{policy.risk_compensation_share_max:g}",
                    f"{v:g} 超过政策上限 {policy.risk_compensation_share_max:g}")

    if need("service"):
        for key in ("contact_days", "disbursement_days"):
            v = getattr(d.service, key)
            if v is not None and v > policy.service_days_max:
                add(f"service.{key}", f"{v} days above the policy maximum {policy.service_days_max}",
                    f"{v} 天超过政策上限 {policy.service_days_max} 天")
        if d.service.working_days and d.service.contact_days is None and d.service.disbursement_days is None:
            add("service.working_days", "working_days needs contact_days or disbursement_days",
                "working_days 需要与 contact_days 或 disbursement_days 一起使用")

    if need("max_pd") and d.max_pd > policy.max_pd_max:
        add("max_pd", f"max_pd {d.max_pd:g} above the policy maximum {policy.max_pd_max:g}",
            f"max_pd {d.max_pd:g} 超过政策上限 {policy.max_pd_max:g}")

    if need("platform_fields") and d.platform_fields is not None:
        allowed = {"product", "eligible", "reasons", "index", "grade", "tier", "segment", "product_version"}
        for i, f in enumerate(d.platform_fields):
            if f not in allowed:
                add(f"platform_fields[{i}]", f"{f!r} is not a quote field the platform may see; choose from "
                                             f"{sorted(allowed)}",
                    f"{f!r} 不是平台可见的报价字段；可选 {sorted(allowed)}")
    return list(issues)


def _indicator_issues(d: ProductDefinition, add: Any, check_field: Any, catalogue: dict[str, Any]) -> None:
    seen: dict[str, str] = {}
    for dim_code, dim in d.dimensions.items():
        total = sum(ind.weight for ind in dim.indicators)
        if not math.isclose(total, dim.weight, abs_tol=TOLERANCE):
            add(f"dimensions.{dim_code}.indicators",
                f"indicator weights sum to {total:g}, expected the dimension weight {dim.weight:g}",
                f"指标权重合计 {total:g}，应等于维度权重 {dim.weight:g}")
        for i, ind in enumerate(dim.indicators):
            path = f"dimensions.{dim_code}.indicators[{i}]"
            if ind.code in seen:
                add(f"{path}.code", f"indicator code {ind.code!r} already used at {seen[ind.code]}",
                    f"指标代码 {ind.code!r} 已在 {seen[ind.code]} 使用")
            seen[ind.code] = path
            if round(ind.weight * 100) != ind.weight * 100:
                add(f"{path}.weight", "weights have at most 2 decimals (points are exact to 0.01)",
                    "权重最多两位小数（分数精确到 0.01）")
            s = ind.scoring
            kinds = {"benchmark": ("number",), "bins": ("number",), "categorical": ("enum",),
                     "flag": ("bool",)}[s.kind]
            check_field(f"{path}.field", ind.field, kinds)
            if isinstance(s, BinScoring):
                _check_bins(add, f"{path}.scoring", s.edges, s.scores, "scores")
                if s.scores and not math.isclose(max(s.scores), 1.0):
                    add(f"{path}.scoring.scores", "the best bin must score 1 (the weight is the maximum)",
                        "最好的一档必须得 1（权重即满分）")
            elif isinstance(s, CategoricalScoring):
                info = catalogue.get(ind.field)
                if info is not None:
                    bad = [c for c in s.scores if c not in info.choices]
                    if bad:
                        add(f"{path}.scoring.scores", f"{bad} not among {list(info.choices)}",
                            f"{bad} 不在可选值 {list(info.choices)} 之中")
                if not math.isclose(max([*s.scores.values(), s.other]), 1.0):
                    add(f"{path}.scoring.scores", "the best category must score 1", "最好的类别必须得 1")
            elif isinstance(s, FlagScoring) and not math.isclose(max(s.true_score, s.false_score), 1.0):
                add(f"{path}.scoring", "true_score or false_score must be 1", "true_score 或 false_score 必须为 1")


def _grading_issues(d: ProductDefinition, add: Any, check_field: Any, catalogue: dict[str, Any],
                    grades: list[str], scale_ok: bool) -> None:
    g = d.grading
    if len(set(grades)) != len(grades):
        add("grading.grades", "grade names must be unique", "等级名称不能重复")
    mins = [c.min_index for c in g.grades]
    for i in range(1, len(mins)):
        if not mins[i] < mins[i - 1]:
            add(f"grading.grades[{i}].min_index",
                f"cut-offs must be strictly decreasing from the best grade: {mins[i]:g} is not under {mins[i - 1]:g}",
                f"分数线必须从最好等级起严格递减：{mins[i]:g} 不低于 {mins[i - 1]:g}")
    if mins[-1] != 0:
        add(f"grading.grades[{len(mins) - 1}].min_index", "the lowest grade must start at 0", "最低等级必须从 0 起")
    if scale_ok and mins[0] > d.scale:
        add("grading.grades[0].min_index", f"cut-off {mins[0]:g} above the scale {d.scale:g}",
            f"分数线 {mins[0]:g} 高于总分 {d.scale:g}")
    for i, e in enumerate(g.eligible):
        if e not in grades:
            add(f"grading.eligible[{i}]", f"unknown grade {e!r}; grades are {grades}",
                f"未知等级 {e!r}；等级为 {grades}")
    if g.method == "rank":
        if g.rank_shares is None or len(g.rank_shares) != len(grades):
            add("grading.rank_shares", f"rank grading needs one share per grade ({len(grades)})",
                f"按排名分级需要每个等级一个比例（{len(grades)} 个）")
        elif not math.isclose(sum(g.rank_shares), 1.0, abs_tol=1e-9):
            add("grading.rank_shares", f"shares sum to {sum(g.rank_shares):g}, expected 1",
                f"比例合计 {sum(g.rank_shares):g}，应为 1")
        if g.cutoffs_by_segment is not None:
            add("grading.cutoffs_by_segment", "cut-offs by segment only apply with method: cutoffs",
                "分档分数线只适用于 method: cutoffs")
    elif g.rank_shares is not None:
        add("grading.rank_shares", "rank_shares only apply with method: rank", "rank_shares 只适用于 method: rank")
    if g.official_field is not None:
        check_field("grading.official_field", g.official_field, ("enum",))
        info = catalogue.get(g.official_field)
        if info is not None and not set(info.choices) <= set(grades):
            add("grading.official_field", f"official values {list(info.choices)} must all be grades",
                f"官方评价值 {list(info.choices)} 必须都是等级")


def _segment_cutoff_issues(d: ProductDefinition, add: Any, grades: list[str], seg_labels: list[str]) -> None:
    table = d.grading.cutoffs_by_segment or {}
    if d.segments is None:
        add("grading.cutoffs_by_segment", "cut-offs by segment need `segments`", "分档分数线需要 `segments`")
        return
    for label in seg_labels:
        if label not in table:
            add("grading.cutoffs_by_segment", f"no cut-offs for segment {label!r}", f"分档 {label!r} 缺少分数线")
    for label, cuts in table.items():
        path = f"grading.cutoffs_by_segment.{label}"
        if label not in seg_labels:
            add(path, f"unknown segment {label!r}; segments are {seg_labels}",
                f"未知分档 {label!r}；分档为 {seg_labels}")
            continue
        if list(cuts) != grades:
            add(path, f"give every grade, best first: {grades}", f"须按从好到差列出所有等级：{grades}")
            continue
        vals = list(cuts.values())
        if any(not b < a for a, b in zip(vals, vals[1:], strict=False)):
            add(path, "cut-offs must be strictly decreasing from the best grade", "分数线必须从最好等级起严格递减")
        if vals[-1] != 0:
            add(path, "the lowest grade must start at 0", "最低等级必须从 0 起")


def _limit_issues(d: ProductDefinition, add: Any, check_field: Any, policy: Any, grades: list[str],
                  eligible_order: list[str], seg_labels: list[str], need: Any) -> None:
    lim = d.limit
    if lim.max_cny > policy.limit_cny_max:
        add("limit.max_cny", f"maximum {lim.max_cny:,.0f} CNY above the policy maximum {policy.limit_cny_max:,.0f} CNY",
            f"最高额度 {lim.max_cny:,.0f} 元超过政策上限 {policy.limit_cny_max:,.0f} 元")
    for key in ("cap_by_grade", "cap_by_segment"):
        for k, v in (getattr(lim, key) or {}).items():
            if v > lim.max_cny:
                add(f"limit.{key}.{k}", f"cap {v:,.0f} CNY above the product maximum {lim.max_cny:,.0f} CNY",
                    f"上限 {v:,.0f} 元高于产品最高额度 {lim.max_cny:,.0f} 元")
    if grades:
        _check_by_grade(add, "limit.cap_by_grade", lim.cap_by_grade, grades, eligible_order)
    if lim.cap_by_segment is not None and need("segments"):
        if d.segments is None:
            add("limit.cap_by_segment", "caps by segment need `segments`", "按分档设上限需要 `segments`")
        else:
            _check_keys(add, "limit.cap_by_segment", lim.cap_by_segment, seg_labels)
            caps = [lim.cap_by_segment[x] for x in seg_labels if x in lim.cap_by_segment]
            if any(b < a for a, b in zip(caps, caps[1:], strict=False)):
                add("limit.cap_by_segment", "caps must not decrease from the smallest to the largest stage",
                    "上限不能从最小档到最大档递减")
    if lim.cap_by_grade is None and lim.cap_by_segment is None and not lim.bases:
        add("limit", "a limit needs a grade cap, a segment cap or a base", "额度需要等级上限、分档上限或测算基数")
    for bi, base in enumerate(lim.bases):
        for fi, name in enumerate(base.fields):
            check_field(f"limit.bases[{bi}].fields[{fi}]", name, ("number",))
        if grades:
            _check_by_grade(add, f"limit.bases[{bi}].factor_by_grade", base.factor_by_grade, grades, eligible_order)
    targets = ["grade_cap", "segment_cap", *(b.code for b in lim.bases)]
    for ci, coef in enumerate(lim.coefficients):
        path = f"limit.coefficients[{ci}]"
        sc = coef.scoring
        if isinstance(sc, CoefficientBins):
            check_field(f"{path}.field", coef.field, ("number",))
            _check_bins(add, f"{path}.scoring", sc.edges, sc.factors, "factors")
        else:
            check_field(f"{path}.field", coef.field, ("bool",))
        for ti, target in enumerate(coef.applies_to or []):
            if target not in targets:
                add(f"{path}.applies_to[{ti}]", f"{target!r} is not grade_cap, segment_cap or a base code "
                                                f"({targets})",
                    f"{target!r} 不是 grade_cap、segment_cap 或测算基数代码（{targets}）")
            elif target == "grade_cap" and lim.cap_by_grade is None:
                add(f"{path}.applies_to[{ti}]", "there is no cap_by_grade to multiply", "没有可相乘的 cap_by_grade")
            elif target == "segment_cap" and lim.cap_by_segment is None:
                add(f"{path}.applies_to[{ti}]", "there is no cap_by_segment to multiply", "没有可相乘的 cap_by_segment")
    if lim.coefficient_cap > policy.coefficient_cap_max:
        add("limit.coefficient_cap", f"coefficient cap {lim.coefficient_cap:g} above the policy maximum "
                                     f"{policy.coefficient_cap_max:g}",
            f"系数上限 {lim.coefficient_cap:g} 超过政策上限 {policy.coefficient_cap_max:g}")
    if lim.min_cny > lim.max_cny:
        add("limit.min_cny", f"minimum {lim.min_cny:g} above the maximum {lim.max_cny:g}",
            f"最低额度 {lim.min_cny:g} 高于最高额度 {lim.max_cny:g}")
    if lim.pd_scaling is not None and need("max_pd") and lim.pd_scaling.full_until_pd >= d.max_pd:
        add("limit.pd_scaling.full_until_pd", f"must be under max_pd {d.max_pd:g}", f"必须低于 max_pd {d.max_pd:g}")


def _rate_bounds(add: Any, path: str, value: float, policy: Any) -> None:
    if not policy.rate_pct_min <= value <= policy.rate_pct_max:
        add(path, f"{value:g}% outside the policy's rate range [{policy.rate_pct_min:g}%, {policy.rate_pct_max:g}%]",
            f"{value:g}% 超出政策利率范围 [{policy.rate_pct_min:g}%, {policy.rate_pct_max:g}%]")


def _rate_issues(d: ProductDefinition, add: Any, policy: Any, eligible_order: list[str], seg_labels: list[str],
                 segments_ok: bool) -> None:
    r = d.rate
    _rate_bounds(add, "rate.floor", r.floor, policy)
    _rate_bounds(add, "rate.ceiling", r.ceiling, policy)
    if r.floor > r.ceiling:
        add("rate.floor", f"floor {r.floor:g} above ceiling {r.ceiling:g}",
            f"利率下限 {r.floor:g} 高于上限 {r.ceiling:g}")
    if (r.spread_by_grade is None) == (r.spread_by_cell is None):
        add("rate", "give exactly one of spread_by_grade or spread_by_cell", "spread_by_grade 与 spread_by_cell 二选一")
    tables = {"rate.spread_by_grade": r.spread_by_grade or {}}
    tables.update({f"rate.spread_by_cell.{s}": t for s, t in (r.spread_by_cell or {}).items()})
    for path, table in tables.items():
        for grade, band in table.items():
            for v in band:
                if not policy.spread_pp_min <= v <= policy.spread_pp_max:
                    add(f"{path}.{grade}", f"spread {v:g} pp outside the policy's [{policy.spread_pp_min:g}, "
                                           f"{policy.spread_pp_max:g}] pp",
                        f"利差 {v:g} 个百分点超出政策范围 [{policy.spread_pp_min:g}, {policy.spread_pp_max:g}]")
    if r.spread_by_grade is not None and eligible_order:
        _check_bands(add, "rate.spread_by_grade", r.spread_by_grade, eligible_order)
    if r.spread_by_cell is not None and segments_ok:
        if d.segments is None:
            add("rate.spread_by_cell", "spreads by cell need `segments`", "按单元格定利差需要 `segments`")
        else:
            _check_keys(add, "rate.spread_by_cell", r.spread_by_cell, seg_labels)
            for seg, table in r.spread_by_cell.items():
                _check_bands(add, f"rate.spread_by_cell.{seg}", table, eligible_order)
            # the configured tilt: which way the price may move with the stage in the same grade
            for grade in eligible_order if r.stage_tilt != "free" else []:
                for side in (0, 1):
                    vals = [r.spread_by_cell[s][grade][side] for s in seg_labels
                            if s in r.spread_by_cell and grade in r.spread_by_cell[s]]
                    steps = list(zip(vals, vals[1:], strict=False))
                    if r.stage_tilt == "larger_cheaper" and any(b > a for a, b in steps):
                        add("rate.spread_by_cell", f"grade {grade}: spreads must not rise with the stage "
                                                   "(stage_tilt: larger_cheaper)",
                            f"等级 {grade}：利差不能随档位升高（stage_tilt: larger_cheaper）")
                        break
                    if r.stage_tilt == "smaller_cheaper" and any(b < a for a, b in steps):
                        add("rate.spread_by_cell", f"grade {grade}: spreads must not fall with the stage "
                                                   "(stage_tilt: smaller_cheaper)",
                            f"等级 {grade}：利差不能随档位降低（stage_tilt: smaller_cheaper）")
                        break
    if r.pd_range is not None:
        lo, hi = r.pd_range
        if not 0 <= lo < hi <= 1:
            add("rate.pd_range", "need 0 <= low < high <= 1", "需要 0 <= 下限 < 上限 <= 1")


def _fee_issues(path: str, gu: Guarantee, add: Any, check_condition: Any, policy: Any, grades: list[str],
                eligible_order: list[str]) -> None:
    if gu.fee_pct is not None and gu.fee_pct_by_grade is not None:
        add(path, "give fee_pct or fee_pct_by_grade, not both", "fee_pct 与 fee_pct_by_grade 只能给一个")
    if gu.fee_pct_by_grade is not None and grades:
        _check_keys(add, f"{path}.fee_pct_by_grade", gu.fee_pct_by_grade, grades)
        missing = [x for x in eligible_order if x not in gu.fee_pct_by_grade]
        if missing:
            add(f"{path}.fee_pct_by_grade", f"no fee for eligible grade(s) {missing}",
                f"可准入等级 {missing} 缺少担保费")
    fees = {f"{path}.fee_pct": gu.fee_pct} if gu.fee_pct is not None else {
        f"{path}.fee_pct_by_grade.{g}": v for g, v in (gu.fee_pct_by_grade or {}).items()}
    cap = min(policy.guarantee_fee_pct_max, gu.max_fee_pct if gu.max_fee_pct is not None else math.inf)
    for where, fee in fees.items():
        if fee > policy.guarantee_fee_pct_max:
            add(where, f"fee {fee:g}% above the policy maximum {policy.guarantee_fee_pct_max:g}%",
                f"担保费率 {fee:g}% 超过政策上限 {policy.guarantee_fee_pct_max:g}%")
        elif fee > cap:
            add(path, f"fee {fee:g}% above the maximum {cap:g}%", f"担保费率 {fee:g}% 超过上限 {cap:g}%")
    if gu.max_fee_pct is not None and gu.max_fee_pct > policy.guarantee_fee_pct_max:
        add(f"{path}.max_fee_pct", f"maximum {gu.max_fee_pct:g}% above the policy maximum "
                                   f"{policy.guarantee_fee_pct_max:g}%",
            f"上限 {gu.max_fee_pct:g}% 超过政策上限 {policy.guarantee_fee_pct_max:g}%")
    for ci, cond in enumerate(gu.when):
        check_condition(f"{path}.when[{ci}]", cond)


def _overlay_issues(d: ProductDefinition, add: Any, eligible_order: list[str]) -> None:
    ov = d.overlay
    assert ov is not None
    if d.limit != LimitRule.model_validate(OVERLAY_LIMIT):
        add("limit", "an overlay has no limit of its own (it lifts its base products' limits): leave `limit` out",
            "叠加方案没有自己的额度（它提高基础产品的额度）：请删除 `limit`")
    if d.rate != RateRule.model_validate(OVERLAY_RATE):
        add("rate", "an overlay has no rate of its own (it cuts its base products' rates): leave `rate` out",
            "叠加方案没有自己的利率（它降低基础产品的利率）：请删除 `rate`")
    if d.code in ov.base_products:
        add("overlay.base_products", "an overlay cannot be its own base product", "叠加方案不能以自身为基础产品")
    if len(set(ov.base_products)) != len(ov.base_products):
        add("overlay.base_products", "a base product is named twice", "基础产品重复")
    for key, cap, unit in (("limit_uplift_by_grade", ov.max_limit_uplift, "x"),
                           ("rate_cut_bp_by_grade", ov.max_rate_cut_bp, " bp")):
        table = getattr(ov, key)
        if eligible_order:
            _check_by_grade(add, f"overlay.{key}", table, d.grade_names, eligible_order)
        for grade, value in table.items():
            if value > cap:
                add(f"overlay.{key}.{grade}", f"{value:g}{unit} is above the policy maximum {cap:g}{unit} declared "
                                              "in the file", f"{value:g}{unit} 超过文件声明的政策上限 {cap:g}{unit}")


def _check_keys(add: Any, path: str, table: dict[str, object], allowed: list[str]) -> None:
    for key in table:
        if key not in allowed:
            add(f"{path}.{key}", f"unknown key {key!r}; expected one of {allowed}",
                f"未知键 {key!r}；应为 {allowed} 之一")


def _check_by_grade(add: Any, path: str, table: dict[str, float] | None, grades: list[str],
                    eligible_order: list[str]) -> None:
    """Values per grade: every eligible grade present, never better for a worse grade."""
    if table is None:
        return
    _check_keys(add, path, table, grades)
    missing = [x for x in eligible_order if x not in table]
    if missing:
        add(path, f"no value for eligible grade(s) {missing}", f"可准入等级 {missing} 缺少取值")
    vals = [table[x] for x in eligible_order if x in table]
    if any(b > a for a, b in zip(vals, vals[1:], strict=False)):
        add(path, "values must not increase from a better to a worse grade", "取值不能从较好等级到较差等级递增")


def _check_bands(add: Any, path: str, table: dict[str, list[float]], eligible_order: list[str]) -> None:
    _check_keys(add, path, table, eligible_order)
    for grade, (lo, hi) in table.items():
        if lo > hi:
            add(f"{path}.{grade}", f"band low {lo:g} above high {hi:g}", f"区间下端 {lo:g} 高于上端 {hi:g}")
    missing = [x for x in eligible_order if x not in table]
    if missing:
        add(path, f"no band for eligible grade(s) {missing}", f"可准入等级 {missing} 缺少利差区间")
    bands = [table[x] for x in eligible_order if x in table]
    for side, label, label_zh in ((0, "low", "下端"), (1, "high", "上端")):
        vals = [b[side] for b in bands]
        if any(b < a for a, b in zip(vals, vals[1:], strict=False)):
            add(path, f"band {label} ends must not fall from a better to a worse grade",
                f"区间{label_zh}不能从较好等级到较差等级下降")


def _check_bins(add: Any, path: str, edges: list[float], values: list[float], name: str) -> None:
    if any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
        add(f"{path}.edges", "edges must be strictly increasing", "分档边界必须严格递增")
    if len(values) != len(edges) + 1:
        add(f"{path}.{name}", f"need {len(edges) + 1} {name} for {len(edges)} edges",
            f"{len(edges)} 个边界需要 {len(edges) + 1} 个 {name}")
    elif not _is_monotone(values):
        add(f"{path}.{name}", f"{name} must be monotone (one business direction)", f"{name} 必须单调（同一业务方向）")


# --- reachability: every eligible cell must be attainable by some enterprise ----------------------

def _best_fraction(ind: Indicator, lo: float, hi: float, allowed: set[str] | None) -> float:
    """The most an indicator can score when its field lies in [lo, hi) (a segment's range) and, for a
    categorical field, takes one of `allowed` (what the all_of gates let through)."""
    s = ind.scoring
    if isinstance(s, BenchmarkScoring):
        def frac(v: float) -> float:
            x = (v - s.zero_at) / (s.benchmark - s.zero_at)
            return min(max(x, 0.0), s.cap) / s.cap
        # monotone in v: the best end of the range (hi is open: approached, so reachable to 0.01 points)
        return max(frac(lo) if math.isfinite(lo) else (1.0 if s.benchmark < s.zero_at else 0.0),
                   frac(hi) if math.isfinite(hi) else (1.0 if s.benchmark > s.zero_at else 0.0))
    if isinstance(s, BinScoring):
        best = 0.0
        bounds = [-math.inf, *s.edges, math.inf]
        for k, score in enumerate(s.scores[:len(bounds) - 1]):  # (a length mismatch is reported elsewhere)
            if bounds[k] < hi and bounds[k + 1] > lo:  # the bin overlaps the range
                best = max(best, score)
        return best
    if isinstance(s, CategoricalScoring):
        if allowed is None:
            return max([*s.scores.values(), s.other])
        return max([s.scores.get(c, s.other) for c in allowed], default=0.0)
    return max(s.true_score, s.false_score)


def unreachable_cells(d: ProductDefinition) -> list[tuple[str, str, str]]:
    """(path, en, zh) for every eligible grade (per segment, when graded or priced by segment) whose
    cut-off is above the highest index an enterprise in that segment can score. Rank-graded products
    and official classes set grades by other means and are not checked."""
    g = d.grading
    if g.method == "rank":
        return []
    catalogue = feature_catalogue()
    allowed: dict[str, set[str]] = {}
    for gate in d.gates:
        if gate.all_of is None:
            continue
        for c in gate.all_of:
            info = catalogue.get(c.field)
            if info is None or info.kind != "enum" or c.on_missing == "pass":
                continue
            values = {str(v) for v in (c.value if isinstance(c.value, list) else [c.value])}
            if c.op in ("eq", "in"):
                keep = values
            elif c.op in ("ne", "not_in"):
                keep = set(info.choices) - values
            else:
                continue
            allowed[c.field] = allowed.get(c.field, set(info.choices)) & keep
    seg = d.segments
    ranges: list[tuple[str | None, float, float]] = [(None, -math.inf, math.inf)]
    if seg is not None and seg.edges is not None:
        if len(seg.labels) != len(seg.edges) + 1:
            return []  # reported with the segments
        bounds = [-math.inf, *seg.edges, math.inf]
        ranges = [(label, bounds[k], bounds[k + 1]) for k, label in enumerate(seg.labels)]
    out = []
    for label, lo, hi in ranges:
        best_cents = 0
        for _, _, ind in d.indicators():
            in_range = seg is not None and seg.edges is not None and ind.field == seg.field
            f = _best_fraction(ind, lo if in_range else -math.inf, hi if in_range else math.inf,
                               allowed.get(ind.field))
            best_cents += int(round(f * ind.weight * 100))
        cuts = (g.cutoffs_by_segment or {}).get(label) if label else None
        table = cuts if cuts is not None else {c.grade: c.min_index for c in g.grades}
        for grade in g.eligible:
            need_cents = int(round(table.get(grade, 0) * 100))
            if need_cents > best_cents:
                where = f"segment {label!r}, " if label else ""
                where_zh = f"分档 {label!r} 中" if label else ""
                path = (f"grading.cutoffs_by_segment.{label}.{grade}" if cuts is not None else
                        f"grading.grades[{d.grade_names.index(grade)}].min_index")
                out.append((path, f"cell {label + '/' if label else ''}{grade} is unreachable: {where}the "
                                  f"highest possible index is {best_cents / 100:g}, grade {grade} needs "
                                  f"{need_cents / 100:g}",
                            f"单元格 {label + '/' if label else ''}{grade} 无法达到：{where_zh}可能的最高指数为 "
                            f"{best_cents / 100:g}，等级 {grade} 需要 {need_cents / 100:g}"))
    return out
