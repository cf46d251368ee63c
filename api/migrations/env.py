"""Alembic environment: runs on a connection handed over by api.database.migrate, or on a URL.

By hand, from the repository root: `alembic -x url=sqlite:///path/to.db check` (without `-x url=...`
the URL in alembic.ini is used). Every code path configures Alembic with the same options, so that
`alembic check`, `alembic revision --autogenerate` and tests/test_migrations.py compare alike.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import context

from api.database import metadata  # every table the service owns

config = context.config

# render_as_batch: SQLite alters a table by copying it. compare_type and compare_server_default: a
# migration that gets a column's type or server default wrong is drift, not a detail.
OPTIONS: dict[str, Any] = {
    "target_metadata": metadata,
    "render_as_batch": True,
    "compare_type": True,
    "compare_server_default": True,
}


def _url() -> str:
    return context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")


def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, **OPTIONS)
        with context.begin_transaction():
            context.run_migrations()
        return
    # NullPool: nothing stays connected after a run by hand
    engine = sa.create_engine(_url(), poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        context.configure(connection=conn, **OPTIONS)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    context.configure(url=_url(), literal_binds=True, **OPTIONS)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations()
