"""Product versions under maker-checker: the lifecycle, who may do what, and a running service (every worker)
picking up an approved version on its date without a restart, while earlier quotes replay bit for bit."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml

from api.database import migrate
from api.keys import Role, create_key
from api.quoting import versions as versions_module
from api.quoting.service import QuotingService
from api.workbench.store import ProductVersionError, ProductVersions
from features.ingest import ingest_directory
from features.store.audit import audit_log, verify
from features.synthetic import generate_region, write_region
from products.catalogue import DEFINITIONS_DIR, load_catalogue, parse_definition
from products.schema import ProductDefinition
from tests.api_support import Service, running_service
from tests.conftest import settings_env
from tests.live_server import served

TODAY = dt.date.today()
SEED = load_catalogue(DEFINITIONS_DIR)["tech_innovation"].version  # the shipped version the store's supersede
ROOT = Path(__file__).resolve().parents[1]


def new_version(code: str = "tech_innovation", version: str = "2099.1", effective: dt.date = TODAY,
                a_cut: float | None = None, lenient: bool = False) -> ProductDefinition:
    """The shipped definition of `code` as a new version (optionally with another A cut-off; `lenient`:
    cut-offs 3/2/1, so that every firm with an index of 3 or more is graded A)."""
    data = load_catalogue(DEFINITIONS_DIR)[code].model_dump(mode="json")
    data.update(version=version, effective_date=effective.isoformat())
    if a_cut is not None:
        data["grading"]["grades"][0]["min_index"] = a_cut
    if lenient:
        for grade, cut in zip(data["grading"]["grades"][:3], (3, 2, 1), strict=True):
            grade["min_index"] = cut
    return parse_definition(data)


@pytest.fixture
def versions(store: sa.Engine) -> ProductVersions:
    return ProductVersions(store)


def test_lifecycle_draft_submit_approve_is_audited_with_each_person(versions: ProductVersions) -> None:
    drafted = versions.draft(new_version(), "alice", "stricter A")
    assert drafted.status == "draft" and len(drafted.sha256) == 64
    submitted = versions.submit(drafted.id, "alice")
    assert submitted.status == "submitted" and submitted.submitted_by == "alice"
    with pytest.raises(ProductVersionError) as refused:
        versions.approve(drafted.id, "Alice")  # the submitter, whatever the case
    assert refused.value.status == 403 and "maker-checker" in refused.value.message
    assert "提交人不能审批" in refused.value.message
    approved = versions.approve(drafted.id, "bob", "reviewed")
    assert approved.status == "approved" and approved.decided_by == "bob" and approved.approval_no == 1
    assert versions.epoch() == 1

    with versions.engine.connect() as conn:
        rows = conn.execute(sa.select(audit_log.c.actor, audit_log.c.action, audit_log.c.subject)
                            .where(audit_log.c.action.like("product.%")).order_by(audit_log.c.seq)).all()
        assert verify(conn).ok
    subject = f"product_version:{drafted.id}"
    assert [(r.actor, r.action, r.subject) for r in rows] == [
        ("alice", "product.draft", subject), ("alice", "product.submit", subject), ("bob", "product.approve", subject)]

    history = {(e["origin"], e["version"]): e["status"] for e in versions.history("tech_innovation")}
    assert history == {("seed", SEED): "superseded", ("store", "2099.1"): "active"}
    # the definitions quotes use: the seeds, then the approved version, which is in force from today
    published = versions.published()[1]
    in_force = versions_module.definitions_in_force(published, TODAY)
    assert in_force["tech_innovation"].version == "2099.1"
    assert versions_module.definitions_in_force(published, TODAY - dt.timedelta(days=1))[
        "tech_innovation"].version == SEED


def test_a_version_dated_later_is_scheduled_and_nothing_applies_retroactively(versions: ProductVersions) -> None:
    later = versions.draft(new_version(version="2099.2", effective=TODAY + dt.timedelta(days=30)), "alice")
    versions.approve(versions.submit(later.id, "alice").id, "bob")
    statuses = {e["version"]: e["status"] for e in versions.history("tech_innovation")}
    assert statuses == {SEED: "active", "2099.2": "scheduled"}
    assert {e["version"]: e["status"] for e in versions.history("tech_innovation", today=later.effective_date)} == {
        SEED: "superseded", "2099.2": "active"}

    backdated = versions.draft(new_version(version="2099.3", effective=TODAY - dt.timedelta(days=1)), "alice")
    with pytest.raises(ProductVersionError) as refused:
        versions.submit(backdated.id, "alice")
    assert refused.value.status == 422 and refused.value.field == "effective_date"
    assert versions.get(backdated.id).status == "draft"  # nothing changed


def test_refusals_change_nothing(versions: ProductVersions) -> None:
    drafted = versions.draft(new_version(), "alice")
    with pytest.raises(ProductVersionError) as same:
        versions.draft(new_version(), "carol")  # the same body again
    assert same.value.status == 409
    with pytest.raises(ProductVersionError) as reused:
        versions.draft(new_version(a_cut=90), "carol")  # another body under a version string already used
    assert reused.value.status == 409 and reused.value.field == "version"
    with pytest.raises(ProductVersionError):
        versions.approve(drafted.id, "bob")  # a draft is not approved before it is submitted
    with pytest.raises(ProductVersionError) as no_reason:
        versions.reject(drafted.id, "bob", "  ")
    assert no_reason.value.field == "reason"
    rejected = versions.reject(drafted.id, "bob", "A cut-off too strict")
    assert rejected.status == "rejected" and rejected.decision_reason == "A cut-off too strict"
    with pytest.raises(ProductVersionError):
        versions.submit(drafted.id, "alice")
    assert versions.epoch() == 0
    assert versions.draft(new_version(), "alice").status == "draft"  # a rejected body may be drafted again


def test_diff_names_the_changed_paths(versions: ProductVersions) -> None:
    drafted = versions.draft(new_version(a_cut=88), "alice")
    changes = {c["path"]: (c["before"], c["after"]) for c in versions.diff(drafted.id)["changes"]}
    assert changes == {"version": (SEED, "2099.1"), "effective_date": ("2025-01-01", TODAY.isoformat()),
                       "grading.grades[0].min_index": (80.0, 88.0)}


def test_seed_versions_come_from_the_configured_folder(tmp_path: Path, store: sa.Engine) -> None:
    # INDEXLOAN_PRODUCTS_DIR adds to the packaged definitions; a code it defines replaces the packaged one
    folder = tmp_path / "definitions"
    folder.mkdir()
    text = (DEFINITIONS_DIR / "per_mu.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    data["version"] = "2026.9"
    (folder / "per_mu.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    packaged = list(load_catalogue(DEFINITIONS_DIR))
    with settings_env(products_dir=str(folder)):
        seeds = ProductVersions(store).seeds
        assert [d.code for d in seeds] == packaged
        assert {d.code: d.version for d in seeds}["per_mu"] == "2026.9"
        history = ProductVersions(store).history("per_mu")
        assert [(e["origin"], e["version"]) for e in history] == [("seed", "2026.9")]


# ------------------------------------------------------------------------------------- the quoting service


@pytest.fixture
def service(tmp_path: Path) -> Iterator[QuotingService]:
    write_region(generate_region(400, 5), tmp_path / "region", "parquet")
    engine = migrate(f"sqlite:///{tmp_path / 'store.db'}")
    assert ingest_directory(engine, tmp_path / "region", tmp_path / "quarantine").ok
    quoting = QuotingService(engine)
    quoting.STALE_CHECK_SECONDS = 0.0  # check on every call
    yield quoting
    quoting.wait_for_rebuilds()
    quoting.writer.stop()


def _tech(body: dict[str, Any]) -> dict[str, Any]:
    return next(q for q in body["quotes"] if q["product"] == "tech_innovation")


def test_an_approved_version_reaches_a_running_quoter_and_earlier_quotes_replay(service: QuotingService) -> None:
    products = service.products_for(TODAY, None)
    codes = list(service.state(TODAY).population.frame.index)
    firm = next(c for c in codes if _tech(service.quote(c, TODAY, products, None)[0])["grade"] in ("B", "C"))
    body, snapshot, _ = service.quote(firm, TODAY, products, None)
    assert _tech(body)["product_version"] == SEED

    store = ProductVersions(service.engine)
    drafted = store.draft(new_version(lenient=True), "alice")  # the firm becomes grade A: a visible change
    store.approve(store.submit(drafted.id, "alice").id, "bob")
    hot = service.state(TODAY).population.hot_blocks()
    service.state(TODAY)  # notices the epoch, rebuilds beside the served state
    assert service.wait_for_rebuilds()
    rebuilt = service.state(TODAY).population
    assert hot and rebuilt.hot_blocks() == hot  # computed before the swap: no quote waits for them
    after, new_snapshot, _ = service.quote(firm, TODAY, products, None)
    assert _tech(after)["product_version"] == "2099.1" and _tech(after)["grade"] == "A"
    assert new_snapshot["versions"]["products"]["tech_innovation"]["sha256"] == drafted.sha256

    # the quote issued before replays bit for bit under its own version; against today's it differs
    assert service.replay(firm, snapshot, products, None) == body
    assert _tech(service.replay(firm, snapshot, products, None, current=True))["grade"] == "A"
    # the approved body was stored by the author, so the service audits no config.publish of its own for it
    with service.engine.connect() as conn:
        actors = conn.execute(sa.select(audit_log.c.actor).where(audit_log.c.subject == "product:tech_innovation")
                              .where(audit_log.c.detail_json.contains(drafted.sha256))).scalars().all()
    assert "quoting-service" not in actors


def test_a_scheduled_version_takes_effect_when_its_day_arrives(service: QuotingService,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    tomorrow = TODAY + dt.timedelta(days=1)
    store = ProductVersions(service.engine)
    drafted = store.draft(new_version(effective=tomorrow, lenient=True), "alice")
    store.approve(store.submit(drafted.id, "alice").id, "bob")
    products = service.products_for(TODAY, None)
    firm = next(c for c in service.state(TODAY).population.frame.index
                if _tech(service.quote(c, TODAY, products, None)[0])["grade"] in ("B", "C"))
    assert service.wait_for_rebuilds()
    assert _tech(service.quote(firm, TODAY, products, None)[0])["product_version"] == SEED

    class Tomorrow(dt.date):
        @classmethod
        def today(cls) -> dt.date:
            return tomorrow

    class Clock:  # the datetime module with a clock one day ahead, for the date checks of a quote
        date = Tomorrow
        timedelta = dt.timedelta

    monkeypatch.setattr(versions_module, "dt", Clock)
    body = service.quote(firm, tomorrow, service.products_for(tomorrow, None), None)[0]
    assert _tech(body)["product_version"] == "2099.1" and _tech(body)["grade"] == "A"


def test_the_next_day_is_built_ahead_of_midnight(service: QuotingService, monkeypatch: pytest.MonkeyPatch) -> None:
    from api.quoting import service as service_module

    tomorrow = TODAY + dt.timedelta(days=1)
    store = ProductVersions(service.engine)
    store.approve(store.submit(store.draft(new_version(effective=tomorrow, lenient=True), "alice").id, "alice").id,
                  "bob")
    service.state(TODAY)
    assert service.wait_for_rebuilds() and tomorrow not in service._states  # not yet: midnight is far
    monkeypatch.setattr(service_module, "_seconds_to_midnight", lambda: 5.0)
    service.state(TODAY)  # a request five seconds before midnight starts tomorrow's build in the background
    assert service.wait_for_rebuilds()
    ahead = service._states[tomorrow]
    assert ahead.versions.plans["tech_innovation"].version == "2099.1"

    def no_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("the first quote of the day must not wait for a build")

    monkeypatch.setattr(QuotingService, "_build", no_build)

    class Tomorrow(dt.date):
        @classmethod
        def today(cls) -> dt.date:
            return tomorrow

    class Clock:
        date = Tomorrow
        timedelta = dt.timedelta

    monkeypatch.setattr(versions_module, "dt", Clock)
    assert service.state(tomorrow) is ahead or service.state(tomorrow).population is ahead.population


# ------------------------------------------------------------------------------------- the HTTP API


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service("sqlite", tmp_path_factory.mktemp("versions-api")) as service:
        yield service


def _definition_json(**changes: Any) -> dict[str, Any]:
    return {**new_version().model_dump(mode="json"), **changes}


def test_api_draft_errors_are_path_located_and_nothing_is_stored(svc: Service) -> None:
    bad = _definition_json(version="2099.9")
    bad["grading"]["grades"][0]["min_index"] = "high"
    del bad["limit"]
    response = svc.client.post("/v1/products/versions", json={"definition": bad},
                               headers=svc.headers(Role.risk_analyst))
    assert response.status_code == 422 and response.headers["content-type"].startswith("application/problem+json")
    fields = {e["field"] for e in response.json()["errors"]}
    assert {"definition.grading.grades[0].min_index", "definition.limit"} <= fields
    listed = svc.client.get("/v1/products/versions", headers=svc.headers(Role.risk_analyst)).json()
    assert all(e["version"] != "2099.9" for e in listed)


def test_api_maker_checker(svc: Service) -> None:
    analyst, approver = svc.headers(Role.risk_analyst), svc.headers(Role.risk_approver)
    drafted = svc.client.post("/v1/products/versions", json={"definition": _definition_json(version="2099.5",
                                                                                            effective_date="2100-01-01")},
                              headers=analyst)
    assert drafted.status_code == 201, drafted.text
    version_id = drafted.json()["id"]
    assert svc.client.post(f"/v1/products/versions/{version_id}/submit", headers=analyst).status_code == 200
    for role in (Role.loan_officer, Role.platform, Role.risk_analyst, Role.admin):
        refused = svc.client.post(f"/v1/products/versions/{version_id}/approve", headers=svc.headers(role))
        assert refused.status_code == 403, role
    approved = svc.client.post(f"/v1/products/versions/{version_id}/approve", json={"reason": "ok"}, headers=approver)
    assert approved.status_code == 200 and approved.json()["status"] == "scheduled"
    assert approved.json()["decided_by"] == "test-risk_approver"

    # the approver submits a version of their own: they may not approve it either
    own = svc.client.post("/v1/products/versions", json={"definition": _definition_json(version="2099.6",
                                                                                        effective_date="2100-01-02")},
                          headers=svc.headers(Role.admin)).json()["id"]
    svc.client.post(f"/v1/products/versions/{own}/submit", headers=svc.headers(Role.admin))
    with svc.engine.begin() as conn:  # as if the approver had submitted it
        conn.execute(sa.text("UPDATE product_versions SET submitted_by = 'test-risk_approver' WHERE id = :i"),
                     {"i": own})
    refused = svc.client.post(f"/v1/products/versions/{own}/approve", headers=approver)
    assert refused.status_code == 403
    assert "maker-checker" in refused.json()["detail"] and "提交人不能审批" in refused.json()["detail"]
    diff = svc.client.get(f"/v1/products/versions/{version_id}/diff", headers=analyst).json()
    assert {c["path"] for c in diff["changes"]} == {"version", "effective_date"}
    assert svc.client.get("/v1/products/versions/99999", headers=analyst).status_code == 404


# ------------------------------------------------------------------------------------- two worker processes


def test_every_worker_of_a_running_service_picks_up_an_approved_version(tmp_path: Path) -> None:
    write_region(generate_region(300, 5), tmp_path / "region", "parquet")
    engine = migrate(f"sqlite:///{tmp_path / 'indexloan.db'}")
    assert ingest_directory(engine, tmp_path / "region", tmp_path / "quarantine").ok
    officer = {"Authorization": f"Bearer {create_key(engine, Role.loan_officer, 'officer')}"}
    analyst = {"Authorization": f"Bearer {create_key(engine, Role.risk_analyst, 'analyst')}"}
    with engine.connect() as conn:
        code = conn.execute(sa.text("SELECT credit_code FROM src_registry ORDER BY credit_code LIMIT 1")).scalar_one()
    with (served(tmp_path, workers=2, ready="/readyz") as server,
          httpx.Client(base_url=server.base, timeout=30) as client):
        def quote() -> dict[str, Any]:
            response = client.post("/v1/quotes", json={"credit_code": code}, headers=officer)
            assert response.status_code == 201, response.text  # never a failure while versions change
            return response.json()

        first = [quote() for _ in range(10)]
        assert {_tech(q)["product_version"] for q in first} == {SEED}
        store = ProductVersions(engine)
        drafted = store.draft(new_version(lenient=True), "alice")
        store.approve(store.submit(drafted.id, "alice").id, "bob")
        streak, deadline = 0, time.monotonic() + 60
        while streak < 30:  # 30 quotes in a row under the new version: both workers have it
            assert time.monotonic() < deadline, "the approved version did not reach every worker"
            streak = streak + 1 if _tech(quote())["product_version"] == "2099.1" else 0
        replay = client.get(f"/v1/quotes/{first[0]['quote_id']}/replay", headers=analyst)
        assert replay.status_code == 200 and replay.json()["identical"], replay.text


def test_cli_lifecycle_refuses_self_approval(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from api.cli.main import app

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    draft = tmp_path / "tech.yaml"
    draft.write_text(yaml.safe_dump(new_version(a_cut=85).model_dump(mode="json"), allow_unicode=True, sort_keys=False),
                     encoding="utf-8")
    runner = CliRunner()
    drafted = runner.invoke(app, ["products", "draft", str(draft), "--by", "alice", "--json", "--database-url", url])
    assert drafted.exit_code == 0, drafted.output
    assert runner.invoke(app, ["products", "submit", "1", "--by", "alice", "--database-url", url]).exit_code == 0
    own = runner.invoke(app, ["products", "approve", "1", "--by", "alice", "--database-url", url])
    assert own.exit_code == 1 and "maker-checker" in own.output
    assert runner.invoke(app, ["products", "approve", "1", "--by", "bob", "--database-url", url]).exit_code == 0
    history = runner.invoke(app, ["products", "history", "tech_innovation", "--json", "--database-url", url])
    assert '"status": "active"' in history.output and '"decided_by": "bob"' in history.output
    missing = runner.invoke(app, ["products", "submit", "42", "--by", "alice", "--database-url", url])
    assert missing.exit_code == 1 and "no product version 42" in missing.output


def test_a_batch_run_uses_the_approved_version_in_force(service: QuotingService, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from api.cli.main import app

    store = ProductVersions(service.engine)
    drafted = store.draft(new_version(lenient=True), "alice")
    store.approve(store.submit(drafted.id, "alice").id, "bob")
    out = tmp_path / "run.csv"
    url = service.engine.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(app, ["batch", "precredit", "--as-of", TODAY.isoformat(), "--out", str(out),
                                      "--products", "tech_innovation", "--database-url", url])
    assert result.exit_code == 0, result.output
    summary = yaml.safe_load(out.with_name("run.summary.json").read_text(encoding="utf-8"))
    used = summary["versions"]["products"]["tech_innovation"]
    assert used["version"] == "2099.1" and used["sha256"] == drafted.sha256


def test_a_store_outage_while_building_ahead_is_one_line_without_a_traceback(
        service: QuotingService, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from api.quoting import service as service_module

    service.state(TODAY)
    assert service.wait_for_rebuilds()
    service._states.pop(TODAY + dt.timedelta(days=1), None)  # an earlier test may have built it ahead

    def store_down(*args: object, **kwargs: object) -> None:
        raise sa.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(QuotingService, "_build", store_down)
    monkeypatch.setattr(service_module, "_seconds_to_midnight", lambda: 5.0)
    with caplog.at_level(logging.ERROR, logger="api.quoting.service"):
        service.state(TODAY)  # in the day's last minutes: tomorrow's build starts, and meets the outage
        assert service.wait_for_rebuilds()
    failures = [r for r in caplog.records if "ahead failed" in r.getMessage()]
    assert failures and all(r.exc_info is None and "unavailable (OperationalError)" in r.getMessage()
                            for r in failures)
    assert TODAY + dt.timedelta(days=1) not in service._states  # built on its first use instead
