"""Serving the PD model: SHAP = TreeExplainer bit for bit, one row = batch, replay, integrity, reasons."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.assemble import point_in_time
from features.synthetic import generate_region
from scoring.risk_texts import reason_templates
from training.config import load_config
from training.datasets import from_source_frames
from training.errors import ArtifactIntegrityError
from training.pipeline import train_pipeline
from training.serving import RiskModel

CFG = load_config()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    frames = generate_region(5000, 3)
    out = tmp_path_factory.mktemp("served")
    train_pipeline(from_source_frames(frames, CFG, dt.date(2026, 1, 1)), CFG, out, write_report=False)
    return out


@pytest.fixture(scope="module")
def features() -> pd.DataFrame:
    """Quote-time features of other enterprises (another region), as the scoring engine gets them."""
    return point_in_time(generate_region(400, 99), dt.date(2025, 12, 31))


def test_pred_contrib_equals_shap_tree_explainer_bit_for_bit(model_dir: Path, features: pd.DataFrame) -> None:
    import shap

    model = RiskModel.from_dir(model_dir)
    if model.booster is None:
        pytest.skip(f"the selection chose a {model.family}: no LightGBM part (tests/test_model_families.py)")
    X = model.encode(features)
    explainer = shap.TreeExplainer(model.booster)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # shap notes that its LightGBM output format changed
        values = np.asarray(explainer.shap_values(X))
    treeshap = model.booster.predict(np.ascontiguousarray(X), pred_contrib=True)
    assert np.array_equal(values, treeshap[:, :-1])
    base = float(np.asarray(explainer.expected_value).ravel()[0])
    assert base == treeshap[0, -1]
    contrib = model.contributions(X)
    assert (contrib[:, -1] == model.base_value).all()
    if model.family == "lightgbm":  # the model's contributions are the TreeSHAP values themselves
        assert np.array_equal(contrib, treeshap) and base == model.base_value


def test_contributions_plus_base_value_equal_the_raw_score(model_dir: Path, features: pd.DataFrame) -> None:
    model = RiskModel.from_dir(model_dir)
    assessed = model.assess(features, top_k=len(model.feature_names))
    raw = model.raw_score(features)
    for row, r in zip(assessed, raw, strict=True):
        total = row["base_value"] + sum(f["contribution"] for f in row["risk_factors"])
        assert row["raw_score"] == r
        if model.family == "lightgbm":
            assert abs(total - r) < 1e-9  # floating-point addition order only (LightGBM adds in another order)
        else:
            assert total == r  # scorecard and blend: exact
        assert row["pd"] == float(model.calibrator(np.array([r]))[0])


def test_one_row_and_batch_give_identical_numbers(model_dir: Path, features: pd.DataFrame) -> None:
    model = RiskModel.from_dir(model_dir)
    batch_pd = model.predict(features)
    batch_contrib = model.contributions(features)
    batch = model.assess(features)
    for i in range(0, len(features), 7):
        row = features.iloc[[i]]
        assert model.predict(row)[0] == batch_pd[i]
        assert np.array_equal(model.contributions(row)[0], batch_contrib[i])
        assert json.dumps(model.assess(row)[0]) == json.dumps(batch[i])


def test_replaying_a_quote_with_the_same_model_reproduces_it_bit_for_bit(model_dir, features) -> None:
    first = json.dumps(RiskModel.from_dir(model_dir).assess(features), ensure_ascii=False)
    again = json.dumps(RiskModel.from_dir(model_dir).assess(features), ensure_ascii=False)
    assert first == again


def test_risk_factors_carry_reason_codes_and_zh_en_texts(model_dir: Path, features: pd.DataFrame) -> None:
    model = RiskModel.from_dir(model_dir)
    factors = [f for row in model.assess(features, top_k=5) for f in row["risk_factors"]]
    assert factors and all(f["code"] in reason_templates() for f in factors)
    for f in factors:
        assert re.search(r"[\u4e00-\u9fff]", f["zh"]) and f["en"]
        assert ("raises" in f["en"]) == (f["contribution"] > 0)
    grades = [f for f in factors if f["feature"] == "tax_credit_grade_rank" and f["value"] is not None]
    assert grades and all(re.search(r"为[ABMCD]，", f["zh"]) for f in grades)  # shown as a letter


@pytest.mark.parametrize("name", ["model.txt", "calibrator.joblib", "report.html"])
def test_a_changed_artifact_is_refused(model_dir: Path, tmp_path: Path, name: str) -> None:
    copy = tmp_path / "m"
    copy.mkdir()
    for f in model_dir.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    data = bytearray((copy / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / name).write_bytes(bytes(data))
    with pytest.raises(ArtifactIntegrityError, match=f"{name} failed its integrity check"):
        RiskModel.from_dir(copy)


def test_metadata_changed_after_registration_is_refused(model_dir: Path, tmp_path: Path) -> None:
    model = RiskModel.from_dir(model_dir)
    recorded = {n: hashlib.sha256((model_dir / n).read_bytes()).hexdigest()
                for n in ("model.txt", "calibrator.joblib", "report.html", "metadata.json")}
    copy = tmp_path / "m"
    copy.mkdir()
    for f in model_dir.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    meta = json.loads((copy / "metadata.json").read_text())
    meta["base_value"] = 0.0
    (copy / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactIntegrityError, match="metadata.json failed its integrity check"):
        RiskModel.from_dir(copy, expected=recorded, model_version=model.model_version)


def test_serving_features_feed_every_model_input_that_training_saw(model_dir: Path, features: pd.DataFrame) -> None:
    """No train/serve skew: an input that training filled must not be always missing at quote time
    (industry_section once existed only in the training dataset, so quotes fed it as missing)."""
    model = RiskModel.from_dir(model_dir)
    X = model.encode(features)
    never_served = [name for j, name in enumerate(model.feature_names) if np.isnan(X[:, j]).all()]
    assert never_served == []
    assert "industry_section" in model.feature_names
    sections = features["registry.industry_code"].str[0]
    assert (features["industry_section"] == sections).all()
