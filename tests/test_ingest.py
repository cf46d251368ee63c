"""Ingestion into a real database (SQLite always, PostgreSQL when reachable)."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from api.cli.main import app
from features.ingest import ingest_directory, ingest_file
from features.store.stats import store_statistics
from features.store.tables import batches, source_table
from tests.factories import credit_codes, valid_row, write_csv

CODES = credit_codes(6)


def _count(engine: sa.Engine, source: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(source_table(source))).scalar_one()


def _region(tmp_path):
    directory = tmp_path / "region"
    write_csv(
        directory, "registry", [valid_row("registry", c, d) for c in CODES[:4] for d in ("2024-12-31", "2025-12-31")]
    )
    write_csv(
        directory,
        "judicial",
        [valid_row("judicial", c, "2025-12-31", consent_ref=f"AUTH-{i}") for i, c in enumerate(CODES[:4])],
    )
    return directory


def test_ingest_loads_every_source_and_is_idempotent(store, tmp_path) -> None:
    directory = _region(tmp_path)
    report = ingest_directory(store, directory, tmp_path / "q")
    assert report.ok
    assert report.sources["registry"].rows_accepted == 8
    assert report.sources["judicial"].rows_accepted == 4
    assert _count(store, "registry") == 8

    again = ingest_directory(store, directory, tmp_path / "q")
    assert again.sources["registry"].already_ingested
    assert again.sources["registry"].rows_accepted == 0
    assert _count(store, "registry") == 8
    with store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(batches)).scalar_one() == 2


def test_same_rows_in_a_different_file_are_not_duplicated(store, tmp_path) -> None:
    first = write_csv(tmp_path / "a", "registry", [valid_row("registry", CODES[0], "2025-12-31")])
    ingest_file(store, first, "registry", tmp_path / "q")
    second = write_csv(
        tmp_path / "b",
        "registry",
        [valid_row("registry", CODES[0], "2025-12-31", name="renamed"), valid_row("registry", CODES[1], "2025-12-31")],
    )
    result = ingest_file(store, second, "registry", tmp_path / "q")
    assert (result.rows_accepted, result.rows_already_stored) == (1, 1)
    assert _count(store, "registry") == 2


def test_provenance_is_recorded_per_row(store, tmp_path) -> None:
    directory = _region(tmp_path)
    ingest_directory(store, directory, tmp_path / "q", operator="analyst-7")
    sha = hashlib.sha256((directory / "judicial.csv").read_bytes()).hexdigest()
    table = source_table("judicial")
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(
                table.c.credit_code,
                table.c.as_of,
                table.c.consent_ref,
                batches.c.source,
                batches.c.provider,
                batches.c.file_sha256,
                batches.c.operator,
                batches.c.file_name,
            )
            .join(batches, batches.c.id == table.c.batch_id)
            .order_by(table.c.consent_ref)
        ).all()
    assert len(rows) == 4
    for i, row in enumerate(rows):
        assert row.consent_ref == f"AUTH-{i}"
        assert row.source == "judicial" and row.provider == "courts"
        assert row.file_sha256 == sha and row.operator == "analyst-7" and row.file_name == "judicial.csv"
        assert row.as_of.isoformat() == "2025-12-31"


def test_corrupted_rows_are_quarantined_with_reasons(store, tmp_path) -> None:
    good = [valid_row("per_mu", c, "2025-12-31") for c in CODES[:2]]
    bad = [
        valid_row("per_mu", CODES[2][:-1] + ("0" if CODES[2][-1] != "0" else "1"), "2025-12-31"),  # check char
        valid_row("per_mu", CODES[3], "2025-12-31", land_area_mu=-5),
        valid_row("per_mu", CODES[4], "2025-12-31", per_mu_class="E"),
        valid_row("per_mu", CODES[5], "2025-12-31", tax_paid_cny="12,3x"),
        valid_row("per_mu", "NOT-A-CODE", "2025-13-45"),
    ]
    path = write_csv(tmp_path / "d", "per_mu", good + bad)
    result = ingest_file(store, path, "per_mu", tmp_path / "q")
    assert result.error is None
    assert (result.rows_read, result.rows_accepted, result.rows_rejected) == (7, 2, 5)
    assert _count(store, "per_mu") == 2
    quarantine = pd.read_csv(result.quarantine_file, dtype=str)
    reasons = dict(zip(quarantine["_row"].astype(int), quarantine["_reason"], strict=True))
    assert "check character" in reasons[3]
    assert "land_area_mu: must be >= 0.01" in reasons[4]
    assert "per_mu_class: must be one of" in reasons[5]
    assert "tax_paid_cny: cannot read float from '12,3x'" in reasons[6]
    assert "credit_code" in reasons[7] and "as_of: cannot read date" in reasons[7]
    # the quarantined row keeps the original text for correction and resubmission
    assert float(quarantine.loc[quarantine["_row"] == "4", "land_area_mu"].item()) == -5


def test_duplicates_across_chunks_are_rejected(store, tmp_path) -> None:
    rows = [valid_row("judicial", c, "2025-12-31") for c in CODES] + [valid_row("judicial", CODES[0], "2025-12-31")]
    path = write_csv(tmp_path / "d", "judicial", rows)
    result = ingest_file(store, path, "judicial", tmp_path / "q", chunk_rows=2)
    assert (result.rows_accepted, result.rows_rejected) == (6, 1)
    assert "duplicate" in pd.read_csv(result.quarantine_file)["_reason"].item()


def test_missing_required_column_rejects_file_and_stores_nothing(store, tmp_path) -> None:
    rows = [valid_row("judicial", c, "2025-12-31") for c in CODES]
    for row in rows:
        del row["dishonest_debtor"]
    path = write_csv(tmp_path / "d", "judicial", rows)
    result = ingest_file(store, path, "judicial", tmp_path / "q")
    assert result.error and "missing required columns: dishonest_debtor" in result.error
    assert _count(store, "judicial") == 0


def test_database_failure_mid_file_leaves_nothing_half_written(store, tmp_path) -> None:
    rows = [valid_row("judicial", c, "2025-12-31") for c in CODES] + [valid_row("judicial", "bad", "2025-12-31")]
    path = write_csv(tmp_path / "d", "judicial", rows)
    inserts = {"n": 0}

    # Fault injection on the real connection: the second chunk's insert fails inside the database call.
    def fail_second_chunk(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if "src_judicial" in statement and "INSERT" in statement.upper():
            inserts["n"] += 1
            if inserts["n"] == 2:
                raise sa.exc.OperationalError(statement, parameters, RuntimeError("disk I/O error (injected)"))

    sa.event.listen(store, "before_cursor_execute", fail_second_chunk)
    try:
        result = ingest_file(store, path, "judicial", tmp_path / "q", chunk_rows=3)
    finally:
        sa.event.remove(store, "before_cursor_execute", fail_second_chunk)
    assert result.error and "nothing stored" in result.error
    assert _count(store, "judicial") == 0
    with store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(batches)).scalar_one() == 0
    assert not list((tmp_path / "q").glob("*.csv"))


def test_store_stats_counts_rows_and_dates(store, tmp_path) -> None:
    ingest_directory(store, _region(tmp_path), tmp_path / "q")
    stats = store_statistics(store)["sources"]
    assert stats["registry"] == {"rows": 8, "enterprises": 4, "as_of_dates": ["2024-12-31", "2025-12-31"], "batches": 1}
    assert stats["tax"]["rows"] == 0


def test_cli_ingest_json_and_stats(tmp_path, store_url) -> None:
    directory = _region(tmp_path)
    runner = CliRunner()
    result = runner.invoke(
        app, ["ingest", str(directory), "--json", "--database-url", store_url, "--quarantine-dir", str(tmp_path / "q")]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["sources"]["registry"]["rows_accepted"] == 8
    assert payload["sources"]["judicial"]["rows_rejected"] == 0
    stats = runner.invoke(app, ["store", "stats", "--json", "--database-url", store_url])
    assert stats.exit_code == 0
    assert json.loads(stats.stdout)["sources"]["judicial"]["rows"] == 4


@pytest.mark.parametrize("args", [["ingest", "/nonexistent-dir"], ["demo-data", "--out", "x", "--format", "xml"]])
def test_cli_bad_input_is_a_clear_error(args, tmp_path) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "error" in result.output and "Traceback" not in result.output
