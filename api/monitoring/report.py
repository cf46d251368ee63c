"""The monitoring report: PSI of every product index, the PD and every model input between a reference and a
current sample, data-feed health, officers' override rates and the challenger in shadow; breaches listed as
alerts with their figures (zh/en). The CLI (`indexloan monitor`) and GET /v1/monitoring both build it here."""

from __future__ import annotations

import datetime as dt
import html
import math
from typing import Any

import numpy as np

from api.monitoring import feeds, overrides, shadow
from api.monitoring.config import PsiLimits, Thresholds
from api.monitoring.samples import Sample, SampleSpec, build_sample, describe, parse_spec
from api.quoting.service import Quoter
from training import metrics

NAMES = {"pd": ("违约概率", "the PD"), "index": ("指数", "index"), "feature": ("模型特征", "model input")}


def _level(value: float, limits: PsiLimits) -> str:
    if math.isnan(value):
        return "n/a"
    return "alert" if value >= limits.alert else "warning" if value >= limits.warn else "ok"


def _psi(reference: Sample, current: Sample, key: str, ref_values: np.ndarray | None,
         cur_values: np.ndarray | None) -> float:
    if cur_values is None or len(cur_values) == 0:
        return float("nan")
    stored = reference.stored_bins.get(key)
    if stored is not None:
        return metrics.psi_against(stored, cur_values)
    if ref_values is None or len(ref_values) == 0:
        return float("nan")
    return metrics.psi(ref_values, cur_values)


def psi_rows(reference: Sample, current: Sample, thresholds: Thresholds) -> list[dict[str, Any]]:
    rows = []

    def add(kind: str, name: str, key: str, ref: np.ndarray | None, cur: np.ndarray | None,
            limits: PsiLimits) -> None:
        value = _psi(reference, current, key, ref, cur)
        rows.append({"kind": kind, "name": name, "psi": None if math.isnan(value) else value,
                     "level": _level(value, limits), "warn": limits.warn, "alert": limits.alert,
                     "current_rows": 0 if cur is None else int(len(cur))})

    for code in sorted(set(reference.indices) | set(current.indices)):
        add("index", code, f"index:{code}", reference.indices.get(code), current.indices.get(code),
            thresholds.for_product(code))
    add("pd", "pd", "pd", reference.pd, current.pd, thresholds.for_pd())
    names = list(dict.fromkeys([*current.features, *(k[8:] for k in reference.stored_bins if
                                                      k.startswith("feature:")), *reference.features]))
    for name in names:
        add("feature", name, f"feature:{name}", reference.features.get(name), current.features.get(name),
            thresholds.for_feature(name))
    return rows


def psi_alerts(rows: list[dict[str, Any]], reference: Sample, current: Sample) -> list[dict[str, Any]]:
    alerts = []
    for r in rows:
        if r["level"] not in ("warning", "alert"):
            continue
        zh_kind, en_kind = NAMES[r["kind"]]
        what_en = "the PD" if r["kind"] == "pd" else f"{en_kind} {r['name']}"
        what_zh = zh_kind if r["kind"] == "pd" else f"{r['name']}{zh_kind}"
        limit = r["alert"] if r["level"] == "alert" else r["warn"]
        alerts.append({"kind": f"psi_{r['kind']}", "level": r["level"], "subject": f"{r['kind']}:{r['name']}",
                       "figures": {"psi": r["psi"], "warn": r["warn"], "alert": r["alert"],
                                   "reference": reference.label, "current": current.label},
                       "en": f"PSI of {what_en} is {r['psi']:.4f} ({r['level']} at {limit:g}): "
                             f"{current.label} against {reference.label}",
                       "zh": f"{what_zh}的PSI为{r['psi']:.4f}（{'警报' if r['level'] == 'alert' else '预警'}"
                             f"阈值{limit:g}）"})
    return alerts


def build_report(quoter: Quoter, reference: str, current: str, thresholds: Thresholds,
                 today: dt.date | None = None) -> dict[str, Any]:
    """The whole report as JSON-ready data. SampleError names the option at fault."""
    today = today or dt.date.today()
    ref_spec, cur_spec = parse_spec(reference, "reference", today), parse_spec(current, "current", today)
    if cur_spec.kind == "champion":
        from api.monitoring.samples import SampleError

        raise SampleError("current", "the champion's development sample can only be the reference")
    ref = build_sample(ref_spec, quoter, "reference")
    cur = build_sample(cur_spec, quoter, "current")
    rows = psi_rows(ref, cur, thresholds)
    feed_date = cur.as_of or today
    feed_list = feeds.store_feed_health(quoter.engine, feed_date, thresholds)
    since, until = _window(cur_spec, today)
    override_rates = overrides.rates(quoter.engine, since, until, thresholds)
    comparison = shadow.compare(quoter.engine, since, until, thresholds)
    alerts = [*psi_alerts(rows, ref, cur), *feeds.feed_alerts(feed_list), *override_rates["alerts"],
              *comparison["alerts"]]
    return {"reference": describe(ref), "current": describe(cur), "psi": rows,
            "feeds": {"as_of": feed_date.isoformat(), "sources": feed_list},
            "overrides": override_rates, "shadow": comparison,
            **alert_summary(alerts)}


def alert_summary(alerts: list[dict[str, Any]]) -> dict[str, Any]:
    """A report's alerts and their counts per level."""
    return {"alerts": alerts, "alert_count": sum(a["level"] == "alert" for a in alerts),
            "warning_count": sum(a["level"] == "warning" for a in alerts)}


def _window(spec: SampleSpec, today: dt.date) -> tuple[dt.date, dt.date]:
    """The days whose quotes the override and shadow sections cover: the current quotes' days, else the
    configured recent window."""
    if spec.kind == "quotes":
        assert spec.since is not None and spec.until is not None
        return spec.since, spec.until
    recent = parse_spec("quotes", "current", today)
    assert recent.since is not None and recent.until is not None
    return recent.since, recent.until


# ---------------------------------------------------------------------------------------------------- HTML

def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape(str(value))


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(report: dict[str, Any]) -> str:
    ref, cur = report["reference"], report["current"]
    alerts = report["alerts"]
    parts = [
        "<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'><title>监控报告 Monitoring report</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}.alert{color:#b00}.warning{color:#a60}"
        "</style></head><body>",
        "<h1>监控报告 · Monitoring report</h1>",
        f"<p>参照 Reference: {html.escape(ref['label'])} ({ref['rows']})<br>"
        f"当前 Current: {html.escape(cur['label'])} ({cur['rows']})</p>",
        f"<h2>警报 Alerts ({report['alert_count']} alerts, {report['warning_count']} warnings)</h2>",
    ]
    if alerts:
        parts.append("<ul>" + "".join(f"<li class='{a['level']}'>{html.escape(a['zh'])}<br>{html.escape(a['en'])}"
                                      "</li>" for a in alerts) + "</ul>")
    else:
        parts.append("<p>无 None</p>")
    parts.append("<h2>稳定性 Population stability (PSI)</h2>")
    parts.append(_table(["kind", "name", "PSI", "level", "warn", "alert", "current rows"],
                        [[r["kind"], r["name"], r["psi"], r["level"], r["warn"], r["alert"], r["current_rows"]]
                         for r in report["psi"]]))
    feeds_part = report["feeds"]
    parts.append(f"<h2>数据源健康 Data-feed health (as of {html.escape(feeds_part['as_of'])})</h2>")
    parts.append(_table(["source", "provider", "coverage", "min", "latest as-of", "age (days)", "cadence",
                         "worst missing field"],
                        [[f["source"], f"{f['provider_zh']} {f['provider']}", f["coverage"], f["min_coverage"],
                          f["latest_as_of"], f["age_days"], f["cadence_days"],
                          max(f["missing"].items(), key=lambda kv: kv[1], default=("—", None))[0]
                          + (f" {max(f['missing'].values()):.1%}" if f["missing"] else "")]
                         for f in feeds_part["sources"]]))
    o = report["overrides"]
    parts.append(f"<h2>人工调整 Officer overrides ({o['since']} to {o['until']})</h2>")
    parts.append(_table(["officer", "product", "quotes", "overrides", "share"],
                        [[r["officer"], r["product"], r["quotes"], r["overrides"], r["share"]] for r in o["rows"]]))
    s = report["shadow"]
    parts.append(f"<h2>挑战者模型 Challenger in shadow ({s['since']} to {s['until']})</h2>")
    for m in s["models"]:
        parts.append(f"<h3>{html.escape(m['model_id'])}: {m['quotes']} quotes, Spearman "
                     f"{_cell(m['rank_correlation'])}, PSI vs champion {_cell(m['psi_vs_champion'])}</h3>")
        parts.append(_table(["product", "quotes", "eligibility changes", "rate changes", "limit changes",
                             "share changed"],
                            [[p, d["quotes"], d["eligibility_changed"], d["rate_changed"], d["limit_changed"],
                              d["share_changed"]] for p, d in m["products"].items()]))
    parts.append("</body></html>")
    return "".join(parts)
