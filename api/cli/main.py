"""The `indexloan` command line: data, products, quotes (and, as they land, models and serving).

Heavy modules are imported inside commands so that `indexloan --help` stays fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Index-loan credit scoring service (指数贷信用评分服务).", no_args_is_help=True,
                  pretty_exceptions_enable=False)
store_app = typer.Typer(help="Inspect the government-data store.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
app.add_typer(store_app, name="store")
app.add_typer(db_app, name="db")

err = Console(stderr=True)
out = Console()

DatabaseOption = Annotated[
    str | None, typer.Option("--database-url", help="SQLAlchemy URL (default: INDEXLOAN_DATABASE_URL or SQLite)")
]


def fail(message: str, code: int = 1) -> None:
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def open_store(database_url: str | None):  # type: ignore[no-untyped-def]
    from api.database import StoreUnavailableError, migrate

    try:
        return migrate(database_url)
    except StoreUnavailableError as error:
        fail(str(error))


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseOption = None) -> None:
    """Create or upgrade the database schema to the latest version."""
    engine = open_store(database_url)
    out.print(f"database at {engine.url.render_as_string(hide_password=True)} is up to date")


@app.command("demo-data")
def demo_data(
    out_dir: Annotated[Path, typer.Option("--out", help="directory to write one file per source")],
    firms: Annotated[int, typer.Option(min=1, max=50_000_000, help="number of enterprises")] = 20_000,
    seed: Annotated[int, typer.Option(min=0, help="random seed (same seed, same region)")] = 7,
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv")] = "parquet",
) -> None:
    """Write a deterministic synthetic region (one file per government source)."""
    if fmt not in ("parquet", "csv"):
        fail(f"--format must be parquet or csv, got {fmt!r}", 2)
    from features.synthetic import generate_region, write_region

    with err.status(f"generating {firms:,} enterprises (seed {seed})..."):
        frames = generate_region(firms, seed)
        paths = write_region(frames, out_dir, fmt)
    table = Table(title=f"synthetic region: {firms:,} enterprises, seed {seed}")
    table.add_column("source")
    table.add_column("rows", justify="right")
    table.add_column("file")
    for name, path in paths.items():
        table.add_row(name, f"{len(frames[name]):,}", str(path))
    out.print(table)


@app.command("ingest")
def ingest(
    directory: Annotated[Path, typer.Argument(help="directory with one CSV or Parquet file per source")],
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    database_url: DatabaseOption = None,
    quarantine_dir: Annotated[Path | None, typer.Option(help="where to write rejected rows")] = None,
) -> None:
    """Validate and load government data files into the store (idempotent; bad rows quarantined)."""
    if not directory.is_dir():
        fail(f"{directory} is not a directory", 2)
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from features.ingest import find_source_files, ingest_directory
    from features.settings import get_settings
    from features.store.snapshot import refresh_snapshots

    if not find_source_files(directory)[0]:
        fail(f"no source files in {directory} (expected e.g. registry.csv, tax.parquet)", 2)
    settings = get_settings()
    engine = open_store(database_url)
    with Progress(TextColumn("{task.description:<16}"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,}"),
                  TimeRemainingColumn(), console=err, transient=as_json) as bar:
        tasks: dict[str, int] = {}

        def progress(source: str, done: int, total: int) -> None:
            if source not in tasks:
                tasks[source] = bar.add_task(source, total=total)
            bar.update(tasks[source], completed=done)

        report = ingest_directory(engine, directory, quarantine_dir or settings.resolved_quarantine_dir,
                                  settings.ingest_chunk_rows, progress=progress)
        # Even a partly failed run stored some files: the kept feature snapshots are extended now, not by
        # the next quote or batch run.
        snapshots = bar.add_task("feature snapshots", total=1)
        refreshed = refresh_snapshots(engine)
        bar.update(snapshots, completed=1)
    if refreshed and not as_json:
        err.print("feature snapshots extended: " + ", ".join(d.isoformat() for d in refreshed))
    if as_json:
        print(json.dumps(report.as_json(), ensure_ascii=False))
    else:
        table = Table(title=f"ingested {directory}")
        for column in ("source", "read", "accepted", "rejected", "already stored", "note"):
            table.add_column(column, justify="right" if column not in ("source", "note") else "left")
        for name, r in report.sources.items():
            note = r.error or ("file already ingested" if r.already_ingested else r.quarantine_file or "")
            table.add_row(name, f"{r.rows_read:,}", f"{r.rows_accepted:,}", f"{r.rows_rejected:,}",
                          f"{r.rows_already_stored:,}", note)
        out.print(table)
        for ignored in report.ignored_files:
            err.print(f"[yellow]ignored[/yellow] {ignored}: not named after a source")
    if not report.ok:
        raise typer.Exit(1)


@store_app.command("stats")
def store_stats(
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    database_url: DatabaseOption = None,
) -> None:
    """Row counts per source and the as-of dates present."""
    from features.store.stats import store_statistics

    stats = store_statistics(open_store(database_url))
    if as_json:
        print(json.dumps(stats, ensure_ascii=False))
        return
    table = Table(title="government-data store")
    for column in ("source", "rows", "enterprises", "as-of dates", "batches"):
        table.add_column(column)
    for name, s in stats["sources"].items():
        table.add_row(name, f"{s['rows']:,}", f"{s['enterprises']:,}", ", ".join(s["as_of_dates"]), str(s["batches"]))
    out.print(table)


keys_app = typer.Typer(help="API keys (stored hashed; shown once).", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="loan_officer | platform | risk_analyst | risk_approver | admin")],
    name: Annotated[str, typer.Option(help="who or what holds the key")],
    expires_in_days: Annotated[int | None, typer.Option(min=1, max=3650, help="the key stops working after "
                                                         "this many days (default: never)")] = None,
    database_url: DatabaseOption = None,
) -> None:
    """Create an API key and print it alone on stdout, once."""
    import datetime as dt

    from api.keys import MAX_KEY_NAME, Role, create_key
    from features.validation import text_problem

    try:
        parsed = Role(role)
    except ValueError:
        fail(f"unknown role {role!r}; choose one of: {', '.join(r.value for r in Role)}", 2)
    name = name.strip()
    if not name:
        fail("--name must not be empty", 2)
    problem = text_problem(name, MAX_KEY_NAME)
    if problem:
        fail(f"--name {problem}", 2)
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=expires_in_days) if expires_in_days else None
    print(create_key(open_store(database_url), parsed, name, expires_at=expires))


@keys_app.command("list")
def keys_list(
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    database_url: DatabaseOption = None,
) -> None:
    """Every key: id, name, role, prefix, created, expiry and revocation (never the key itself)."""
    from api.keys import list_keys

    with open_store(database_url).connect() as conn:
        keys = list_keys(conn)
    if as_json:
        print(json.dumps({"keys": keys}, ensure_ascii=False))
        return
    table = Table(title="API keys")
    for column in ("id", "name", "role", "prefix", "created", "expires", "revoked"):
        table.add_column(column)
    for k in keys:
        table.add_row(str(k["id"]), k["name"], k["role"], k["prefix"], k["created_at"][:19],
                      (k["expires_at"] or "never")[:19], (k["revoked_at"] or "")[:19])
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[int, typer.Argument(help="the key's id (`indexloan keys list`)")],
    reason: Annotated[str, typer.Option(help="why (recorded in the audit log)")],
    by: Annotated[str, typer.Option(help="who revokes it (recorded in the audit log)")] = "cli",
    database_url: DatabaseOption = None,
) -> None:
    """Revoke a key: refused at once by every worker of the service on this machine (within 30 s elsewhere)."""
    from api.http.limits import bump_key_epoch
    from api.keys import KeyOperationError, revoke_key

    if not reason.strip():
        fail("--reason must not be empty", 2)
    engine = open_store(database_url)
    try:
        revoked = revoke_key(engine, key_id, by.strip() or "cli", reason.strip())
    except KeyOperationError as error:
        fail(str(error))
    bump_key_epoch(engine.url.render_as_string(hide_password=False))
    out.print(f"revoked key {revoked['id']} ({revoked['name']}, {revoked['role']}) at {revoked['revoked_at']}",
              highlight=False)


@audit_app.command("verify")
def audit_verify(
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    database_url: DatabaseOption = None,
) -> None:
    """Verify the audit log's hash chain; exit 1 when it is broken."""
    from features.store.audit import verify

    with open_store(database_url).connect() as conn:
        result = verify(conn)
    if as_json:
        print(json.dumps(result.as_json(), ensure_ascii=False))
    elif result.ok:
        out.print(f"audit log intact: {result.rows:,} rows")
    else:
        for problem in result.problems:
            err.print(f"[red]broken:[/red] {problem}")
    if not result.ok:
        raise typer.Exit(1)


@app.command("demo-setup")
def demo_setup(database_url: DatabaseOption = None) -> None:
    """Train and promote a first model if there is no champion, and print one new API key per role."""
    from api.cli.demo import demo_keys, ensure_champion
    from features.settings import get_settings

    engine = open_store(database_url)
    with err.status("training and promoting the first model (if none)..."):
        model_id = ensure_champion(engine, get_settings().data_dir)
    out.print(f"champion model: {model_id}")
    for role, key in demo_keys(engine).items():
        out.print(f"{role.value:<14} {key}", highlight=False, soft_wrap=True)


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="bind address (loopback by default)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64)] = 1,
    database_url: DatabaseOption = None,
) -> None:
    """Serve the HTTP API and the loan officer's page."""
    import os
    import shutil
    import tempfile

    import uvicorn

    open_store(database_url)  # migrate once, before workers start
    if database_url:
        os.environ["INDEXLOAN_DATABASE_URL"] = database_url
    metrics_dir = None
    if workers > 1:  # workers add up their Prometheus metrics through files in a fresh directory
        metrics_dir = tempfile.mkdtemp(prefix="indexloan-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        # log level info: uvicorn's supervisor logs a worker's death ("Child process [pid] died") at info
        uvicorn.run("api.http.server:app", host=host, port=port, workers=workers, log_level="info", access_log=False)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _mount_subcommands() -> None:
    """Sub-commands that live beside their parts of the service."""
    from api.cli import batch as cli_batch
    from api.cli import models as cli_models
    from api.cli import monitor as cli_monitor
    from api.cli import products as cli_products
    from api.cli import whitelists as cli_whitelists

    app.add_typer(cli_products.products_app, name="products")
    app.command("quote")(cli_products.quote_command)
    app.command("train")(cli_models.train_command)
    app.command("evaluate")(cli_models.evaluate_command)
    app.add_typer(cli_models.models_app, name="models")
    app.add_typer(cli_batch.batch_app, name="batch")
    app.add_typer(cli_whitelists.whitelists_app, name="whitelists")
    app.command("monitor")(cli_monitor.monitor_command)
    cli_models.models_app.command("compare")(cli_monitor.compare_command)


_mount_subcommands()


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
