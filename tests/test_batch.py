"""Whole-region pre-credit runs: same numbers as a quote, local = Dask row for row, resume after a kill,
declined firms kept with their reasons, bad CLI input refused."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from api.cli.main import app
from api.precredit.inputs import build_context
from api.precredit.run import RunOptions, run_precredit
from api.quoting.population import Population
from api.quoting.versions import versions_for
from features.assemble import point_in_time
from features.synthetic import generate_region
from products.catalogue import load_catalogue
from training.config import load_config
from training.datasets import from_source_frames
from training.encoding import SMALL_FRAME_ROWS
from training.pipeline import train_pipeline
from training.serving import RiskModel

AS_OF = dt.date(2025, 12, 31)
FIRMS = 3000
REPO = Path(__file__).resolve().parent.parent


class Region:
    def __init__(self, directory: Path) -> None:
        frames = generate_region(FIRMS, 23, AS_OF)
        cfg = load_config()
        self.model_dir = directory / "model"
        train_pipeline(from_source_frames(frames, cfg, AS_OF), cfg, self.model_dir, operator="test",
                       write_report=False)
        self.model = RiskModel.from_dir(self.model_dir)
        frames.pop("loan_outcomes")
        features = point_in_time(frames, AS_OF)
        self.features = features.sample(frac=1.0, random_state=1)  # shuffled: the run must sort by credit code
        self.features_file = directory / "features.parquet"
        self.features.to_parquet(self.features_file)

    def run(self, out: Path, reasons: int = 3, **options: object) -> dict:
        ctx, describe, narrowed = build_context(self.features, AS_OF, None, reasons, self.model)
        return run_precredit(ctx, narrowed, describe, RunOptions(out, **options)).summary  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def region(tmp_path_factory: pytest.TempPathFactory) -> Region:
    return Region(tmp_path_factory.mktemp("batch-region"))


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "api.cli.main", "batch", "precredit", *args], cwd=REPO,
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_every_enterprise_once_in_credit_code_order_with_the_quote_paths_numbers(region: Region, tmp_path: Path
                                                                                  ) -> None:
    summary = region.run(tmp_path / "out.parquet", reasons=3, partitions=4)
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert list(out["credit_code"]) == sorted(region.features.index)
    assert summary["enterprises"] == FIRMS == len(out)
    versions = versions_for(AS_OF, region.features, region.model)
    population = Population(region.features, versions)
    rows = out.set_index("credit_code")
    sample = list(np.random.default_rng(5).choice(out["credit_code"].to_numpy(), size=20, replace=False))
    for column in [c for c in out.columns if c.endswith(".reasons")]:  # the texts that carry the PD or grade
        for code in ("PD_ABOVE_MAX", "GRADE_NOT_ELIGIBLE"):
            sample += list(out.loc[out[column].str.contains(code), "credit_code"][:2])
    assert len(sample) > 25
    for code in sample:
        body = population.body(code, versions.products, None)
        row = rows.loc[code]
        assert row["pd"] == body["risk"]["pd"]
        for q in body["quotes"]:
            p = q["product"]
            assert (row[f"{p}.eligible"], row[f"{p}.grade"], row[f"{p}.tier"], row[f"{p}.limit_cny"]) == (
                q["eligible"], q["grade"], q["tier"], q["limit_cny"])
            assert row[f"{p}.index"] == q["index"]
            if q["eligible"]:
                assert [row[f"{p}.rate_lo_pct"], row[f"{p}.rate_hi_pct"], row[f"{p}.rate_pct"]] == [
                    *q["rate_band"], q["rate"]]
                assert [row[f"{p}.fee_pct"], row[f"{p}.subsidy_pct"]] == [q["guarantee_fee"]["pct"],
                                                                         q["subsidy"]["pct"]]
            else:
                assert np.isnan(row[f"{p}.rate_pct"])
            assert row[f"{p}.reasons"] == ";".join(r["code"] for r in q["reasons"])
            assert row[f"{p}.reasons_en"] == "; ".join(r["en"] for r in q["reasons"])
            assert row[f"{p}.reasons_zh"] == "；".join(r["zh"] for r in q["reasons"])
            for k, reason in enumerate(q["top_reasons"][:3], start=1):
                assert (row[f"{p}.top_reason_{k}"], row[f"{p}.top_reason_{k}_zh"]) == (reason["indicator"],
                                                                                       reason["zh"])
        factors = body["quotes"][0]["risk_factors"][:3]
        for k, factor in enumerate(factors, start=1):
            assert (row[f"risk_factor_{k}"], row[f"risk_factor_{k}_en"], row[f"risk_factor_{k}_zh"]) == (
                factor["feature"], factor["en"], factor["zh"])
            assert row[f"risk_factor_{k}_contribution"] == pytest.approx(factor["contribution"], abs=1e-12)
    # the summary counts what the file holds
    for p, s in summary["products"].items():
        assert s["eligible"] == int(out[f"{p}.eligible"].sum())
        assert s["total_limit_cny"] == int(out[f"{p}.limit_cny"].sum())
        assert sum(g["enterprises"] for g in s["grades"].values()) == FIRMS
        assert s["rates"]["offers"] == s["eligible"]
    written = json.loads((tmp_path / "out.summary.json").read_text(encoding="utf-8"))
    assert written["products"] == summary["products"]


def test_declined_firms_stay_in_the_file_with_their_reason(region: Region, tmp_path: Path) -> None:
    region.run(tmp_path / "out.parquet", reasons=0)
    out = pd.read_parquet(tmp_path / "out.parquet").set_index("credit_code")
    dishonest = region.features.index[region.features["judicial.dishonest_debtor"].fillna(False).astype(bool)]
    assert len(dishonest) > 0
    for p in load_catalogue():
        rows = out.loc[dishonest]
        assert not rows[f"{p}.eligible"].any()
        assert rows[f"{p}.reasons"].str.split(";").apply(lambda codes: "DISHONEST_DEBTOR" in codes).all()
        assert rows[f"{p}.reasons_zh"].str.contains("失信被执行人").all()
        assert (rows[f"{p}.limit_cny"] == 0).all()
    assert not any(c.startswith("risk_factor") or ".top_reason" in c for c in out.columns)  # K=0: no explanations


def test_local_and_dask_outputs_are_identical(region: Region, tmp_path: Path) -> None:
    from dask.distributed import LocalCluster

    region.run(tmp_path / "local.parquet", reasons=3, partitions=7, workers=2)
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None)
    try:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        summary = region.run(tmp_path / "dask.parquet", reasons=3, partitions=7, engine="dask",
                             scheduler=cluster.scheduler_address)
    finally:
        cluster.close()
    assert summary["run"]["computed_partitions"] == 7
    local, dask = pd.read_parquet(tmp_path / "local.parquet"), pd.read_parquet(tmp_path / "dask.parquet")
    pd.testing.assert_frame_equal(local, dask)
    assert (tmp_path / "local.parquet").read_bytes() == (tmp_path / "dask.parquet").read_bytes()


def test_csv_output_holds_the_same_rows(region: Region, tmp_path: Path) -> None:
    region.run(tmp_path / "out.parquet", reasons=0, partitions=3)
    region.run(tmp_path / "out.csv", reasons=0, partitions=3)
    parquet = pd.read_parquet(tmp_path / "out.parquet")
    csv = pd.read_csv(tmp_path / "out.csv", dtype={"credit_code": str}, keep_default_na=False, na_values=[""])
    assert list(csv.columns) == list(parquet.columns)
    assert list(csv["credit_code"]) == list(parquet["credit_code"])
    for column in ("tax_credit.limit_cny", "per_mu.eligible", "pd"):
        assert csv[column].tolist() == pytest.approx(parquet[column].tolist(), nan_ok=True)
    assert csv["two_healthy.reasons_en"].fillna("").tolist() == parquet["two_healthy.reasons_en"].astype(str).tolist()


def test_a_killed_run_resumes_by_partition_and_gives_the_same_file(region: Region, tmp_path: Path) -> None:
    reference = tmp_path / "reference.parquet"
    region.run(reference, reasons=2, partitions=8, workers=1)
    out = tmp_path / "killed.parquet"
    args = ["--as-of", AS_OF.isoformat(), "--out", str(out), "--features", str(region.features_file),
            "--model", str(region.model_dir), "--reasons", "2", "--partitions", "8", "--workers", "1"]
    proc = _cli(*args, env={"INDEXLOAN_BATCH_THROTTLE_SECONDS": "0.7"})
    work = Path(str(out) + ".parts")
    deadline = time.monotonic() + 120
    while len(list(work.glob("part-*.arrow"))) < 3:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = sorted(p.name for p in work.glob("part-*.arrow"))
    assert 3 <= len(finished) < 8 and not out.exists()
    mtimes = {name: (work / name).stat().st_mtime_ns for name in finished}

    again = _cli(*args)
    stdout, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stderr
    summary = json.loads((tmp_path / "killed.summary.json").read_text(encoding="utf-8"))
    assert summary["run"]["reused_partitions"] == len(finished)
    assert summary["run"]["computed_partitions"] == 8 - len(finished)
    assert out.read_bytes() == reference.read_bytes()
    assert not work.exists()  # cleaned up after success
    assert len(mtimes) == len(finished)


def test_partitions_of_other_inputs_are_not_reused(region: Region, tmp_path: Path) -> None:
    out, work = tmp_path / "out.parquet", tmp_path / "work"
    first = region.run(out, reasons=0, partitions=5, work_dir=work, keep_parts=True)
    same = region.run(out, reasons=0, partitions=5, work_dir=work, keep_parts=True)
    assert same["run"]["reused_partitions"] == 5 and same["output"]["sha256"] == first["output"]["sha256"]
    changed = Region.__new__(Region)
    changed.model = region.model
    changed.features = region.features.copy()
    code = sorted(changed.features.index)[-1]  # the last partition's firm
    changed.features.loc[code, "judicial.dishonest_debtor"] = True
    after = changed.run(out, reasons=0, partitions=5, work_dir=work, keep_parts=True)
    assert after["run"]["reused_partitions"] == 0 and after["run"]["computed_partitions"] == 5
    row = pd.read_parquet(out).set_index("credit_code").loc[code]
    assert "DISHONEST_DEBTOR" in row["tax_credit.reasons"].split(";")
    other_k = region.run(out, reasons=1, partitions=5, work_dir=work, keep_parts=True)
    assert other_k["run"]["reused_partitions"] == 0


@pytest.mark.parametrize(("args", "message"), [
    (["--as-of", "2025-13-01", "--out", "x.parquet"], "--as-of must be a date"),
    (["--as-of", "2025-12-31", "--out", "x.xlsx"], "must end in .parquet or .csv"),
    (["--as-of", "2025-12-31", "--out", "x.parquet", "--reasons", "-1"], "--reasons must be 0 or more"),
    (["--as-of", "2025-12-31", "--out", "x.parquet", "--engine", "spark"], "--engine must be local or dask"),
    (["--as-of", "2025-12-31", "--out", "x.parquet", "--partitions", "0"], "--partitions must be at least 1"),
    (["--as-of", "2025-12-31", "--out", "x.parquet", "--scheduler", "tcp://127.0.0.1:1"],
     "--scheduler goes with --engine dask"),
    (["--as-of", "2025-12-31", "--out", "x.parquet", "--features", "missing.parquet"], "does not exist"),
])
def test_bad_cli_input_is_one_message_and_a_non_zero_exit(args: list[str], message: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["batch", "precredit", *args, "--database-url",
                                      f"sqlite:///{tmp_path / 'db.sqlite'}"])
    assert result.exit_code != 0
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output and not (tmp_path / "x.parquet").exists()


def test_unknown_product_and_empty_store_are_refused(region: Region, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    runner = CliRunner()
    unknown = runner.invoke(app, ["batch", "precredit", "--as-of", "2025-12-31", "--out", "x.parquet", "--features",
                                  str(region.features_file), "--model", str(region.model_dir), "--products",
                                  "tax_credit,nope"])
    assert unknown.exit_code == 1 and "unknown product(s): nope" in " ".join(unknown.output.split())
    empty = runner.invoke(app, ["batch", "precredit", "--as-of", "2025-12-31", "--out", "x.parquet",
                                "--database-url", db])
    assert empty.exit_code != 0 and "no enterprises" in " ".join(empty.output.split())
    assert not (tmp_path / "x.parquet").exists()


def test_cli_run_with_products_subset(region: Region, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["batch", "precredit", "--as-of", "2025-12-31", "--out", "w.parquet",
                                      "--features", str(region.features_file), "--model", str(region.model_dir),
                                      "--products", "per_mu", "--products", "tax_credit", "--reasons", "1"])
    assert result.exit_code == 0, result.output
    out = pd.read_parquet(tmp_path / "w.parquet")
    products = sorted({c.split(".")[0] for c in out.columns if "." in c})
    assert products == ["per_mu", "tax_credit"] and len(out) == FIRMS
    assert "per_mu" in result.output and (tmp_path / "w.summary.json").exists()


def test_whole_frame_encoding_equals_one_row_at_a_time(region: Region) -> None:
    """FeatureSpec.encode converts a batch column by column and a quote's row as one block: same numbers."""
    frame = region.features.copy()
    frame["registry.registered_capital_cny"] = frame["registry.registered_capital_cny"].astype(object)
    frame.iloc[:3, frame.columns.get_loc("registry.registered_capital_cny")] = "n/a"  # text in a numeric column
    frame = frame.drop(columns=["tax.vat_paid_cny_y1"], errors="ignore")  # an absent column
    expected = np.vstack([region.model.encode(frame.iloc[[i]]) for i in range(len(frame))])
    assert len(frame) > SMALL_FRAME_ROWS
    assert np.array_equal(region.model.encode(frame), expected, equal_nan=True)
    assert np.isnan(expected[:3, region.model.spec.names.index("registry.registered_capital_cny")]).all()


def test_top_k_is_the_stable_descending_order_even_with_ties() -> None:
    from scoring.ranking import top_k_stable

    values = np.random.default_rng(9).integers(0, 4, size=(2000, 12)).astype(float)  # many ties
    expected = np.argsort(-values, axis=1, kind="stable")[:, :3]
    assert np.array_equal(top_k_stable(values, 3), expected)


@pytest.fixture(scope="module")
def dask_cluster():  # type: ignore[no-untyped-def]
    from dask.distributed import LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None)
    yield cluster.scheduler_address
    cluster.close()


def test_dask_workers_read_their_rows_from_the_snapshot_file(region: Region, tmp_path: Path, dask_cluster: str
                                                             ) -> None:
    """Each task carries a file location and a row range, not rows; the output is the local engine's, byte
    for byte."""
    from api.precredit.run import partition_bounds, payload_bytes

    snapshot = tmp_path / "features-2025-12-31.parquet"
    region.features.sort_index().to_parquet(snapshot, row_group_size=1000)  # partitions straddle row groups
    ctx, describe, narrowed = build_context(region.features, AS_OF, None, 3, region.model)
    local = run_precredit(ctx, narrowed, describe, RunOptions(tmp_path / "local.parquet", partitions=5))
    dask = run_precredit(ctx, narrowed.sort_index(), describe,
                         RunOptions(tmp_path / "dask.parquet", "dask", dask_cluster, partitions=5), source=snapshot)
    sent = dask.summary["run"]["sent_to_workers"]
    assert sent["rows_from"] == "snapshot"
    a, b = partition_bounds(FIRMS, 5)[0]
    rows_bytes = payload_bytes(narrowed.sort_index().iloc[a:b])  # what a partition's task carried before
    assert sent["task_bytes"] < 1024 < rows_bytes / 100
    assert dask.summary["output"]["sha256"] == local.summary["output"]["sha256"]
    assert (tmp_path / "local.parquet").read_bytes() == (tmp_path / "dask.parquet").read_bytes()


def test_inputs_not_from_a_snapshot_are_written_once_for_the_workers(region: Region, tmp_path: Path,
                                                                      dask_cluster: str) -> None:
    region.run(tmp_path / "local.parquet", reasons=0, partitions=3)
    summary = region.run(tmp_path / "dask.parquet", reasons=0, partitions=3, engine="dask", scheduler=dask_cluster,
                         keep_parts=True)
    assert summary["run"]["sent_to_workers"]["rows_from"] == "work_dir"
    assert len(list((tmp_path / "dask.parquet.parts").glob("inputs-*.parquet"))) == 1
    assert (tmp_path / "local.parquet").read_bytes() == (tmp_path / "dask.parquet").read_bytes()


def test_a_snapshot_that_differs_from_the_runs_rows_is_not_scored(region: Region, tmp_path: Path,
                                                                  dask_cluster: str) -> None:
    """A snapshot replaced mid-run (or stale): the workers' digest check catches it and the rest of the run
    reads the driver's rows, so the output is still the local engine's."""
    from api.precredit.run import _source_rows

    ctx, describe, narrowed = build_context(region.features, AS_OF, None, 0, region.model)
    narrowed = narrowed.sort_index()
    changed = region.features.sort_index()
    column = narrowed.select_dtypes("number").columns[0]
    code = narrowed[column].last_valid_index()
    changed.loc[code, column] += 1  # same credit codes, one value differs
    snapshot = tmp_path / "features.parquet"
    changed.to_parquet(snapshot)
    assert _source_rows(snapshot, narrowed)  # the driver's check (codes) passes: only the workers can tell
    local = run_precredit(ctx, narrowed, describe, RunOptions(tmp_path / "local.parquet", partitions=3))
    dask = run_precredit(ctx, narrowed, describe, RunOptions(tmp_path / "dask.parquet", "dask", dask_cluster,
                                                             partitions=3), source=snapshot)
    assert dask.summary["run"]["sent_to_workers"]["rows_from"].startswith("snapshot, then work_dir")
    assert dask.summary["output"]["sha256"] == local.summary["output"]["sha256"]


def test_row_hashes_in_threaded_chunks_are_the_whole_frames(region: Region, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fingerprint's row hashes do not depend on how the rows were chunked (every dtype of the features:
    numbers, booleans, dates, text)."""
    from api.precredit import run

    monkeypatch.setattr(run, "HASH_CHUNK_ROWS", 701)  # 3000 rows: uneven chunks
    whole = pd.util.hash_pandas_object(region.features, index=True).to_numpy()
    assert np.array_equal(run.row_hashes(region.features), whole)
    assert np.array_equal(run.row_hashes(region.features, threads=1), whole)
