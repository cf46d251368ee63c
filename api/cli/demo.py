"""`indexloan demo-setup`: a first champion model and one API key per role, for the demo service."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from api.keys import Role, create_key


def ensure_champion(engine: sa.Engine, work_dir: Path) -> str:
    """Train from the store and promote (analyst requests, approver approves) unless a champion exists."""
    from training.config import load_config
    from training.datasets import from_store
    from training.pipeline import train_pipeline
    from training.registry import Registry

    registry = Registry(engine)
    champion = registry.champion()
    if champion is not None:
        return champion.id
    dataset = from_store(engine=engine, config=load_config())
    result = train_pipeline(dataset, load_config(), work_dir / "demo-model", operator="demo-analyst")
    record = registry.register(result.out_dir, created_by="demo-analyst", reason="first demo model")
    registry.request_promotion(record.id, "challenger", "demo-analyst", "demo: challenger")
    registry.request_promotion(record.id, "champion", "demo-analyst", "demo: first champion")
    registry.approve(record.id, "demo-approver", "demo: approved by a second person")
    return record.id


def demo_keys(engine: sa.Engine) -> dict[Role, str]:
    return {role: create_key(engine, role, f"demo-{role.value}", created_by="demo-setup") for role in Role}
