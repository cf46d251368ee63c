"""Quick risk models for monitoring and shadow tests: LightGBM alone, holdout validation, few rounds (seconds,
where the demo champion's model-family selection takes minutes)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import sqlalchemy as sa


def quick_model(engine: sa.Engine, directory: Path, seed: int, stage: str) -> str:
    """Train a small model on the store, register it and move it to `stage` (challenger or champion, the
    latter through maker-checker); its id."""
    from training.config import SelectionConfig, load_config
    from training.datasets import from_store
    from training.pipeline import train_pipeline
    from training.registry import Registry

    cfg = dataclasses.replace(load_config(), selection=SelectionConfig(), validation="holdout", num_boost_round=60,
                              seed=seed)
    result = train_pipeline(from_store(engine=engine, config=cfg), cfg, directory / f"model-{seed}",
                            operator="test-analyst", write_report=False)
    registry = Registry(engine)
    record = registry.register(result.out_dir, created_by="test-analyst", reason=f"test model, seed {seed}")
    registry.request_promotion(record.id, "challenger", "test-analyst", "to be tried in shadow")
    if stage == "champion":
        registry.request_promotion(record.id, "champion", "test-analyst", "test champion")
        registry.approve(record.id, "test-approver", "second person")
    return record.id


def monitoring_report(svc, params: dict | None = None, role=None):  # noqa: ANN001, ANN201
    """GET /v1/monitoring until the background computation has finished (202 meanwhile): the response."""
    import time

    from api.keys import Role

    deadline = time.monotonic() + 300
    while True:
        response = svc.client.get("/v1/monitoring", params=params or {}, headers=svc.headers(role or Role.risk_analyst))
        if response.status_code != 202:
            return response
        assert time.monotonic() < deadline, "the monitoring report took too long"
        time.sleep(0.2)
