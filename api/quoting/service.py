"""The quoting service: for any as-of date, the versions in force and that date's population, and quotes.

`Quoter` is what every entry point quotes through (`indexloan quote`, the API, replay): per as-of
date it assembles every enterprise's point-in-time features from the store once (the population the
rank cut-offs are calibrated on, and the rows quotes are taken from), builds the versions in force
(`api.quoting.versions`) and keeps both. The product definitions are the seed versions plus the
versions approved in the store (`api.workbench.store.ProductVersions`). A date's state is rebuilt when
a new ingestion batch lands, the champion model changes or a product version is approved (the mark;
checked at most every `STALE_CHECK_SECONDS`), in a background thread beside the state being served,
and swapped in when ready: every worker process picks up an approval within a few seconds, without a
restart and without a quote waiting. The most recently used
`settings.quote_dates_cached` dates are kept. `QuotingService` adds what the HTTP service needs:
every definition and rate table it quotes on is kept by content hash for replay (audited as
config.publish), and a writer that commits issued quotes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from api.quoting.heap import settle_heap
from api.quoting.population import BLOCK, Population
from api.quoting.prerender import platform_json
from api.quoting.snapshot import canonical_json, features_from_json
from api.quoting.versions import (
    Versions,
    VersionsError,
    build_versions,
    check_as_of,
    definitions_in_force,
    in_force,
    versions_for,
)
from api.quoting.writer import GroupWriter
from api.tables import config_blobs
from api.visibility import platform_view
from api.workbench.store import ProductVersions
from features.settings import get_settings
from features.store import audit
from features.store.db import StoreUnavailableError, store_errors
from features.store.snapshot import population_features
from features.store.tables import batches
from products.catalogue import parse_definition
from products.schema import ProductDefinition
from training.registry import Registry
from training.serving import ModelCache, RiskModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelChoice:
    """Which risk model quotes use: the registry's champion (default), a model directory, or none."""

    directory: Path | None = None
    use_model: bool = True

    @property
    def champion(self) -> bool:
        return self.use_model and self.directory is None

    def describe(self, model: RiskModel | None) -> str:
        if not self.use_model:
            return "no risk model (--no-model): no PD, rates at the band's default position, no PD-scaled limit"
        if model is None:
            return "no champion model in the registry: no PD, rates at the band's default position"
        source = f"directory {self.directory}" if self.directory is not None else "the registry's champion"
        return f"risk model {model.model_version} ({source})"


CHAMPION = ModelChoice()


@dataclass(frozen=True)
class DateState:
    """A date's versions in force and population, and what they were built from (to know when stale)."""

    versions: Versions
    population: Population
    mark: tuple[int, str | None, int]  # (newest ingestion batch, model version, product-version epoch)
    checked_at: float
    definitions: tuple[ProductDefinition, ...]  # every version known when built (those in force: `versions`)
    # (today, products asked for) -> the products a request quotes: a pure function of the state, checked once
    chosen: dict[tuple[dt.date, tuple[str, ...] | None], tuple[str, ...]] = field(
        default_factory=dict, compare=False, repr=False)


MAX_CHOSEN = 256  # product lists remembered per state (`Quoter.products_for`)


def narrowing_of(definitions: Sequence[ProductDefinition], as_of: dt.date) -> dict[str, list[str] | None]:
    """Per product, the quote fields the platform may see under `definitions` in force on `as_of`."""
    return {c: d.platform_fields for c, d in definitions_in_force(definitions, as_of).items()}


def render_ahead(state: DateState, previous: DateState | None = None) -> None:
    """Render a state's quotes ahead, both views (the platform's under the state's own definitions)."""
    as_of = state.versions.as_of
    narrowing = narrowing_of(state.definitions, as_of) if as_of is not None else None
    state.population.render(previous=None if previous is None else previous.population, narrowing=narrowing)


def _seconds_to_midnight() -> float:
    now = dt.datetime.now()
    return (dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time()) - now).total_seconds()


class Quoter:
    """Quotes from the store for any as-of date (today by default), through one path."""

    STALE_CHECK_SECONDS = 1.0
    # Render every quote of a state ahead (`Population.render`), before it is swapped in: for a service that
    # answers many quotes; a one-off quote (the CLI) computes its own.
    PRERENDER = False
    PREWARM_SECONDS = 600.0  # in a day's last ten minutes, the next day's state is built ahead (`prewarm`)

    def __init__(self, engine: sa.Engine, models_dir: str | None = None, model: ModelChoice = CHAMPION,
                 definitions: list[ProductDefinition] | None = None) -> None:
        self.engine = engine
        self.models_dir = models_dir
        # fixed definitions (a test, a tool) or the store's: seeds + approved versions, by approval epoch
        self._fixed = list(definitions) if definitions is not None else None
        self.product_versions = ProductVersions(engine) if definitions is None else None
        self._published: tuple[int, list[ProductDefinition]] | None = None
        self._published_checked = 0.0
        self._published_lock = threading.Lock()
        self._models = ModelCache(Registry(engine, models_dir), ttl_seconds=0.0) if model.champion else None
        self._directory_model = RiskModel.from_dir(model.directory) if model.directory is not None else None
        self._states: OrderedDict[dt.date, DateState] = OrderedDict()
        self._lock = threading.Lock()  # guards _states
        self._build_lock = threading.Lock()  # one date is built at a time (each build reads the whole store)
        self._check_lock = threading.Lock()  # one freshness check at a time
        self._rebuilding: set[dt.date] = set()
        self._rendering: set[int] = set()  # ids of states whose quotes are being rendered after their swap
        self._max_dates = get_settings().quote_dates_cached

    # ------------------------------------------------------------------ the model and freshness

    def model(self) -> RiskModel | None:
        if self._models is not None:
            return self._models.champion()
        return self._directory_model

    def _mark(self) -> tuple[int, str | None, int]:
        with self.engine.connect() as conn:
            batch = int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(batches.c.id), 0))).scalar_one())
            epoch = self.product_versions.epoch(conn) if self.product_versions is not None else 0
        if self._models is not None:
            record = self._models.registry.champion()
            return batch, None if record is None else record.id, epoch
        return batch, None if self._directory_model is None else self._directory_model.model_version, epoch

    # ------------------------------------------------------------------ product definitions

    @property
    def definitions(self) -> list[ProductDefinition]:
        """Every product version quotes may use now (seeds + approved), refreshed at most every
        STALE_CHECK_SECONDS; the versions in force on a date are picked from these by effective date."""
        return self._catalogue()[1]

    def _catalogue(self, epoch: int | None = None) -> tuple[int, list[ProductDefinition]]:
        """(epoch, definitions): the ones of `epoch` when given, else the latest (read again when stale)."""
        if self.product_versions is None:
            return 0, self._fixed or []
        with self._published_lock:
            current = self._published
            fresh = time.monotonic() - self._published_checked <= self.STALE_CHECK_SECONDS
            if current is not None and (current[0] == epoch or (epoch is None and fresh)):
                return current
            latest = self.product_versions.epoch() if epoch is None else epoch
            if current is None or current[0] != latest:
                current = self._published = self.product_versions.published()
            self._published_checked = time.monotonic()
            return current

    def _definitions_for(self, as_of: dt.date) -> list[ProductDefinition]:
        """The definitions behind the state served for `as_of` (so a request's products are always in its
        versions), or the latest when the date has no state yet (its first build reads at least those)."""
        state = self._states.get(as_of)
        return list(state.definitions) if state is not None else self.definitions

    # ------------------------------------------------------------------ states per date

    def _build(self, as_of: dt.date, mark: tuple[int, str | None, int], ahead: bool = False) -> DateState:
        definitions = self._catalogue(mark[2])[1]
        population = population_features(as_of, self.engine)
        versions = versions_for(as_of, population, self.model(), definitions=definitions,
                                today=as_of if ahead else None)
        self.on_new_versions(versions)
        return DateState(versions, Population(population[[c for c in versions.columns if c in population.columns]
                                                          + [c for c in population.columns if c.endswith(".as_of")]],
                                              versions),
                         mark, time.monotonic(), tuple(definitions))

    def on_new_versions(self, versions: Versions) -> None:
        """Called with every date's newly built versions (the service keeps them for replay)."""

    def prepared(self, as_of: dt.date) -> bool:
        """Whether `state(as_of)` answers from memory without reading the store (not even its freshness)."""
        state = self._states.get(as_of)
        return state is not None and time.monotonic() - state.checked_at <= self.STALE_CHECK_SECONDS

    def state(self, as_of: dt.date) -> DateState:
        """The versions in force on `as_of` and that date's population (VersionsError when none can be built).

        A date is built on its first use (nothing to serve meanwhile). Afterwards, when a new ingestion batch
        or champion lands, the new state is built in a background thread beside the one being served and
        swapped in when ready: no request waits for a rebuild (quotes in between use the previous state, and
        their snapshots say so)."""
        check_as_of(as_of)
        with self._lock:
            state = self._states.get(as_of)
            if state is not None:
                self._states.move_to_end(as_of)
        if state is None:
            return self._first_build(as_of)
        if time.monotonic() - state.checked_at > self.STALE_CHECK_SECONDS and self._check_lock.acquire(blocking=False):
            # the check reads the store and the registry: in a thread of its own, never on a request's time
            threading.Thread(target=self._check, args=(as_of, state), name=f"quote-check-{as_of}",
                             daemon=True).start()
        return state

    def _put(self, as_of: dt.date, state: DateState) -> None:
        with self._lock:
            self._states[as_of] = state
            self._states.move_to_end(as_of)
            while len(self._states) > self._max_dates:
                self._states.popitem(last=False)

    def _first_build(self, as_of: dt.date) -> DateState:
        with self._build_lock:
            with self._lock:
                state = self._states.get(as_of)
            if state is None:  # not built by another request meanwhile
                state = self._build(as_of, self._mark())
                self._put(as_of, state)
                if self.PRERENDER:  # nothing was served before: render beside it (quotes are computed meanwhile)
                    self._rendering.add(id(state))
                    threading.Thread(target=self._render, args=(state,), name=f"quote-render-{as_of}",
                                     daemon=True).start()
            return state

    def _settled(self) -> None:
        """A state was built (and rendered ahead) and swapped in; a long-running service settles its heap."""
        if self.PRERENDER:
            settle_heap()

    def rendered_share(self, as_of: dt.date) -> float | None:
        """The share of the date's firms whose quotes are rendered ahead (None: no state for it yet)."""
        state = self._states.get(as_of)
        if state is None:
            return None
        population = state.population
        return min(1.0, len(population.rendered_blocks()) * BLOCK / len(population)) if len(population) else 1.0

    def _render(self, state: DateState) -> None:
        try:
            render_ahead(state)
            self._settled()
        except Exception:  # noqa: BLE001 - its quotes are then computed per request, the same bytes
            log.exception("rendering the quotes of %s ahead failed", state.versions.as_of)
        finally:
            self._rendering.discard(id(state))

    def prewarm(self, as_of: dt.date) -> bool:
        """Build a date's state ahead, in the background (tomorrow's, before midnight): the first quotes of
        the day, and the versions that take effect that day, then wait for nothing. False when it is built
        or being built already. A batch ingested after it is picked up by the usual freshness check."""
        with self._lock:
            if as_of in self._states or as_of in self._rebuilding:
                return False
            self._rebuilding.add(as_of)
        threading.Thread(target=self._build_ahead, args=(as_of,), name=f"quote-state-{as_of}", daemon=True).start()
        return True

    def _build_ahead(self, as_of: dt.date) -> None:
        try:
            with self._build_lock:
                if as_of not in self._states:
                    state = self._build(as_of, self._mark(), ahead=True)
                    if self.PRERENDER:
                        render_ahead(state)
                    self._put(as_of, state)
                    self._settled()
        except store_errors() as error:  # an outage: one line, no traceback
            log.error("building the quoting state of %s ahead failed: the store (database) is unavailable (%s); "
                      "the date is built on its first use", as_of, type(error).__name__)
        except Exception:  # noqa: BLE001 - the date is then built on its first use, as without prewarming
            log.exception("building the quoting state of %s ahead failed", as_of)
        finally:
            self._rebuilding.discard(as_of)

    def _check(self, as_of: dt.date, state: DateState) -> None:
        """Is the state still what the store and registry hold? If not, rebuild it in the background. Runs with
        `_check_lock` held (taken by `state`, which serves what there is meanwhile), and releases it."""
        try:
            today = dt.date.today()
            if as_of == today and _seconds_to_midnight() <= self.PREWARM_SECONDS:
                self.prewarm(today + dt.timedelta(days=1))
            current = self._states.get(as_of, state)
            if time.monotonic() - current.checked_at <= self.STALE_CHECK_SECONDS:
                return
            mark = self._mark()
            self._put(as_of, replace(current, checked_at=time.monotonic()))
            if mark == current.mark or as_of in self._rebuilding:
                return
            self._rebuilding.add(as_of)
            threading.Thread(target=self._rebuild, args=(as_of, mark), name=f"quote-state-{as_of}",
                             daemon=True).start()
        except (sa.exc.SQLAlchemyError, StoreUnavailableError) as error:
            # the store is down: the state keeps serving and the next call checks again; the outage is logged
            # (rate-limited) where it reaches requests, by the writer's failures and /readyz
            log.debug("checking the quoting state of %s failed: %s", as_of, error)
        except Exception:  # noqa: BLE001 - the state keeps serving; the next call checks again
            log.exception("checking the quoting state of %s failed", as_of)
        finally:
            self._check_lock.release()

    def _rebuild(self, as_of: dt.date, mark: tuple[int, str | None, int]) -> None:
        try:
            self._build_and_swap(as_of, mark)
            self._settled()  # here, where nothing refers to the replaced state any more
        except Exception:  # noqa: BLE001 - the previous state keeps serving; the next check tries again
            log.exception("rebuilding the quoting state of %s failed; serving the previous one", as_of)
        finally:
            self._rebuilding.discard(as_of)

    def _build_and_swap(self, as_of: dt.date, mark: tuple[int, str | None, int]) -> None:
        with self._build_lock:
            state = self._build(as_of, mark)
            previous = self._states.get(as_of)
            if previous is not None:  # the blocks quotes were using, computed before the swap, not by a quote
                state.population.warm(previous.population.hot_blocks())
            if self.PRERENDER:  # and every quote's parts: after the swap, requests only assemble them
                render_ahead(state, previous)
        if as_of in self._states:  # unless dropped from the cache meanwhile
            self._put(as_of, state)

    def wait_for_rebuilds(self, timeout: float = 120.0) -> bool:
        """Block until no background rebuild or rendering runs (for tests and orderly shutdown); False on
        timeout."""
        deadline = time.monotonic() + timeout
        while self._rebuilding or self._rendering or self._check_lock.locked():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    # ------------------------------------------------------------------ quoting

    def products_for(self, as_of: dt.date, wanted: list[str] | None) -> list[str]:
        """The products a request quotes: `wanted` (checked to be in force on `as_of`, with their reference
        rates) or all in force. VersionsError names the field at fault (an error is never remembered: checked
        again on every request)."""
        state = self._states.get(as_of)
        if state is None:
            return list(in_force(as_of, wanted, self.definitions)[0])
        key = (dt.date.today(), None if wanted is None else tuple(wanted))
        chosen = state.chosen.get(key)
        if chosen is None:
            chosen = tuple(in_force(as_of, wanted, state.definitions)[0])
            if len(state.chosen) >= MAX_CHOSEN:  # callers choose the lists: bounded
                state.chosen.clear()
            state.chosen[key] = chosen
        return list(chosen)

    def platform_narrowing(self, as_of: dt.date) -> dict[str, list[str] | None]:
        """Per product, the quote fields the platform may see under the definitions in force on `as_of`."""
        return narrowing_of(self._definitions_for(as_of), as_of)

    def platform_view(self, body: dict[str, Any], as_of: dt.date) -> dict[str, Any]:
        return platform_view(self.platform_narrowing(as_of), body)

    def platform_json(self, body: dict[str, Any], as_of: dt.date) -> bytes:
        """The platform's view of a stored quote body, as the bytes it was sent."""
        return platform_json(self.platform_narrowing(as_of), body)

    def quote(self, credit_code: str, as_of: dt.date, products: list[str], requested_amount: float | None
              ) -> tuple[dict[str, Any], dict[str, Any], Versions] | None:
        """(quote body, input snapshot, versions) of one enterprise, or None when it is not in the store
        as of that date. `products` come from `products_for`."""
        state = self.state(as_of)
        population = state.population
        body = population.body(credit_code, products, requested_amount)
        if body is None:
            return None
        return body, population.snapshot(credit_code), state.versions

    # ------------------------------------------------------------------ replay

    def versions_from_snapshot(self, snapshot: dict[str, Any]) -> Versions:
        """The exact versions a stored quote used (definitions and rates by content hash, cut-offs, model)."""
        described = snapshot["versions"]
        wanted = [info["sha256"] for info in described["products"].values()]
        wanted.append(described["reference_rates"]["sha256"])
        with self.engine.connect() as conn:
            query = sa.select(config_blobs.c.sha256, config_blobs.c.body_json).where(config_blobs.c.sha256.in_(wanted))
            rows = {r.sha256: r.body_json for r in conn.execute(query)}
        definitions = {code: parse_definition(json.loads(rows[info["sha256"]]), stored=True) for code, info in
                       described["products"].items()}
        rates = json.loads(rows[described["reference_rates"]["sha256"]])
        model = None
        if described["model_version"]:
            cache = self._models or ModelCache(Registry(self.engine, self.models_dir), ttl_seconds=0.0)
            model = cache.get(described["model_version"])
        as_of = dt.date.fromisoformat(snapshot["as_of"]) if snapshot.get("as_of") else None
        versions = build_versions(definitions, rates, model, None, as_of)
        plans = {c: replace(p, cut_cents=np.array(described["products"][c]["cut_cents"], dtype=np.int64),
                            cuts_calibrated=described["products"][c]["cuts_calibrated"])
                 for c, p in versions.plans.items()}
        return replace(versions, plans=plans)

    def replay(self, credit_code: str, snapshot: dict[str, Any], products: list[str],
               requested_amount: float | None, current: bool = False) -> dict[str, Any]:
        """A stored quote recomputed from its input snapshot: under the versions it used (bit-identical),
        or under the versions in force now for its as-of date (`current`)."""
        if current:
            as_of = dt.date.fromisoformat(snapshot["as_of"])
            versions = self.state(as_of).versions.only(self.products_for(as_of, products))
        else:
            versions = self.versions_from_snapshot(snapshot)
        row = features_from_json(credit_code, snapshot["features"])
        body = Population(row, versions).body(credit_code, products, requested_amount)
        assert body is not None  # the row is the one enterprise of this population
        return body


class QuotingService(Quoter):
    """The HTTP service's quoter: keeps what it quotes on for replay, and commits issued quotes; renders
    its states' quotes ahead."""

    PRERENDER = True

    def __init__(self, engine: sa.Engine, models_dir: str | None = None) -> None:
        super().__init__(engine, models_dir)
        self.writer = GroupWriter(engine)  # commits issued quotes, grouping concurrent ones
        # today's state is ready before the first request; when none can be built (no product in force,
        # say) each request gets the field-level error instead
        with contextlib.suppress(VersionsError):
            self.state(dt.date.today())

    def on_new_versions(self, versions: Versions, actor: str = "quoting-service") -> None:
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
