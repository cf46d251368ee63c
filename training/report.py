"""The evaluation report: one self-contained HTML file (inline CSS, plots as base64 PNG, no network)."""

from __future__ import annotations

import base64
import html
import io
import json
import warnings
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import matplotlib

matplotlib.use("Agg")  # files only, never a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from training import metrics as m  # noqa: E402
from training.encoding import FeatureSpec  # noqa: E402
from training.fit import Split  # noqa: E402

DEPENDENCE_PLOTS = 4
SHAP_PLOT_SEED = 0  # shap's plots jitter and shuffle points with numpy's global generator: seeded, same picture
CURVE_POINTS = 2000  # points drawn per ROC or KS curve
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI","Noto Sans CJK SC",sans-serif;margin:2em auto;max-width:1100px;
color:#222;line-height:1.4}h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}img{max-width:100%}.grid{display:flex;flex-wrap:wrap;gap:1em}
.grid img{max-width:520px}.note{color:#555;font-size:.9em}code{background:#f6f6f6;padding:0 3px}
"""


def _png(fig: plt.Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        if np.isnan(value):
            return "–"
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    return html.escape(str(value))


def _table(frame: pd.DataFrame, left: tuple[str, ...] = ()) -> str:
    head = "".join(f'<th class="{"l" if c in left else ""}">{html.escape(str(c))}</th>' for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f'<td class="{"l" if c in left else ""}">{_fmt(v)}</td>' for c, v in row.items()) + "</tr>"
        for _, row in frame.iterrows()
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _kv(pairs: list[tuple[str, Any]]) -> str:
    rows = "".join(f'<tr><th class="l">{html.escape(k)}</th><td class="l">{_fmt(v)}</td></tr>' for k, v in pairs)
    return f"<table>{rows}</table>"


# ---------------------------------------------------------------------------------------------
# Plots


def _thinned(n: int) -> np.ndarray:
    """At most CURVE_POINTS evenly spaced positions of a curve of n points, both ends kept: a plot a few
    hundred pixels wide shows no more, and drawing a million-point line took seconds."""
    return np.unique(np.linspace(0, n - 1, min(n, CURVE_POINTS)).round().astype(np.intp)) if n else np.zeros(0, int)


Curve = tuple[np.ndarray, np.ndarray]  # (false positive rate, true positive rate) of `metrics.roc_points`


def _roc_plot(curves: dict[str, Curve]) -> str:
    fig, ax = plt.subplots(figsize=(5, 4.2))
    for name, (fpr, tpr) in curves.items():
        keep = _thinned(len(fpr))
        ax.plot(fpr[keep], tpr[keep], label=f"{name} (AUC {float(np.trapezoid(tpr, fpr)):.3f})")  # = m.auc
    ax.plot([0, 1], [0, 1], ls=":", c="grey")
    ax.set(xlabel="false positive rate (goods declined)", ylabel="true positive rate (bads caught)", title="ROC")
    ax.legend(loc="lower right")
    return _png(fig)


def _ks_plot(yy: np.ndarray, curve: Curve) -> str:
    fpr, tpr = curve
    bads, goods = int(yy.sum()), int(len(yy) - yy.sum())
    share = (fpr * goods + tpr * bads) / max(len(yy), 1)  # share of loans with PD at or above the cut
    k = int(np.argmax(tpr - fpr))
    keep = _thinned(len(share))
    fig, ax = plt.subplots(figsize=(5, 4.2))
    ax.plot(share[keep], tpr[keep], label="defaults (cumulative)")
    ax.plot(share[keep], fpr[keep], label="non-defaults (cumulative)")
    ax.vlines(share[k], fpr[k], tpr[k], colors="red", label=f"KS {tpr[k] - fpr[k]:.3f}")
    ax.set(xlabel="share of loans, highest PD first", ylabel="cumulative share", title="KS (out-of-sample)")
    ax.legend(loc="lower right")
    return _png(fig)


def _calibration_choice(cal: dict[str, Any]) -> str:
    """The calibrator and why: with `auto`, every method's cross-validated figures and the one it chose by (model
    cards before the criterion was configurable chose by Brier and recorded only that)."""
    if not cal.get("cv_brier"):
        return str(cal["method"])
    criterion = cal.get("criterion", "brier")
    figures = {"brier": cal["cv_brier"], **({"log_loss": cal["cv_log_loss"]} if cal.get("cv_log_loss") else {})}
    return (f"{cal['method']} (the lowest cross-validated {criterion.replace('_', '-')} on validation; "
            + "; ".join(f"{k.replace('_', '-')}: {json.dumps(v)}" for k, v in figures.items()) + ")")


def _calibration_plot(table: pd.DataFrame) -> str:
    fig, ax = plt.subplots(figsize=(5, 4.2))
    top = float(max(table["mean_pd"].max(), table["default_rate"].max(), 0.01)) * 1.05
    ax.plot([0, top], [0, top], ls=":", c="grey")
    ax.plot(table["mean_pd"], table["default_rate"], "o-")
    ax.set(xlabel="mean predicted PD", ylabel="observed default rate", title="Calibration by PD decile")
    return _png(fig)


def _distribution_plot(y: np.ndarray, p: np.ndarray, split: Split) -> str:
    fig, ax = plt.subplots(figsize=(5, 4.2))
    bins = np.logspace(np.log10(max(p.min(), 1e-4)), np.log10(max(p.max(), 2e-4)), 40)
    for name, idx in (("development", split.dev), ("out-of-time", split.oot)):
        ax.hist(p[idx], bins=bins, histtype="step", density=True, label=name)
    ax.hist(p[split.oot][y[split.oot] == 1], bins=bins, histtype="stepfilled", alpha=0.3, density=True,
            label="out-of-time defaults")
    ax.set_xscale("log")
    ax.set(xlabel="PD", ylabel="density", title="Score distribution")
    ax.legend()
    return _png(fig)


def importance_frame(spec: FeatureSpec, booster: lgb.Booster | None, contrib: np.ndarray) -> pd.DataFrame:
    """Per feature: mean |SHAP| over the sample, share of the split gain, monotone direction."""
    mean_abs = np.abs(contrib[:, :-1]).mean(axis=0)
    gain = booster.feature_importance("gain") if booster is not None else np.full(len(spec.names), np.nan)
    frame = pd.DataFrame({"feature": spec.names, "mean |SHAP|": mean_abs, "gain": gain / max(np.nansum(gain), 1e-12),
                          "monotone": [{1: "+1 (raises PD)", -1: "-1 (lowers PD)"}.get(d, "") for d in spec.monotone]})
    return frame.sort_values("mean |SHAP|", ascending=False, kind="stable").reset_index(drop=True)


def _importance_plot(importance: pd.DataFrame) -> str:
    top = importance.head(20).iloc[::-1]
    fig, ax = plt.subplots(figsize=(6, 5.5))
    ax.barh(top["feature"], top["mean |SHAP|"])
    ax.set(xlabel="mean |SHAP| (log-odds)", title="Feature importance")
    return _png(fig)


def _shap_plots(spec: FeatureSpec, X: np.ndarray, contrib: np.ndarray, importance: pd.DataFrame) -> list[str]:
    import shap

    frame = pd.DataFrame(X, columns=list(spec.names))
    state = np.random.get_state()
    np.random.seed(SHAP_PLOT_SEED)
    try:
        with warnings.catch_warnings():  # infinite ratios (e.g. electricity year on year) upset shap's colour scale
            warnings.simplefilter("ignore")
            shap.summary_plot(contrib[:, :-1], frame, show=False, max_display=15, plot_size=(7, 6))
            out = [_png(plt.gcf())]
            for name in importance["feature"].head(DEPENDENCE_PLOTS):
                fig, ax = plt.subplots(figsize=(5, 4))
                shap.dependence_plot(spec.names.index(name), contrib[:, :-1], frame, interaction_index=None,
                                     ax=ax, show=False)
                ax.set_title(f"SHAP dependence: {name}")
                out.append(_png(fig))
    finally:  # the caller's random state back, even when a plot fails
        np.random.set_state(state)
    return out


def _shap_section(spec: FeatureSpec, X: np.ndarray, contrib: np.ndarray, importance: pd.DataFrame) -> list[str]:
    summary, *dependence = _shap_plots(spec, X, contrib, importance)
    return ["<h3>SHAP summary</h3>", summary,
            "<h3>SHAP dependence plots</h3><p class='note'>The features with the largest mean |SHAP|: "
            "contribution against the feature's value (categories as their code).</p>",
            "<div class='grid'>", *dependence, "</div>"]


@dataclass(frozen=True)
class Explanations:
    """The report's explanation part (SHAP plots, feature importance): it needs the model and the sample's
    contributions, not every row's score, so the pipeline draws it while LightGBM scores every row."""

    rows: int  # the explained sample
    importance: pd.DataFrame
    shap: list[str]  # HTML: the SHAP summary and dependence plots
    importance_plot: str


def draw_explanations(spec: FeatureSpec, X_sample: np.ndarray, contrib: np.ndarray,
                      importance: pd.DataFrame) -> Explanations:
    """The explanation plots: matplotlib and numpy only (no call into the model)."""
    return Explanations(len(X_sample), importance, _shap_section(spec, X_sample, contrib, importance),
                        _importance_plot(importance))


def _reliability_plot(selection: dict[str, Any]) -> str:
    """Each candidate's cross-fitted calibrated out-of-fold PD by decile against the observed default rate."""
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    top = 0.01
    for c in selection["candidates"]:
        r = c.get("reliability")
        if not r:
            continue
        ax.plot(r["mean_pd"], r["default_rate"], "o-", ms=3, label=f"{c['name']} (Brier {c['brier']:.4f})")
        top = max(top, *r["mean_pd"], *r["default_rate"])
    ax.plot([0, top], [0, top], ls=":", c="grey")
    ax.set(xlabel="mean predicted PD (decile)", ylabel="observed default rate",
           title="Reliability of the candidates (inner CV)")
    ax.legend(fontsize=7)
    return _png(fig)


def _selection_section(selection: dict[str, Any] | None) -> list[str]:
    if not selection:
        return ["<h2>Model family selection</h2><p class='note'>Not run: the LightGBM of <code>params</code> "
                "(no candidates configured, or the Dask engine).</p>"]
    where = (f"{selection['folds']}-fold inner cross-validation on the {selection['rows']:,} development rows"
             if selection["mode"] == "cv" else f"the validation fold ({selection['rows']:,} development rows)")
    rows = []
    for c in selection["candidates"]:
        rows.append({"candidate": c["name"] + (" (chosen)" if c["name"] == selection["winner"] else ""),
                     "family": c["family"], "AUC": c["auc"], "AUC sd": c["auc_sd"], "KS": c["ks"],
                     "Brier (calibrated)": c["brier"], "Brier sd": c["brier_sd"],
                     "detail": json.dumps({k: c[k] for k in ("params", "trees", "shapes", "weight", "fold_weights",
                                                             "lightgbm_part", "features_with_points") if k in c})})
    return ["<h2>Model family selection</h2>",
            f"<p>Candidates scored out of fold on {where} only (the {html.escape('out-of-time')} rows are not used); "
            f"criterion <b>{html.escape(selection['criterion'])}</b>, tie-break "
            f"<b>{html.escape(selection['tie_break'])}</b> within {html.escape(str(selection['tolerance']))} "
            "(se: the standard error of the paired per-fold difference). "
            f"Chosen: <b>{html.escape(selection['winner'])}</b> ({html.escape(selection['family'])}). "
            f"{html.escape(selection['reason'])}.</p>",
            _table(pd.DataFrame(rows), ("candidate", "family", "detail")),
            "<p class='note'>Brier: each out-of-fold score calibrated by a calibrator fitted on the other rows. "
            "Mean and standard deviation over folds. The curves: those calibrated out-of-fold PDs by decile.</p>",
            _reliability_plot(selection)]


def _inputs_section(inputs: dict[str, Any] | None) -> list[str]:
    if not inputs:
        return []
    frame = pd.DataFrame(inputs["features"])
    shown = frame[(frame["missing_share_dev"] > 0) | (frame["kind"] == "categorical")]
    parts = ["<h2>Categorical and missing data</h2>",
             f"<p>Imputation: {html.escape(inputs['imputation'])}. {inputs['missing_any']} of {len(frame)} inputs "
             f"have missing values in development; {len(inputs['categorical'])} are categorical.</p><ul>"]
    for family, t in inputs["treatment"].items():
        parts.append(f"<li><b>{html.escape(family)}</b>: missing values — {html.escape(t['missing'])}; categories — "
                     f"{html.escape(t['categorical'])}</li>")
    parts.append("</ul>")
    if inputs["left_out"]:
        parts += ["<p>Left out:</p><ul>", *[f"<li>{html.escape(n)}</li>" for n in inputs["left_out"]], "</ul>"]
    if len(shown):
        parts.append(_table(shown.reset_index(drop=True), ("feature", "kind")))
    return parts


# ---------------------------------------------------------------------------------------------
# Page


def render_report(meta: dict[str, Any], metrics: dict[str, Any], y: np.ndarray, p: np.ndarray, split: Split,
                  explained: Explanations, segments: pd.DataFrame, ranking: m.Ranking | None = None) -> str:
    """The report page; `explained`: `draw_explanations`; `ranking`: of `p`, when the caller already made it."""
    training = meta["training"]
    oot_name = {"out_of_time": "out-of-time", "random_holdout": "holdout (random: the data has no dates)"}.get(
        split.kind, split.kind.replace("_", " "))
    ranking = ranking or m.Ranking(p)
    curves = {name: m.roc_points(y[idx], p[idx], ranking.within(idx))[:2]
              for name, idx in (("development", split.dev), (split.kind.replace("_", " "), split.oot))}
    oot_curve = curves[split.kind.replace("_", " ")]
    cv = meta["validation"]["mode"] == "cv"
    valid_name = f"validation ({meta['validation']['folds']}-fold out-of-fold)" if cv else "validation"
    perf = pd.DataFrame([{"sample": name, **{k: metrics[key][k] for k in
                                             ("rows", "defaults", "default_rate", "mean_pd", "auc", "gini", "ks",
                                              "brier")}}
                         for name, key in (("train", "train"), (valid_name, "valid"), ("development", "dev"),
                                           (oot_name, "oot"))])
    cal = m.calibration_table(y[split.oot], p[split.oot])
    window = training["time_window"]
    folds = meta["validation"]["fold_best_iterations"]
    family = meta.get("family", "lightgbm")
    trees = (f"{meta['num_trees']} (mean of the folds' early-stopped {folds}; final model on all development rows)"
             if cv else f"{meta['num_trees']} (best of {meta['iterations_run']} grown, early-stopped on validation)")
    if cv and meta.get("training", {}).get("config", {}).get("cv_final") == "average" and meta.get("selection"):
        k = len(folds)
        trees = (f"{meta['num_trees']}: the {k} fold models (early-stopped at {folds} trees) in one model, each tree "
                 f"scaled by 1/{k} (their mean)")
    if family == "scorecard":
        trees = "none (scorecard)"
    described = {"lightgbm": "LightGBM binary classifier with monotone constraints",
                 "scorecard": "WoE scorecard (optbinning monotone bins, sign-constrained logistic regression)",
                 "blend": f"blend in log-odds: {meta.get('blend_weight')} x LightGBM with monotone constraints + "
                          f"{1 - (meta.get('blend_weight') or 0):.2f} x WoE scorecard"}[family]
    card = [
        ("model format", meta["format"]),
        ("model family", family),
        ("training data source", json.dumps(training["source"], ensure_ascii=False)),
        ("time window", f"{window[0]} – {window[1]}" if window[0] else "undated rows"),
        ("rows", training["rows"]),
        ("training data checksum (sha256)", training["data_checksum"]),
        ("code version", meta["code_version"]),
        ("operator", meta["operator"]),
        ("started at (UTC)", meta["started_at"]),
        ("finished at (UTC)", meta["finished_at"]),
        ("split", json.dumps(training["split"])),
        ("trees", trees),
        ("validation", "out-of-fold scores of a k-fold cross-validation on development" if cv else "holdout fold"),
        ("calibration", _calibration_choice(meta["calibration"])),
        ("base value (log-odds)", meta["base_value"]),
        ("parameters", json.dumps(meta["params"], sort_keys=True)),
        ("libraries", json.dumps(meta["libraries"])),
    ]
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>PD model report</title>"
        f"<style>{CSS}</style></head><body>",
        "<h1>Probability-of-default model — evaluation report</h1>",
        f"<p class='note'>{html.escape(described)}, calibrated "
        f"({meta['calibration']['method']})."
        f" Out-of-sample figures are on the {html.escape(oot_name)} sample.</p>",
        "<h2>Performance</h2>", _table(perf, ("sample",)),
        f"<p>PSI of the PD between development and {html.escape(oot_name)}: <b>{_fmt(metrics['psi_dev_oot'])}</b>"
        " (&lt; 0.10 stable, 0.10–0.25 watch, &gt; 0.25 shifted).</p>",
        "<div class='grid'>", _roc_plot(curves), _ks_plot(y[split.oot], oot_curve), "</div>",
        *_selection_section(meta.get("selection")),
        "<h2>Calibration</h2>", _table(cal), "<div class='grid'>", _calibration_plot(cal),
        _distribution_plot(y, p, split), "</div>",
    ]
    if "segments_oot" in metrics and metrics["segments_oot"]:
        seg = pd.DataFrame(metrics["segments_oot"])[["segment", "value", "rows", "defaults", "default_rate",
                                                      "mean_pd", "auc", "ks", "brier"]]
        parts += ["<h2>Segments (out-of-time)</h2>",
                  "<p class='note'>Segments with fewer than 30 loans are not shown; AUC needs both outcomes.</p>",
                  _table(seg, ("segment", "value"))]
    how = {"lightgbm": "TreeSHAP values from LightGBM <code>pred_contrib</code>",
           "scorecard": "the scorecard's points per feature",
           "blend": "the weighted sum of LightGBM's TreeSHAP values and the scorecard's points"}[family]
    exact = ("they sum with the base value to the raw score (log-odds)" if family == "lightgbm" else
             "they sum with the base value exactly to the raw score (log-odds)")
    parts += ["<h2>Explanations (SHAP)</h2>",
              f"<p class='note'>Contributions: {how}, on {explained.rows:,} "
              f"{html.escape(oot_name)} rows; per row {exact}.</p>",
              *explained.shap,
              "<h2>Feature importance</h2>", "<div class='grid'>", explained.importance_plot, "</div>",
              _table(explained.importance, ("feature", "monotone"))]
    parts += _inputs_section(meta.get("inputs"))
    if training["notes"]:
        parts += ["<h2>Notes</h2><ul>", *[f"<li>{html.escape(n)}</li>" for n in training["notes"]], "</ul>"]
    parts += ["<h2>Model card (JR/T 0221-2021 traceability)</h2>", _kv(card), "</body></html>"]
    return "\n".join(parts)
