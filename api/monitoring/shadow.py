"""The challenger in shadow: every registered challenger model scores every live quote beside the champion,
without changing the quote; its PD and the decisions it would give are stored keyed by quote id.

Off the hot path: the writer's transaction only queues the issued quote (`offer`, a queue put). A background
thread per process takes the queued quotes in groups, rebuilds their input rows from the snapshots (the replay
decoder) and scores each group in one vectorised call through the quote's one path (`score_rows` with the
challenger as the model), then stores the group in one transaction. A quote whose transaction failed may leave
a shadow row behind; reports join on `quotes`, so it is never counted. A process that stops drops what it has
not scored yet (shadow figures are a sample for the promotion decision, never part of a quote)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import queue
import threading
import time
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from api.monitoring.config import Thresholds
from api.monitoring.tables import shadow_scores
from api.quoting.population import score_rows
from api.quoting.snapshot import features_from_json_rows
from api.tables import quotes
from training import metrics
from training.registry import Registry
from training.serving import ModelCache, RiskModel

log = logging.getLogger(__name__)

MAX_GROUP = 256
REFRESH_SECONDS = 5.0  # how often the challenger list is re-read from the registry


def _rate_bp(rate: float | None) -> int:
    return -1 if rate is None else int(round(rate * 100))


class ShadowScorer:
    """Scores queued issued quotes with every challenger model, in a background thread."""

    def __init__(self, engine: sa.Engine, models_dir: str | None = None) -> None:
        self.engine = engine
        self._cache = ModelCache(Registry(engine, models_dir), ttl_seconds=0.0)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._challengers: tuple[float, list[str]] = (-float("inf"), [])

    # ------------------------------------------------------------------ producer side (the quote path)

    def offer(self, issued: Any) -> None:  # api.quoting.issuing.Issued
        """Queue an issued quote for shadow scoring (cheap: no scoring, no I/O)."""
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="shadow-scorer", daemon=True)
                    self._thread.start()
        with self._pending_lock:
            self._pending += 1
        self._queue.put(issued)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queued quote is scored and stored (tests, benchmarks, orderly shutdown)."""
        deadline = time.monotonic() + timeout
        while self._pending:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(10)
            self._thread = None

    # ------------------------------------------------------------------ the background thread

    def challengers(self) -> list[RiskModel]:
        now = time.monotonic()
        checked, ids = self._challengers
        if now - checked > REFRESH_SECONDS:
            ids = [r.id for r in self._cache.registry.list("challenger")]
            self._challengers = (now, ids)
        return [self._cache.get(i) for i in ids]

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            while len(group) < MAX_GROUP:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                group.append(item)
            try:
                self.score(group)
            except Exception:  # noqa: BLE001 - shadow scoring never affects quoting; logged, group dropped
                log.exception("shadow scoring of %d quotes failed", len(group))
            finally:
                with self._pending_lock:
                    self._pending -= len(group)

    def score(self, group: list[Any]) -> int:
        """Score a group of issued quotes with every challenger and store the rows; returns rows stored."""
        models = self.challengers()
        if not models or not group:
            return 0
        by_versions: dict[int, list[Any]] = {}
        for issued in group:
            by_versions.setdefault(id(issued.versions), []).append(issued)
        rows = []
        now = dt.datetime.now(dt.UTC)
        for items in by_versions.values():
            versions = items[0].versions
            frame = features_from_json_rows([i.values["credit_code"] for i in items],
                                            [i.snapshot["features"] for i in items])
            for model in models:
                if model.model_version == versions.model_version:
                    continue  # a challenger just promoted: it is the champion of these quotes
                scored = score_rows(replace(versions, model=model), frame, contributions=False)
                for k, issued in enumerate(items):
                    rows.append(self._row(issued, model, scored, k, now))
        if rows:
            self._store(rows)
        return len(rows)

    @staticmethod
    def _row(issued: Any, model: RiskModel, scored: Any, k: int, now: dt.datetime) -> dict[str, Any]:
        full = issued.full
        decisions = {}
        for q in full["quotes"]:
            r = scored.results[q["product"]]
            eligible = bool(r.eligible[k])
            decisions[q["product"]] = {
                "champion": [bool(q["eligible"]), int(q["limit_cny"]), _rate_bp(q["rate"])],
                "challenger": [eligible, int(r.limit_cny[k]), int(r.rate_bp[k]) if eligible else -1]}
        risk = full.get("risk")
        return {"quote_id": full["quote_id"], "model_id": model.model_version,
                "champion_model": full.get("model_version"), "champion_pd": None if not risk else float(risk["pd"]),
                "pd": float(scored.pd[k]), "decisions_json": json.dumps(decisions, separators=(",", ":")),
                "created_at": now}

    def _store(self, rows: list[dict[str, Any]]) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(shadow_scores.insert(), rows)
        except sa.exc.IntegrityError:  # a quote offered twice (its writer group was retried): one at a time
            for row in rows:
                try:
                    with self.engine.begin() as conn:
                        conn.execute(shadow_scores.insert(), [row])
                except sa.exc.IntegrityError:
                    continue


# ---------------------------------------------------------------------------------------------------- report

def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman's rank correlation (average ranks for ties); None below 3 rows or for a constant side."""
    if len(a) < 3:
        return None
    ra, rb = pd.Series(a).rank().to_numpy(), pd.Series(b).rank().to_numpy()
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def compare(engine: sa.Engine, since: dt.date, until: dt.date, thresholds: Thresholds) -> dict[str, Any]:
    """Per challenger, over the quotes issued on days since..until: PD distributions (deciles of both), the
    rank correlation with the champion's PD, PSI of the challenger's PDs against the champion's, and per
    product the decisions that would change (eligibility, rate, limit)."""
    start = dt.datetime.combine(since, dt.time(), dt.UTC)
    end = dt.datetime.combine(until + dt.timedelta(days=1), dt.time(), dt.UTC)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(shadow_scores.c.model_id, shadow_scores.c.champion_model, shadow_scores.c.champion_pd,
                      shadow_scores.c.pd, shadow_scores.c.decisions_json)
            .select_from(shadow_scores.join(quotes, quotes.c.quote_id == shadow_scores.c.quote_id))
            .where(quotes.c.created_at >= start, quotes.c.created_at < end)
            .order_by(shadow_scores.c.model_id, shadow_scores.c.quote_id)).all()
    by_model: dict[str, list[sa.Row]] = {}
    for r in rows:
        by_model.setdefault(r.model_id, []).append(r)
    out, alerts = [], []
    quantiles = np.linspace(0, 1, 11)
    for model_id, items in by_model.items():
        challenger = np.array([r.pd for r in items], dtype=np.float64)
        champion = np.array([np.nan if r.champion_pd is None else r.champion_pd for r in items], dtype=np.float64)
        both = ~np.isnan(champion)
        products: dict[str, dict[str, Any]] = {}
        for r in items:
            for product, d in json.loads(r.decisions_json).items():
                p = products.setdefault(product, {"quotes": 0, "eligibility_changed": 0, "rate_changed": 0,
                                                  "limit_changed": 0, "changed": 0,
                                                  "newly_eligible": 0, "newly_declined": 0})
                (ce, cl, cr), (xe, xl, xr) = d["champion"], d["challenger"]
                p["quotes"] += 1
                p["eligibility_changed"] += ce != xe
                p["newly_eligible"] += (not ce) and xe
                p["newly_declined"] += ce and not xe
                p["rate_changed"] += ce and xe and cr != xr
                p["limit_changed"] += ce and xe and cl != xl
                p["changed"] += (ce != xe) or (ce and xe and (cr != xr or cl != xl))
        for product, p in products.items():
            p["share_changed"] = p["changed"] / p["quotes"]
            if p["share_changed"] > thresholds.shadow.max_decision_change:
                limit = thresholds.shadow.max_decision_change
                alerts.append({"kind": "shadow", "level": "warning", "subject": f"challenger:{model_id}:{product}",
                               "figures": {"model_id": model_id, "product": product, **p, "max_share": limit},
                               "en": f"challenger {model_id[:12]} would change {p['changed']} of {p['quotes']} "
                                     f"{product} decisions ({p['share_changed']:.1%}; warning above {limit:.0%})",
                               "zh": f"挑战者模型{model_id[:12]}将改变{product}的{p['quotes']}笔决定中的"
                                     f"{p['changed']}笔（{p['share_changed']:.1%}，预警阈值{limit:.0%}）"})
        out.append({
            "model_id": model_id, "champion_models": sorted({r.champion_model for r in items if r.champion_model}),
            "quotes": len(items),
            "pd_deciles": {"challenger": np.quantile(challenger, quantiles).tolist(),
                           "champion": np.quantile(champion[both], quantiles).tolist() if both.any() else None},
            "mean_pd": {"challenger": float(challenger.mean()),
                        "champion": float(champion[both].mean()) if both.any() else None},
            "rank_correlation": _spearman(champion[both], challenger[both]) if both.any() else None,
            "psi_vs_champion": metrics.psi(champion[both], challenger[both]) if both.sum() else None,
            "products": dict(sorted(products.items())),
        })
    return {"since": since.isoformat(), "until": until.isoformat(), "models": out, "alerts": alerts}
