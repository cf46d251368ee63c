"""Data-feed health per government source: coverage, missing fields, age of the latest as-of date.

Only shares and dates leave here, never a source's values (tax figures are "usable but not visible")."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import sqlalchemy as sa

from api.monitoring.config import Thresholds
from features.sources import GOVERNMENT_SOURCES, SOURCES
from features.store.load import load_features


def feed_health(frame: pd.DataFrame, as_of: dt.date, thresholds: Thresholds) -> list[dict[str, Any]]:
    """One entry per source for a point-in-time frame (`<source>.as_of`, `<source>.<field>` columns; one row
    per enterprise seen in any source by `as_of`)."""
    firms = len(frame)
    out = []
    for name in GOVERNMENT_SOURCES:
        spec = SOURCES[name]
        limits = thresholds.for_source(name)
        as_of_column = frame.get(f"{name}.as_of")
        covered = as_of_column.notna() if as_of_column is not None else pd.Series(False, index=frame.index)
        n_covered = int(covered.sum())
        latest = pd.Timestamp(as_of_column[covered].max()).date() if n_covered else None
        missing = {}
        if n_covered:
            rows = frame.loc[covered.to_numpy()]
            for f in spec.fields:
                column = rows.get(f"{name}.{f.name}")
                missing[f.name] = 1.0 if column is None else float(column.isna().mean())
        age = None if latest is None else (as_of - latest).days
        max_age = spec.cadence_days * float(limits.max_age_factor or 1.0)
        out.append({
            "source": name, "provider": spec.provider, "provider_zh": spec.provider_zh,
            "firms": firms, "covered": n_covered, "coverage": n_covered / firms if firms else 0.0,
            "min_coverage": limits.min_coverage, "missing": missing,
            "max_missing": {f: thresholds.max_missing(name, f) for f in missing},
            "latest_as_of": None if latest is None else latest.isoformat(), "age_days": age,
            "cadence_days": spec.cadence_days, "max_age_days": max_age,
        })
    return out


def store_feed_health(engine: sa.Engine, as_of: dt.date, thresholds: Thresholds) -> list[dict[str, Any]]:
    return feed_health(load_features(None, as_of, engine=engine), as_of, thresholds)


def feed_alerts(feeds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Breaches of coverage, missing share and age, each with its figures and a zh/en text."""
    alerts = []
    for f in feeds:
        name, zh_name = f["source"], f"{f['source']}（{f['provider_zh']}）"
        subject = f"feed:{name}"
        if f["min_coverage"] is not None and f["coverage"] < f["min_coverage"]:
            alerts.append({"kind": "feed_coverage", "level": "alert", "subject": subject, "source": name,
                           "figures": {"coverage": f["coverage"], "min_coverage": f["min_coverage"],
                                       "covered": f["covered"], "firms": f["firms"]},
                           "en": f"feed {name} ({f['provider']}) covers {f['coverage']:.1%} of enterprises "
                                 f"({f['covered']} of {f['firms']}), below the minimum {f['min_coverage']:.1%}",
                           "zh": f"数据源{zh_name}覆盖{f['coverage']:.1%}的企业（{f['covered']}/{f['firms']}），"
                                 f"低于下限{f['min_coverage']:.1%}"})
        for field_name, share in f["missing"].items():
            limit = f["max_missing"][field_name]
            if share > limit:
                alerts.append({"kind": "feed_missing", "level": "alert", "subject": f"{subject}.{field_name}",
                               "source": name, "figures": {"field": field_name, "missing": share, "max_missing": limit},
                               "en": f"feed {name}: field {field_name} is empty for {share:.1%} of covered "
                                     f"enterprises (at most {limit:.1%})",
                               "zh": f"数据源{zh_name}：字段{field_name}在{share:.1%}的覆盖企业中缺失"
                                     f"（上限{limit:.1%}）"})
        if f["latest_as_of"] is None:
            alerts.append({"kind": "feed_age", "level": "alert", "subject": subject, "source": name,
                           "figures": {"latest_as_of": None, "cadence_days": f["cadence_days"]},
                           "en": f"feed {name} ({f['provider']}) has delivered no data",
                           "zh": f"数据源{zh_name}没有任何数据"})
        elif f["age_days"] > f["max_age_days"]:
            alerts.append({"kind": "feed_age", "level": "alert", "subject": subject, "source": name,
                           "figures": {"latest_as_of": f["latest_as_of"], "age_days": f["age_days"],
                                       "cadence_days": f["cadence_days"], "max_age_days": f["max_age_days"]},
                           "en": f"feed {name}: the latest as-of date {f['latest_as_of']} is {f['age_days']} days "
                                 f"old (delivered every {f['cadence_days']} days; at most {f['max_age_days']:g})",
                           "zh": f"数据源{zh_name}：最新数据日期{f['latest_as_of']}已过去{f['age_days']}天"
                                 f"（应每{f['cadence_days']}天更新，上限{f['max_age_days']:g}天）"})
    return alerts
