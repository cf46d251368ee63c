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
    from api.precredit.inputs import build_context, load_model, read_feature_files
    from api.precredit.run import RunOptions, run_precredit
    from api.workbench.store import ProductVersions
    from features.store.load import load_features

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("loading features", total=None)
        db = None
        if features_path is not None:
            frame = read_feature_files(features_path, day)
            if model_dir is None:
                db = migrate(database_url)
        else:
            db = migrate(database_url)
            frame = load_features(None, day, engine=db)
        bar.update(task, description="loading the model and products")
        model = load_model(db, str(models_dir) if models_dir else None, model_dir)
        # the seed definitions and the versions approved in the store (seeds only without a store)
        known = ProductVersions(db).published()[1] if db is not None else None
        ctx, describe, frame = build_context(frame, day, products, reasons, model, known)
        bar.update(task, description=f"scoring {len(frame):,} enterprises ({engine})")
        options = RunOptions(out_file, engine, scheduler, partitions, workers, work_dir, keep_parts)
        return run_precredit(ctx, frame, describe, options,
                             lambda done, total: bar.update(task, completed=done, total=total))


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
