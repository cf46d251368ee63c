"""`indexloan train --engine dask`: LightGBM's Dask interface, with the same monotone constraints,
the same early-stopping rule, calibration and report as local training."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
from typer.testing import CliRunner

from api.cli.main import app
from features.synthetic import generate_region
from training.config import load_config
from training.datasets import from_source_frames
from training.fit import _best_iteration
from training.pipeline import train_pipeline
from training.serving import RiskModel

AS_OF = dt.date(2025, 12, 31)
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dataset():  # type: ignore[no-untyped-def]
    return from_source_frames(generate_region(4000, 31, AS_OF), load_config(), AS_OF)


def test_best_iteration_is_what_early_stopping_keeps() -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(6000, 5))
    y = (X[:, 0] + 0.5 * rng.normal(size=6000) > 0.8).astype(int)
    params = {"objective": "binary", "learning_rate": 0.3, "num_leaves": 4, "verbosity": -1, "seed": 1,
              "deterministic": True}
    train, valid = lgb.Dataset(X[:4000], y[:4000]), lgb.Dataset(X[4000:], y[4000:])
    stopped = lgb.train(params, train, 300, valid_sets=[valid], callbacks=[lgb.early_stopping(10, verbose=False)])
    full = lgb.train(params, lgb.Dataset(X[:4000], y[:4000]), 300)
    assert _best_iteration(full, X[4000:], y[4000:], 10) == stopped.best_iteration < 300


def test_dask_training_keeps_constraints_calibration_and_report(dataset, tmp_path: Path) -> None:  # noqa: ANN001
    from dask.distributed import LocalCluster

    cfg = dataclasses.replace(load_config(), validation="holdout", num_boost_round=200)
    local = train_pipeline(dataset, cfg, tmp_path / "local", operator="test", write_report=False)
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None)
    try:
        result = train_pipeline(dataset, cfg, tmp_path / "dask", operator="test", engine="dask",
                                scheduler=cluster.scheduler_address)
    finally:
        cluster.close()
    meta = json.loads((tmp_path / "dask" / "metadata.json").read_text(encoding="utf-8"))
    assert meta["training"]["engine"] == "dask" and meta["validation"]["mode"] == "holdout"
    assert meta["num_trees"] == meta["best_iteration"] <= meta["iterations_run"] == 200
    assert meta["monotone"] == json.loads((tmp_path / "local" / "metadata.json").read_text())["monotone"]
    assert (tmp_path / "dask" / "report.html").stat().st_size > 10_000
    assert result.metrics["oot"]["auc"] > 0.6
    assert abs(result.metrics["oot"]["auc"] - local.metrics["oot"]["auc"]) < 0.05

    # the constraints hold in the Dask-trained model: moving one constrained feature never moves PD the wrong way
    model = RiskModel.from_dir(tmp_path / "dask")
    X = model.encode(dataset.X.iloc[:200])
    checked = 0
    for j, direction in enumerate(model.spec.monotone):
        if direction == 0:
            continue
        column = X[:, j][~np.isnan(X[:, j])]
        if len(column) == 0:
            continue
        grid = np.quantile(column, np.linspace(0, 1, 9))
        scores = []
        for value in grid:
            moved = X.copy()
            moved[:, j] = value
            scores.append(model.raw_score(moved))
        steps = np.diff(np.array(scores), axis=0) * direction
        assert (steps >= -1e-12).all(), model.spec.names[j]
        checked += 1
    assert checked >= 5


def test_cli_train_with_the_dask_engine(dataset, tmp_path: Path) -> None:  # noqa: ANN001
    data = dataset.X.copy()
    data["defaulted"] = dataset.y
    data["loan_date"] = dataset.dates.to_numpy()
    path = tmp_path / "loans.parquet"
    data.to_parquet(path)
    runner = CliRunner()
    bad = runner.invoke(app, ["train", "--data", str(path), "--target", "defaulted", "--out", str(tmp_path / "m"),
                              "--engine", "spark"])
    assert bad.exit_code == 2 and "--engine must be local or dask" in bad.output
    config = tmp_path / "model.yaml"  # fewer rounds: Dask training grows all of them
    config.write_text((REPO / "training" / "model.yaml").read_text(encoding="utf-8")
                      .replace("num_boost_round: 1000", "num_boost_round: 150"), encoding="utf-8")
    good = runner.invoke(app, ["train", "--data", str(path), "--target", "defaulted", "--date-col", "loan_date",
                               "--out", str(tmp_path / "m"), "--engine", "dask", "--config", str(config), "--json"])
    assert good.exit_code == 0, good.output
    assert json.loads((tmp_path / "m" / "metadata.json").read_text())["training"]["engine"] == "dask"
