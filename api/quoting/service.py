"""The quoting service: features -> products engine + risk model -> one stored, explainable quote.

The same pure core (`scoring`, `training.serving`) serves the API, the CLI and batch runs. This module
adds what a served quote needs around it: the versions in force (product definitions, reference
rates, rank cut-offs, champion model), an exact input snapshot for replay, and the best offer.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from api.quoting.population import Population
from api.quoting.snapshot import RowEncoder, canonical_json, features_from_json, sha256_json
from api.quoting.writer import GroupWriter
from api.tables import config_blobs
from features.store import audit
from features.store.load import load_features
from features.store.tables import batches
from products.catalogue import load_catalogue, parse_definition, reference_rates
from products.schema import ProductDefinition
from scoring import Plan, ProductResult, calibrate, compile_all, evaluate_all, quote_dict
from scoring.engine import all_fields

log = logging.getLogger(__name__)
RISK_FACTORS = 5


@dataclass(frozen=True)
class Versions:
    """Everything a quote's numbers depend on besides the enterprise's data."""

    plans: dict[str, Plan]
    definition_sha: dict[str, str]
    rates: dict[str, float]
    rates_sha: str
    model: Any | None  # training.serving.RiskModel
    columns: list[str]  # feature columns the plans and the model read

    @property
    def model_version(self) -> str | None:
        return None if self.model is None else self.model.model_version

    def describe(self) -> dict[str, Any]:
        """The versions as a quote's snapshot records them (built once; read-only for callers)."""
        return self._described

    @cached_property
    def _described(self) -> dict[str, Any]:
        return {
            "products": {c: {"version": p.version, "sha256": self.definition_sha[c],
                             "cut_cents": [int(x) for x in p.cut_cents], "cuts_calibrated": bool(p.cuts_calibrated)}
                         for c, p in self.plans.items()},
            "reference_rates": {"values": self.rates, "sha256": self.rates_sha},
            "model_version": self.model_version,
        }


def _needed_columns(plans: dict[str, Plan], model: Any | None) -> list[str]:
    fields, sources = all_fields(list(plans.values()))
    columns = list(fields) + [f"has_{s}" for s in sources]
    if model is not None:
        columns += list(model.feature_names)
    return list(dict.fromkeys(columns))


def build_versions(definitions: dict[str, ProductDefinition], rates: dict[str, float], model: Any | None,
                   population: pd.DataFrame | None) -> Versions:
    plans = compile_all(definitions, rates)
    if population is not None and len(population):
        plans = {c: calibrate(p, population) for c, p in plans.items()}
    return Versions(
        plans=plans,
        definition_sha={c: sha256_json(d.model_dump(mode="json"), sort_keys=False) for c, d in definitions.items()},
        rates=dict(rates),
        rates_sha=sha256_json(rates),
        model=model,
        columns=_needed_columns(plans, model),
    )


def best_offer(quotes: list[dict[str, Any]], requested_amount: float | None) -> dict[str, Any] | None:
    """The cheapest eligible offer covering the requested amount; else the largest eligible limit."""
    offers = [q for q in quotes if q.get("eligible") and q.get("limit_cny", 0) > 0]
    if not offers:
        return None
    covering = [q for q in offers if requested_amount is None or q["limit_cny"] >= requested_amount]
    if covering:
        chosen = min(covering, key=lambda q: ((q.get("all_in_cost") or {}).get("pct") or 99.0, -q["limit_cny"]))
    else:
        chosen = max(offers, key=lambda q: q["limit_cny"])
    return {k: chosen.get(k) for k in ("product", "product_name", "limit_cny", "rate", "all_in_cost", "grade", "tier")}


def compute_quotes(versions: Versions, row: pd.DataFrame, products: list[str],
                   requested_amount: float | None) -> dict[str, Any]:
    """Quotes for one enterprise (a one-row features frame) under `versions` (pure)."""
    plans = {c: versions.plans[c] for c in products}
    risk: dict[str, Any] | None = None
    pd_value = None
    if versions.model is not None:
        risk = versions.model.assess(row, top_k=RISK_FACTORS)[0]
        pd_value = np.array([risk["pd"]])
    results = evaluate_all(plans, row, pd_values=pd_value)
    return quote_body(versions, results, 0, risk, products, requested_amount)


def quote_body(versions: Versions, results: dict[str, ProductResult], i: int, risk: dict[str, Any] | None,
               products: list[str], requested_amount: float | None) -> dict[str, Any]:
    """The quote body for row `i` of engine results (and its risk assessment), products in the given order."""
    quotes = []
    for code in products:
        quote = quote_dict(results[code], i)
        quote["model_version"] = versions.model_version
        quote["risk_factors"] = risk["risk_factors"] if risk else []
        if requested_amount is not None and quote["eligible"]:
            quote["requested_within_limit"] = requested_amount <= quote["limit_cny"]
        quotes.append(quote)
    body: dict[str, Any] = {
        "quotes": quotes,
        "best_offer": best_offer(quotes, requested_amount),
        "model_version": versions.model_version,
        "risk": None if risk is None else {k: risk[k] for k in ("pd", "raw_score", "base_value")},
    }
    return body


# What the financial service platform may receive ("usable but not visible"): scores, grades, tiers,
# offers and reason texts. Never indicator values, points per indicator, gates or SHAP inputs.
PLATFORM_FIELDS = (
    "product", "product_name", "product_version", "eligible", "reasons", "index", "scale", "grade", "tier",
    "segment", "limit_cny", "rate_band", "rate", "guarantee_fee", "subsidy", "all_in_cost", "pd", "model_version",
    "service_promise", "expiry_days", "requested_within_limit", "green_channel_up_to_cny", "risk_reasons",
)
ALWAYS_FOR_PLATFORM = ("product", "product_name", "product_version", "eligible", "reasons")


def _texts(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: item[k] for k in ("code", "zh", "en") if k in item} for item in items]


def platform_body(versions: Versions, body: dict[str, Any]) -> dict[str, Any]:
    """The platform's view of a quote body: a whitelist, narrowed further by a product's `platform_fields`."""
    quotes = []
    for quote in body["quotes"]:
        plan = versions.plans.get(quote["product"])
        narrowed = plan.definition.platform_fields if plan is not None else None
        allowed = [f for f in PLATFORM_FIELDS if narrowed is None or f in narrowed or f in ALWAYS_FOR_PLATFORM]
        view = {k: quote[k] for k in allowed if k in quote}
        view["reasons"] = _texts(quote.get("reasons", []))
        if "risk_reasons" in allowed:
            view["risk_reasons"] = _texts(quote.get("risk_factors", []))
        quotes.append(view)
    best = body.get("best_offer")
    if best is not None:
        shown = next((q for q in quotes if q["product"] == best["product"]), {})
        best = {k: v for k, v in best.items() if k in shown}
    risk = body.get("risk")
    return {**body, "quotes": quotes, "best_offer": best, "risk": None if risk is None else {"pd": risk.get("pd")}}


class QuotingService:
    """Holds the versions in force and today's features of every enterprise, and serves quotes.

    Today's features are assembled once for the whole store (the same vectorised code as batch runs)
    and kept in memory, so a quote is a row lookup; they are rebuilt, together with rank cut-offs, when
    a new ingestion batch lands (checked at most every `STALE_CHECK_SECONDS`). Other as-of dates read
    the store directly.
    """

    STALE_CHECK_SECONDS = 1.0

    def __init__(self, engine: sa.Engine, models_dir: str | None = None) -> None:
        self.engine = engine
        self.models_dir = models_dir
        self._lock = threading.Lock()
        self._checked_at = 0.0
        self._models: Any | None = None  # training.serving.ModelCache: artifacts hashed once per model
        self.writer = GroupWriter(engine)  # commits issued quotes, grouping concurrent ones
        self._load()

    def _batch_mark(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(batches.c.id), 0))).scalar_one())

    def _load(self) -> None:
        mark = self._batch_mark()
        today = dt.date.today()
        population = load_features(None, today, engine=self.engine)
        versions = build_versions(load_catalogue(), reference_rates(today), self._champion(), population)
        self.store_versions(versions)
        # swap together: a request sees either the old or the new state, never a mix
        self._state = (today, mark, Population(population, versions), versions)
        self._checked_at = time.monotonic()

    def _fresh(self) -> tuple[dt.date, int, Population, Versions]:
        now = time.monotonic()
        if now - self._checked_at > self.STALE_CHECK_SECONDS:
            with self._lock:
                if now - self._checked_at > self.STALE_CHECK_SECONDS:
                    day, mark = self._state[0], self._state[1]
                    if day != dt.date.today() or mark != self._batch_mark():
                        self._load()
                    self._checked_at = time.monotonic()
        return self._state

    @property
    def versions(self) -> Versions:
        return self._fresh()[3]

    @property
    def products(self) -> list[str]:
        return list(self.versions.plans)

    @property
    def model_version(self) -> str | None:
        return self.versions.model_version

    def _model_cache(self) -> Any | None:
        if self._models is None:
            try:
                from training.registry import Registry
                from training.serving import ModelCache
            except ImportError:  # pragma: no cover - registry ships with the project
                return None
            # ttl 0: every reload asks the registry which model is champion; loading stays cached by id
            self._models = ModelCache(Registry(self.engine, self.models_dir), ttl_seconds=0.0)
        return self._models

    def _champion(self) -> Any | None:
        cache = self._model_cache()
        return None if cache is None else cache.champion()

    def refresh(self) -> None:
        """Reload definitions, rates, champion model and features (after a promotion, say)."""
        with self._lock:
            self._load()

    def store_versions(self, versions: Versions, actor: str = "quoting-service") -> None:
        """Keep every definition and rate table by content hash (idempotent), for replay. A blob not
        stored before is a configuration change: it is audited ("config.publish") in the same transaction."""
        blobs = [("product", c, p.version, versions.definition_sha[c], p.definition.model_dump(mode="json"))
                 for c, p in versions.plans.items()]
        blobs.append(("reference_rates", "reference_rates", "-", versions.rates_sha, versions.rates))
        for attempt in range(2):
            try:
                with self.engine.begin() as conn:
                    known = set(conn.execute(sa.select(config_blobs.c.sha256)).scalars())
                    for kind, code, version, digest, body in blobs:
                        if digest in known:
                            continue
                        conn.execute(config_blobs.insert().values(
                            sha256=digest, kind=kind, code=code, version=version,
                            body_json=canonical_json(body, sort_keys=False), created_at=dt.datetime.now(dt.UTC)))
                        audit.append(conn, actor, "config.publish", f"{kind}:{code}",
                                     {"kind": kind, "code": code, "version": version, "sha256": digest})
                return
            except sa.exc.IntegrityError:
                if attempt:  # pragma: no cover - a second clash means something else is wrong
                    raise
                # another worker process stored the same blobs between our read and write: read again

    def inputs(self, credit_code: str, as_of: dt.date) -> tuple[pd.DataFrame, Versions]:
        """One enterprise's features (empty when unknown) and the versions in force, taken together:
        from memory for today, else from the store."""
        day, _mark, population, versions = self._fresh()
        if as_of != day:
            return load_features([credit_code], as_of, engine=self.engine), versions
        position = population.positions.get(credit_code)
        return population.frame.iloc[[position] if position is not None else []], versions

    @staticmethod
    def snapshot(encoder: RowEncoder, i: int, as_of: dt.date, versions: Versions) -> dict[str, Any]:
        """What a replay needs of row `i`: feature values, each source's as-of date, the versions."""
        return {"format": 1, "as_of": as_of.isoformat(), "versions": versions.describe(),
                "source_as_of": encoder.provenance(i), "features": encoder.features(i)}

    def quote(self, credit_code: str, as_of: dt.date, products: list[str], requested_amount: float | None
              ) -> tuple[dict[str, Any], dict[str, Any], Versions] | None:
        """(quote body, input snapshot, versions) for one enterprise, or None when it is not in the store.
        Today's quotes come from the prepared population (array takes); other dates from the store."""
        day, _mark, population, versions = self._fresh()
        if as_of != day:
            row = load_features([credit_code], as_of, engine=self.engine)
            if row.empty:
                return None
            body = compute_quotes(versions, row, products, requested_amount)
            return body, self.snapshot(RowEncoder(row, versions.columns), 0, as_of, versions), versions
        position = population.positions.get(credit_code)
        if position is None:
            return None
        block, i = population.block(position)
        risk = population.risk(block, i, RISK_FACTORS)
        body = quote_body(versions, block.results, i, risk, products, requested_amount)
        return body, self.snapshot(population.encoder, position, as_of, versions), versions

    def versions_from_snapshot(self, snapshot: dict[str, Any]) -> Versions:
        """Rebuild the exact versions a stored quote used (definitions by content hash, cut-offs, model)."""
        described = snapshot["versions"]
        wanted = [info["sha256"] for info in described["products"].values()]
        wanted.append(described["reference_rates"]["sha256"])
        with self.engine.connect() as conn:
            query = sa.select(config_blobs.c.sha256, config_blobs.c.body_json).where(config_blobs.c.sha256.in_(wanted))
            rows = {r.sha256: r.body_json for r in conn.execute(query)}
        definitions = {code: parse_definition(json.loads(rows[info["sha256"]])) for code, info in
                       described["products"].items()}
        rates = json.loads(rows[described["reference_rates"]["sha256"]])
        model = None
        if described["model_version"]:
            model = self._model_cache().get(described["model_version"])
        versions = build_versions(definitions, rates, model, None)
        plans = {c: replace(p, cut_cents=np.array(described["products"][c]["cut_cents"], dtype=np.int64),
                            cuts_calibrated=described["products"][c]["cuts_calibrated"])
                 for c, p in versions.plans.items()}
        return replace(versions, plans=plans)

    def replay(self, credit_code: str, snapshot: dict[str, Any], products: list[str],
               requested_amount: float | None, current: bool = False) -> dict[str, Any]:
        versions = self.versions if current else self.versions_from_snapshot(snapshot)
        row = features_from_json(credit_code, snapshot["features"])
        return compute_quotes(versions, row, products, requested_amount)
