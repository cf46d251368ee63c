"""A batch run imports LightGBM without scikit-learn (training.predict_only): ~2 s of every run's start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

SCRIPT = """
import sys
from typer.testing import CliRunner
from api.cli.main import app

done = CliRunner().invoke(app, ["batch", "precredit", "--as-of", "2025-12-31", "--out", sys.argv[1],
                                "--features", sys.argv[2]])
print("exit", done.exit_code, "lightgbm", "lightgbm" in sys.modules, "sklearn", "sklearn" in sys.modules)

import lightgbm as lgb
import numpy as np
from training.calibration import fit_calibrator

rng = np.random.default_rng(0)
X = rng.normal(size=(400, 3))
y = (X[:, 0] + rng.normal(size=400) > 0).astype(int)
booster = lgb.train({"objective": "binary", "verbosity": -1, "num_threads": 1}, lgb.Dataset(X, y), 5)
calibrator, _ = fit_calibrator(booster.predict(X, raw_score=True), y, "auto")
print("fitted", calibrator.method in ("platt", "beta", "isotonic"), "sklearn", "sklearn" in sys.modules)
"""


def test_the_batch_command_imports_lightgbm_without_scikit_learn_and_fitting_still_works(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "out.parquet"), str(tmp_path / "absent")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # the engine is imported (LightGBM with it) before the missing --features file is reported (exit 2)
    assert "exit 2 lightgbm True sklearn False" in lines, done.stdout
    # scikit-learn is still there for whatever fits in the same process
    assert "fitted True sklearn True" in lines, done.stdout
