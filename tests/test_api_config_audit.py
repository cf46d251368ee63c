"""Configuration changes are audited: a product definition or rate table stored for the first time
appends a "config.publish" audit row in the same transaction (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from api.database import migrate
from api.quoting.service import QuotingService
from api.quoting.versions import build_versions
from api.tables import config_blobs
from features.store import audit
from features.store.audit import audit_log
from products.catalogue import load_catalogue, reference_rates
from tests.conftest import BACKENDS, fresh_database


def _publications(engine: sa.Engine) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(audit_log).where(audit_log.c.action == "config.publish")
                            .order_by(audit_log.c.seq)).all()
    return [{"subject": r.subject, **json.loads(r.detail_json)} for r in rows]


def _blobs(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.select(config_blobs.c.sha256)).scalars())


@pytest.mark.parametrize("backend", BACKENDS)
def test_new_definitions_and_rates_are_published_once_and_audited(backend: str, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with fresh_database(backend, tmp_path) as url:
        engine = migrate(url)
        service = QuotingService(engine)  # stores today's five definitions and the rate table
        first = _publications(engine)
        codes = list(load_catalogue())
        assert sorted(p["subject"] for p in first) == sorted(
            [f"product:{c}" for c in codes] + ["reference_rates:reference_rates"])
        assert {p["sha256"] for p in first} == _blobs(engine)

        service.on_new_versions(service.state(dt.date.today()).versions)  # nothing new: nothing audited
        assert _publications(engine) == first

        definitions = load_catalogue()
        code = codes[0]
        definitions[code] = definitions[code].model_copy(update={"version": "test-2"})
        changed = build_versions(definitions, reference_rates(dt.date.today()), None, None)
        service.on_new_versions(changed, actor="product-publisher")
        added = _publications(engine)[len(first):]
        assert added == [{"subject": f"product:{code}", "kind": "product", "code": code, "version": "test-2",
                          "sha256": changed.definition_sha[code]}]
        with engine.connect() as conn:
            actor = conn.execute(sa.select(audit_log.c.actor).order_by(audit_log.c.seq.desc())).scalars().first()
            assert actor == "product-publisher"
            assert audit.verify(conn).ok

        # the audit row and the blob are one transaction: if auditing fails, the blob is not stored either
        definitions[code] = definitions[code].model_copy(update={"version": "test-3"})
        failing = build_versions(definitions, reference_rates(dt.date.today()), None, None)

        def refuse(*_args: object, **_kwargs: object) -> int:
            raise RuntimeError("audit log unavailable")

        monkeypatch.setattr(audit, "append", refuse)
        blobs_before = _blobs(engine)
        with pytest.raises(RuntimeError):
            service.on_new_versions(failing)
        assert _blobs(engine) == blobs_before
        assert failing.definition_sha[code] not in blobs_before
        monkeypatch.undo()
        assert len(_publications(engine)) == len(first) + 1
