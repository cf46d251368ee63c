"""Model registry on SQLite and PostgreSQL: content ids, maker-checker, rollback, integrity, history."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from training.config import load_config
from training.datasets import from_frame
from training.errors import ArtifactIntegrityError, RegistryError, UnknownModelError
from training.pipeline import train_pipeline
from training.registry import Registry
from training.registry_tables import models, transitions

CFG = load_config()


def _frame(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1500, 3))
    y = rng.random(1500) < 1 / (1 + np.exp(2 - x @ [1.0, -0.5, 0.2]))
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "bad": y.astype(int)})


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = []
    for seed in (1, 2, 3):
        d = tmp_path_factory.mktemp(f"trained{seed}")
        train_pipeline(from_frame(_frame(seed), "bad", CFG), CFG.with_seed(seed), d, operator="trainer",
                       write_report=False)
        out.append(d)
    return out


@pytest.fixture
def registry(store: sa.Engine, tmp_path: Path) -> Registry:
    return Registry(store, tmp_path / "models")


def test_register_makes_a_content_addressed_candidate_with_traceability(registry, model_dirs) -> None:
    record = registry.register(model_dirs[0], "alice")
    assert record.stage == "candidate" and len(record.id) == 16
    assert (registry.models_dir / record.id / "model.txt").is_file()
    assert record.operator == "trainer" and record.rows == 1500 and record.code_version
    assert record.data_checksum and record.params["objective"] == "binary"
    assert record.training_started_at <= record.training_finished_at
    with pytest.raises(RegistryError, match="already registered"):
        registry.register(model_dirs[0], "bob")
    assert registry.get(record.id[:8]).id == record.id  # unique prefix
    [t] = registry.transitions(record.id)
    assert (t.action, t.from_stage, t.to_stage, t.requested_by) == ("registered", None, "candidate", "alice")


def test_a_corrupted_artifact_is_refused_and_nothing_is_registered(registry, model_dirs, tmp_path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(model_dirs[0], broken)
    with (broken / "calibrator.joblib").open("ab") as f:
        f.write(b"x")
    with pytest.raises(ArtifactIntegrityError, match="calibrator.joblib failed its integrity check"):
        registry.register(broken, "alice")
    assert registry.list() == []
    assert not registry.models_dir.exists() or not any(registry.models_dir.iterdir())


def test_unknown_model_id_is_a_clear_error(registry) -> None:
    with pytest.raises(UnknownModelError, match="unknown model id 'feedface00'"):
        registry.get("feedface00")
    with pytest.raises(RegistryError, match="no champion"):
        registry.load()


def test_champion_needs_a_second_person_and_every_step_is_recorded(registry, model_dirs) -> None:
    a = registry.register(model_dirs[0], "alice").id
    registry.request_promotion(a, "challenger", "alice", "looks good")
    assert registry.get(a).stage == "challenger"
    request = registry.request_promotion(a, "champion", "alice", "beats the old model out of time")
    assert request.status == "pending" and registry.get(a).stage == "challenger"
    with pytest.raises(RegistryError, match="maker-checker"):
        registry.approve(a, "Alice ")
    done = registry.approve(a, "bob")
    assert (done.to_stage, done.requested_by, done.approved_by) == ("champion", "alice", "bob")
    assert registry.champion().id == a and registry.requests(a)[-1].status == "approved"
    assert [t.action for t in registry.transitions(a)] == ["registered", "promoted", "promoted"]
    assert all(t.at is not None and t.reason for t in registry.transitions(a))


def test_promotion_replaces_the_champion_and_rollback_restores_it_in_one_step(registry, model_dirs) -> None:
    a = registry.register(model_dirs[0], "alice").id
    b = registry.register(model_dirs[1], "alice").id
    for model in (a, b):
        registry.request_promotion(model, "champion", "carol", "quarterly refresh")
        registry.approve(model, "dave")
    assert registry.get(a).stage == "retired" and registry.champion().id == b
    assert registry.transitions(a)[-1].action == "replaced"
    restored = registry.rollback("erin", "PD drift after release")
    assert restored.model_id == a and registry.champion().id == a
    assert registry.get(b).stage == "retired"
    assert registry.transitions(b)[-1].action == "rolled_back"
    assert registry.transitions(b)[-1].requested_by == "erin"
    with pytest.raises(RegistryError, match="no previous champion"):
        registry.rollback("erin", "again")  # b was rolled back: it is not brought back by a second rollback
    assert registry.load().model_version == a


def test_retire_and_stage_rules(registry, model_dirs) -> None:
    a = registry.register(model_dirs[0], "alice").id
    c = registry.register(model_dirs[2], "alice").id
    registry.request_promotion(a, "champion", "carol", "first model")
    registry.approve(a, "dave")
    with pytest.raises(RegistryError, match="is the champion"):
        registry.retire(a, "x", "no")
    registry.request_promotion(c, "champion", "carol", "try")
    registry.retire(c, "frank", "failed validation")
    assert registry.get(c).stage == "retired" and registry.requests(c)[-1].status == "superseded"
    with pytest.raises(RegistryError, match="retired"):
        registry.request_promotion(c, "champion", "carol", "again")
    with pytest.raises(RegistryError, match="reason is required"):
        registry.rollback("erin", " ")


def test_tampered_champion_is_not_loaded_or_promoted(registry, model_dirs) -> None:
    a = registry.register(model_dirs[0], "alice").id
    registry.request_promotion(a, "champion", "carol", "go")
    path = registry.models_dir / a / "model.txt"
    path.write_text(path.read_text().replace("leaf_value=", "leaf_value=1", 1))
    with pytest.raises(ArtifactIntegrityError, match="model.txt failed its integrity check"):
        registry.approve(a, "dave")
    assert registry.get(a).stage == "candidate"
    with pytest.raises(ArtifactIntegrityError):
        registry.load(a)


def test_history_rows_are_in_the_database(registry, model_dirs, store) -> None:
    a = registry.register(model_dirs[0], "alice").id
    with store.connect() as conn:
        assert conn.execute(sa.select(models.c.stage).where(models.c.id == a)).scalar_one() == "candidate"
        assert conn.execute(sa.select(sa.func.count()).select_from(transitions)).scalar_one() == 1


def test_model_cache_serves_the_champion_and_replays_old_versions(registry, model_dirs) -> None:
    from training.serving import ModelCache

    cache = ModelCache(registry, ttl_seconds=0)
    assert cache.champion() is None
    a = registry.register(model_dirs[0], "alice").id
    b = registry.register(model_dirs[1], "alice").id
    for model in (a, b):
        registry.request_promotion(model, "champion", "carol", "refresh")
        registry.approve(model, "dave")
    assert cache.champion().model_version == b
    assert cache.get(a).model_version == a and cache.get(a) is cache.get(a[:10])
    with pytest.raises(UnknownModelError):
        cache.get("0000000000000000")
