"""The challenger in shadow: every registered challenger model scores every live quote beside the champion,
without changing the quote; its PD and the decisions it would give are stored keyed by quote id.

Off the hot path: the writer's transaction only queues its group's issued quotes (`offer`, one queue put: a put
per quote would wake the scorer's thread per quote, to contend for the GIL with requests). A background
thread per process takes the queued quotes in groups and scores them through the quote's one path
(`score_rows` with the challenger as the model), vectorised like the champion: a quote taken from the date's
population is an array take from a block of `BLOCK` rows scored once with the challenger (kept, least recently
used dropped; `Issued.population`); a quote whose population was being replaced as it was issued is scored
from its snapshot (the replay decoder), its group in one call. The scored rows ride in the next quote's
transaction (`drain`, called by `api.quoting.issuing.store_quotes` in the writer's group: no commit of their own);
when no quote comes within
`IDLE_SECONDS`, they go through the service's group writer on their own, never waited for. A quote whose
transaction failed may leave a shadow row behind; reports join on `quotes`, so it is never counted. Rows in a
failed transaction, or not yet scored when a process stops, are lost: shadow figures are a sample for the
promotion decision, never part of a quote."""

from __future__ import annotations

import datetime as dt
import json
import logging
import queue
import threading
import time
from collections import OrderedDict, deque
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from api.monitoring.config import Thresholds
from api.monitoring.tables import shadow_scores
from api.quoting.population import BLOCK, Population, Scored, score_rows
from api.quoting.service import QuotingService
from api.quoting.snapshot import features_from_json_rows
from api.tables import quotes
from training import metrics
from training.registry import Registry
from training.serving import ModelCache, RiskModel

log = logging.getLogger(__name__)

MAX_GROUP = 256
GATHER_SECONDS = 0.05  # after a first quote, wait this long for others to share its transaction
MAX_BLOCKS = 16  # challenger-scored population blocks kept per process
REFRESH_SECONDS = 5.0  # how often the challenger list is re-read from the registry
IDLE_SECONDS = 0.5  # scored rows wait this long for a quote's transaction to carry them
RECENT = 65_536  # quote ids remembered against double offers (a writer group retried quote by quote)


def _rate_bp(rate: float | None) -> int:
    return -1 if rate is None else int(round(rate * 100))


class ShadowScorer:
    """Scores queued issued quotes with every challenger model, in a background thread."""

    def __init__(self, service: QuotingService, models_dir: str | None = None) -> None:
        self.service = service
        self.engine = service.engine
        self._cache = ModelCache(Registry(self.engine, models_dir), ttl_seconds=0.0)
        self._blocks: OrderedDict[tuple[str, int, int], tuple[Population, Scored]] = OrderedDict()
        self._recent: deque[str] = deque(maxlen=RECENT)
        self._recent_set: set[str] = set()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._pending = 0  # offered, not yet handed to the writer
        self._pending_lock = threading.Lock()
        self._writing: set[Any] = set()  # futures of shadow rows handed to the writer
        self._ready: list[dict[str, Any]] = []  # scored rows waiting for a transaction
        self._challengers: tuple[float, list[str]] = (-float("inf"), [])

    # ------------------------------------------------------------------ producer side (the quote path)

    def offer(self, issued: list[Any]) -> None:  # of api.quoting.issuing.Issued
        """Queue issued quotes for shadow scoring (cheap: no scoring, no I/O). Nothing is queued while the
        registry had no challenger when last read (the thread reads it every REFRESH_SECONDS): a put would wake
        the thread for nothing (~3% of a worker's CPU at 32 connections)."""
        checked, ids = self._challengers
        if not ids and time.monotonic() - checked <= REFRESH_SECONDS:
            return
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="shadow-scorer", daemon=True)
                    self._thread.start()
        with self._pending_lock:
            self._pending += len(issued)
        self._queue.put(list(issued))

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queued quote is scored and stored (tests, benchmarks, orderly shutdown)."""
        deadline = time.monotonic() + timeout
        while self._pending or self._writing or self._ready:
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

    def _refresh(self) -> None:
        """Keep the challenger list fresh while no quote is offered (`offer` reads it)."""
        try:
            self.challengers()
        except Exception:  # noqa: BLE001 - the registry is unreadable (the store is down): quotes are offered
            self._challengers = (-float("inf"), [])

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=IDLE_SECONDS)
            except queue.Empty:  # no quote came to carry the scored rows: a transaction of their own
                self._write_ready()
                self._refresh()
                continue
            if first is None:
                self._write_ready()
                return
            group = list(first)
            deadline = time.monotonic() + GATHER_SECONDS
            while len(group) < MAX_GROUP:
                try:
                    item = self._queue.get(timeout=max(deadline - time.monotonic(), 0.0))
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                group.extend(item)
            try:
                self.score(group)
            except Exception:  # noqa: BLE001 - shadow scoring never affects quoting; logged, group dropped
                log.exception("shadow scoring of %d quotes failed", len(group))
            finally:
                with self._pending_lock:
                    self._pending -= len(group)

    def score(self, group: list[Any]) -> int:
        """Score a group of issued quotes with every challenger and keep the rows to store; how many."""
        models = self.challengers()
        group = [i for i in group if i.values["quote_id"] not in self._recent_set]
        if not models or not group:
            return 0
        rows = self.rows_for(group, models)
        for issued in group:
            self._remember(issued.values["quote_id"])
        if rows:
            self._store(rows)
        return len(rows)

    def rows_for(self, group: list[Any], models: list[RiskModel]) -> list[dict[str, Any]]:
        """The shadow rows of issued quotes under the given challengers (no storing)."""
        now = dt.datetime.now(dt.UTC)
        rows = []
        from_snapshots: dict[int, list[Any]] = {}
        for issued in group:
            population = issued.population  # None: rebuilt meanwhile, or not taken from a served population
            position = None if population is None else population.positions.get(issued.values["credit_code"])
            if position is None:
                from_snapshots.setdefault(id(issued.versions), []).append(issued)
                continue
            b, k = divmod(position, BLOCK)
            for model in models:
                if model.model_version != issued.versions.model_version:
                    rows.append(self._row(issued, model, self._block(population, model, b), k, now))
        for items in from_snapshots.values():
            versions = items[0].versions
            frame = features_from_json_rows([i.values["credit_code"] for i in items],
                                            [i.snapshot["features"] for i in items])
            for model in models:
                if model.model_version == versions.model_version:
                    continue  # a challenger just promoted: it is the champion of these quotes
                scored = score_rows(replace(versions, model=model), frame, contributions=False)
                rows.extend(self._row(issued, model, scored, k, now) for k, issued in enumerate(items))
        return rows

    def _block(self, population: Population, model: RiskModel, b: int) -> Scored:
        key = (model.model_version, id(population), b)
        found = self._blocks.get(key)
        if found is not None and found[0] is population:
            self._blocks.move_to_end(key)
            return found[1]
        frame = population.frame.iloc[b * BLOCK:(b + 1) * BLOCK]
        scored = score_rows(replace(population.versions, model=model), frame, contributions=False)
        self._blocks[key] = (population, scored)
        while len(self._blocks) > MAX_BLOCKS:
            self._blocks.popitem(last=False)
        return scored

    def _remember(self, quote_id: str) -> None:
        if len(self._recent) == self._recent.maxlen:
            self._recent_set.discard(self._recent[0])
        self._recent.append(quote_id)
        self._recent_set.add(quote_id)

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
        """Keep the rows for the next quote's transaction to carry (`drain`)."""
        with self._pending_lock:
            self._ready.extend(rows)

    def _take(self) -> list[dict[str, Any]]:
        with self._pending_lock:
            rows, self._ready = self._ready, []
        return rows

    def drain(self, conn: sa.Connection) -> None:
        """Insert the rows scored so far inside the caller's transaction (a quote's, in the writer's group):
        shadow rows pay no commit of their own. Lost if that transaction fails (a sample, not a record)."""
        rows = self._take()
        if rows:
            conn.execute(shadow_scores.insert(), rows)

    def _write_ready(self) -> None:
        """Rows no quote has carried within IDLE_SECONDS: through the group writer, not waited for."""
        rows = self._take()
        if not rows:
            return

        def write(conn: sa.Connection) -> None:
            conn.execute(shadow_scores.insert(), rows)

        future = self.service.writer.submit(write)
        with self._pending_lock:
            self._writing.add(future)
        future.add_done_callback(self._written)

    def _written(self, future: Any) -> None:
        if future.exception() is not None:
            log.warning("storing shadow scores failed: %s", future.exception())
        with self._pending_lock:
            self._writing.discard(future)


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
