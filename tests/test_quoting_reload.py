"""A new ingestion batch reaches quotes without a restart, and without any request waiting for the rebuild:
the previous state keeps serving while the new one is built beside it, then it is swapped in."""

from __future__ import annotations

import datetime as dt
import gc
import threading
import weakref
from pathlib import Path

import pandas as pd
import pytest

from api.database import migrate
from api.quoting.service import QuotingService
from features.ingest import ingest_directory
from features.synthetic import generate_region, write_region


@pytest.fixture
def service(tmp_path: Path) -> QuotingService:
    write_region(generate_region(300, 5), tmp_path / "region", "parquet")
    engine = migrate(f"sqlite:///{tmp_path / 'store.db'}")
    assert ingest_directory(engine, tmp_path / "region", tmp_path / "quarantine").ok
    quoting = QuotingService(engine)
    quoting.STALE_CHECK_SECONDS = 0.0  # check on every call
    yield quoting
    quoting.wait_for_rebuilds()
    quoting.writer.stop()


def _downgrade_tax_grade(region: Path, out: Path, credit_code: str) -> None:
    """A new tax record for one firm, dated after the region's last snapshot: grade D (tax_credit's gate)."""
    tax = pd.read_parquet(region / "tax.parquet")
    row = tax[tax["credit_code"] == credit_code].sort_values("as_of").tail(1).copy()
    row["as_of"] = pd.Timestamp(dt.date.today() - dt.timedelta(days=1))
    row["tax_credit_grade"] = "D"
    out.mkdir()
    row.to_parquet(out / "tax.parquet", index=False)


def test_a_new_batch_is_built_beside_the_served_state_and_swapped_in(service: QuotingService, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    today = dt.date.today()
    before = service.state(today)
    products = before.versions.products
    eligible = [c for c in before.population.frame.index
                if before.population.body(c, ["tax_credit"], None)["quotes"][0]["eligible"]]
    assert eligible, "the region has tax_credit offers"
    firm = eligible[0]

    # the rebuild is held back until released, to see what requests get meanwhile
    release = threading.Event()
    build = QuotingService._build

    def slow_build(self: QuotingService, as_of: dt.date, mark: tuple) -> object:
        assert release.wait(60)
        return build(self, as_of, mark)

    monkeypatch.setattr(QuotingService, "_build", slow_build)
    _downgrade_tax_grade(tmp_path / "region", tmp_path / "update", firm)
    assert ingest_directory(service.engine, tmp_path / "update", tmp_path / "quarantine").ok

    during = service.state(today)  # notices the batch, starts the rebuild, answers at once
    assert during.population is before.population and during.mark == before.mark
    quoted, _, _ = service.quote(firm, today, products, None)
    assert next(q for q in quoted["quotes"] if q["product"] == "tax_credit")["eligible"]

    release.set()
    assert service.wait_for_rebuilds()
    after = service.state(today)
    assert after.mark != before.mark and after.population is not before.population
    requoted, snapshot, _ = service.quote(firm, today, products, None)
    tax_credit = next(q for q in requoted["quotes"] if q["product"] == "tax_credit")
    assert not tax_credit["eligible"] and "TAX_GRADE_NOT_ABM" in [r["code"] for r in tax_credit["reasons"]]
    assert snapshot["source_as_of"]["tax"] == (today - dt.timedelta(days=1)).isoformat()


def test_a_failed_rebuild_keeps_serving_the_previous_state(service: QuotingService, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    today = dt.date.today()
    before = service.state(today)

    def broken(self: QuotingService, as_of: dt.date, mark: tuple) -> object:
        raise RuntimeError("store read failed")

    monkeypatch.setattr(QuotingService, "_build", broken)
    firm = before.population.frame.index[0]
    _downgrade_tax_grade(tmp_path / "region", tmp_path / "update", firm)
    assert ingest_directory(service.engine, tmp_path / "update", tmp_path / "quarantine").ok
    assert service.state(today) is not None
    assert service.wait_for_rebuilds()
    assert service.state(today).population is before.population  # still serving, not failing
    assert service.wait_for_rebuilds()  # (that call's check started another attempt, failing too)
    monkeypatch.undo()
    service.state(today)  # the next check tries again, and this time succeeds
    assert service.wait_for_rebuilds()
    assert service.state(today).mark != before.mark


def _tracked(obj: object) -> bool:
    """Is `obj` among the objects the cyclic collector still walks (not frozen)?"""
    return any(o is obj for o in gc.get_objects())


def _rebuild_after_a_new_batch(service: QuotingService, tmp_path: Path, firm: str) -> None:
    today = dt.date.today()
    _downgrade_tax_grade(tmp_path / "region", tmp_path / "update", firm)
    assert ingest_directory(service.engine, tmp_path / "update", tmp_path / "quarantine").ok
    service.state(today)  # notices the batch: rebuilt, rendered and swapped in, in the background
    assert service.wait_for_rebuilds()


def test_rendered_states_are_frozen_and_a_replaced_state_is_freed_without_a_full_pass(
        service: QuotingService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The collector's full passes skip a rendered state (frozen once it is swapped in); a state replaced by a
    rebuild is freed by reference counting, and the swap does not hand the frozen objects back to the
    collector (the full pass that held every worker's GIL for 0.3-0.6 s)."""
    from api.quoting import heap

    monkeypatch.setattr(heap, "SETTLER", heap.HeapSettler())  # this process's earlier tests grew its memory
    today = dt.date.today()
    before = service.state(today)
    assert service.wait_for_rebuilds()  # rendered ahead, then settled
    assert not _tracked(before.population) and not _tracked(before.population.frame)
    gone = weakref.ref(before.population)
    firm = before.population.frame.index[0]
    del before
    passes = []
    monkeypatch.setattr(gc, "unfreeze", lambda: passes.append("unfreeze"))
    _rebuild_after_a_new_batch(service, tmp_path, firm)
    after = service.state(today)
    assert after.population.frame.index[0] == firm
    assert gone() is None, "the replaced state was not freed"
    assert not _tracked(after.population)
    assert passes == [], "the swap made a full pass over the frozen objects"


def test_a_state_holds_no_reference_cycle(service: QuotingService, tmp_path: Path) -> None:
    """What lets a swap skip the full pass: a replaced state, rendered quotes included, is freed by reference
    counting alone, with the cyclic collector off. A cycle anywhere in it would leave it frozen for good
    (until the heap's growth forces a full pass)."""
    today = dt.date.today()
    state = service.state(today)
    assert service.wait_for_rebuilds()
    state = service.state(today)
    assert state.population.rendered_blocks(), "its quotes were rendered ahead"
    firm = state.population.frame.index[0]
    gone, population = weakref.ref(state), weakref.ref(state.population)
    del state
    gc.disable()
    try:
        _rebuild_after_a_new_batch(service, tmp_path, firm)
        assert service.state(today).population.frame.index[0] == firm
        assert gone() is None and population() is None, "a replaced state outlived its last reference"
    finally:
        gc.enable()


class _Node:
    pass


def test_frozen_garbage_in_cycles_is_reclaimed_once_memory_grows_past_the_bound() -> None:
    """The settler's bound: resident memory beyond `growth` times what it was after the last full pass makes the
    next settle a full pass, which frees frozen garbage held in cycles; below it, a settle is a young collection
    (and such garbage stays frozen)."""
    from api.quoting.heap import HeapSettler, resident_bytes

    assert resident_bytes() > 0
    settler = HeapSettler(growth=1.2)
    assert settler.settle() is True, "the first settle is a full pass"
    assert settler.settle() is False, "nothing grew: a young collection"
    nodes = [_Node() for _ in range(int(0.3 * settler.kept) // (1 << 20) + 1)]
    for node in nodes:
        node.me = node  # a cycle: reference counting alone never frees it
        node.payload = b"x" * (1 << 20)  # written, so resident
    canary = weakref.ref(nodes[0])
    gc.freeze()
    del nodes, node
    assert canary() is not None, "frozen garbage in a cycle stays until a full pass"
    assert settler.settle() is True, "memory grew past the bound"
    assert canary() is None, "the full pass freed it"
