"""Registry actions (register, promote, request, approve, reject, roll back, retire) land in the audit chain.

Two real risk models trained from a populated store go through maker-checker; the service then runs
with the promoted champion, and both `GET /v1/audit/verify` and `indexloan audit verify` must accept
the chain and catch an edit of one of the registry's rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from api.cli.main import app as cli
from api.keys import Role
from features.store.audit import append, audit_log, verify
from tests.api_support import Service, running_service
from tests.conftest import BACKENDS
from training.errors import RegistryError
from training.registry import Registry
from training.registry_tables import models, promotion_requests, transitions

# (actor, action) of every audit row the flow below must leave, in order
EXPECTED = [
    ("alice", "model.register"), ("alice", "model.promote"), ("alice", "model.promotion_request"),
    ("bob", "model.approve"),
    ("alice", "model.register"), ("alice", "model.promotion_request"), ("carol", "model.reject"),
    ("alice", "model.promotion_request"), ("bob", "model.approve"),
    ("carol", "model.rollback"),
    ("alice", "model.register"), ("dave", "model.retire"),
]


@dataclass
class Flow:
    service: Service
    url: str
    first: str
    second: str
    third: str


def _maker_checker(engine: sa.Engine, directory: Path) -> tuple[str, str, str]:
    from training.config import load_config
    from training.datasets import from_store
    from training.pipeline import train_pipeline

    cfg = load_config()
    dataset = from_store(engine=engine, config=cfg)
    trained = [train_pipeline(dataset, cfg.with_seed(seed), directory / f"model-{seed}", operator="trainer",
                              write_report=False).out_dir for seed in (1, 2, 3)]
    registry = Registry(engine, directory / "registry")
    first = registry.register(trained[0], "alice", "quarterly retrain").id
    registry.request_promotion(first, "challenger", "alice", "beats the baseline")
    registry.request_promotion(first, "champion", "alice", "first champion")
    with pytest.raises(RegistryError, match="maker-checker"):
        registry.approve(first, "Alice")  # the maker cannot check: refused and not audited
    registry.approve(first, "bob", "reviewed the report")
    second = registry.register(trained[1], "alice").id
    registry.request_promotion(second, "champion", "alice", "new seed")
    registry.reject(second, "carol", "needs a longer out-of-time window")
    registry.request_promotion(second, "champion", "alice", "window extended")
    registry.approve(second, "bob")
    registry.rollback("carol", "PSI alarm on the new champion")
    third = registry.register(trained[2], "alice").id
    registry.retire(third, "dave", "superseded before review")
    return first, second, third


@pytest.fixture(scope="module", params=BACKENDS)
def flow(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flow]:
    directory = tmp_path_factory.mktemp(f"audit-registry-{request.param}")
    ids: list[str] = []

    def prepare(engine: sa.Engine) -> None:
        ids.extend(_maker_checker(engine, directory))

    with running_service(request.param, directory, models_dir=directory / "registry", prepare=prepare) as service:
        yield Flow(service, service.engine.url.render_as_string(hide_password=False), *ids)


def _registry_rows(engine: sa.Engine) -> list[sa.Row]:
    with engine.connect() as conn:
        return conn.execute(sa.select(audit_log).where(audit_log.c.action.startswith("model."))
                            .order_by(audit_log.c.seq)).all()


def _verify_cli(url: str) -> tuple[int, dict]:
    result = CliRunner().invoke(cli, ["audit", "verify", "--json", "--database-url", url])
    return result.exit_code, json.loads(result.stdout)


def test_every_registry_action_is_an_audit_row(flow: Flow) -> None:
    rows = _registry_rows(flow.service.engine)
    assert [(r.actor, r.action) for r in rows] == EXPECTED
    first, second = f"model:{flow.first}", f"model:{flow.second}"
    third = f"model:{flow.third}"
    assert [r.subject for r in rows] == [first] * 4 + [second] * 5 + [first, third, third]
    details = [json.loads(r.detail_json) for r in rows]
    assert details[0]["stage"] == "candidate" and len(details[0]["data_checksum"]) == 64
    assert details[3]["requested_by"] == "alice" and details[3]["replaced"] == []
    assert details[6]["reason"] == "needs a longer out-of-time window"
    assert details[8]["replaced"] == [flow.first]
    assert (details[9]["retired"], details[9]["restored"]) == (flow.second, flow.first)
    with flow.service.engine.connect() as conn:
        stages = dict(conn.execute(sa.select(models.c.id, models.c.stage)).all())
    assert stages == {flow.first: "champion", flow.second: "retired", flow.third: "retired"}
    assert details[-1] == {"from_stage": "candidate", "to_stage": "retired", "reason": "superseded before review"}
    # the service runs on the champion that maker-checker and the rollback left
    ready = flow.service.client.get("/readyz").json()
    assert ready["model_version"] == flow.first


def test_http_and_cli_verification_pass_and_catch_an_edited_registry_row(flow: Flow) -> None:
    headers = flow.service.headers(Role.admin)
    intact = flow.service.client.get("/v1/audit/verify", headers=headers).json()
    assert intact["ok"] and intact["rows"] >= len(EXPECTED)
    assert _verify_cli(flow.url) == (0, intact)
    approval = _registry_rows(flow.service.engine)[3]
    forged = json.dumps({**json.loads(approval.detail_json), "requested_by": "bob"})
    with flow.service.engine.begin() as conn:
        conn.execute(audit_log.update().where(audit_log.c.seq == approval.seq).values(detail_json=forged))
    try:
        broken = flow.service.client.get("/v1/audit/verify", headers=headers).json()
        assert not broken["ok"] and any(f"row {approval.seq}:" in p for p in broken["problems"])
        code, report = _verify_cli(flow.url)
        assert code == 1 and report["problems"] == broken["problems"]
    finally:
        with flow.service.engine.begin() as conn:
            conn.execute(audit_log.update().where(audit_log.c.seq == approval.seq)
                         .values(detail_json=approval.detail_json))
    assert _verify_cli(flow.url)[0] == 0


def _counts(engine: sa.Engine) -> tuple[int, ...]:
    with engine.connect() as conn:
        return tuple(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                     for t in (audit_log, transitions, models, promotion_requests))


def test_a_failed_audit_append_undoes_the_registry_change(store: sa.Engine, tmp_path: Path) -> None:
    from training.config import load_config
    from training.datasets import from_frame
    from training.pipeline import train_pipeline

    rng = np.random.default_rng(5)
    x = rng.normal(size=(1200, 2))
    frame = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "bad": (rng.random(1200) < 1 / (1 + np.exp(2 - x[:, 0])))})
    cfg = load_config()
    trained = train_pipeline(from_frame(frame.astype({"bad": int}), "bad", cfg), cfg, tmp_path / "model",
                             operator="trainer", write_report=False).out_dir

    def append_then_fail(conn: sa.Connection, *args: object) -> None:
        append(conn, *args)  # type: ignore[arg-type]
        raise RuntimeError("audit store failed after the row was written")

    failing = Registry(store, tmp_path / "registry", audit=append_then_fail)
    with pytest.raises(RuntimeError, match="audit store failed"):
        failing.register(trained, "alice")
    assert _counts(store) == (0, 0, 0, 0)
    assert not any((tmp_path / "registry").glob("*/model.txt"))  # the copied artifacts went too

    registry = Registry(store, tmp_path / "registry")
    model_id = registry.register(trained, "alice").id
    registry.request_promotion(model_id, "champion", "alice", "first champion")
    before = _counts(store)
    with pytest.raises(RuntimeError, match="audit store failed"):
        failing.approve(model_id, "bob")
    assert _counts(store) == before
    assert registry.get(model_id).stage == "candidate" and registry.requests(model_id, "pending")
    registry.approve(model_id, "bob")
    assert registry.get(model_id).stage == "champion"
    with store.connect() as conn:
        assert verify(conn).ok
