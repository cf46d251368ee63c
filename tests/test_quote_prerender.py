"""Quotes rendered ahead (api.quoting.prerender) are the computed quotes, byte for byte, for every firm and
product order; they are rendered in the background: beside a date's first state (served meanwhile by the
compute path), and for a rebuilt state (a new batch) before it is swapped in; never by a request."""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from api.cli.demo import ensure_champion
from api.database import migrate
from api.keys import Principal, Role
from api.quoting import population as population_module
from api.quoting.issuing import QuoteOrder, issue
from api.quoting.service import QuotingService
from api.quoting.snapshot import fast_json
from features.ingest import ingest_directory
from features.synthetic import generate_region, write_region

OFFICER = Principal(key_id=1, name="officer", role=Role.loan_officer)
PLATFORM = Principal(key_id=2, name="platform", role=Role.platform)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> QuotingService:
    directory = tmp_path_factory.mktemp("prerender")
    write_region(generate_region(600, 5), directory / "region", "parquet")
    engine = migrate(f"sqlite:///{directory / 'store.db'}")
    assert ingest_directory(engine, directory / "region", directory / "quarantine").ok
    ensure_champion(engine, directory)
    quoting = QuotingService(engine)
    assert quoting.wait_for_rebuilds()  # today's state was rendered in the background after the first build
    yield quoting
    quoting.wait_for_rebuilds()
    quoting.writer.stop()


def _order(code: str, products: list[str], amount: float | None = None, as_of: dt.date | None = None,
           consent_ref: str | None = None, principal: Principal = OFFICER) -> QuoteOrder:
    return QuoteOrder(code, as_of or dt.date.today(), products, amount, consent_ref, "{}", None, principal)


def _computed(service: QuotingService, order: QuoteOrder, quote_id: str, created: dt.datetime) -> bytes:
    """The bytes the compute path gives the same quote (same id and time)."""
    body, _, _ = service.quote(order.credit_code, order.as_of, order.products, order.requested_amount)
    expires = created + dt.timedelta(days=min(q["expiry_days"] for q in body["quotes"]))
    return fast_json({"quote_id": quote_id, "credit_code": order.credit_code, "as_of": order.as_of.isoformat(),
                      "created_at": created.isoformat(), "expires_at": expires.isoformat(),
                      "consent_ref": order.consent_ref, **body})


def test_a_services_state_is_rendered_in_the_background(service: QuotingService) -> None:
    state = service.state(dt.date.today())
    assert service.rendered_share(dt.date.today()) == 1.0
    assert state.versions.model is not None, "the champion model is on"
    population = state.population
    assert sorted(population.rendered_blocks()) == list(range(population.blocks))
    assert all(population.rendered(code) is not None for code in population.frame.index)


def test_rendered_quotes_are_the_computed_bytes(service: QuotingService) -> None:
    state = service.state(dt.date.today())
    products = list(state.versions.products)
    rng = np.random.default_rng(5)
    orders = []
    for k, code in enumerate(state.population.frame.index):
        chosen = list(rng.permutation(products)[: 1 + k % len(products)])  # subsets, in many orders
        platform = k % 4 == 1  # the platform's view, rendered ahead the same way (it always sends a consent)
        orders.append(_order(code, products if k % 3 == 0 else chosen, consent_ref="AUTH-1" if k % 2 else None,
                             principal=PLATFORM if platform else OFFICER))
    eligible = 0
    for order in orders:
        issued = issue(service, order)
        assert issued.full["quotes"][0].keys() <= {"product", "product_name", "eligible", "limit_cny", "rate",
                                                   "all_in_cost", "grade", "tier", "expiry_days"}, \
            "taken from the rendered parts (a computed quote carries every field)"
        values = issued.values
        expected = _computed(service, order, values["quote_id"], values["created_at"])
        assert values["response_json"].encode("utf-8") == expected  # stored: the bank's view, whoever asked
        if order.principal.role is Role.platform:
            seen = fast_json(service.platform_view(json.loads(expected), order.as_of))
            assert issued.sent == seen
            assert service.platform_json(json.loads(expected), order.as_of) == seen  # read back (GET, replayed)
        else:
            assert issued.sent == expected
        assert values["expires_at"].isoformat() in expected.decode("utf-8")
        snapshot = state.population.snapshot(order.credit_code)
        assert values["snapshot_json"].encode("utf-8") == fast_json(snapshot)
        assert issued.snapshot["source_as_of"] == snapshot["source_as_of"]
        assert dict(issued.snapshot) == json.loads(fast_json(snapshot))  # what the shadow scorer may read back
        eligible += any(q["eligible"] for q in issued.full["quotes"])
    assert eligible, "some firms have offers (best_offer is exercised)"


def test_what_is_not_rendered_is_computed(service: QuotingService) -> None:
    state = service.state(dt.date.today())
    code = state.population.frame.index[0]
    products = list(state.versions.products)
    with_amount = issue(service, _order(code, products, amount=1_000_000.0))
    assert "product_version" in with_amount.full["quotes"][0]  # the whole computed body
    assert with_amount.sent == _computed(service, _order(code, products, amount=1_000_000.0),
                                         with_amount.values["quote_id"], with_amount.values["created_at"])
    platform = issue(service, _order(code, products, amount=1_000_000.0, consent_ref="AUTH-2", principal=PLATFORM))
    assert "product_version" in platform.full["quotes"][0]
    stored = platform.values["response_json"].encode("utf-8")
    assert stored == _computed(service, _order(code, products, amount=1_000_000.0, consent_ref="AUTH-2"),
                               platform.values["quote_id"], platform.values["created_at"])
    assert platform.sent == fast_json(service.platform_view(json.loads(stored), dt.date.today()))


def test_a_requests_products_are_checked_once_per_state_and_errors_every_time(service: QuotingService) -> None:
    from api.quoting.versions import VersionsError

    today = dt.date.today()
    state = service.state(today)
    everything = service.products_for(today, None)
    everything.append("not-a-product")  # the caller's list: what is remembered must not change with it
    assert "not-a-product" not in service.products_for(today, None)
    some = service.products_for(today, [everything[1], everything[0]])
    assert some == [everything[1], everything[0]]
    assert (today, (everything[1], everything[0])) in state.chosen  # remembered for the state
    for _ in range(2):  # an unknown product is refused on every request, never remembered
        with pytest.raises(VersionsError):
            service.products_for(today, ["no_such_product"])
    assert not any(key[1] == ("no_such_product",) for key in state.chosen)


def test_no_request_renders(service: QuotingService, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    render_firm = population_module.render_firm

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(threading.current_thread().name)
        return render_firm(*args, **kwargs)

    monkeypatch.setattr(population_module, "render_firm", counted)
    today = dt.date.today()
    state = service.state(today)
    for code in state.population.frame.index[:50]:
        issue(service, _order(code, list(state.versions.products)))
    assert calls == []

    # a date first asked for by a request: that quote is computed; its state is rendered in the background
    earlier = dt.date(2025, 3, 31)
    code = service.state(earlier).population.frame.index[0]  # the first build (what a request would wait for)
    issue(service, _order(code, service.products_for(earlier, None), as_of=earlier))
    assert service.wait_for_rebuilds()
    assert calls and all(name.startswith("quote-render-") for name in calls)
    population = service.state(earlier).population
    assert population.rendered(code) is not None


def test_a_new_batch_is_rendered_before_the_swap(service: QuotingService, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    today = dt.date.today()
    before = service.state(today)
    eligible = [c for c in before.population.frame.index
                if before.population.body(c, ["tax_credit"], None)["quotes"][0]["eligible"]]
    assert eligible
    firm = eligible[0]
    seen: list[list[int]] = []
    put = QuotingService._put

    def watched_put(self: QuotingService, as_of: dt.date, state: object) -> None:
        population = state.population  # type: ignore[attr-defined]
        if population is not before.population:
            seen.append(sorted(population.rendered_blocks()))
        put(self, as_of, state)

    monkeypatch.setattr(QuotingService, "_put", watched_put)
    monkeypatch.setattr(service, "STALE_CHECK_SECONDS", 0.0)
    encoded: list[str] = []
    snapshot = population_module.Population.snapshot

    def watched_snapshot(self: population_module.Population, credit_code: str) -> dict:
        encoded.append(credit_code)
        return snapshot(self, credit_code)

    monkeypatch.setattr(population_module.Population, "snapshot", watched_snapshot)
    region = Path(service.engine.url.database).parent / "region"
    tax = pd.read_parquet(region / "tax.parquet")
    row = tax[tax["credit_code"] == firm].sort_values("as_of").tail(1).copy()
    row["as_of"] = pd.Timestamp(today - dt.timedelta(days=1))
    row["tax_credit_grade"] = "D"
    (tmp_path / "update").mkdir()
    row.to_parquet(tmp_path / "update" / "tax.parquet", index=False)
    assert ingest_directory(service.engine, tmp_path / "update", tmp_path / "quarantine").ok

    service.state(today)  # notices the batch; the rebuild runs beside the served state
    assert service.wait_for_rebuilds()
    in_rebuild = list(encoded)
    after = service.state(today)
    assert after.population is not before.population
    assert seen and seen[0] == list(range(after.population.blocks)), "rendered whole before it was swapped in"
    for code in after.population.frame.index:  # parts kept exactly where the quote's inputs are unchanged
        old, new = before.population.rendered(code), after.population.rendered(code)
        assert new.snapshot_json == fast_json(after.population.snapshot(code)), "parts of another snapshot"
        assert (new is old) == (old is not None and old.snapshot_json == new.snapshot_json)
    kept = sum(after.population.rendered(c) is before.population.rendered(c) for c in after.population.frame.index)
    assert kept == len(after.population) - 1, "only the firm of the new batch was rendered again"
    assert in_rebuild == [firm], "the re-render encoded only the changed firm's snapshot (the others' rows " \
                                 "compared equal)"
    assert after.population.rendered(firm) is not before.population.rendered(firm)
    issued = issue(service, _order(firm, ["tax_credit"]))
    assert not issued.full["quotes"][0]["eligible"]  # the new batch's data, from the rendered parts
    assert issued.sent == _computed(service, _order(firm, ["tax_credit"]), issued.values["quote_id"],
                                    issued.values["created_at"])
