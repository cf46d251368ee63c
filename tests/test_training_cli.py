"""`indexloan train | evaluate | models ...`: results on stdout, clear errors, nothing half-done."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from api.cli.models import evaluate_command, models_app, train_command

app = typer.Typer(pretty_exceptions_enable=False)  # mounted like api.cli mounts them
app.command("train")(train_command)
app.command("evaluate")(evaluate_command)
app.add_typer(models_app, name="models")
runner = CliRunner()


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(5)
    n = 1500
    x = rng.normal(size=n)
    sector = rng.choice(["retail", "factory", "tech"], n)
    bad = rng.random(n) < 1 / (1 + np.exp(2.2 - 1.3 * x - 0.6 * (sector == "retail")))
    path = tmp_path_factory.mktemp("data") / "loans.csv"
    pd.DataFrame({"x": x, "sector": sector, "month": np.where(np.arange(n) < 1000, "2024-01-31", "2024-12-31"),
                  "status": np.where(bad, "bad", "good"), "grade": rng.integers(0, 4, n)}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def trained(data_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "m"
    result = runner.invoke(app, ["train", "--data", str(data_file), "--target", "status", "--date-col", "month",
                                 "--out", str(out), "--seed", "3", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["split"]["kind"] == "out_of_time"
    return out


def _db(tmp_path: Path) -> list[str]:
    return ["--database-url", f"sqlite:///{tmp_path / 'r.db'}", "--models-dir", str(tmp_path / "models")]


def test_train_writes_model_metrics_and_report(trained: Path) -> None:
    assert {p.name for p in trained.iterdir()} == {"model.txt", "calibrator.joblib", "metadata.json",
                                                  "metrics.json", "report.html"}
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["oot"]["auc"] > 0.7 and metrics["rows"] == 1500


def test_evaluate_prints_one_json_object(trained: Path, data_file: Path) -> None:
    result = runner.invoke(app, ["evaluate", "--model", str(trained), "--data", str(data_file), "--target", "status",
                                 "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert {"auc", "ks", "brier", "rows", "model_version", "psi_vs_development"} <= set(payload)
    assert payload["rows"] == 1500 and 0.5 < payload["auc"] <= 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "default"], "no target column 'default'"),
        (["--target", "grade"], "not binary: 4 distinct values"),
        (["--target", "x"], "not binary"),
        ([], "--data needs --target"),
    ],
)
def test_train_errors_are_clear_and_leave_nothing(data_file: Path, tmp_path: Path, args: list[str],
                                                  message: str) -> None:
    result = runner.invoke(app, ["train", "--data", str(data_file), "--out", str(tmp_path / "m"), *args])
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "m").exists() and not list(tmp_path.glob(".m.*"))


def test_evaluate_unknown_model_and_missing_target_are_clear_errors(trained, data_file, tmp_path) -> None:
    unknown = runner.invoke(app, ["evaluate", "--model", "0123456789", "--data", str(data_file), "--target",
                                  "status", *_db(tmp_path)])
    assert unknown.exit_code == 1 and "unknown model id '0123456789'" in unknown.output
    no_target = runner.invoke(app, ["evaluate", "--model", str(trained), "--data", str(data_file), "--target", "y"])
    assert no_target.exit_code == 1 and "no target column 'y'" in no_target.output


def test_registry_commands_end_to_end(trained: Path, tmp_path: Path) -> None:
    db = _db(tmp_path)
    registered = runner.invoke(app, ["models", "register", str(trained), "--by", "alice", "--json", *db])
    assert registered.exit_code == 0, registered.output
    model_id = json.loads(registered.stdout)["id"]
    steps = [
        (["models", "request-promotion", model_id, "--by", "alice", "--reason", "better KS"], 0, "requested"),
        (["models", "approve", model_id, "--by", "alice"], 1, "maker-checker"),
        (["models", "approve", model_id[:8], "--by", "bob"], 0, "now champion"),
        (["models", "rollback", "--by", "bob", "--reason", "test"], 1, "no previous champion"),
        (["models", "retire", model_id, "--by", "bob", "--reason", "x"], 1, "is the champion"),
        (["models", "show", "nope000000"], 1, "unknown model id"),
    ]
    for args, code, text in steps:
        result = runner.invoke(app, [*args, *db])
        assert result.exit_code == code and text in result.output, (args, result.output)
    listing = json.loads(runner.invoke(app, ["models", "list", "--json", *db]).stdout)
    assert [(m["id"], m["stage"]) for m in listing["models"]] == [(model_id, "champion")]
    family = json.loads((trained / "metadata.json").read_text())["family"]  # what the selection chose
    assert listing["models"][0]["family"] == family
    shown = json.loads(runner.invoke(app, ["models", "show", "champion", "--json", *db]).stdout)
    assert shown["family"] == family
    assert [t["action"] for t in shown["transitions"]] == ["registered", "promoted"]
    assert shown["transitions"][-1]["approved_by"] == "bob"


def test_corrupted_artifact_is_not_registered(trained: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in trained.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    (copy / "model.txt").write_text((copy / "model.txt").read_text().replace("tree", "tre", 1))
    db = _db(tmp_path)
    result = runner.invoke(app, ["models", "register", str(copy), "--by", "alice", *db])
    assert result.exit_code == 1 and "failed its integrity check" in result.output
    assert json.loads(runner.invoke(app, ["models", "list", "--json", *db]).stdout) == {"models": []}


def test_train_from_the_store(tmp_path: Path) -> None:
    from api.database import migrate
    from features.ingest import ingest_directory
    from features.synthetic import generate_region, write_region

    url = f"sqlite:///{tmp_path / 'store.db'}"
    write_region(generate_region(2500, 11), tmp_path / "region", "parquet")
    assert ingest_directory(migrate(url), tmp_path / "region", tmp_path / "q").ok
    out = tmp_path / "m"
    result = runner.invoke(app, ["train", "--from-store", "--as-of", "2026-01-01", "--out", str(out),
                                 "--database-url", url, "--json"])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["training"]["source"]["kind"] == "store"
    assert meta["training"]["time_window"] == ["2023-12-31", "2024-12-31"]
    assert meta["training"]["split"]["oot_from"] == "2024-12-31"
    too_early = runner.invoke(app, ["train", "--from-store", "--as-of", "2024-06-30", "--out", str(tmp_path / "n"),
                                    "--database-url", url])
    assert too_early.exit_code == 1 and "no loan with a known 12-month outcome" in too_early.output
