"""Concurrent audit appends: every writer's row lands once, in one unbroken chain."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from api.database import migrate
from features.store import audit
from features.store.audit import audit_log
from tests.conftest import BACKENDS, fresh_database

WRITERS = 4
APPENDS = 25


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_appends_keep_one_chain(backend: str, tmp_path: Path) -> None:
    with fresh_database(backend, tmp_path) as url:
        engine = migrate(url)

        def writer(w: int) -> None:
            for i in range(APPENDS):
                # the append is the transaction's first statement, as in the replay and profile routes
                with engine.begin() as conn:
                    audit.append(conn, f"writer-{w}", "test.append", f"row:{w}:{i}", {"i": i})

        with ThreadPoolExecutor(WRITERS) as pool:
            list(pool.map(writer, range(WRITERS)))
        with engine.connect() as conn:
            result = audit.verify(conn)
            subjects = conn.execute(sa.select(audit_log.c.subject).where(audit_log.c.action == "test.append")
                                    ).scalars().all()
        assert result.ok, result.problems
        assert sorted(subjects) == sorted(f"row:{w}:{i}" for w in range(WRITERS) for i in range(APPENDS))
        engine.dispose()
