"""Row counts and as-of dates per source."""

from __future__ import annotations

import sqlalchemy as sa

from features.sources import SOURCES
from features.store.tables import batches, source_table


def store_statistics(engine: sa.Engine) -> dict:
    result: dict = {"database": engine.url.render_as_string(hide_password=True), "sources": {}}
    with engine.connect() as conn:
        for name in SOURCES:
            table = source_table(name)
            rows = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            enterprises = conn.execute(sa.select(sa.func.count(sa.distinct(table.c.credit_code)))).scalar_one()
            dates = conn.execute(sa.select(table.c.as_of).distinct().order_by(table.c.as_of)).scalars().all()
            n_batches = conn.execute(
                sa.select(sa.func.count()).select_from(batches).where(batches.c.source == name)
            ).scalar_one()
            result["sources"][name] = {
                "rows": rows,
                "enterprises": enterprises,
                "as_of_dates": [d.isoformat() for d in dates],
                "batches": n_batches,
            }
    return result
