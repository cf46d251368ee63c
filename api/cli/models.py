"""`indexloan train`, `indexloan evaluate` and `indexloan models ...`: the risk team's model workflow.

Mounted by api.cli.main: `app.command("train")(train_command)`, `app.command("evaluate")(evaluate_command)`,
`app.add_typer(models_app, name="models")`. Every failure is one message and a non-zero exit.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

models_app = typer.Typer(help="Model registry: list, register, promote (maker-checker), roll back, retire.",
                         no_args_is_help=True)
err = Console(stderr=True)
out = Console()

DatabaseOption = Annotated[
    str | None, typer.Option("--database-url", help="SQLAlchemy URL (default: INDEXLOAN_DATABASE_URL or SQLite)")
]
ModelsDirOption = Annotated[
    Path | None, typer.Option("--models-dir", help="registry artifact folder (default: <data_dir>/models)")
]
JsonOption = Annotated[bool, typer.Option("--json", help="print one JSON object")]
ByOption = Annotated[str, typer.Option("--by", help="who does this (recorded)")]
ReasonOption = Annotated[str, typer.Option("--reason", help="why (recorded)")]


def fail(message: str, code: int = 1) -> None:
    from rich.markup import escape

    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def clear_errors() -> Iterator[None]:
    """Known failures become one line on stderr; unexpected ones too (INDEXLOAN_DEBUG=1 shows the trace)."""
    from features.store.db import StoreUnavailableError
    from training.errors import TrainingError

    try:
        yield
    except typer.Exit:
        raise
    except (TrainingError, StoreUnavailableError) as error:
        fail(str(error))
    except Exception as error:  # noqa: BLE001 - the CLI never shows a traceback
        from features.settings import get_settings

        if get_settings().debug:
            raise
        fail(f"unexpected failure ({type(error).__name__}): {error}")


def _registry(database_url: str | None, models_dir: Path | None):  # type: ignore[no-untyped-def]
    from api.database import migrate
    from training.registry import Registry

    return Registry(migrate(database_url), models_dir)


def _print_json(data: Any) -> None:
    from training.pipeline import clean_json

    print(json.dumps(clean_json(data), ensure_ascii=False, allow_nan=False))


# ---------------------------------------------------------------------------------------------
# train


def _progress_reporter(stack: list[Any]) -> Callable[[str, int, int], None]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=err, transient=True)
    bar.start()
    stack.append(bar)
    tasks: dict[str, Any] = {}

    def report(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            for task_id in tasks.values():  # earlier stages are done (training may stop early)
                finished = max(bar.tasks[task_id].completed, 1)
                bar.update(task_id, completed=finished, total=finished)
            tasks[stage] = bar.add_task(stage, total=max(total, 1))
        bar.update(tasks[stage], completed=done, total=max(total, 1))

    return report


def train_command(
    out_dir: Annotated[Path, typer.Option("--out", help="directory to write the model, metrics.json, report.html")],
    from_store: Annotated[bool, typer.Option("--from-store", help="loans in the store + point-in-time features")]
    = False,
    as_of: Annotated[str | None, typer.Option("--as-of", help="with --from-store: train as of this date "
                                                                "(YYYY-MM-DD; loans with a closed 12-month window)")]
    = None,
    data: Annotated[Path | None, typer.Option("--data", help="a CSV or Parquet file instead of the store")] = None,
    target: Annotated[str | None, typer.Option("--target", help="with --data: the 0/1 outcome column")] = None,
    positive: Annotated[str | None, typer.Option("--positive", help="with --data: target value meaning default")]
    = None,
    date_col: Annotated[str | None, typer.Option("--date-col", help="with --data: date column for the "
                                                                      "out-of-time split")] = None,
    segment: Annotated[list[str] | None, typer.Option("--segment", help="with --data: column for per-segment "
                                                                          "metrics (repeatable)")] = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0, help="random seed (default from the config)")] = None,
    config_file: Annotated[Path | None, typer.Option("--config", help="model configuration YAML "
                                                                       "(default training/model.yaml)")] = None,
    operator: Annotated[str | None, typer.Option("--operator", help="who trains (default: $INDEXLOAN_OPERATOR "
                                                                      "or the login name)")] = None,
    force: Annotated[bool, typer.Option("--force", help="replace a model already in --out")] = False,
    engine: Annotated[str, typer.Option("--engine", help="local, or dask (LightGBM's Dask interface; a "
                                                         "LocalCluster on loopback unless --scheduler)")] = "local",
    scheduler: Annotated[str | None, typer.Option("--scheduler", help="with --engine dask: scheduler address")]
    = None,
    as_json: JsonOption = False,
    database_url: DatabaseOption = None,
) -> None:
    """Train a PD model: LightGBM with monotone constraints, calibrated, with an HTML evaluation report."""
    if engine not in ("local", "dask"):
        fail(f"--engine must be local or dask, got {engine!r}", 2)
    if scheduler is not None and engine != "dask":
        fail("--scheduler goes with --engine dask", 2)
    if from_store == (data is not None):
        fail("give exactly one of --from-store or --data FILE --target COL", 2)
    if data is not None and not target:
        fail("--data needs --target COL (the 0/1 outcome column)", 2)
    if from_store and (target or positive or date_col or segment):
        fail("--target, --positive, --date-col and --segment go with --data, not --from-store", 2)
    if as_of is not None and not from_store:
        fail("--as-of goes with --from-store", 2)
    day = None
    if as_of is not None:
        try:
            day = dt.date.fromisoformat(as_of)
        except ValueError:
            fail(f"--as-of must be a date YYYY-MM-DD, got {as_of!r}", 2)
    if out_dir.exists() and (out_dir / "metadata.json").exists() and not force:
        fail(f"{out_dir} already holds a model; choose another --out or pass --force", 2)
    if out_dir.exists() and not out_dir.is_dir():
        fail(f"--out {out_dir} is a file, not a directory", 2)
    stack: list[Any] = []
    staging = out_dir.parent / f".{out_dir.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with clear_errors():
            from training.config import load_config
            from training.datasets import from_file
            from training.datasets import from_store as store_dataset
            from training.pipeline import train_pipeline

            cfg = load_config(config_file).with_seed(seed)
            report = _progress_reporter(stack) if not as_json else None
            if report:
                report("loading data", 0, 1)
            if from_store:
                from api.database import migrate

                ds = store_dataset(migrate(database_url), day, cfg)
            else:
                ds = from_file(data, target, cfg, date_col, positive, tuple(segment or ()))  # type: ignore[arg-type]
            result = train_pipeline(ds, cfg, staging, operator, report, engine=engine, scheduler=scheduler)
            if stack:
                stack.pop().stop()
            if out_dir.exists():
                shutil.rmtree(out_dir)
            staging.rename(out_dir)
    finally:
        while stack:
            stack.pop().stop()
        shutil.rmtree(staging, ignore_errors=True)
    _train_summary(result.metadata, result.metrics, out_dir, as_json)


def _train_summary(meta: dict[str, Any], metrics: dict[str, Any], out_dir: Path, as_json: bool) -> None:
    from training.artifacts import model_id_from_digests, sha256_file

    digests = {**meta["artifacts"], "metadata.json": sha256_file(out_dir / "metadata.json")}
    model_id = model_id_from_digests(digests)
    if as_json:
        _print_json({"model_id": model_id, "out": str(out_dir), "metrics": {k: metrics[k] for k in
                                                                             ("train", "valid", "oot", "dev",
                                                                              "psi_dev_oot", "rows")},
                     "calibration": meta["calibration"]["method"], "trees": meta["num_trees"],
                     "split": meta["training"]["split"]})
        return
    table = Table(title=f"model {model_id} -> {out_dir}")
    for column in ("sample", "rows", "defaults", "AUC", "KS", "Brier"):
        table.add_column(column, justify="left" if column == "sample" else "right")
    for name in ("train", "valid", "oot"):
        s = metrics[name]
        label = {"oot": meta["training"]["split"]["kind"].replace("_", "-"), "valid": "validation"}.get(name, name)
        table.add_row(label, f"{s['rows']:,}", f"{s['defaults']:,}", f"{s['auc']:.4f}", f"{s['ks']:.4f}",
                      f"{s['brier']:.5f}")
    out.print(table)
    out.print(f"calibration: {meta['calibration']['method']}; trees: {meta['num_trees']}; "
              f"PSI dev vs out-of-sample: {metrics['psi_dev_oot']:.4f}; report: {out_dir / 'report.html'}")


# ---------------------------------------------------------------------------------------------
# evaluate


def _load_model(model: str, database_url: str | None, models_dir: Path | None):  # type: ignore[no-untyped-def]
    from training.serving import RiskModel

    path = Path(model)
    if path.is_dir():
        return RiskModel.from_dir(path)
    registry = _registry(database_url, models_dir)
    return registry.load(None if model == "champion" else model)


def evaluate_command(
    model: Annotated[str, typer.Option("--model", help="model directory, registered model id, or 'champion'")],
    data: Annotated[Path, typer.Option("--data", help="CSV or Parquet file with the model's features and outcomes")],
    target: Annotated[str, typer.Option("--target", help="the 0/1 outcome column")],
    positive: Annotated[str | None, typer.Option("--positive", help="target value meaning default")] = None,
    as_json: JsonOption = False,
    database_url: DatabaseOption = None,
    models_dir: ModelsDirOption = None,
) -> None:
    """Score a labelled file with a model: AUC, Gini, KS, Brier, PSI against development."""
    with clear_errors():
        from training.evaluate import evaluate_file

        result = evaluate_file(_load_model(model, database_url, models_dir), data, target, positive)
    if as_json:
        _print_json(result)
        return
    table = Table(title=f"model {result['model_version']} on {data}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in result.items():
        if key != "model_version":
            table.add_row(key, "–" if value is None else (f"{value:,}" if isinstance(value, int) else f"{value:.4f}"))
    out.print(table)


# ---------------------------------------------------------------------------------------------
# models


def _report(done: Any, as_json: bool, message: str) -> None:
    """A registry action's result: its JSON, or one line for a person."""
    if as_json:
        _print_json(done.to_json())
    else:
        out.print(message)


@models_app.command("list")
def models_list(
    stage: Annotated[str | None, typer.Option("--stage", help="only this stage")] = None,
    as_json: JsonOption = False,
    database_url: DatabaseOption = None,
    models_dir: ModelsDirOption = None,
) -> None:
    """Registered models with stage and out-of-time figures."""
    with clear_errors():
        records = _registry(database_url, models_dir).list(stage)
    if as_json:
        _print_json({"models": [r.summary() for r in records]})
        return
    table = Table(title="registered models")
    for column in ("id", "stage", "family", "created", "by", "rows", "window", "OOT AUC", "OOT KS", "OOT Brier"):
        table.add_column(column)
    for r in records:
        s = r.summary()
        table.add_row(r.id, r.stage, r.family, s["created_at"][:19], r.created_by, f"{r.rows:,}",
                      " – ".join(w or "" for w in s["time_window"]), _f(s["oot_auc"]), _f(s["oot_ks"]),
                      _f(s["oot_brier"], 5))
    out.print(table)


def _f(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


@models_app.command("show")
def models_show(
    model_id: Annotated[str, typer.Argument(help="model id (or a unique prefix), or 'champion'")],
    as_json: JsonOption = False,
    database_url: DatabaseOption = None,
    models_dir: ModelsDirOption = None,
) -> None:
    """One model: traceability fields, metrics, stage history and promotion requests."""
    with clear_errors():
        registry = _registry(database_url, models_dir)
        if model_id == "champion":
            champion = registry.champion()
            if champion is None:
                fail("there is no champion model")
            model_id = champion.id  # type: ignore[union-attr]
        record = registry.get(model_id)
        history = registry.transitions(record.id)
        requests = registry.requests(record.id)
    data = {**record.to_json(), "transitions": [t.to_json() for t in history],
            "promotion_requests": [r.to_json() for r in requests]}
    if as_json:
        _print_json(data)
        return
    table = Table(title=f"model {record.id} ({record.stage})", show_header=False)
    table.add_column("field")
    table.add_column("value")
    for key in ("stage", "family", "created_by", "created_at", "operator", "training_started_at",
                "training_finished_at", "rows", "time_window_start", "time_window_end", "data_checksum",
                "code_version", "calibration", "features", "artifact_dir"):
        table.add_row(key, str(data[key]))
    table.add_row("data_source", json.dumps(record.data_source, ensure_ascii=False))
    oot = record.metrics.get("oot", {})
    table.add_row("out-of-sample", f"AUC {_f(oot.get('auc'))}  KS {_f(oot.get('ks'))}  Brier {_f(oot.get('brier'), 5)}")
    out.print(table)
    hist = Table(title="stage history")
    for column in ("at", "action", "from", "to", "requested by", "approved by", "reason"):
        hist.add_column(column)
    for t in history:
        hist.add_row(t.at.isoformat()[:19], t.action, t.from_stage or "", t.to_stage, t.requested_by,
                     t.approved_by or "", t.reason)
    out.print(hist)
    pending = [r for r in requests if r.status == "pending"]
    for r in pending:
        out.print(f"pending promotion to {r.to_stage} requested by {r.requested_by} at "
                  f"{r.requested_at.isoformat()[:19]}: {r.reason}")


@models_app.command("register")
def models_register(
    directory: Annotated[Path, typer.Argument(help="a directory written by `indexloan train`")],
    by: ByOption,
    reason: Annotated[str, typer.Option("--reason", help="why (recorded)")] = "registered after training",
    as_json: JsonOption = False,
    database_url: DatabaseOption = None,
    models_dir: ModelsDirOption = None,
) -> None:
    """Verify a trained model's artifacts and register it as a candidate (content-addressed id)."""
    with clear_errors():
        record = _registry(database_url, models_dir).register(directory, by, reason)
    if as_json:
        _print_json(record.summary())
    else:
        out.print(f"registered model [bold]{record.id}[/bold] as candidate ({record.artifact_dir})")


@models_app.command("request-promotion")
def models_request_promotion(
    model_id: Annotated[str, typer.Argument(help="model id or unique prefix")],
    by: ByOption,
    reason: ReasonOption,
    to: Annotated[str, typer.Option("--to", help="challenger (immediate) or champion (needs approval)")]
    = "champion",
    as_json: JsonOption = False,
    database_url: DatabaseOption = None,
    models_dir: ModelsDirOption = None,
) -> None:
    """Ask for a promotion: to challenger at once, to champion pending a second person's approval."""
    with clear_errors():
        done = _registry(database_url, models_dir).request_promotion(model_id, to, by, reason)
    if as_json:
        _print_json(done.to_json())
    elif to == "champion":
        out.print(f"promotion of {done.model_id} to champion requested by {by}; waiting for approval by someone else")
    else:
        out.print(f"model {done.model_id} is now {to}")


@models_app.command("approve")
def models_approve(
    model_id: Annotated[str, typer.Argument(help="model id or unique prefix")],
    by: ByOption,
    reason: Annotated[str | None, typer.Option("--reason", help="approval note (default: the request's reason)")]
    = None,
    as_json: JsonOption = False,
    database_url: DatabaseOption = None,
    models_dir: ModelsDirOption = None,
) -> None:
    """Approve a pending promotion to champion (must be a different person than the requester)."""
    with clear_errors():
        done = _registry(database_url, models_dir).approve(model_id, by, reason)
    _report(done, as_json,
            f"model {done.model_id} is now champion (requested by {done.requested_by}, approved by {by})")


@models_app.command("reject")
def models_reject(
    model_id: Annotated[str, typer.Argument(help="model id or unique prefix")],
    by: ByOption,
    reason: ReasonOption,
    as_json: JsonOption = False,
    database_url: DatabaseOption = None,
    models_dir: ModelsDirOption = None,
) -> None:
    """Reject a pending promotion request."""
    with clear_errors():
        done = _registry(database_url, models_dir).reject(model_id, by, reason)
    _report(done, as_json, f"promotion request {done.id} for {done.model_id} rejected by {by}")


@models_app.command("rollback")
def models_rollback(
    by: ByOption,
    reason: ReasonOption,
    as_json: JsonOption = False,
    database_url: DatabaseOption = None,
    models_dir: ModelsDirOption = None,
) -> None:
    """Put the previous champion back (verified first) and retire the current one, in one step."""
    with clear_errors():
        done = _registry(database_url, models_dir).rollback(by, reason)
    _report(done, as_json, f"rolled back: model {done.model_id} is champion again ({by}: {reason})")


@models_app.command("retire")
def models_retire(
    model_id: Annotated[str, typer.Argument(help="model id or unique prefix")],
    by: ByOption,
    reason: ReasonOption,
    as_json: JsonOption = False,
    database_url: DatabaseOption = None,
    models_dir: ModelsDirOption = None,
) -> None:
    """Retire a candidate or challenger (the champion is replaced by promotion or rollback instead)."""
    with clear_errors():
        done = _registry(database_url, models_dir).retire(model_id, by, reason)
    _report(done, as_json, f"model {done.model_id} retired by {by}")


@models_app.command("verify")
def models_verify(
    model_id: Annotated[str, typer.Argument(help="model id or unique prefix, or 'champion'")],
    database_url: DatabaseOption = None,
    models_dir: ModelsDirOption = None,
) -> None:
    """Check a registered model's artifacts against the sha256 recorded at registration."""
    with clear_errors():
        registry = _registry(database_url, models_dir)
        model = registry.load(None if model_id == "champion" else model_id)
    out.print(f"model {model.model_version}: all artifacts match their recorded sha256")
