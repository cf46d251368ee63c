"""The service's database schema: every table it owns, and the Alembic migrations that create them.

Tables are declared beside the code that owns them (the government-data store and the audit log in
`features.store`, the model registry in `training`, keys, quotes, configuration blobs and batch jobs
in `api.tables`), all on one `MetaData`. This module, at the top of the layers, imports each of them,
so that Alembic (`api/migrations/env.py`) compares the migrations with the whole schema.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

import api.http.ui.sessions  # noqa: F401 - registers ui_sessions (the console's sign-in sessions)
import api.monitoring.tables  # noqa: F401 - registers shadow_scores, quote_overrides
import api.tables  # noqa: F401 - registers keys, quotes, config blobs, batch jobs
import api.workbench.tables  # noqa: F401 - registers product versions, simulation jobs
import features.store.audit  # noqa: F401 - registers audit_log, audit_head
import training.registry_tables  # noqa: F401 - registers models, promotion requests, transitions
from features.store.db import StoreUnavailableError, connect
from features.store.tables import metadata

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

__all__ = ["MIGRATIONS_DIR", "StoreUnavailableError", "alembic_config", "metadata", "migrate"]


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(url: str | None = None, revision: str = "head") -> sa.Engine:
    """Bring the database at `url` (default: the configured one) to `revision` and return its engine."""
    engine = connect(url)
    try:
        with engine.begin() as connection:
            config = alembic_config(str(engine.url.render_as_string(hide_password=False)))
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    except sa.exc.OperationalError as error:
        raise StoreUnavailableError(
            f"cannot open database {engine.url.render_as_string(hide_password=True)}: {error.orig}"
        ) from error
    return engine
