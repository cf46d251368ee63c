"""The catalogue of government data sources: one declaration per source, used everywhere.

Each source is a list of typed fields with units, ranges and enumerations. The frame schemas
(pandera), the database tables (SQLAlchemy), the products' field catalogue and the synthetic
generator all read this one catalogue, so a field is declared once.

Every row of every source is keyed by (credit_code, as_of): the enterprise and the date the
provider's figures refer to. Money is in CNY, land in mu (亩, 1/15 hectare), energy in tce
(tonnes of standard coal equivalent), electricity in kWh, emissions in tonnes of pollutant equivalent.
Year-indexed fields end in `_y0` (latest full year before as_of), `_y1` (one year earlier), `_y2`.
Month-indexed fields end in `_m01` (latest month) ... `_m24`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

FieldKind = Literal["str", "int", "float", "bool", "date", "enum"]
# Who may see a field's value ("usable but not visible", SPEC 5; the rule per audience is in
# `products.visibility`): `result` - an evaluation's published outcome (the "two healthy" points and grade,
# the official per-mu class): like the product's own score, every reader may see it, the platform too;
# `visible` - the bank's staff (loan officers, the risk team) may read it, the platform never;
# `score_only` - the engine and the model use it, its value is never shown to anyone (the tax bureau's raw
# items: only the score result leaves the bureau, seed S004 L706-708).
Visibility = Literal["result", "visible", "score_only"]
VISIBILITIES: tuple[Visibility, ...] = ("result", "visible", "score_only")  # least strict first


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: FieldKind
    doc: str
    ge: float | None = None
    le: float | None = None
    choices: tuple[str, ...] = ()
    pattern: str | None = None
    required: bool = True  # a required field may not be empty in a row
    visibility: Visibility = "visible"


@dataclass(frozen=True)
class SourceSpec:
    name: str
    provider: str
    provider_zh: str
    doc: str
    fields: tuple[FieldSpec, ...] = field(default_factory=tuple)
    # How often the provider delivers a new as-of date: monitoring flags a feed whose latest as-of date is
    # older than this (times a configured factor).
    cadence_days: int = 365

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]


def _money(name: str, doc: str, required: bool = True, allow_negative: bool = False,
           visibility: Visibility = "visible") -> FieldSpec:
    return FieldSpec(name, "float", f"{doc} (CNY)", ge=None if allow_negative else 0.0, le=1e13,
                     required=required, visibility=visibility)


def _count(name: str, doc: str, le: float = 1e7, required: bool = True) -> FieldSpec:
    return FieldSpec(name, "int", doc, ge=0, le=le, required=required)


def _flag(name: str, doc: str) -> FieldSpec:
    return FieldSpec(name, "bool", doc)


def _years(prefix: str, doc: str, allow_negative: bool = False,
           visibility: Visibility = "visible") -> tuple[FieldSpec, ...]:
    return tuple(
        _money(f"{prefix}_y{i}", f"{doc}, {label}", allow_negative=allow_negative, visibility=visibility)
        for i, label in enumerate(("latest year", "one year earlier", "two years earlier"))
    )


TAX_CREDIT_GRADES = ("A", "B", "M", "C", "D")
PER_MU_CLASSES = ("A+", "A", "B", "C", "D")
LEGAL_FORMS = ("limited_company", "joint_stock", "partnership", "sole_proprietorship", "individual_business")
SIZE_CLASSES = ("micro", "small", "medium", "large")
LEVELS = ("none", "city", "provincial", "national")
TWO_HEALTHY_GRADES = ("A", "B", "C", "D")
ELECTRICITY_MONTHS = 24
SOCIAL_SECURITY_MONTHS = 12

KEY_FIELDS = (
    FieldSpec("credit_code", "str", "unified social credit code (统一社会信用代码), GB 32100-2015"),
    FieldSpec("as_of", "date", "date the provider's figures refer to (ISO 8601)"),
)
# Optional in any file: the enterprise's consent / data-use authorisation reference (授权编号).
CONSENT_FIELD = FieldSpec("consent_ref", "str", "consent or authorisation reference", required=False)


SCORE_ONLY: Visibility = "score_only"
RESULT: Visibility = "result"

SOURCES: dict[str, SourceSpec] = {
    s.name: s
    for s in (
        SourceSpec(
            "registry", "market_regulation", "市场监管局", "business registration",
            (
                FieldSpec("name", "str", "registered name"),
                FieldSpec("legal_form", "enum", "legal form", choices=LEGAL_FORMS),
                FieldSpec("established_date", "date", "date of establishment"),
                _money("registered_capital_cny", "registered capital"),
                FieldSpec("industry_code", "str", "industry, GB/T 4754-2017 section letter + division digits",
                          pattern=r"^[A-T][0-9]{2}$"),
                FieldSpec("district", "str", "county-level district (pinyin)"),
                FieldSpec("size_class", "enum", "enterprise size class", choices=SIZE_CLASSES),
                _flag("abnormal_operation", "on the abnormal-operation list (经营异常名录)"),
                _count("admin_penalties_3y", "administrative penalties in the last 3 years", le=10_000),
            ),
            cadence_days=30,
        ),
        SourceSpec(
            "tax", "tax_bureau", "税务局", "tax-credit rating and tax figures",
            (
                FieldSpec("tax_credit_grade", "enum", "national tax-credit grade (纳税信用等级)",
                          choices=TAX_CREDIT_GRADES),
                FieldSpec("tax_credit_score", "float", "tax-credit score, 0-100", ge=0, le=100,
                          visibility=SCORE_ONLY),
                *_years("taxable_sales_cny", "taxable sales (应税销售收入)", visibility=SCORE_ONLY),
                *_years("vat_paid_cny", "VAT paid", visibility=SCORE_ONLY),
                _money("corporate_income_tax_cny", "corporate income tax paid, latest year", visibility=SCORE_ONLY),
                _money("rd_super_deduction_cny", "R&D super-deduction claimed (研发费用加计扣除), latest year",
                       visibility=SCORE_ONLY),
                _flag("tax_arrears", "has overdue tax (欠税)"),
            ),
            cadence_days=365,
        ),
        SourceSpec(
            "per_mu", "economy_it_bureau", "经信局", "per-mu efficiency evaluation (亩均效益综合评价)",
            (
                FieldSpec("land_area_mu", "float", "land used (mu)", ge=0.01, le=1e6),
                _money("tax_paid_cny", "total tax paid, latest year", visibility=SCORE_ONLY),
                _money("value_added_cny", "industrial value added, latest year", visibility=SCORE_ONLY),
                FieldSpec("energy_use_tce", "float", "energy use (tce)", ge=0, le=1e8, visibility=SCORE_ONLY),
                FieldSpec("emissions_t", "float", "major pollutant emissions (tonnes equivalent)", ge=0, le=1e8,
                          visibility=SCORE_ONLY),
                _count("employees", "average employees"),
                _money("rd_expense_cny", "R&D expense, latest year", visibility=SCORE_ONLY),
                _money("revenue_cny", "main business revenue, latest year", visibility=SCORE_ONLY),
                FieldSpec("per_mu_class", "enum", "official per-mu class", choices=PER_MU_CLASSES,
                          required=False, visibility=RESULT),
                _flag("above_scale", "above-designated-size industrial enterprise (规上企业)"),
            ),
            cadence_days=365,
        ),
        SourceSpec(
            "tech", "science_tech_bureau", "科技局", "technology qualifications and IP",
            (
                _flag("high_tech_enterprise", "national high-tech enterprise certificate (高新技术企业)"),
                _flag("tech_sme", "registered technology SME (科技型中小企业)"),
                FieldSpec("specialized_level", "enum", "专精特新 level", choices=LEVELS),
                _count("invention_patents", "granted invention patents", le=100_000),
                _count("utility_models", "utility-model patents", le=100_000),
                _count("software_copyrights", "software copyrights", le=100_000),
                _count("rd_staff", "R&D staff"),
                _count("high_level_talent", "high-level talent (高层次人才)", le=100_000),
                FieldSpec("rd_platform_level", "enum", "R&D platform level (研发平台)", choices=LEVELS),
                _flag("university_cooperation", "industry-university-research cooperation (产学研合作)"),
                _count("tech_awards", "science and technology awards", le=10_000),
                _money("equity_funding_cny", "equity funding raised in the last 3 years"),
            ),
            cadence_days=365,
        ),
        SourceSpec(
            "social_security", "human_resources_bureau", "人社局", "social insurance",
            (
                *(
                    _count(f"insured_employees_m{m:02d}", f"insured employees, month {m} back")
                    for m in range(1, SOCIAL_SECURITY_MONTHS + 1)
                ),
                _flag("wage_arrears", "wage arrears on record (欠薪)"),
            ),
            cadence_days=31,
        ),
        SourceSpec(
            "electricity", "state_grid", "电力公司", "monthly electricity consumption",
            tuple(
                FieldSpec(f"kwh_m{m:02d}", "float", f"electricity used, month {m} back (kWh)", ge=0, le=1e11,
                          visibility=SCORE_ONLY)
                for m in range(1, ELECTRICITY_MONTHS + 1)
            ),
            cadence_days=31,
        ),
        SourceSpec(
            "judicial", "courts", "法院", "court records",
            (
                _flag("dishonest_debtor", "on the dishonest-debtor list (失信被执行人)"),
                _count("enforcement_cases", "open enforcement cases (被执行案件)", le=100_000),
                _count("litigation_count", "lawsuits as defendant, last 3 years", le=100_000),
            ),
            cadence_days=7,
        ),
        SourceSpec(
            "two_healthy", "two_healthy_office", "两个健康办", "'two healthy' points (两个健康积分)",
            (
                FieldSpec("enterprise_points", "float", "points for healthy development of the enterprise, 0-600",
                          ge=0, le=600, visibility=RESULT),
                FieldSpec("entrepreneur_points", "float", "points for healthy growth of the entrepreneur, 0-400",
                          ge=0, le=400, visibility=RESULT),
                FieldSpec("total_points", "float", "total points, 0-1000", ge=0, le=1000, visibility=RESULT),
                FieldSpec("grade", "enum", "official grade", choices=TWO_HEALTHY_GRADES, visibility=RESULT),
                FieldSpec("whitelisted", "bool", "on the two-healthy whitelist (白名单)", visibility=RESULT),
            ),
            cadence_days=365,
        ),
        SourceSpec(
            "locality", "chambers_schools_property", "商会/教育/不动产", "new-villager locality facts",
            (
                _flag("chamber_member", "member of an out-of-town chamber of commerce (异地温州商会)"),
                FieldSpec("years_in_locality", "float", "years the entrepreneur has operated in the locality",
                          ge=0, le=100),
                _count("children_in_local_school", "entrepreneur's children in local schools", le=20),
                _flag("local_property", "entrepreneur owns local property"),
                FieldSpec("social_contribution_score", "float", "charity, employment and honours, 0-100",
                          ge=0, le=100),
            ),
            cadence_days=365,
        ),
        SourceSpec(
            "financials", "filed_statements", "财务报表", "filed financial statements, latest year",
            (
                _money("total_assets_cny", "total assets", visibility=SCORE_ONLY),
                _money("total_liabilities_cny", "total liabilities", visibility=SCORE_ONLY),
                _money("current_assets_cny", "current assets", visibility=SCORE_ONLY),
                _money("current_liabilities_cny", "current liabilities", visibility=SCORE_ONLY),
                _money("revenue_cny", "operating revenue", visibility=SCORE_ONLY),
                _money("cost_of_sales_cny", "cost of sales", visibility=SCORE_ONLY),
                _money("net_profit_cny", "net profit", allow_negative=True, visibility=SCORE_ONLY),
                _money("receivables_cny", "accounts receivable", visibility=SCORE_ONLY),
                _money("inventory_cny", "inventory", visibility=SCORE_ONLY),
                _money("payables_cny", "accounts payable", visibility=SCORE_ONLY),
                _money("interest_expense_cny", "interest expense", visibility=SCORE_ONLY),
                _money("own_funds_cny", "own working capital (自有营运资金)", allow_negative=True,
                       visibility=SCORE_ONLY),
                _money("other_wc_sources_cny", "other working-capital sources", visibility=SCORE_ONLY),
            ),
            cadence_days=365,
        ),
        SourceSpec(
            "credit_bureau", "pboc_credit_reference", "人行征信", "bank-side credit report",
            (
                _money("outstanding_loans_cny", "outstanding loans"),
                _money("working_capital_loans_cny", "outstanding working-capital loans"),
                _count("overdue_count_24m", "overdue instances in the last 24 months", le=1000),
                _count("lending_banks", "number of lending banks", le=1000),
                _money("guarantees_given_cny", "guarantees given to others"),
            ),
            cadence_days=31,
        ),
        SourceSpec(
            "loan_outcomes", "bank_loan_book", "银行信贷台账", "loans and their 12-month outcomes (training)",
            (
                FieldSpec("loan_id", "str", "loan identifier"),
                _money("amount_cny", "loan amount"),
                _flag("default_12m", "90+ days past due or written off within 12 months of as_of"),
            ),
            cadence_days=365,
        ),
    )
}

GOVERNMENT_SOURCES = tuple(n for n in SOURCES if n != "loan_outcomes")


def source(name: str) -> SourceSpec:
    try:
        return SOURCES[name]
    except KeyError:
        raise KeyError(f"unknown source {name!r}; known: {', '.join(SOURCES)}") from None


def all_fields(spec: SourceSpec) -> tuple[FieldSpec, ...]:
    """Key fields, the source's own fields, and the optional consent reference."""
    return (*KEY_FIELDS, *spec.fields, CONSENT_FIELD)
