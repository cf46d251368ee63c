"""`indexloan batch precredit`: a whole-region pre-credit whitelist (every enterprise, every product).

Mounted by api.cli.main: `app.add_typer(batch_app, name="batch")`. Every failure is one message and a
non-zero exit; a finished run prints its summary and writes it beside the output.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from api.cli.models import DatabaseOption, ModelsDirOption, clear_errors, fail

if TYPE_CHECKING:  # the batch engine (pandas, pyarrow) loads only when a run starts
    from api.precredit.run import RunResult

batch_app = typer.Typer(help="Whole-region batch runs (全覆盖预授信 / 授信白名单).", no_args_is_help=True)
out = Console()


def _products(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [p.strip() for v in values for p in v.split(",") if p.strip()]


@batch_app.command("precredit")
def precredit_command(
    as_of: Annotated[str, typer.Option("--as-of", help="features and rates as of this date (YYYY-MM-DD)")],
    out_file: Annotated[Path, typer.Option("--out", help="output file: .parquet or .csv")],
    products: Annotated[list[str] | None, typer.Option("--products", help="product codes (comma-separated or "
                                                                          "repeated; default all)")] = None,
    reasons: Annotated[int, typer.Option("--reasons", help="top-K explanations per row (0 = none)")] = 0,
    engine: Annotated[str, typer.Option("--engine", help="local (threads) or dask")] = "local",
    scheduler: Annotated[str | None, typer.Option("--scheduler", help="Dask scheduler address (default: a "
                                                                      "LocalCluster on 127.0.0.1)")] = None,
    partitions: Annotated[int | None, typer.Option("--partitions", help="partitions (default: one per 100,000 "
                                                                        "enterprises)")] = None,
    workers: Annotated[int, typer.Option("--workers", help="threads (local) or LocalCluster processes (dask)")] = 2,
    features: Annotated[Path | None, typer.Option("--features", help="a features file or a directory of "
                                                                     "source files instead of the store")] = None,
    model_dir: Annotated[Path | None, typer.Option("--model", help="a model directory instead of the registry's "
                                                                   "champion")] = None,
    work_dir: Annotated[Path | None, typer.Option("--work-dir", help="partition files for resuming (default "
                                                                     "<out>.parts)")] = None,
    keep_parts: Annotated[bool, typer.Option("--keep-parts", help="keep the partition files after success")] = False,
    database_url: DatabaseOption = None,
    models_dir: ModelsDirOption = None,
) -> None:
    """Score every enterprise on every product; resumable by partition; prints and writes a summary."""
    from training.predict_only import import_lightgbm_to_predict

    import_lightgbm_to_predict()  # before the engine: this process scores, it never fits
    from api.precredit.run import BatchInputError, output_format

    try:
        day = dt.date.fromisoformat(as_of)
    except ValueError:
        fail(f"--as-of must be a date YYYY-MM-DD, got {as_of!r}", 2)
    checks = [(reasons < 0, "--reasons must be 0 or more"),
              (engine not in ("local", "dask"), f"--engine must be local or dask, got {engine!r}"),
              (partitions is not None and partitions < 1, "--partitions must be at least 1"),
              (workers < 1, "--workers must be at least 1"),
              (scheduler is not None and engine != "dask", "--scheduler goes with --engine dask"),
              (out_file.is_dir(), f"--out {out_file} is a directory")]
    for bad, message in checks:
        if bad:
            fail(message, 2)
    try:
        output_format(out_file)
    except BatchInputError as error:
        fail(str(error), 2)
    with clear_errors():
        try:
            result = _run(day, out_file, _products(products), reasons, engine, scheduler, partitions, workers,
                          features, model_dir, work_dir, keep_parts, database_url, models_dir)
        except BatchInputError as error:
            fail(str(error), error.exit_code)
    _print_summary(result.summary)


def _run(day: dt.date, out_file: Path, products: list[str] | None, reasons: int, engine: str,
         scheduler: str | None, partitions: int | None, workers: int, features_path: Path | None,
         model_dir: Path | None, work_dir: Path | None, keep_parts: bool, database_url: str | None,
         models_dir: Path | None) -> RunResult:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from api.database import migrate
    from api.precredit.inputs import build_context, load_model, read_feature_files, run_columns
    from api.precredit.run import RunOptions, run_precredit
    from api.workbench.store import ProductVersions
    from features.store.snapshot import population_features, snapshot_path

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("loading features", total=None)
        db = None
        source = None  # the snapshot file Dask workers read their rows from
        if features_path is not None:
            frame = read_feature_files(features_path, day)
            if model_dir is None:
                db = migrate(database_url)
        else:
            db = migrate(database_url)
        bar.update(task, description="loading the model and products")
        model = load_model(db, str(models_dir) if models_dir else None, model_dir)
        # the seed definitions and the versions approved in the store (seeds only without a store)
        known = ProductVersions(db).published()[1] if db is not None else None
        if features_path is None:
            bar.update(task, description="loading features")
            frame = population_features(day, db, run_columns(day, products, model, known))  # only what is read
            source = snapshot_path(db, day)
        ctx, describe, frame = build_context(frame, day, products, reasons, model, known)
        bar.update(task, description=f"scoring {len(frame):,} enterprises ({engine})")
        options = RunOptions(out_file, engine, scheduler, partitions, workers, work_dir, keep_parts)
        return run_precredit(ctx, frame, describe, options,
                             lambda done, total: bar.update(task, completed=done, total=total), source)


def _print_summary(s: dict[str, Any]) -> None:
    run = s["run"]
    table = Table(title=f"pre-credit as of {s['versions']['as_of']}: {s['enterprises']:,} enterprises -> "
                        f"{s['output']['path']}")
    for column in ("product", "eligible", "share", "grades (eligible/all)", "total limit (CNY)", "rate p10/p50/p90"):
        table.add_column(column, justify="left" if column in ("product", "grades (eligible/all)") else "right")
    for code, p in s["products"].items():
        grades = " ".join(f"{g}:{c['eligible']:,}/{c['enterprises']:,}" for g, c in p["grades"].items())
        r = p["rates"]
        rates = f"{r['p10_pct']:.2f}/{r['p50_pct']:.2f}/{r['p90_pct']:.2f}%" if r["offers"] else "-"
        table.add_row(code, f"{p['eligible']:,}", f"{p['eligible_share']:.1%}", grades, f"{p['total_limit_cny']:,}",
                      rates)
    out.print(table)
    out.print(f"model {s['versions']['model_version'] or '(none: no PD)'}; reasons per row: {s['reasons']}; "
              f"{run['partitions']} partitions ({run['computed_partitions']} computed, {run['reused_partitions']} "
              f"reused) on {run['engine']} in {run['seconds']:.1f} s; summary written to "
              f"{Path(s['output']['path']).with_name(Path(s['output']['path']).stem + '.summary.json')}",
              highlight=False)


@batch_app.command("worker")
def worker_command(
    database_url: DatabaseOption = None,
    models_dir: ModelsDirOption = None,
    batch_dir: Annotated[Path | None, typer.Option("--batch-dir", help="where job files go (default: "
                                                                      "INDEXLOAN_BATCH_DIR)")] = None,
    exit_when_idle: Annotated[float | None, typer.Option("--exit-when-idle", help="exit after this many seconds "
                                                                                  "without a job")] = None,
    until_stdin_closes: Annotated[bool, typer.Option("--until-stdin-closes", help="stop when standard input "
                                                     "closes (how the service stops the worker it started)")] = False,
) -> None:
    """Run API batch jobs (POST /v1/batch/precredit) in this process, outside the ones serving requests.

    Claims queued jobs with a lease, at most INDEXLOAN_BATCH_MAX_RUNNING at once over every worker of the
    store; Ctrl-C (or SIGTERM) puts the jobs in progress back in the queue (they resume by partition)."""
    import os
    import signal
    import sys
    import threading

    from api.database import migrate
    from api.precredit.jobs import Worker
    from features.settings import get_settings

    with clear_errors():
        engine = migrate(database_url)
    os.nice(get_settings().batch_worker_nice)  # quotes first: the run takes the cores they leave
    worker = Worker(engine, str(models_dir) if models_dir else None, batch_dir)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    if until_stdin_closes:
        def watch() -> None:
            while sys.stdin.buffer.read(4096):
                pass
            worker.stop()  # the service that started this process stopped (or died)

        threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    Console(stderr=True).print(f"batch worker {worker.name}: running jobs from {engine.url.render_as_string()}",
                               highlight=False)
    try:
        worker.run(exit_when_idle)
    except KeyboardInterrupt:
        worker.stop()


@batch_app.command("cancel")
def cancel_command(
    job_id: Annotated[str, typer.Argument(help="the job's id")],
    by: Annotated[str, typer.Option("--by", help="who cancels (recorded)")],
    database_url: DatabaseOption = None,
) -> None:
    """Cancel a batch job: a queued one at once, a running one after its partition in progress; nothing of
    its output is kept."""
    from api.database import migrate
    from api.precredit.jobs import JobStateError, JobStore

    with clear_errors():
        store = JobStore(migrate(database_url))
        try:
            row = store.cancel(job_id, by)
        except KeyError:
            fail(f"no batch job {job_id}")
        except JobStateError as error:
            fail(str(error))
    state = row.status if row.status == "cancelled" else "cancelling (after the partition in progress)"
    out.print(f"job {job_id}: {state}", highlight=False)


@batch_app.command("jobs")
def jobs_command(
    database_url: DatabaseOption = None,
    active: Annotated[bool, typer.Option("--active", help="only queued and running jobs")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="at most this many, newest first")] = 50,
) -> None:
    """API batch jobs with their status, progress and who asked."""
    import sqlalchemy as sa

    from api.database import migrate
    from api.tables import batch_jobs

    with clear_errors():
        engine = migrate(database_url)
        query = sa.select(batch_jobs).order_by(batch_jobs.c.created_at.desc()).limit(limit)
        if active:
            query = query.where(batch_jobs.c.status.in_(("queued", "running")))
        with engine.connect() as conn:
            rows = conn.execute(query).all()
    table = Table(title="batch jobs")
    for column in ("job", "status", "by", "created (UTC)", "partitions", "retries", "error"):
        table.add_column(column)
    for r in rows:
        status = r.status + (" (cancelling)" if r.status == "running" and r.cancel_requested_at else "")
        table.add_row(r.job_id, status, r.requested_by, f"{r.created_at:%Y-%m-%d %H:%M:%S}",
                      f"{r.partitions_done}/{r.partitions_total or '?'}", str(r.retries), (r.error or "")[:60])
    out.print(table)
