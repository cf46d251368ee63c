"""Deterministic synthetic region: a Wenzhou-like population of firms with every government source.

`generate_region(firms, seed)` returns one DataFrame per source of the catalogue (`features.sources`),
keyed by (credit_code, as_of), for three yearly snapshots (end_date and the two year-ends before it),
plus `loan_outcomes` for loans started at the two earlier snapshots. `write_region` writes them as one
file per source (`<source>.parquet` or `<source>.csv`) and a `manifest.json`.

Everything is drawn with numpy, vectorised over firms (the only Python loops run over snapshots,
years, sources or fields), from `numpy.random.default_rng(seed)` split into one child stream per
topic, so the same (firms, seed, end_date) always gives identical frames. The distributions and the
reasons for them are documented in docs/synthetic-data.md.

One latent firm quality z ~ N(0, 1) (higher is better) drives the correlated indicators; a size
latent drives scale. `latent_quality(firms, seed)` returns z per credit code for tests and
model-validation studies; it is never part of a source.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features import uscc
from features.sources import (
    ELECTRICITY_MONTHS,
    LEGAL_FORMS,
    LEVELS,
    PER_MU_CLASSES,
    SIZE_CLASSES,
    SOCIAL_SECURITY_MONTHS,
    SOURCES,
    TAX_CREDIT_GRADES,
    TWO_HEALTHY_GRADES,
)

GENERATOR_VERSION = "1.0"
SNAPSHOTS = 3  # as_of = end_date, end_date - 1 year, end_date - 2 years
HISTORY_YEARS = 5  # y0..y2 of the oldest snapshot reach back five years
MONTHS = 12 * HISTORY_YEARS
LOAN_SNAPSHOTS = (1, 2)  # loans need a 12-month outcome: not at the latest snapshot

# Topics with their own random stream; append new topics at the end so existing streams stay put.
_STREAMS = (
    "firms", "history", "production", "tax", "events", "tech", "social_security", "electricity",
    "two_healthy", "locality", "financials", "credit_bureau", "loans", "coverage", "per_mu",
)

# --------------------------------------------------------------------------------------------------
# Region structure: districts, industries, industry groups.

# Share of firms per district (Yueqing and Rui'an are the manufacturing counties, Lucheng the city).
DISTRICT_SHARES = {
    "330302": 0.14, "330303": 0.08, "330304": 0.10, "330305": 0.01, "330324": 0.09, "330326": 0.08,
    "330327": 0.06, "330328": 0.02, "330329": 0.02, "330381": 0.16, "330382": 0.18, "330383": 0.06,
}
DISTRICT_ZH = {
    "lucheng": "鹿城区", "longwan": "龙湾区", "ouhai": "瓯海区", "dongtou": "洞头区", "yongjia": "永嘉县",
    "pingyang": "平阳县", "cangnan": "苍南县", "wencheng": "文成县", "taishun": "泰顺县", "ruian": "瑞安市",
    "yueqing": "乐清市", "longgang": "龙港市",
}


@dataclass(frozen=True)
class IndustryGroup:
    """Economics shared by the industries of a group (medians; firms vary around them)."""

    name: str
    revenue_median: float  # CNY per year, a limited company of average size and age
    productivity: float  # revenue per employee, CNY
    kwh_per_cny: float  # electricity intensity of revenue
    vat_burden: float  # VAT paid / taxable sales for a general taxpayer
    value_added_rate: float  # value added / revenue
    gross_margin: float
    fixed_assets_ratio: float  # fixed and other non-current assets / revenue
    inventory_days: float
    payable_days: float
    individual_share: float  # share of individual businesses (个体工商户)
    tech_bonus: float  # propensity to hold technology qualifications
    emission_per_tce: float  # tonnes of pollutant equivalent per tce


GROUPS = {
    g.name: g
    for g in (
        IndustryGroup("heavy", 5.0e6, 450e3, 0.10, 0.030, 0.22, 0.17, 0.50, 60, 55, 0.03, 0.3, 0.020),
        IndustryGroup("equipment", 6.0e6, 500e3, 0.05, 0.032, 0.26, 0.20, 0.40, 70, 60, 0.02, 0.8, 0.006),
        IndustryGroup("light", 4.0e6, 300e3, 0.04, 0.028, 0.22, 0.18, 0.30, 55, 50, 0.05, 0.0, 0.010),
        IndustryGroup("wholesale", 6.0e6, 1.5e6, 0.004, 0.010, 0.06, 0.08, 0.05, 45, 40, 0.12, -0.8, 0.002),
        IndustryGroup("retail", 1.2e6, 400e3, 0.020, 0.012, 0.10, 0.20, 0.08, 50, 35, 0.45, -1.0, 0.002),
        IndustryGroup("construction", 8.0e6, 600e3, 0.006, 0.025, 0.20, 0.12, 0.10, 40, 70, 0.02, -0.3, 0.004),
        IndustryGroup("tech", 2.0e6, 400e3, 0.010, 0.040, 0.45, 0.45, 0.08, 10, 30, 0.03, 1.2, 0.001),
        IndustryGroup("services", 1.2e6, 250e3, 0.030, 0.030, 0.35, 0.35, 0.15, 10, 30, 0.35, -0.8, 0.003),
    )
}
_GROUP_NAMES = tuple(GROUPS)

# (GB/T 4754-2017 division, share of firms, word used in generated names, group)
INDUSTRIES: tuple[tuple[str, float, str, str], ...] = (
    ("C38", 0.080, "电气", "equipment"),  # electrical machinery: Yueqing's low-voltage electrics
    ("C34", 0.060, "机械", "equipment"),  # general machinery: pumps, valves
    ("C19", 0.050, "鞋业", "light"),  # leather, fur and footwear: Wenzhou shoes
    ("C18", 0.040, "服饰", "light"),  # clothing
    ("C29", 0.040, "塑业", "heavy"),  # rubber and plastics
    ("C36", 0.035, "汽配", "equipment"),  # auto parts: Rui'an
    ("C33", 0.035, "五金", "heavy"),  # metal products
    ("C35", 0.025, "机电", "equipment"),  # special equipment
    ("C39", 0.020, "电子", "equipment"),  # electronics
    ("C23", 0.015, "印务", "light"),  # printing: Longgang
    ("C24", 0.015, "文具", "light"),  # stationery, sports goods: pens, eyewear parts
    ("C40", 0.010, "仪表", "equipment"),  # instruments
    ("C26", 0.010, "化工", "heavy"),  # chemicals
    ("C17", 0.015, "纺织", "heavy"),  # textiles
    ("C22", 0.005, "纸业", "heavy"),  # paper
    ("C21", 0.010, "家具", "light"),  # furniture
    ("C41", 0.010, "工艺品", "light"),  # other manufacturing
    ("F51", 0.140, "商贸", "wholesale"),
    ("F52", 0.090, "商行", "retail"),
    ("E47", 0.025, "建设", "construction"),
    ("E48", 0.015, "建工", "construction"),
    ("E50", 0.020, "装饰工程", "construction"),
    ("I65", 0.040, "网络科技", "tech"),  # software and IT services
    ("M73", 0.020, "科技", "tech"),  # research and development
    ("M75", 0.025, "技术服务", "tech"),  # technology promotion
    ("L72", 0.040, "企业管理", "services"),
    ("H62", 0.030, "餐饮", "services"),
    ("G54", 0.030, "物流", "services"),
    ("K70", 0.010, "置业", "services"),
    ("O80", 0.020, "家政服务", "services"),
    ("A01", 0.010, "农业", "services"),
    ("L71", 0.010, "租赁", "services"),
)
INDUSTRY_CODES = tuple(code for code, *_ in INDUSTRIES)

_TRADE_FIRST = tuple("华正德力天恒宏永金瑞鑫海东新泰安中博嘉兴通盛昌富达诚信立强光")
_TRADE_SECOND = tuple("力通达盛源丰发宇凯星邦科创美诺益远顺和泰隆利祥旺晟辉航扬威雅")
_FORM_SUFFIX = {
    "limited_company": "有限公司", "joint_stock": "股份有限公司", "partnership": "合伙企业",
    "sole_proprietorship": "厂", "individual_business": "经营部",
}

# Seasonal electricity profile by calendar month (Spring Festival dip, summer air conditioning).
_SEASON = np.array([0.95, 0.65, 0.95, 1.00, 1.02, 1.05, 1.12, 1.12, 1.03, 1.00, 1.02, 1.05], dtype=np.float32)

# Production events in a snapshot year (codes, ordered worst to best).
STOPPED, REDUCED, STABLE, INCREASED = 0, 1, 2, 3

# Tax-credit grade mix (national rating) and per-mu class mix (rank within the region).
TAX_GRADE_SHARES = {"A": 0.20, "B": 0.45, "M": 0.20, "C": 0.10, "D": 0.05}
PER_MU_CLASS_SHARES = {"A+": 0.05, "A": 0.20, "B": 0.45, "C": 0.22, "D": 0.08}
# Zhejiang per-mu evaluation weights: tax/mu, value added/mu, labour productivity, VA/energy, VA/emission, R&D.
PER_MU_WEIGHTS = (0.40, 0.20, 0.10, 0.10, 0.10, 0.10)
TWO_HEALTHY_CUTS = ((800.0, "A"), (650.0, "B"), (500.0, "C"))  # else D
ABOVE_SCALE_REVENUE = 20e6  # 规上工业: main business revenue >= CNY 20m
SMALL_SCALE_TAXPAYER_SALES = 5e6  # 小规模纳税人 threshold
TARGET_DEFAULT_RATE = 0.035

# Size classes (工信部联企业〔2011〕300号): (employees, revenue) lower bounds for small, medium, large.
_SIZE_BOUNDS = {
    "C": ((20, 3e6), (300, 20e6), (1000, 400e6)),
    "F51": ((5, 10e6), (20, 50e6), (200, 400e6)),
    "F52": ((10, 1e6), (50, 5e6), (300, 200e6)),
    "E": ((0, 3e6), (0, 60e6), (0, 800e6)),
    "other": ((10, 1e6), (100, 10e6), (300, 100e6)),
}


# --------------------------------------------------------------------------------------------------
# Small helpers.


def _snapshot_dates(end_date: dt.date) -> list[dt.date]:
    """end_date and the same day one and two years earlier (Feb 29 falls back to Feb 28)."""
    out = []
    for k in range(SNAPSHOTS):
        year = end_date.year - k
        try:
            out.append(end_date.replace(year=year))
        except ValueError:
            out.append(end_date.replace(year=year, day=28))
    return out


def _latest_month_number(day: dt.date) -> int:
    """Months since year 0 of the latest complete calendar month at `day`."""
    complete = (day + dt.timedelta(days=1)).day == 1
    number = day.year * 12 + day.month - 1
    return number if complete else number - 1


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _top(score: np.ndarray, mask: np.ndarray, share: float) -> np.ndarray:
    """True for the `share` of `mask` rows with the highest score (False outside the mask)."""
    out = np.zeros(score.shape, dtype=bool)
    if share <= 0 or not mask.any():
        return out
    threshold = np.quantile(score[mask], 1.0 - share)
    return mask & (score > threshold)


def _ordinal(score: np.ndarray, mask: np.ndarray, shares: Sequence[float]) -> np.ndarray:
    """Category codes 0..len(shares)-1 by rank of `score` within `mask`, lowest scores first."""
    cuts = np.cumsum(shares)[:-1]
    thresholds = np.quantile(score[mask], cuts) if mask.any() else np.zeros(len(cuts))
    return np.searchsorted(thresholds, score, side="right").astype(np.int8)


def _round_to(x: np.ndarray, unit: float) -> np.ndarray:
    return np.round(x / unit) * unit


def _money(x: np.ndarray) -> np.ndarray:
    """Whole CNY within the catalogue's money range."""
    return np.clip(np.round(x), 0.0, 1e12)


@dataclass
class _Enum:
    """Category codes (-1 = missing) and their labels, turned into a string column at the end."""

    codes: np.ndarray
    labels: Sequence[str]


def _str_column(values: _Enum | pa.Array) -> pd.Series:
    if isinstance(values, _Enum):
        codes = values.codes.astype(np.int32)
        missing = codes < 0
        array = pa.DictionaryArray.from_arrays(
            pa.array(np.where(missing, 0, codes), mask=missing if missing.any() else None),
            pa.array(list(values.labels), pa.string()),
        ).cast(pa.string())
    else:
        array = values
    return pd.Series(array.to_pandas(), copy=False).astype("str")


# --------------------------------------------------------------------------------------------------
# The firm population (static attributes).


@dataclass
class _Firms:
    n: int
    end_date: dt.date
    z: np.ndarray  # latent quality
    s: np.ndarray  # latent size
    district: np.ndarray  # index into DISTRICT_SHARES
    industry: np.ndarray  # index into INDUSTRIES
    group: np.ndarray  # index into GROUPS
    legal_form: np.ndarray  # index into LEGAL_FORMS
    individual: np.ndarray  # individual business (个体工商户)
    established: np.ndarray  # datetime64[D]
    codes: np.ndarray  # credit codes, U18
    name_parts: tuple[np.ndarray, np.ndarray, np.ndarray]  # prefix choice, trade first, trade second

    @property
    def section(self) -> np.ndarray:
        return np.array([code[0] for code in INDUSTRY_CODES])[self.industry]

    @property
    def manufacturing(self) -> np.ndarray:
        return np.array([code.startswith("C") for code in INDUSTRY_CODES])[self.industry]


def _rngs(seed: int) -> dict[str, np.random.Generator]:
    root = np.random.default_rng(seed)
    return dict(zip(_STREAMS, root.spawn(len(_STREAMS)), strict=True))


def _firm_base(n: int, rng: np.random.Generator, end_date: dt.date) -> _Firms:
    z = rng.standard_normal(n)
    s = 0.3 * z + np.sqrt(1 - 0.09) * rng.standard_normal(n)
    district_codes = np.array(list(DISTRICT_SHARES))
    district = rng.choice(len(district_codes), size=n, p=np.array(list(DISTRICT_SHARES.values())))
    shares = np.array([share for _, share, _, _ in INDUSTRIES])
    industry = rng.choice(len(INDUSTRIES), size=n, p=shares / shares.sum())
    group_of_industry = np.array([_GROUP_NAMES.index(g) for *_, g in INDUSTRIES])
    group = group_of_industry[industry]
    individual_share = np.array([GROUPS[g].individual_share for g in _GROUP_NAMES])[group]
    # Individual businesses are the small end of the size distribution.
    individual = rng.random(n) < individual_share * np.where(s < 0.5, 1.3, 0.4)
    u = rng.random(n)
    form = np.full(n, LEGAL_FORMS.index("limited_company"), dtype=np.int8)
    form[(u < 0.04) & (s > 0.8)] = LEGAL_FORMS.index("joint_stock")
    form[(u >= 0.90) & (u < 0.925)] = LEGAL_FORMS.index("partnership")
    form[u >= 0.96] = LEGAL_FORMS.index("sole_proprietorship")
    form[individual] = LEGAL_FORMS.index("individual_business")
    # Age: gamma (shape 1.5, mean 9 years), between 15 days and 40 years: ~7% under 15 months.
    age_days = np.clip(rng.gamma(1.5, 6 * 365.25, n), 15, 40 * 365.25).astype(np.int64)
    established = np.datetime64(end_date, "D") - age_days.astype("timedelta64[D]")
    # Credit codes: registration authority 9 (market regulation), entity type 1 (enterprise) or
    # 2 (individual business), the district's division code, a unique organisation-code body.
    codes = np.empty(n, dtype="U18")
    divisions = district_codes[district]
    numbers = np.arange(n, dtype=np.int64)
    for entity_type, rows in (("1", ~individual), ("2", individual)):
        if rows.any():
            codes[rows] = uscc.generate(numbers[rows], divisions[rows], entity_type=entity_type)
    name_parts = (
        rng.random(n),
        rng.integers(0, len(_TRADE_FIRST), n),
        rng.integers(0, len(_TRADE_SECOND), n),
    )
    return _Firms(n, end_date, z, s, district, industry, group, form, individual, established, codes,
                  name_parts)


def latent_quality(firms: int, seed: int, end_date: dt.date = dt.date(2025, 12, 31)) -> pd.Series:
    """The latent quality z of each firm of `generate_region(firms, seed, end_date)`, by credit code."""
    base = _firm_base(firms, _rngs(seed)["firms"], end_date)
    return pd.Series(base.z, index=pd.Index(base.codes, name="credit_code", dtype="str"), name="z")


# --------------------------------------------------------------------------------------------------
# The generator.


class _Region:
    """All latent paths of the region; source frames are cut from it per snapshot."""

    def __init__(self, n: int, seed: int, end_date: dt.date) -> None:
        self.rng = _rngs(seed)
        self.seed = seed
        self.f = _firm_base(n, self.rng["firms"], end_date)
        self.n = n
        self.snapshots = _snapshot_dates(end_date)
        self.groups = [GROUPS[g] for g in _GROUP_NAMES]
        self.cache: dict[tuple[str, int], dict[str, object]] = {}
        self.code_array = pa.array(self.f.codes, pa.string())
        self._coverage()
        self._history()
        self._production()
        self._employees()
        self._stress()
        # The monthly level paths are summarised by now; free them (the largest arrays).
        del self.level, self.activity

    def source(self, name: str, k: int) -> dict[str, object]:
        """A source's columns at snapshot k over all firms, computed once (draws happen once)."""
        key = (name, k)
        if key not in self.cache:
            self.cache[key] = _SOURCE_BUILDERS[name](self, k)
        return self.cache[key]

    def forget(self, name: str) -> None:
        for k in range(SNAPSHOTS):
            self.cache.pop((name, k), None)

    def gparam(self, attribute: str) -> np.ndarray:
        """A group parameter per firm."""
        return np.array([getattr(g, attribute) for g in self.groups])[self.f.group]

    # ---- who is covered by which source (static per firm; a row also needs the firm to exist)

    def _coverage(self) -> None:
        r, f, n = self.rng["coverage"], self.f, self.n
        indiv = f.individual
        manuf = f.manufacturing
        self.cov: dict[str, np.ndarray] = {"registry": np.ones(n, bool), "judicial": np.ones(n, bool)}
        self.cov["tax"] = r.random(n) < np.where(indiv, 0.95, 0.995)
        self.cov["per_mu"] = manuf & (r.random(n) < _sigmoid(1.0 + 0.8 * f.s) * np.where(indiv, 0.5, 1.0))
        self.tech_latent = (0.45 * f.z + 0.35 * f.s + self.gparam("tech_bonus") - 2.0 * indiv
                            + 0.75 * r.standard_normal(n))
        self.cov["tech"] = _top(self.tech_latent, np.ones(n, bool), 0.25)
        self.cov["social_security"] = r.random(n) < np.where(indiv, 0.30, 0.99)
        self.cov["electricity"] = r.random(n) < np.where(manuf, 0.96, 0.655)
        self.cov["two_healthy"] = _top(0.5 * f.z + 0.5 * f.s - 1.0 * indiv + r.standard_normal(n),
                                       np.ones(n, bool), 0.40)
        self.cov["locality"] = r.random(n) < np.where(indiv, 0.03, 0.07)
        cb_score = 0.7 * f.s + 0.3 * f.z - 1.5 * indiv + r.standard_normal(n)
        self.cov["credit_bureau"] = _top(cb_score, np.ones(n, bool), 0.60)
        u = r.random(n)
        self.cov["financials"] = np.where(self.cov["credit_bureau"], u < 0.95, (u < 0.42) & ~indiv)
        # Snapshot existence: a firm has rows at a snapshot only once established.
        self.exists = [f.established <= np.datetime64(d, "D") for d in self.snapshots]

    # ---- yearly underlying revenue path (before production shocks and start-up ramp)

    def _history(self) -> None:
        r, f, n = self.rng["history"], self.f, self.n
        age_years = (np.datetime64(f.end_date, "D") - f.established).astype(np.float64) / 365.25
        log_latest = (np.log(self.gparam("revenue_median")) + 1.25 * f.s + 0.2 * f.z
                      + 0.25 * (np.log1p(age_years) - np.log1p(9.0)) - 1.3 * f.individual)
        self.growth = 0.03 + 0.03 * f.z + 0.04 * r.standard_normal(n)
        steps = self.growth[:, None] + 0.06 * r.standard_normal((n, HISTORY_YEARS - 1))
        # log revenue of year t (t = 0 oldest ... 4 latest) = latest minus the later steps
        back = np.concatenate([np.cumsum(steps[:, ::-1], axis=1)[:, ::-1], np.zeros((n, 1))], axis=1)
        self.revenue_underlying = np.exp(log_latest[:, None] - back)

    # ---- monthly production level: events in each snapshot year, start-up ramp

    def _production(self) -> None:
        r, f, n = self.rng["production"], self.f, self.n
        j = np.arange(MONTHS)
        start_number = _latest_month_number(f.end_date) - (MONTHS - 1)
        self.calendar_month = (start_number + j) % 12
        est = f.established.astype("datetime64[M]").astype(np.int64)  # months since 1970-01
        est_index = (est + 1970 * 12) - start_number  # window index of the month of establishment
        since = j.astype(np.float32)[None, :] - est_index.astype(np.float32)[:, None]
        ramp = np.clip((since + 1) / 6, 0.25, 1.0)
        ramp[since < 0] = 0.0
        del since
        level = np.ones((n, MONTHS), dtype=np.float32)
        previous = np.ones(n)
        self.events = np.full((n, SNAPSHOTS), STABLE, dtype=np.int8)  # column = year 2, 3, 4
        for col, year in enumerate(range(HISTORY_YEARS - SNAPSHOTS, HISTORY_YEARS)):
            w = 0.5 * f.z + np.sqrt(0.75) * r.standard_normal(n)
            u = r.random(n)
            event = np.full(n, STABLE, dtype=np.int8)
            event[w > 1.6] = INCREASED
            event[w < -1.35] = REDUCED
            event[w < -2.15] = STOPPED
            factor = np.select(
                [event == INCREASED, event == REDUCED, event == STOPPED],
                [1.3 + 0.5 * u, 0.35 + 0.4 * u, np.zeros(n)],
                0.92 + 0.16 * u,
            )
            new_level = previous * factor
            was_stopped = previous == 0
            restart = was_stopped & (r.random(n) < _sigmoid(-0.85 + 0.5 * f.z))
            event[was_stopped] = STOPPED
            event[restart] = INCREASED
            new_level = np.where(was_stopped, np.where(restart, 0.4 + 0.5 * u, 0.0), new_level)
            onset = 12 * year + r.integers(6, 10, n)  # July to October of that year
            # A firm not yet in business (or just starting) has no event that year.
            not_yet = onset < est_index + 3
            event[not_yet] = STABLE
            new_level = np.where(not_yet, previous, new_level)
            np.copyto(level, new_level[:, None].astype(np.float32), where=j[None, :] >= onset[:, None])
            self.events[:, col] = event
            previous = new_level
        self.level = level
        self.activity = ramp * level  # 0 before establishment and while stopped
        del ramp
        yearly_activity = self.activity.reshape(n, HISTORY_YEARS, 12).mean(axis=2, dtype=np.float64)
        self.revenue = self.revenue_underlying * yearly_activity  # actual revenue per year
        self.yearly_activity = yearly_activity
        # Monthly electricity for every firm (observed only where covered): intensity x revenue x season.
        intensity = self.gparam("kwh_per_cny") * np.exp(0.3 * r.standard_normal(n))
        monthly_base = (intensity[:, None] * self.revenue_underlying / 12).astype(np.float32)
        kwh = np.repeat(monthly_base, 12, axis=1)
        kwh *= _SEASON[self.calendar_month][None, :]
        kwh *= self.activity
        kwh *= np.exp(0.05 * r.standard_normal((n, MONTHS), dtype=np.float32))
        self.kwh = np.round(kwh)
        del kwh
        # Production state at each snapshot as the electricity rule in features.derive sees it.
        self.observed_state = []
        for k in range(SNAPSHOTS):
            latest = MONTHS - 1 - 12 * k
            recent = self.kwh[:, latest - 2: latest + 1].mean(axis=1, dtype=np.float64)
            base = self.kwh[:, latest - 14: latest - 11].mean(axis=1, dtype=np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                yoy = np.where(base > 0, recent / base, np.where(recent > 0, np.inf, 0.0))
            state = np.select([yoy < 0.05, yoy < 0.8, yoy > 1.2], [STOPPED, REDUCED, INCREASED], STABLE)
            self.observed_state.append(state.astype(np.int8))

    def event_in_year(self, k: int) -> np.ndarray:
        """Production event of the year ending at snapshot k."""
        return self.events[:, SNAPSHOTS - 1 - k]

    def year(self, k: int, lag: int) -> int:
        """History year index of field `_y<lag>` at snapshot k."""
        return HISTORY_YEARS - 1 - k - lag

    # ---- employees: a base head count following revenue and production

    def _employees(self) -> None:
        r, f, n = self.rng["social_security"], self.f, self.n
        base = self.revenue_underlying[:, -1] / self.gparam("productivity") * np.exp(0.35 * r.standard_normal(n))
        base = np.where(f.individual, np.minimum(base, 8.0), base)
        base = np.maximum(base, 0.6)
        first = MONTHS - 12 * SNAPSHOTS  # months covered by the three snapshots' 12-month windows
        year_of_month = np.arange(first, MONTHS) // 12
        scale = np.sqrt(self.revenue_underlying / self.revenue_underlying[:, -1:]).astype(np.float32)
        level = self.level[:, first:]
        # Staff follow production (square root: firms keep people through a dip); a stopped firm
        # keeps a skeleton crew; nobody before establishment.
        staffing = np.sqrt(np.minimum(level, 1.6))
        staffing[(self.activity[:, first:] == 0) & (level > 0)] = 0.0
        staffing[level == 0] = 0.15
        staffing *= np.exp(0.03 * r.standard_normal((n, staffing.shape[1]), dtype=np.float32))
        staffing *= base.astype(np.float32)[:, None]
        staffing *= scale[:, year_of_month]
        heads = np.round(staffing)
        del staffing
        months = heads.shape[1]
        # Average head count per snapshot year; the insured are a firm-specific share of the staff.
        self._average_employees = np.round(
            heads.reshape(n, months // 12, 12).mean(axis=2, dtype=np.float64)).astype(np.int64)
        self.insured_share = np.clip(0.88 + 0.05 * f.z + 0.06 * r.standard_normal(n), 0.4, 1.0)
        heads *= self.insured_share.astype(np.float32)[:, None]
        self.insured = np.round(heads).astype(np.int32)  # months first..MONTHS-1
        self.month_offset = first

    def average_employees(self, k: int) -> np.ndarray:
        """Average staff over the 12 months up to snapshot k."""
        return self._average_employees[:, SNAPSHOTS - 1 - k]

    # ---- stress: per-snapshot weakness driving flags and counts

    def _stress(self) -> None:
        r, f, n = self.rng["events"], self.f, self.n
        noise = r.standard_normal(n)
        self.stress = [np.empty(0)] * SNAPSHOTS
        for k in range(SNAPSHOTS - 1, -1, -1):  # oldest first, AR(1) noise
            latest = MONTHS - 1 - 12 * k
            stopped = (self.level[:, latest] == 0) & (self.activity[:, latest - 12:latest + 1].max(axis=1) > 0)
            event = self.event_in_year(k)
            self.stress[k] = -f.z + 0.5 * noise + 1.3 * stopped + 0.6 * (event == REDUCED)
            noise = 0.7 * noise + np.sqrt(0.51) * r.standard_normal(n)
        self.stopped = [(self.level[:, MONTHS - 1 - 12 * k] == 0) for k in range(SNAPSHOTS)]
        persistent = r.standard_normal(n)
        self.flags: dict[str, list[np.ndarray]] = {key: [] for key in (
            "abnormal_operation", "dishonest_debtor", "tax_arrears", "wage_arrears")}
        for k in range(SNAPSHOTS):
            h, alive = self.stress[k], self.exists[k]
            self.flags["abnormal_operation"].append(
                _top(h + 1.5 * self.stopped[k] + 0.8 * r.standard_normal(n), alive, 0.03))
            self.flags["dishonest_debtor"].append(
                _top(h + 0.6 * persistent + 0.4 * r.standard_normal(n), alive, 0.025))
            self.flags["tax_arrears"].append(_top(h + 0.8 * r.standard_normal(n), alive, 0.03))
            self.flags["wage_arrears"].append(
                _top(h + 0.8 * self.stopped[k] + 0.8 * r.standard_normal(n), alive, 0.015))
        # Tax-credit grade: rank of a noisy weakness score; firms under a year old are rated M.
        self.tax_grade: list[np.ndarray] = []
        self.tax_score: list[np.ndarray] = []
        rt = self.rng["tax"]
        order = ("D", "C", "M", "B", "A")  # ordinal codes 0..4, worst first
        bands = {"D": (10, 40), "C": (40, 70), "M": (70, 90), "B": (70, 90), "A": (90, 100)}
        for k, day in enumerate(self.snapshots):
            alive = self.exists[k]
            young = f.established > np.datetime64(day, "D") - np.timedelta64(365, "D")
            rated = alive & ~young
            young_share = (young & alive).sum() / max(alive.sum(), 1)
            shares = np.array([TAX_GRADE_SHARES[g] for g in order])
            shares[order.index("M")] = max(shares[order.index("M")] - young_share, 0.0)
            shares = shares / shares.sum()
            t = -self.stress[k] + 0.5 * rt.standard_normal(n) - 1.0 * self.flags["tax_arrears"][k]
            grade = _ordinal(t, rated, shares)
            # Position within the grade's band, from the score's rank inside the grade.
            cuts = np.concatenate([[-np.inf], np.quantile(t[rated], np.cumsum(shares)[:-1]), [np.inf]])
            lo_t = np.quantile(t[rated], 0.001) if rated.any() else -3.0
            hi_t = np.quantile(t[rated], 0.999) if rated.any() else 3.0
            low = np.maximum(cuts[grade], lo_t)
            high = np.minimum(cuts[grade + 1], hi_t)
            position = np.clip((t - low) / np.maximum(high - low, 1e-9), 0.0, 1.0)
            band_lo = np.array([bands[g][0] for g in order])[grade]
            band_hi = np.array([bands[g][1] for g in order])[grade]
            score = band_lo + (band_hi - band_lo) * position
            grade = np.where(young, order.index("M"), grade)
            score = np.where(young, 70 + 20 * rt.random(n), score)
            labels_index = np.array([TAX_CREDIT_GRADES.index(g) for g in order])
            self.tax_grade.append(labels_index[grade].astype(np.int8))
            self.tax_score.append(np.clip(np.round(score, 1), 0.0, 100.0))

    # ---- helpers used by several sources

    def taxable_sales(self) -> np.ndarray:
        """Taxable sales per history year (revenue x a firm's reporting ratio)."""
        if not hasattr(self, "_taxable"):
            r = self.rng["tax"]
            ratio = np.clip(0.95 + 0.02 * self.f.z + 0.03 * r.standard_normal(self.n), 0.7, 1.0)
            self._taxable = _money(self.revenue * ratio[:, None])
            general = self.gparam("vat_burden") * np.exp(0.25 * r.standard_normal(self.n))
            small = 0.01 * (0.9 + 0.1 * r.random(self.n))
            rate = np.where(self._taxable < SMALL_SCALE_TAXPAYER_SALES, small[:, None], general[:, None])
            self._vat = _money(self._taxable * rate)
        return self._taxable

    def vat(self) -> np.ndarray:
        self.taxable_sales()
        return self._vat

    def profit(self, k: int) -> np.ndarray:
        """Net profit of the latest year at snapshot k (fixed costs bite when production falls)."""
        if not hasattr(self, "_margin"):
            r = self.rng["financials"]
            gm = np.clip(self.gparam("gross_margin") + 0.04 * self.f.z + 0.05 * r.standard_normal(self.n),
                         0.03, 0.7)
            self._gross_margin = gm
            static = 0.03 + 0.04 * self.f.z + 0.025 * r.standard_normal(self.n)
            self._margin = np.clip(static[:, None] + 0.02 * r.standard_normal((self.n, HISTORY_YEARS)),
                                   -0.5, gm[:, None] - 0.01)
        t = self.year(k, 0)
        idle = np.clip(1.0 - self.yearly_activity[:, t], 0.0, 1.0)
        return self.revenue[:, t] * self._margin[:, t] - 0.06 * self.revenue_underlying[:, t] * idle

    def rd_ratio(self, k: int, hte: np.ndarray, tech_sme: np.ndarray) -> np.ndarray:
        if not hasattr(self, "_rd_u"):
            r = self.rng["tech"]
            self._rd_u = r.random(self.n)
            self._rd_any = r.random(self.n) < 0.25
        u, covered = self._rd_u, self.cov["tech"]
        return np.select(
            [hte, tech_sme, covered, self._rd_any & ~self.f.individual],
            [0.032 + 0.04 * u, 0.02 + 0.03 * u, 0.003 + 0.027 * u, 0.001 + 0.009 * u],
            0.0,
        )

    def tech_state(self, k: int) -> dict[str, np.ndarray]:
        """Technology qualifications at snapshot k (computed for every firm; observed if covered)."""
        if not hasattr(self, "_tech_states"):
            self._tech_states: list[dict[str, np.ndarray]] = []
            r, n, f = self.rng["tech"], self.n, self.f
            covered = self.cov["tech"]
            noise = 0.15 * r.standard_normal((n, SNAPSHOTS))
            hte_u, sme_u, uni_u = r.standard_normal(n), r.standard_normal(n), r.standard_normal(n)
            level_u, platform_u = r.standard_normal(n), r.standard_normal(n)
            for k2 in range(SNAPSHOTS):
                tau = self.tech_latent - 0.12 * k2 + noise[:, k2]
                self._tech_states.append({
                    "tau": tau,
                    "high_tech_enterprise": _top(tau + 0.3 * hte_u, covered, 0.20 - 0.02 * k2),
                    "tech_sme": _top(tau + 0.6 * sme_u, covered, 0.45 - 0.04 * k2) & (f.s < 2.0),
                    "university_cooperation": _top(tau + 0.8 * uni_u, covered, 0.25),
                    "level_score": tau + 0.3 * f.s + 0.4 * level_u,
                    "platform_score": tau + 0.3 * f.s + 0.5 * platform_u,
                })
        return self._tech_states[k]


def _level_codes(score: np.ndarray, mask: np.ndarray, shares: tuple[float, float, float]) -> np.ndarray:
    """LEVELS codes: national / provincial / city for the top shares of `score` in `mask`."""
    national, provincial, city = shares
    out = np.zeros(score.shape, dtype=np.int8)
    out[_top(score, mask, national + provincial + city)] = LEVELS.index("city")
    out[_top(score, mask, national + provincial)] = LEVELS.index("provincial")
    out[_top(score, mask, national)] = LEVELS.index("national")
    return out


# --------------------------------------------------------------------------------------------------
# Sources: each returns the columns for snapshot k as arrays over all firms (rows are cut later).


def _registry(g: _Region, k: int) -> dict[str, object]:
    f, n = g.f, g.n
    t = g.year(k, 0)
    revenue = g.revenue[:, t]
    employees = g.average_employees(k)
    section = f.section
    industry_codes = np.array(INDUSTRY_CODES)[f.industry]
    size = np.zeros(n, dtype=np.int8)
    for key, bounds in _SIZE_BOUNDS.items():
        if key == "other":
            rows = ~np.isin(section, ["C", "E"]) & ~np.isin(industry_codes, ["F51", "F52"])
        elif len(key) == 1:
            rows = section == key
        else:
            rows = industry_codes == key
        for level, (min_emp, min_rev) in enumerate(bounds, start=1):
            size[rows & (employees >= min_emp) & (revenue >= min_rev)] = level
    if not hasattr(g, "_registered_capital"):
        r = g.rng["firms"]
        capital = g.revenue_underlying[:, 0] * np.exp(-0.5 + 0.8 * r.standard_normal(n))
        capital = np.where(f.individual, np.clip(capital * 0.1, 1e4, 5e5), np.clip(capital, 1e4, 5e9))
        g._registered_capital = np.maximum(_round_to(capital, 1e4), 1e4)
    r = g.rng["events"]
    penalties = r.poisson(np.exp(-2.2 + 0.5 * g.stress[k] + 0.2 * f.s))
    return {
        "name": None,  # filled by the assembler (string work done once per row)
        "legal_form": _Enum(f.legal_form, LEGAL_FORMS),
        "established_date": f.established.astype("datetime64[us]"),
        "registered_capital_cny": g._registered_capital,
        "industry_code": _Enum(f.industry, INDUSTRY_CODES),
        "district": _Enum(f.district, tuple(uscc.WENZHOU_DIVISIONS[d] for d in DISTRICT_SHARES)),
        "size_class": _Enum(size, SIZE_CLASSES),
        "abnormal_operation": g.flags["abnormal_operation"][k],
        "admin_penalties_3y": np.minimum(penalties, 10_000),
    }


def _tax(g: _Region, k: int) -> dict[str, object]:
    sales, vat = g.taxable_sales(), g.vat()
    tech = g.tech_state(k)
    profit = g.profit(k)
    f = g.f
    hte = tech["high_tech_enterprise"]
    small_low_profit = (profit < 3e6) & (g.average_employees(k) <= 300)
    rate = np.select([hte, small_low_profit], [0.15, 0.05], 0.25)
    corporate = ~np.isin(f.legal_form, [LEGAL_FORMS.index("individual_business"),
                                        LEGAL_FORMS.index("partnership"),
                                        LEGAL_FORMS.index("sole_proprietorship")])
    cit = _money(np.maximum(profit, 0.0) * rate * corporate)
    rd = g.rd_ratio(k, hte, tech["tech_sme"]) * g.revenue[:, g.year(k, 0)]
    if not hasattr(g, "_claims"):
        g._claims = g.rng["tax"].random(g.n) < np.where(g.cov["tech"], 0.9, 0.6)
    out: dict[str, object] = {
        "tax_credit_grade": _Enum(g.tax_grade[k], TAX_CREDIT_GRADES),
        "tax_credit_score": g.tax_score[k],
    }
    for lag in range(3):
        out[f"taxable_sales_cny_y{lag}"] = sales[:, g.year(k, lag)]
    for lag in range(3):
        out[f"vat_paid_cny_y{lag}"] = vat[:, g.year(k, lag)]
    out["corporate_income_tax_cny"] = cit
    out["rd_super_deduction_cny"] = _money(rd * (g._claims & corporate))  # 100% additional deduction
    out["tax_arrears"] = g.flags["tax_arrears"][k]
    return out


def _per_mu(g: _Region, k: int) -> dict[str, object]:
    f, n, r = g.f, g.n, g.rng["per_mu"]
    if not hasattr(g, "_land"):
        productivity = 1.5e6 * np.exp(0.3 * f.z + 0.5 * r.standard_normal(n))  # revenue per mu
        g._land = np.clip(np.round(g.revenue_underlying[:, 2] / productivity, 2), 0.5, 5000.0)
        g._va_rate = np.clip(g.gparam("value_added_rate") + 0.03 * f.z + 0.03 * r.standard_normal(n), 0.05, 0.5)
        g._fuel = 1.0 + 0.6 * r.random(n)
        g._emission = g.gparam("emission_per_tce") * np.exp(0.5 * r.standard_normal(n))
        g._land_tax = 4000.0 * (0.6 + 0.8 * r.random(n))  # urban land use tax, CNY per mu and year
        g._evaluated_u = r.random(n)
        g._uninsured = r.random(n)
    t = g.year(k, 0)
    latest = MONTHS - 1 - 12 * k
    land = g._land
    revenue = _money(g.revenue[:, t])
    value_added = _money(revenue * g._va_rate)
    annual_kwh = g.kwh[:, latest - 11: latest + 1].sum(axis=1, dtype=np.float64)
    energy = np.round(annual_kwh * 1.229e-4 * g._fuel, 1)  # 0.1229 kgce per kWh
    emissions = np.round(energy * g._emission, 3)
    tax_data = g.source("tax", k)
    tax_paid = _money(tax_data["vat_paid_cny_y0"] + tax_data["corporate_income_tax_cny"]  # type: ignore[operator]
                      + land * g._land_tax)
    employees = g.average_employees(k)
    employees = np.round(employees * (1.0 + 0.12 * g._uninsured)).astype(np.int64)  # some staff uninsured
    tech = g.tech_state(k)
    rd_expense = _money(g.rd_ratio(k, tech["high_tech_enterprise"], tech["tech_sme"]) * revenue)
    above_scale = revenue >= ABOVE_SCALE_REVENUE
    # Official class: rank of the weighted per-mu score among evaluated firms of the region.
    covered = g.cov["per_mu"] & g.exists[k]
    evaluated = covered & (g._evaluated_u < np.where(above_scale | (land >= 3.0), 0.97, 0.70))
    with np.errstate(divide="ignore", invalid="ignore"):
        indicators = (
            tax_paid / land,
            value_added / land,
            value_added / np.maximum(employees, 1),
            np.where(energy > 0, value_added / energy, 0.0),
            np.where(emissions > 0, value_added / emissions, 0.0),
            np.where(revenue > 0, rd_expense / revenue, 0.0),
        )
    score = np.zeros(n)
    for weight, value in zip(PER_MU_WEIGHTS, indicators, strict=True):
        benchmark = np.median(value[evaluated]) if evaluated.any() else 1.0
        score += weight * np.minimum(value / max(benchmark, 1e-9), 3.0)
    order = ("D", "C", "B", "A", "A+")
    shares = [PER_MU_CLASS_SHARES[c] for c in order]
    klass = _ordinal(score, evaluated, shares)
    label_index = np.array([PER_MU_CLASSES.index(c) for c in order])
    klass = np.where(evaluated, label_index[klass], -1)
    return {
        "land_area_mu": land,
        "tax_paid_cny": tax_paid,
        "value_added_cny": value_added,
        "energy_use_tce": energy,
        "emissions_t": emissions,
        "employees": employees,
        "rd_expense_cny": rd_expense,
        "revenue_cny": revenue,
        "per_mu_class": _Enum(klass, PER_MU_CLASSES),
        "above_scale": above_scale,
    }


def _tech(g: _Region, k: int) -> dict[str, object]:
    f, n = g.f, g.n
    state = g.tech_state(k)
    covered = g.cov["tech"]
    tau = state["tau"]
    if not hasattr(g, "_tech_counts"):
        # Latest counts, thinned binomially for earlier snapshots so that counts never fall over time.
        r = g.rng["tech"]
        is_software = np.isin(np.array(INDUSTRY_CODES)[f.industry], ["I65"])
        gamma = r.gamma(1.5, 1 / 1.5, (3, n))
        means = (
            np.exp(-0.6 + 1.0 * tau + 0.4 * f.s) * gamma[0],
            np.exp(0.6 + 0.8 * tau + 0.4 * f.s) * gamma[1],
            np.exp(np.where(is_software, 1.4, -1.2) + 0.6 * tau) * gamma[2],
        )
        latest = [np.minimum(r.poisson(m), 100_000) for m in means]
        counts = []
        for name, values in zip(("invention_patents", "utility_models", "software_copyrights"), latest, strict=True):
            per_snapshot = [values]
            for _ in range(SNAPSHOTS - 1):
                per_snapshot.append(r.binomial(per_snapshot[-1], 0.82))
            counts.append((name, per_snapshot))
        g._tech_counts = dict(counts)
        g._tech_share = np.clip(0.06 + 0.05 * tau + np.where(is_software, 0.2, 0.0), 0.01, 0.6)
        g._talent_mean = np.exp(-1.5 + 0.8 * tau + 0.3 * f.s)
        g._award_mean = np.exp(-2.5 + 0.9 * tau)
        funded = _top(tau + 0.5 * f.s + r.standard_normal(n), covered, 0.06)
        g._funding_amount = np.where(funded, _round_to(5e6 * np.exp(0.9 * r.standard_normal(n)), 1e4), 0.0)
        g._funding_year = r.integers(0, HISTORY_YEARS + 1, n)  # years before end_date
    r = g.rng["tech"]
    hte = state["high_tech_enterprise"]
    employees = g.average_employees(k)
    share = np.clip(g._tech_share + 0.06 * hte, 0.0, 0.9)
    rd_staff = r.binomial(employees, share)
    talent = np.minimum(r.poisson(g._talent_mean), rd_staff)
    in_window = (g._funding_year >= k) & (g._funding_year < k + 3)
    return {
        "high_tech_enterprise": hte,
        "tech_sme": state["tech_sme"],
        "specialized_level": _Enum(_level_codes(state["level_score"], covered, (0.008, 0.04, 0.10)), LEVELS),
        "invention_patents": g._tech_counts["invention_patents"][k],
        "utility_models": g._tech_counts["utility_models"][k],
        "software_copyrights": g._tech_counts["software_copyrights"][k],
        "rd_staff": rd_staff,
        "high_level_talent": talent,
        "rd_platform_level": _Enum(_level_codes(state["platform_score"], covered, (0.01, 0.06, 0.15)), LEVELS),
        "university_cooperation": state["university_cooperation"],
        "tech_awards": np.minimum(r.poisson(g._award_mean), 10_000),
        "equity_funding_cny": g._funding_amount * in_window,
    }


def _social_security(g: _Region, k: int) -> dict[str, object]:
    latest = MONTHS - 1 - 12 * k - g.month_offset
    out: dict[str, object] = {
        f"insured_employees_m{m:02d}": g.insured[:, latest - (m - 1)] for m in range(1, SOCIAL_SECURITY_MONTHS + 1)
    }
    out["wage_arrears"] = g.flags["wage_arrears"][k]
    return out


def _electricity(g: _Region, k: int) -> dict[str, object]:
    latest = MONTHS - 1 - 12 * k
    return {f"kwh_m{m:02d}": g.kwh[:, latest - (m - 1)] for m in range(1, ELECTRICITY_MONTHS + 1)}


def _judicial(g: _Region, k: int) -> dict[str, object]:
    r, f = g.rng["events"], g.f
    dishonest = g.flags["dishonest_debtor"][k]
    h = g.stress[k]
    enforcement = r.poisson(np.exp(-3.5 + 1.0 * h)) + dishonest * (1 + r.poisson(1.5, g.n))
    litigation = r.poisson(np.exp(-1.8 + 0.5 * h + 0.4 * f.s)) + enforcement // 2
    return {
        "dishonest_debtor": dishonest,
        "enforcement_cases": np.minimum(enforcement, 100_000),
        "litigation_count": np.minimum(litigation, 100_000),
    }


def _two_healthy(g: _Region, k: int) -> dict[str, object]:
    r, f, n = g.rng["two_healthy"], g.f, g.n
    enterprise = np.clip(np.round(350 - 45 * g.stress[k] + 30 * f.s + 40 * r.standard_normal(n), 1), 0, 600)
    entrepreneur = np.clip(np.round(260 + 40 * f.z + 35 * r.standard_normal(n), 1), 0, 400)
    total = enterprise + entrepreneur
    grade = np.full(n, TWO_HEALTHY_GRADES.index("D"), dtype=np.int8)
    for cut, label in reversed(TWO_HEALTHY_CUTS):
        grade[total >= cut] = TWO_HEALTHY_GRADES.index(label)
    clean = ~g.flags["dishonest_debtor"][k] & ~g.flags["abnormal_operation"][k]
    whitelisted = (grade <= TWO_HEALTHY_GRADES.index("B")) & clean
    return {
        "enterprise_points": enterprise,
        "entrepreneur_points": entrepreneur,
        "total_points": total,
        "grade": _Enum(grade, TWO_HEALTHY_GRADES),
        "whitelisted": whitelisted,
    }


def _locality(g: _Region, k: int) -> dict[str, object]:
    f, n = g.f, g.n
    if not hasattr(g, "_locality"):
        r = g.rng["locality"]
        age = (np.datetime64(f.end_date, "D") - f.established).astype(np.float64) / 365.25
        g._locality = {
            "years": np.clip(age + r.gamma(2.0, 3.0, n), 0.0, 60.0),
            "children": r.choice(4, size=n, p=[0.45, 0.30, 0.20, 0.05]),
            "property": r.random(n) < _sigmoid(0.2 + 0.6 * f.s),
            "contribution": 12 * r.standard_normal(n),
        }
    loc = g._locality
    return {
        "chamber_member": np.ones(n, dtype=bool),
        "years_in_locality": np.round(np.clip(loc["years"] - k, 0.0, 100.0), 1),
        "children_in_local_school": loc["children"],
        "local_property": loc["property"],
        "social_contribution_score": np.round(np.clip(50 - 15 * g.stress[k] + 10 * f.s + loc["contribution"],
                                                      0, 100), 1),
    }


def _bank_loans(g: _Region, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Outstanding and working-capital bank loans at snapshot k (zero without a bank relationship)."""
    if not hasattr(g, "_leverage"):
        r, n = g.rng["credit_bureau"], g.n
        g._leverage = np.exp(np.log(0.18) - 0.15 * g.f.z + 0.5 * r.standard_normal(n))
        g._has_loan = g.cov["credit_bureau"] & (r.random(n) < 0.9)
        g._wc_share = 0.5 + 0.5 * r.random(n)
        g._loan_noise = np.exp(0.12 * r.standard_normal((n, SNAPSHOTS)))
        g._guarantor = r.random(n) < 0.3
        g._guarantee_ratio = np.exp(-0.2 + 0.7 * r.standard_normal(n))
    t = g.year(k, 0)
    # Banks cut lines as production falls: exposure follows half the underlying scale, half activity.
    scale = g.revenue_underlying[:, t] * (0.5 + 0.5 * np.minimum(g.yearly_activity[:, t], 1.0))
    loans = _round_to(scale * g._leverage * g._loan_noise[:, k], 1e4) * g._has_loan
    loans = np.clip(loans, 0.0, 1e12)
    working = np.minimum(_round_to(loans * g._wc_share, 1e4), loans)
    return loans, working


def _credit_bureau(g: _Region, k: int) -> dict[str, object]:
    r = g.rng["credit_bureau"]
    loans, working = _bank_loans(g, k)
    h = g.stress[k]
    overdue = r.poisson(np.exp(-3.0 + 1.1 * h)) + g.flags["dishonest_debtor"][k] * r.poisson(2.0, g.n)
    extra = np.maximum(0.45 * (np.log(np.maximum(loans, 1.0)) - np.log(1e6)), 0.0) + 0.25 * np.maximum(-g.f.z, 0)
    banks = np.where(loans > 0, 1 + r.poisson(extra), 0)
    guarantees = np.where(g._guarantor & (loans > 0), _round_to(loans * g._guarantee_ratio, 1e4), 0.0)
    return {
        "outstanding_loans_cny": loans,
        "working_capital_loans_cny": working,
        "overdue_count_24m": np.minimum(overdue, 1000),
        "lending_banks": np.minimum(banks, 1000),
        "guarantees_given_cny": np.clip(guarantees, 0.0, 1e12),
    }


def _financials(g: _Region, k: int) -> dict[str, object]:
    f, n = g.f, g.n
    if not hasattr(g, "_fin"):
        r = g.rng["financials"]
        g._fin = {
            "dso": np.clip(60 - 12 * f.z + 20 * r.standard_normal(n), 5, 250),
            "dio": g.gparam("inventory_days") * np.exp(0.35 * r.standard_normal(n) - 0.1 * f.z),
            "dpo": g.gparam("payable_days") * np.exp(0.35 * r.standard_normal(n) - 0.1 * f.z),
            "cash": (0.03 + 0.17 * r.random(n)) * np.exp(0.3 * f.z),
            "other_ca": 0.05 * r.random(n),
            "fixed": g.gparam("fixed_assets_ratio") * np.exp(0.4 * r.standard_normal(n)),
            "debt": np.clip(0.55 - 0.12 * f.z + 0.12 * r.standard_normal(n), 0.08, 1.4),
            "other_wc": np.where(r.random(n) < 0.4, 0.04 * r.random(n), 0.0),
            "rate": np.clip(0.035 + 0.03 * r.random(n) - 0.005 * f.z, 0.025, 0.09),
            "private": np.where(r.random(n) < 0.1, 0.01 * r.random(n), 0.0),
            "noise": np.exp(0.1 * r.standard_normal((n, SNAPSHOTS))),
        }
    p = g._fin
    g.profit(k)  # make sure margins exist
    t = g.year(k, 0)
    revenue = g.revenue[:, t]
    cost = revenue * (1 - g._gross_margin)
    receivables = revenue * p["dso"] * p["noise"][:, k] / 360
    inventory = cost * p["dio"] / 360
    payables = cost * p["dpo"] / 360
    current_assets = receivables + inventory + revenue * (p["cash"] + p["other_ca"])
    # Fixed assets follow the underlying scale, so a stopped firm keeps its plant.
    total_assets = current_assets + g.revenue_underlying[:, t] * p["fixed"]
    loans, working = _bank_loans(g, k)
    liabilities = np.maximum(p["debt"] * total_assets, payables + loans)
    other = liabilities - payables - loans
    current_liabilities = np.minimum(liabilities, payables + working + 0.7 * other)
    interest = loans * p["rate"] + revenue * p["private"]
    out = {
        "total_assets_cny": _money(total_assets),
        "total_liabilities_cny": _money(liabilities),
        "current_assets_cny": _money(current_assets),
        "current_liabilities_cny": _money(current_liabilities),
        "revenue_cny": _money(revenue),
        "cost_of_sales_cny": _money(cost),
        "net_profit_cny": np.clip(np.round(g.profit(k)), -1e12, 1e12),
        "receivables_cny": _money(receivables),
        "inventory_cny": _money(inventory),
        "payables_cny": _money(payables),
        "interest_expense_cny": _money(interest),
    }
    out["own_funds_cny"] = out["current_assets_cny"] - out["current_liabilities_cny"]
    out["other_wc_sources_cny"] = _money(revenue * p["other_wc"])
    return out


_SOURCE_BUILDERS = {
    "registry": _registry,
    "tax": _tax,
    "per_mu": _per_mu,
    "tech": _tech,
    "social_security": _social_security,
    "electricity": _electricity,
    "judicial": _judicial,
    "two_healthy": _two_healthy,
    "locality": _locality,
    "financials": _financials,
    "credit_bureau": _credit_bureau,
}

_BUILD_ORDER = ("tax", "per_mu", "electricity", "social_security", *(
    name for name in _SOURCE_BUILDERS if name not in ("tax", "per_mu", "electricity", "social_security")))


# --------------------------------------------------------------------------------------------------
# Loans and their outcomes.

_TAX_GRADE_EFFECT = {"A": -0.5, "B": 0.0, "M": 0.2, "C": 0.7, "D": 1.3}


def _loan_rows(g: _Region) -> tuple[list[np.ndarray], list[dict[str, object]]]:
    """Per loan snapshot: borrowing firm indices and the loan columns (one loan per firm and date)."""
    r, f, n = g.rng["loans"], g.f, g.n
    grade_effect = np.array([_TAX_GRADE_EFFECT[grade] for grade in TAX_CREDIT_GRADES])
    logits, borrowers, amounts, draws = [], [], [], []
    for k in LOAN_SNAPSHOTS:
        bureau = g.source("credit_bureau", k)
        borrow = g.exists[k] & g.cov["credit_bureau"] & (r.random(n) < 0.7)
        rows = np.flatnonzero(borrow)
        state = g.observed_state[k][rows]
        next_year_stop = g.event_in_year(k - 1)[rows] == STOPPED
        logit = (
            -0.9 * f.z[rows]
            + 0.35 * np.minimum(bureau["overdue_count_24m"][rows], 6)  # type: ignore[index]
            + 1.4 * (state == STOPPED) + 0.6 * (state == REDUCED) - 0.15 * (state == INCREASED)
            + grade_effect[g.tax_grade[k][rows]]
            + 0.8 * g.flags["dishonest_debtor"][k][rows]
            + 0.6 * g.flags["abnormal_operation"][k][rows]
            + 0.3 * g.flags["tax_arrears"][k][rows]
            + 0.25 * (bureau["guarantees_given_cny"][rows] > 0)  # type: ignore[index]
            + 1.0 * next_year_stop  # not observable at as_of: the irreducible part
        )
        revenue = g.revenue[rows, g.year(k, 0)]
        amount = _round_to(np.clip(revenue * (0.05 + 0.20 * r.random(rows.size)), 1e5, 2e7), 1e4)
        borrowers.append(rows)
        logits.append(logit)
        amounts.append(amount)
        draws.append(r.random(rows.size))
    # Intercept such that the mean default probability over all loans is the target (bisection).
    all_logits = np.concatenate(logits) if logits else np.zeros(0)
    lo, hi = -15.0, 5.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if all_logits.size and _sigmoid(all_logits + mid).mean() > TARGET_DEFAULT_RATE:
            hi = mid
        else:
            lo = mid
    intercept = (lo + hi) / 2
    columns = []
    for k, rows, logit, amount, draw in zip(LOAN_SNAPSHOTS, borrowers, logits, amounts, draws, strict=True):
        year = g.snapshots[k].year
        sequence = pc.utf8_lpad(pa.array(np.arange(1, rows.size + 1)).cast(pa.string()), width=7, padding="0")
        loan_id = pc.binary_join_element_wise(pa.scalar(f"WZ{year}-"), sequence, "")
        columns.append({
            "loan_id": loan_id,
            "amount_cny": amount,
            "default_12m": draw < _sigmoid(logit + intercept),
        })
    return borrowers, columns


# --------------------------------------------------------------------------------------------------
# Assembly into frames.


def _names(g: _Region, rows: np.ndarray) -> pa.Array:
    f = g.f
    prefix_choice, first, second = (part[rows] for part in f.name_parts)
    district_names = np.array([DISTRICT_ZH[uscc.WENZHOU_DIVISIONS[d]] for d in DISTRICT_SHARES])
    prefix = np.where(prefix_choice < 0.7, f.district[rows], len(district_names))
    prefixes = pa.array([*district_names, "温州"])
    words = pa.array([word for _, _, word, _ in INDUSTRIES])
    suffixes = pa.array([_FORM_SUFFIX[form] for form in LEGAL_FORMS])
    return pc.binary_join_element_wise(
        prefixes.take(pa.array(prefix)),
        pa.array(_TRADE_FIRST).take(pa.array(first)),
        pa.array(_TRADE_SECOND).take(pa.array(second)),
        words.take(pa.array(f.industry[rows])),
        suffixes.take(pa.array(f.legal_form[rows])),
        "",
    )


def _frame(g: _Region, source_name: str, rows_per_snapshot: list[tuple[int, np.ndarray]],
           columns_per_snapshot: list[dict[str, object]], row_aligned: bool) -> pd.DataFrame:
    """Concatenate per-snapshot columns (oldest snapshot first) into a catalogue-ordered frame.

    With `row_aligned`, each snapshot's columns already hold only its rows; otherwise they hold
    all firms and are cut to the rows here.
    """
    spec = SOURCES[source_name]
    all_rows = np.concatenate([rows for _, rows in rows_per_snapshot]) if rows_per_snapshot else np.zeros(0, int)
    as_of = np.concatenate([
        np.full(rows.size, np.datetime64(g.snapshots[k], "us")) for k, rows in rows_per_snapshot
    ]) if rows_per_snapshot else np.zeros(0, "datetime64[us]")
    data: dict[str, pd.Series | np.ndarray] = {
        "credit_code": _str_column(g.code_array.take(pa.array(all_rows))),
        "as_of": as_of,
    }
    for field in spec.fields:
        parts = []
        for (_, rows), columns in zip(rows_per_snapshot, columns_per_snapshot, strict=True):
            value = columns[field.name]
            if field.name == "name" and source_name == "registry":
                value = _names(g, rows)
            elif not row_aligned:
                value = _Enum(value.codes[rows], value.labels) if isinstance(value, _Enum) else \
                    np.asarray(value)[rows]  # type: ignore[index]
            parts.append(value)
        data[field.name] = _combine(field.kind, parts)
    frame = pd.DataFrame(data)
    frame.index = pd.RangeIndex(len(frame))
    return frame


def _combine(kind: str, parts: list[object]) -> pd.Series | np.ndarray:
    if parts and isinstance(parts[0], _Enum):
        first = parts[0]
        codes = np.concatenate([p.codes for p in parts])  # type: ignore[attr-defined]
        return _str_column(_Enum(codes, first.labels))
    if parts and isinstance(parts[0], pa.Array | pa.ChunkedArray):
        return _str_column(pa.chunked_array(parts).combine_chunks())  # type: ignore[arg-type]
    values = np.concatenate([np.asarray(p) for p in parts]) if parts else np.zeros(0)
    if kind == "int":
        return values.astype(np.int64)
    if kind == "float":
        return values.astype(np.float64)
    if kind == "bool":
        return values.astype(bool)
    return values


def generate_region(firms: int, seed: int, end_date: dt.date = dt.date(2025, 12, 31)) -> dict[str, pd.DataFrame]:
    """One DataFrame per source of the catalogue for a synthetic region of `firms` enterprises.

    Columns: credit_code, as_of, then the source's fields in catalogue order. Rows are ordered by
    as_of (oldest first), then by firm. Government sources have one row per covered firm and snapshot;
    `loan_outcomes` has one row per loan started at the two earlier snapshots.
    """
    if firms < 1:
        raise ValueError("firms must be at least 1")
    g = _Region(int(firms), int(seed), end_date)
    frames: dict[str, pd.DataFrame] = {}
    order = list(range(SNAPSHOTS - 1, -1, -1))  # oldest snapshot first
    # Sources that consume the big monthly arrays go first so that those can be freed early.
    for name in _BUILD_ORDER:
        rows = [(k, np.flatnonzero(g.exists[k] & g.cov[name])) for k in order]
        columns = [g.source(name, k) for k in order]
        frames[name] = _frame(g, name, rows, columns, row_aligned=False)
        del columns
        if name not in ("tax", "credit_bureau"):
            g.forget(name)
        if name == "per_mu":
            g.forget("tax")
        if name == "electricity":
            del g.kwh
        if name == "social_security":
            del g.insured
    borrowers, loan_columns = _loan_rows(g)
    loan_order = sorted(range(len(LOAN_SNAPSHOTS)), key=lambda i: -LOAN_SNAPSHOTS[i])
    frames = {name: frames[name] for name in _SOURCE_BUILDERS}  # catalogue order
    frames["loan_outcomes"] = _frame(
        g, "loan_outcomes",
        [(LOAN_SNAPSHOTS[i], borrowers[i]) for i in loan_order],
        [loan_columns[i] for i in loan_order],
        row_aligned=True,
    )
    meta = {
        "generator": f"features.synthetic {GENERATOR_VERSION}",
        "firms": int(firms),
        "seed": int(seed),
        "end_date": end_date.isoformat(),
        "snapshots": [d.isoformat() for d in sorted(g.snapshots)],
    }
    for frame in frames.values():
        frame.attrs["synthetic"] = dict(meta)
    return frames


# --------------------------------------------------------------------------------------------------
# Writing.

_DATE_FIELDS = {name: ["as_of", *(f.name for f in spec.fields if f.kind == "date")] for name, spec in SOURCES.items()}


def _arrow_table(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame, preserve_index=False)


def write_region(frames: dict[str, pd.DataFrame], out_dir: Path, fmt: str = "parquet") -> dict[str, Path]:
    """Write `<out_dir>/<source>.<fmt>` per frame and `<out_dir>/manifest.json`; return the data paths.

    Parquet keeps the frames' types (dates as timestamps). CSV is UTF-8 with a header, booleans as
    true/false, dates as ISO YYYY-MM-DD and empty cells for missing values.
    """
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"fmt must be 'parquet' or 'csv', not {fmt!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    rows: dict[str, int] = {}
    for name, frame in frames.items():
        path = out_dir / f"{name}.{fmt}"
        table = _arrow_table(frame)
        if fmt == "parquet":
            pq.write_table(table, path, compression="snappy")
        else:
            for column in _DATE_FIELDS.get(name, ["as_of"]):
                if column in table.column_names:
                    position = table.column_names.index(column)
                    table = table.set_column(position, column, table[column].cast(pa.date32()))
            pacsv.write_csv(table, path, pacsv.WriteOptions(quoting_style="needed"))
        paths[name] = path
        rows[name] = len(frame)
    meta = next((f.attrs.get("synthetic") for f in frames.values() if f.attrs.get("synthetic")), None) or {}
    registry = frames.get("registry")
    snapshots = meta.get("snapshots") or sorted(
        {pd.Timestamp(v).date().isoformat() for f in frames.values() for v in pd.unique(f["as_of"])}
    )
    manifest = {
        "generator": meta.get("generator", f"features.synthetic {GENERATOR_VERSION}"),
        "firms": meta.get("firms", int(registry["credit_code"].nunique()) if registry is not None else None),
        "seed": meta.get("seed"),
        "end_date": meta.get("end_date"),
        "snapshots": snapshots,
        "format": fmt,
        "rows": rows,
        "files": {name: path.name for name, path in paths.items()},
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return paths
