"""The simulation's HTML report: one self-contained file (plots as PNG data URIs, no network, no script)."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np

from api.workbench.simulate import Simulation


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _plots(sim: Simulation) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    b, a = sim.before, sim.after
    fig, ax = plt.subplots(figsize=(6, 3))
    grades = list(dict.fromkeys([*b.grades, *a.grades]))
    x = np.arange(len(grades))
    counts_b = [int((b.grade_labels() == g).sum()) for g in grades]
    counts_a = [int((a.grade_labels() == g).sum()) for g in grades]
    ax.bar(x - 0.2, counts_b, 0.4, label="active")
    ax.bar(x + 0.2, counts_a, 0.4, label="draft")
    ax.set_xticks(x, grades)
    ax.set_ylabel("enterprises")
    ax.legend()
    out.append(("Grades before and after 评级分布", _png(fig)))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3))
    bins = np.linspace(0, max(float(sim.draft.scale), float(sim.active.scale)), 41)
    ax.hist(b.index_cents / 100, bins=bins, alpha=0.5, label="active")
    ax.hist(a.index_cents / 100, bins=bins, alpha=0.5, label="draft")
    ax.set_xlabel("index")
    ax.legend()
    out.append(("Index distribution 指数分布", _png(fig)))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3))
    limits = [side.limit_cny[side.eligible] / 10_000 for side in (b, a)]
    top = max([float(v.max()) for v in limits if len(v)] or [1.0])
    bins = np.linspace(0, top, 31)
    for values, label in zip(limits, ("active", "draft"), strict=True):
        if len(values):
            ax.hist(values, bins=bins, alpha=0.5, label=label)
    ax.set_xlabel("limit (CNY 10,000), eligible firms")
    ax.legend()
    out.append(("Limit distribution 额度分布", _png(fig)))
    plt.close(fig)
    return out


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figures_rows(figures: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for side in ("before", "after"):
        f = figures[side]
        for grade, g in [*f["grades"].items(), ("total 合计", f["total"])]:
            rows.append([side, grade, g["enterprises"], g["eligible"], f"{g['total_limit_cny']:,}",
                         f"{g['average_limit_cny']:,}", g["average_rate_pct"],
                         None if g["expected_loss_cny"] is None else f"{g['expected_loss_cny']:,.0f}"])
    return rows


def render(sim: Simulation) -> str:
    summary = sim.summary()
    p = summary["products"][sim.product]
    migration = p["migration"]
    after_grades = list(dict.fromkeys(g for row in migration.values() for g in row))
    sample_rows = [[s["credit_code"], s["before"]["eligible"], s["after"]["eligible"], s["before"]["grade"],
                    s["after"]["grade"], s["before"]["limit_cny"], s["after"]["limit_cny"], s["before"]["rate"],
                    s["after"]["rate"], "; ".join(s["why"]),
                    " / ".join(f"{r['zh']} {r['en']}" for r in s["after"]["reasons"])] for s in p["sample"]]
    migration_table = _table(["active / draft", *after_grades],
                             [[b, *[row.get(g, 0) for g in after_grades]] for b, row in migration.items()])
    plots = "".join(f"<figure><img alt=\"{html.escape(t)}\" src=\"{src}\"><figcaption>{html.escape(t)}"
                    f"</figcaption></figure>" for t, src in _plots(sim))
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>What-if simulation 模拟测算: {html.escape(sim.product)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}th{{background:#f3f3f3}}
figure{{display:inline-block;margin:0 1em 1em 0}}</style></head><body>
<h1>What-if simulation 模拟测算 — {html.escape(sim.product)}</h1>
<p>As of 数据日期 {summary['as_of']}; {summary['enterprises']:,} enterprises 企业;
active 现行 v{html.escape(p['before']['version'])} ({p['before']['sha256'][:12]}) vs
draft 草案 v{html.escape(p['after']['version'])} ({p['after']['sha256'][:12]});
model 模型 {html.escape(str(summary['model_version']))}; LGD 违约损失率 {summary['lgd']:g}.</p>
<p><b>{p['changed']:,}</b> firms change 变化企业 (eligibility, grade, limit or rate); of them
<b>{p['grade_changed']:,}</b> change grade 评级变化, {p['eligibility_changed']:,} change eligibility 准入变化.</p>
<h2>Per grade 分评级</h2>
{_table(["side", "grade", "enterprises", "eligible", "total limit CNY", "average limit CNY", "average rate %",
         "expected loss CNY"], _figures_rows(p["figures"]))}
<h2>Grade migration 评级迁移 (rows: active, columns: draft)</h2>
{migration_table}
<h2>Distributions 分布</h2>
{plots}
<h2>Firms that change (sample of {len(p['sample'])}) 变化企业示例</h2>
{_table(["credit code", "eligible before", "eligible after", "grade before", "grade after", "limit before",
         "limit after", "rate before", "rate after", "why", "reasons after 原因"], sample_rows)}
</body></html>
"""
