"""A populated store and a running app for API tests (shared by several test modules)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.database import migrate
from api.http.app import create_app
from api.keys import Role, create_key
from features.ingest import ingest_directory
from features.synthetic import generate_region, write_region
from tests.conftest import fresh_database

REGION_FIRMS = 1200
REGION_SEED = 11


@dataclass
class Service:
    client: TestClient
    engine: sa.Engine
    keys: dict[Role, str]
    codes: list[str]  # enterprises in the store, as of today

    def headers(self, role: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}


@contextlib.contextmanager
def running_service(backend: str, directory: Path, models_dir: Path | None = None,
                    prepare=None) -> Iterator[Service]:  # noqa: ANN001 - optional callback(engine)
    with fresh_database(backend, directory) as url:
        region = directory / "region"
        if not region.exists():
            write_region(generate_region(REGION_FIRMS, REGION_SEED), region, "parquet")
        engine = migrate(url)
        report = ingest_directory(engine, region, directory / "quarantine")
        assert report.ok, report.as_json()
        if prepare is not None:
            prepare(engine)
        keys = {role: create_key(engine, role, f"test-{role.value}") for role in Role}
        with engine.connect() as conn:
            codes = conn.execute(sa.text("SELECT DISTINCT credit_code FROM src_registry ORDER BY credit_code")
                                 ).scalars().all()
        app = create_app(database_url=url, models_dir=str(models_dir) if models_dir else None)
        with TestClient(app) as client:
            yield Service(client, engine, keys, list(codes))
