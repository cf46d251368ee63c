"""Group commit of quotes: concurrent quotes share transactions, yet each request gets its own outcome
and a failure leaves nothing of that quote written (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from api.database import migrate
from api.keys import Role, create_key
from api.quoting.writer import GroupWriter
from api.tables import quotes
from features.store import audit
from features.store.audit import audit_log
from tests.conftest import BACKENDS, fresh_database


def _row(key_id: int, quote_id: str) -> dict:
    now = dt.datetime.now(dt.UTC)
    return dict(quote_id=quote_id, credit_code="91330302000000000G", as_of=dt.date.today(), created_at=now,
                expires_at=now, api_key_id=key_id, role="loan_officer", consent_ref=None, idempotency_key=None,
                request_json="{}", snapshot_json="{}", response_json="{}", response_sha256="0" * 64)


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_quotes_commit_with_their_own_outcomes(backend: str, tmp_path: Path) -> None:
    with fresh_database(backend, tmp_path) as url:
        engine = migrate(url)
        create_key(engine, Role.loan_officer, "writer-test")
        with engine.connect() as conn:
            key_id = conn.execute(sa.text("SELECT id FROM api_keys")).scalar_one()
        writer = GroupWriter(engine)
        ids = [str(uuid.uuid4()) for _ in range(60)]
        duplicate = ids[7]  # quote 40 reuses quote 7's id: it alone must fail

        def write_for(quote_id: str):  # noqa: ANN202
            def write(conn: sa.Connection) -> None:
                conn.execute(quotes.insert(), _row(key_id, quote_id))
                audit.append(conn, "writer-test", "quote.create", f"quote:{quote_id}")
            return write

        plan = ids[:40] + [duplicate] + ids[40:]
        with ThreadPoolExecutor(16) as pool:
            futures = list(pool.map(lambda q: writer.submit(write_for(q)), plan))
        errors = [f.exception(timeout=30) for f in futures]
        writer.stop()
        failed = [i for i, e in enumerate(errors) if e is not None]
        assert failed in ([7], [40]) and isinstance(errors[failed[0]], sa.exc.IntegrityError)
        with engine.connect() as conn:
            assert set(conn.execute(sa.select(quotes.c.quote_id)).scalars()) == set(ids)
            subjects = conn.execute(sa.select(audit_log.c.subject).where(audit_log.c.action == "quote.create")
                                    ).scalars().all()
            assert sorted(subjects) == sorted(f"quote:{q}" for q in ids)  # no audit row for the failed one
            assert audit.verify(conn).ok


def test_quotes_queued_while_another_process_commits_join_the_next_commit(tmp_path: Path) -> None:
    """On a SQLite file the worker processes' writers take turns through a file lock. Quotes that queue while
    another process holds it go into this process's next transaction, not one transaction each after it: the
    group is closed once the lock is held (a group closed before waiting made two commits here)."""
    import fcntl
    import time

    with fresh_database("sqlite", tmp_path) as url:
        engine = migrate(url)
        commits: list[int] = []
        written: list[str] = []
        sa.event.listen(engine, "commit", lambda conn: commits.append(len(written)))
        writer = GroupWriter(engine)
        assert writer._lock_path is not None

        def write_for(quote_id: str):  # noqa: ANN202
            def write(conn: sa.Connection) -> None:
                audit.append(conn, "writer-test", "quote.create", f"quote:{quote_id}")
                written.append(quote_id)
            return write

        with open(writer._lock_path, "a+b") as other_process:  # its own open file: a lock the writer must wait for
            fcntl.flock(other_process, fcntl.LOCK_EX)
            first = writer.submit(write_for("q0"))
            for _ in range(2000):  # until the writer has taken the first quote (it then waits for the lock)
                if writer._queue.empty():
                    break
                time.sleep(0.005)
            assert writer._queue.empty()
            rest = [writer.submit(write_for(f"q{i}")) for i in range(1, 10)]
            assert not first.done()
            fcntl.flock(other_process, fcntl.LOCK_UN)
        for future in [first, *rest]:
            assert future.exception(timeout=30) is None
        writer.stop()
        assert sorted(written) == sorted(f"q{i}" for i in range(10))
        assert commits == [10]  # one transaction for all ten


def test_a_write_lock_that_cannot_be_taken_fails_the_quote_as_unavailable_and_the_writer_goes_on(tmp_path: Path
                                                                                                  ) -> None:
    """The lock file cannot be opened (its directory is gone or read-only): the quote fails with the store's
    unavailable error (a 503, not a 500), nothing is written, and the writer thread serves the next quote."""
    from features.store.db import StoreUnavailableError

    with fresh_database("sqlite", tmp_path) as url:
        engine = migrate(url)
        writer = GroupWriter(engine)
        good_path = writer._lock_path
        writer._lock_path = str(tmp_path / "gone" / "store.writer-lock")

        def write(conn: sa.Connection) -> None:
            audit.append(conn, "writer-test", "quote.create", "quote:x")

        failed = writer.submit(write)
        error = failed.exception(timeout=30)
        assert isinstance(error, StoreUnavailableError) and "write lock" in str(error)
        writer._lock_path = good_path
        assert writer.submit(write).exception(timeout=30) is None  # the same thread, still running
        writer.stop()
        with engine.connect() as conn:
            subjects = conn.execute(sa.select(audit_log.c.subject).where(audit_log.c.action == "quote.create")
                                    ).scalars().all()
        assert subjects == ["quote:x"]
