"""The whole-region run's output, value for value: `indexloan batch precredit` end to end (process, store,
snapshot, engine, writer) on a small region gives the table the code gave before the speed work of issue 15.

The expected tables (`tests/data/golden/*.parquet`) were written from main's output on this region and model.
They are compared as decoded tables, not as file digests, because the model is trained here, in the test, and
its calibrator is a library fit (scikit-learn's L-BFGS on OpenBLAS) whose last bits depend on the processor's
vector instructions: on one machine with AVX-512 enabled and disabled, the Platt coefficients differed in the
16th digit, every PD in its last bits, and with them the model version (a digest of the artifacts) -- and
nothing else (grades, limits, rates, texts). So every column must be equal, the PD to 1e-9 relative (the
differences seen were ~1e-15), and the model version must be the one of the model the run was given. Within
one run, on one machine, the Dask engine must write the local engine's bytes exactly.

A deliberate change of the output (a product rule, a column) changes these tables: rewrite them with
`python -m tests.test_batch_golden --write` and say why in the commit.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.ingest import ingest_directory
from features.synthetic import generate_region, write_region
from training.config import load_config
from training.datasets import from_source_frames
from training.pipeline import train_pipeline
from training.serving import RiskModel

AS_OF = dt.date(2025, 12, 31)
REPO = Path(__file__).resolve().parent.parent
GOLDEN_DIR = Path(__file__).resolve().parent / "data" / "golden"
MODEL_TXT = "73e133573db0d4dd3935b53d5d5f4ffaf8b6a71c6d1fa5fbe1ea81281e266c57"
RUNS = {"k3": ["--reasons", "3"], "k0": []}  # expected table -> the run's arguments
FLOAT_RTOL = 1e-9


def _pin_metadata(model: Path) -> None:
    """The model version is a digest of the artifacts, metadata included: fix the fields that name when and
    from which commit it was trained, so the version (a column of the output) is the same on every run."""
    def pinned(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: 0 if k == "seconds" else pinned(v) for k, v in value.items()}  # timings of the selection
        return [pinned(v) for v in value] if isinstance(value, list) else value

    path = model / "metadata.json"
    meta = pinned(json.loads(path.read_text(encoding="utf-8")))
    meta.update({"code_version": "golden", "started_at": "2026-01-01T00:00:00+00:00",
                 "finished_at": "2026-01-01T00:00:00+00:00"})
    path.write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _prepare(directory: Path) -> tuple[str, Path]:
    """The region's store and the model trained on it (the same trees as when the tables were written)."""
    from api.database import migrate

    frames = generate_region(1500, 11, AS_OF)
    cfg = load_config()
    train_pipeline(from_source_frames(frames, cfg, AS_OF), cfg, directory / "model", operator="test",
                   write_report=False)
    _pin_metadata(directory / "model")
    # the same trees as when the tables were written (else the outputs cannot match, whatever the batch does)
    assert _sha256(directory / "model" / "model.txt") == MODEL_TXT
    frames.pop("loan_outcomes")
    url = f"sqlite:///{directory / 'store.db'}"
    write_region(frames, directory / "region")
    ingest_directory(migrate(url), directory / "region", directory / "quarantine")
    return url, directory / "model"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    directory = tmp_path_factory.mktemp("golden")
    url, model = _prepare(directory)
    return url, model, directory


def _precredit(url: str, model: Path, out: Path, *args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "INDEXLOAN_DATABASE_URL": url}
    done = subprocess.run([sys.executable, "-m", "api.cli.main", "batch", "precredit", "--as-of", AS_OF.isoformat(),
                           "--out", str(out), "--model", str(model), "--partitions", "3", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr


def _read(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, keep_default_na=False,
                                                                                na_values=[""])


def assert_same_table(got: pd.DataFrame, expected: pd.DataFrame, model_version: str, name: str) -> None:
    """Every column equal, floats to FLOAT_RTOL; `model_version` is the run's model (see the module's doc)."""
    assert list(got.columns) == list(expected.columns), name
    assert len(got) == len(expected), name
    assert set(got["model_version"].dropna()) == {model_version}, name
    for column in got.columns.drop("model_version"):
        mine, theirs = got[column], expected[column]
        if pd.api.types.is_float_dtype(theirs) or pd.api.types.is_float_dtype(mine):
            a, b = mine.to_numpy(dtype=np.float64), theirs.to_numpy(dtype=np.float64)
            assert np.array_equal(np.isnan(a), np.isnan(b)), f"{name}: {column}: missing values differ"
            np.testing.assert_allclose(a, b, rtol=FLOAT_RTOL, atol=0, equal_nan=True, err_msg=f"{name}: {column}")
        else:
            same = (mine.astype(object).where(mine.notna(), None).tolist()
                    == theirs.astype(object).where(theirs.notna(), None).tolist())
            assert same, f"{name}: {column}: {mine[mine != theirs].head(3).tolist()} != " \
                         f"{theirs[mine != theirs].head(3).tolist()}"


@pytest.mark.parametrize(("name", "suffix"), [("k3", ".parquet"), ("k0", ".parquet"), ("k0", ".csv")])
def test_output_tables_are_the_main_branchs(store: tuple[str, Path, Path], name: str, suffix: str) -> None:
    url, model, directory = store
    out = directory / f"{name}{suffix}"
    _precredit(url, model, out, *RUNS[name])
    expected = pd.read_parquet(GOLDEN_DIR / f"{name}.parquet")
    if suffix == ".csv":  # a CSV spells an empty text and a missing value alike
        expected = expected.apply(lambda c: c.astype(object).where(c != "", None)
                                  if pd.api.types.is_string_dtype(c) else c)
    assert_same_table(_read(out), expected, RiskModel.from_dir(model).model_version, out.name)


def test_dask_run_from_the_snapshot_writes_the_local_runs_bytes(store: tuple[str, Path, Path]) -> None:
    url, model, directory = store
    local, dask = directory / "same-k0.parquet", directory / "dask-k0.parquet"
    _precredit(url, model, local)
    _precredit(url, model, dask, "--engine", "dask", "--workers", "2")
    assert _sha256(dask) == _sha256(local)


def write_expected() -> None:
    """Rewrite the expected tables from this tree's output (a deliberate change of the output only)."""
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        url, model = _prepare(Path(tmp))
        for name, args in RUNS.items():
            out = Path(tmp) / f"{name}.parquet"
            _precredit(url, model, out, *args)
            pd.read_parquet(out).to_parquet(GOLDEN_DIR / f"{name}.parquet", compression="zstd", index=False)
            print(f"wrote {GOLDEN_DIR / name}.parquet")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=write_expected.__doc__)
    parser.add_argument("--write", action="store_true", required=True)
    parser.parse_args()
    write_expected()
