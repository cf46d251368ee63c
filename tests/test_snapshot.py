"""Feature snapshots (`features.store.snapshot`): whatever the snapshot's state, a date's population is the
frame a full assembly from the source tables gives, bit for bit; new batches extend it, anything else
rebuilds it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from features.ingest import ingest_directory, ingest_file
from features.store.load import load_features
from features.store.snapshot import population_features, refresh_snapshots, snapshot_dir, snapshot_path
from features.store.tables import source_table
from features.synthetic import generate_region, write_region
from tests.conftest import settings_env

AS_OF = dt.date(2025, 12, 31)
EARLIER = dt.date(2025, 6, 30)


def _same(left: pd.DataFrame, right: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(left, right, check_exact=True)
    assert list(left.dtypes) == list(right.dtypes)


@pytest.fixture
def region(tmp_path: Path) -> dict[str, pd.DataFrame]:
    return generate_region(400, seed=3, end_date=AS_OF)


def _ingest(engine: sa.Engine, frames: dict[str, pd.DataFrame], directory: Path) -> None:
    write_region(frames, directory)
    ingest_directory(engine, directory, directory / "quarantine")


def test_first_read_builds_then_reads_the_same_frame(store: sa.Engine, region, tmp_path: Path) -> None:
    _ingest(store, region, tmp_path / "region")
    full = load_features(None, AS_OF, engine=store)
    first = population_features(AS_OF, store)
    path = snapshot_path(store, AS_OF)
    assert path.exists()
    second = population_features(AS_OF, store)  # from the file
    _same(first, full)
    _same(second, full)
    _same(population_features(EARLIER, store), load_features(None, EARLIER, engine=store))


def test_a_new_batch_extends_the_snapshot_to_what_a_full_assembly_gives(store: sa.Engine, region,
                                                                       tmp_path: Path) -> None:
    # The first batch holds the older half of each source's rows; the second the rest, some of it for
    # enterprises the snapshot has never seen.
    older = {name: frame.iloc[: len(frame) // 2] for name, frame in region.items()}
    newer = {name: frame.iloc[len(frame) // 2:] for name, frame in region.items()}
    _ingest(store, older, tmp_path / "first")
    before = population_features(AS_OF, store)
    _same(before, load_features(None, AS_OF, engine=store))
    _ingest(store, newer, tmp_path / "second")
    assert refresh_snapshots(store) == [AS_OF]  # ingestion's refresh extends the kept date
    extended = pd.read_parquet(snapshot_path(store, AS_OF))
    assert len(extended) >= len(before)
    _same(population_features(AS_OF, store), load_features(None, AS_OF, engine=store))


def test_rows_removed_behind_its_back_rebuild_the_snapshot(store: sa.Engine, region, tmp_path: Path) -> None:
    _ingest(store, region, tmp_path / "region")
    population_features(AS_OF, store)
    table = source_table("tax")
    with store.begin() as conn:
        victim = conn.execute(sa.select(table.c.credit_code).limit(1)).scalar_one()
        conn.execute(table.delete().where(table.c.credit_code == victim))
    after = population_features(AS_OF, store)
    _same(after, load_features(None, AS_OF, engine=store))
    assert not bool(after.loc[victim, "has_tax"])


def test_a_damaged_file_is_rebuilt_and_a_read_only_folder_still_answers(store: sa.Engine, region,
                                                                       tmp_path: Path) -> None:
    _ingest(store, region, tmp_path / "region")
    full = load_features(None, AS_OF, engine=store)
    population_features(AS_OF, store)
    path = snapshot_path(store, AS_OF)
    path.write_bytes(b"not parquet")
    _same(population_features(AS_OF, store), full)
    with settings_env(feature_snapshot_dir=str(tmp_path / "missing" / "x")):
        (tmp_path / "missing").mkdir()
        (tmp_path / "missing").chmod(0o500)
        try:
            _same(population_features(AS_OF, store), full)
        finally:
            (tmp_path / "missing").chmod(0o700)


def test_snapshots_off_reads_the_tables(store: sa.Engine, region, tmp_path: Path) -> None:
    _ingest(store, region, tmp_path / "region")
    with settings_env(feature_snapshots="false"):
        assert snapshot_dir(store) is None
        _same(population_features(AS_OF, store), load_features(None, AS_OF, engine=store))


def test_a_file_ingested_for_one_firm_changes_only_that_firm(store: sa.Engine, region, tmp_path: Path) -> None:
    from tests.factories import valid_row, write_csv

    _ingest(store, region, tmp_path / "region")
    before = population_features(AS_OF, store)
    firm = before.index[5]
    csv = write_csv(tmp_path / "one", "two_healthy", [valid_row("two_healthy", firm, AS_OF.isoformat())])
    ingest_file(store, csv, "two_healthy", tmp_path / "quarantine")
    after = population_features(AS_OF, store)
    _same(after, load_features(None, AS_OF, engine=store))
    others = before.index.drop(firm)
    _same(after.loc[others], before.loc[others])


def test_only_the_columns_asked_for_are_read_and_they_equal_the_full_frames(store: sa.Engine, region,
                                                                           tmp_path: Path) -> None:
    _ingest(store, region, tmp_path / "region")
    full = population_features(AS_OF, store)  # builds the file
    wanted = [full.columns[5], "no_such_column", full.columns[0], full.columns[-1]]
    narrow = population_features(AS_OF, store, wanted)  # from the file, three columns decoded
    _same(narrow, full[[full.columns[0], full.columns[5], full.columns[-1]]])
    snapshot_path(store, AS_OF).unlink()
    _same(population_features(AS_OF, store, wanted), narrow)  # rebuilt from the tables: the same columns


def test_row_groups_are_the_batch_runs_default_partitions(store: sa.Engine, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A Dask worker reads its partition's row group and nothing else: the file's row groups are cut where a
    run's default partitions are (`group_bounds`), whatever the row count."""
    import pyarrow.parquet as pq

    from api.precredit.run import partition_bounds, partition_tasks, row_hashes
    from features.store import snapshot

    monkeypatch.setattr(snapshot, "ROW_GROUP_ROWS", 150)  # 400 firms -> 3 groups (not a multiple: 133/134/133)
    _ingest(store, generate_region(400, seed=3, end_date=AS_OF), tmp_path / "region")
    frame = population_features(AS_OF, store)
    path = snapshot_path(store, AS_OF)
    meta = pq.ParquetFile(path).metadata
    bounds = partition_bounds(len(frame), None)
    assert len(bounds) == meta.num_row_groups == 3
    assert [meta.row_group(g).num_rows for g in range(meta.num_row_groups)] == [b - a for a, b in bounds]
    tasks = partition_tasks(path, bounds, list(range(len(bounds))), tmp_path / "work", row_hashes(frame))
    assert [(t.row_groups, t.skip, t.rows) for t in tasks] == [((i,), 0, b - a) for i, (a, b) in enumerate(bounds)]
