"""Shared fixtures: a store per backend (SQLite always, PostgreSQL when reachable)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

POSTGRES_URL = os.environ.get(
    "INDEXLOAN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BACKENDS = ["sqlite", "postgresql"]


def _postgres_reachable() -> bool:
    try:
        engine = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 2})
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not here"
        return False


POSTGRES_AVAILABLE = _postgres_reachable()


@contextlib.contextmanager
def fresh_database(backend: str, directory: Path) -> Iterator[str]:
    """A fresh, empty database URL: a SQLite file, or a private schema in PostgreSQL (dropped after)."""
    if backend == "sqlite":
        yield f"sqlite:///{directory / f'store-{uuid.uuid4().hex[:8]}.db'}"
        return
    if not POSTGRES_AVAILABLE:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL} on CI")
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    url = sa.make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        from features.store.db import connect

        rendered = url.render_as_string(hide_password=False)
        with contextlib.suppress(Exception):
            connect(rendered).dispose()
        connect.cache_clear()
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@contextlib.contextmanager
def settings_env(**values: str) -> Iterator[None]:
    """Settings from the environment for the block: INDEXLOAN_<NAME> variables, read afresh by the one
    settings object (its cache is cleared on the way in and out)."""
    from features.settings import get_settings

    names = {f"INDEXLOAN_{k.upper()}": v for k, v in values.items()}
    previous = {k: os.environ.get(k) for k in names}
    os.environ.update(names)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for k, v in previous.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings.cache_clear()


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def store(store_url: str) -> sa.Engine:
    from api.database import migrate

    return migrate(store_url)


@pytest.fixture(autouse=True)
def _far_from_midnight(monkeypatch: pytest.MonkeyPatch) -> None:
    """An in-process quoting service builds the next day's state ahead in a day's last ten minutes
    (`Quoter.PREWARM_SECONDS`): a test that does not ask for it sees midday, whenever the suite runs.
    Tests of that build set their own clock on top of this one."""
    from api.quoting import service

    monkeypatch.setattr(service, "_seconds_to_midnight", lambda: 12 * 3600.0)
