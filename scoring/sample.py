"""Random but plausible features frames for engine tests and benchmarks (pure, seeded).

Independent of the synthetic-region generator on purpose: it samples every catalogue field directly
(with partial source coverage), then derives indicators with `features.derive`, so engine tests do
not depend on the region generator's choices.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from features.derive import derive
from features.sources import GOVERNMENT_SOURCES, SOURCES, FieldSpec

COVERAGE = {"registry": 1.0, "tax": 0.9, "per_mu": 0.35, "tech": 0.4, "social_security": 0.85,
            "electricity": 0.7, "judicial": 0.95, "two_healthy": 0.5, "locality": 0.3, "financials": 0.75,
            "credit_bureau": 0.8}
ENUM_WEIGHTS = {
    "tax_credit_grade": (0.3, 0.4, 0.15, 0.1, 0.05),
    "per_mu_class": (0.05, 0.2, 0.45, 0.2, 0.1),
    "specialized_level": (0.7, 0.15, 0.1, 0.05),
    "rd_platform_level": (0.7, 0.15, 0.1, 0.05),
    "grade": (0.2, 0.35, 0.3, 0.15),
}
FLAG_P = {"abnormal_operation": 0.03, "dishonest_debtor": 0.02, "tax_arrears": 0.05, "wage_arrears": 0.02}


def _numbers(rng: np.random.Generator, spec: FieldSpec, n: int, size: np.ndarray) -> np.ndarray:
    name = spec.name
    lo = spec.ge if spec.ge is not None else 0.0
    hi = spec.le if spec.le is not None else 1e13
    if spec.le is not None and spec.le <= 1000 and name not in ("land_area_mu",):
        x = rng.uniform(lo, hi, n) if "points" in name or "score" in name or "years" in name else \
            rng.poisson(rng.exponential(2.0, n)).astype(float)
    elif "_cny" in name or name.startswith("kwh"):
        x = size * rng.lognormal(0.0, 0.4, n)
        if name == "net_profit_cny":
            x = size * rng.normal(0.05, 0.08, n)
        elif name in ("own_funds_cny",):
            x = size * rng.normal(0.1, 0.1, n)
        elif "tax" in name or "vat" in name or "deduction" in name:
            x = x * 0.04
        elif name in ("rd_expense_cny", "rd_super_deduction_cny"):
            x = x * rng.uniform(0, 0.08, n)
    elif name == "land_area_mu":
        x = rng.lognormal(3.0, 1.0, n)
    elif name in ("energy_use_tce",):
        x = size / 2e4 * rng.lognormal(0.0, 0.5, n)
    elif name in ("emissions_t",):
        x = size / 2e6 * rng.lognormal(0.0, 0.7, n)
    else:  # counts: employees, patents, staff, ...
        x = np.floor(rng.lognormal(np.log(np.maximum(size / 5e5, 1.0)) * 0.5, 1.0, n))
    x = np.clip(x, lo, hi)
    return np.floor(x) if spec.kind == "int" else x


def random_features(n: int, seed: int = 0, as_of: dt.date = dt.date(2025, 12, 31)) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    index = pd.Index([f"E{i:09d}" for i in range(n)], name="credit_code")
    size = rng.lognormal(np.log(8e6), 1.3, n)  # revenue scale shared by related fields
    cols: dict[str, object] = {}
    for src in GOVERNMENT_SOURCES:
        has = rng.random(n) < COVERAGE[src]
        cols[f"has_{src}"] = pd.array(has, dtype="boolean")
        for spec in SOURCES[src].fields:
            name = f"{src}.{spec.name}"
            if spec.kind in ("int", "float"):
                v = _numbers(rng, spec, n, size)
                cols[name] = np.where(has, v, np.nan)
            elif spec.kind == "bool":
                v = rng.random(n) < FLAG_P.get(spec.name, 0.35)
                cols[name] = pd.array(np.where(has, v, None), dtype="boolean")
            elif spec.kind == "enum":
                w = ENUM_WEIGHTS.get(spec.name)
                v = rng.choice(np.array(spec.choices, dtype=object), n, p=w)
                keep = has & (rng.random(n) > (0.3 if not spec.required else 0.0))
                cols[name] = pd.array(np.where(keep, v, None), dtype="str")
            elif spec.kind == "date":
                days = rng.integers(100, 30 * 365, n)
                dates = pd.Timestamp(as_of) - pd.to_timedelta(days, "D")
                cols[name] = pd.to_datetime(np.where(has, dates, pd.NaT))
    if "two_healthy.total_points" in cols:
        points = cols["two_healthy.enterprise_points"], cols["two_healthy.entrepreneur_points"]
        cols["two_healthy.total_points"] = points[0] + points[1]
    frame = pd.DataFrame(cols, index=index)
    return derive(frame, as_of)
