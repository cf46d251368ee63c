"""`indexloan monitor` (stability, data feeds, overrides, challenger: one report) and `indexloan models compare`."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from api.cli.models import clear_errors, fail

out = Console()


def _open(database_url: str | None):  # type: ignore[no-untyped-def]  # -> sa.Engine
    from api.database import migrate

    return migrate(database_url)  # StoreUnavailableError: one line on stderr (clear_errors)

SPEC_HELP = ("champion (its development sample), YYYY-MM-DD (the store's population then), quotes or "
             "quotes:FROM:TO, a pre-credit run's output file (.parquet, .csv) or job:<batch job id>")


def monitor_command(
    reference: Annotated[str, typer.Option("--reference", help=f"reference sample: {SPEC_HELP}")] = "champion",
    current: Annotated[str, typer.Option("--current", help=f"current sample: {SPEC_HELP}")] = "quotes",
    out_file: Annotated[Path | None, typer.Option("--out", help="write the HTML report here")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    fail_on_alert: Annotated[bool, typer.Option("--fail-on-alert", help="exit 3 when the report has an alert")]
    = False,
    database_url: Annotated[str | None, typer.Option("--database-url", help="SQLAlchemy URL of the store")] = None,
    models_dir: Annotated[Path | None, typer.Option("--models-dir", help="registry artifact folder")] = None,
) -> None:
    """PSI of every product index, the PD and every model input (current against reference), data-feed
    health per source, officers' override rates and the challenger in shadow; breaches listed as alerts."""
    from api.monitoring.config import ThresholdsError, load_thresholds
    from api.monitoring.report import build_report, render_html
    from api.monitoring.samples import SampleError
    from api.quoting.service import Quoter
    from api.quoting.versions import VersionsError

    with clear_errors():
        engine = _open(database_url)
        try:
            thresholds = load_thresholds()
            report = build_report(Quoter(engine, str(models_dir) if models_dir else None), reference, current,
                                  thresholds)
        except ThresholdsError as error:
            fail(str(error))
            return
        except SampleError as error:
            fail(f"--{error.field}: {error.message}", code=2)
            return
        except VersionsError as error:
            fail(f"--current/--reference: {error.message}", code=2)
            return
    if out_file is not None:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        staging = out_file.with_name(f".{out_file.name}.tmp")
        staging.write_text(render_html(report), encoding="utf-8")
        staging.replace(out_file)  # never a half-written report
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        out.print(f"reference: {report['reference']['label']}; current: {report['current']['label']}")
        out.print(f"{report['alert_count']} alert(s), {report['warning_count']} warning(s)")
        for alert in report["alerts"]:
            out.print(f"[{alert['level']}] {alert['en']}\n          {alert['zh']}", highlight=False, markup=False)
        if out_file is not None:
            out.print(f"report: {out_file}")
    if fail_on_alert and report["alert_count"]:
        raise typer.Exit(3)


def compare_command(
    since: Annotated[dt.datetime | None, typer.Option("--since", formats=["%Y-%m-%d"], help="first day of quotes "
                                                      "(default: settings.monitoring_quote_days ago)")] = None,
    until: Annotated[dt.datetime | None, typer.Option("--until", formats=["%Y-%m-%d"], help="last day (default "
                                                      "today)")] = None,
    database_url: Annotated[str | None, typer.Option("--database-url", help="SQLAlchemy URL of the store")] = None,
) -> None:
    """Challenger models in shadow against the champion over recent live quotes (JSON): PD deciles, rank
    correlation, PSI, and per product the decisions a promotion would change."""
    from api.monitoring import shadow
    from api.monitoring.config import ThresholdsError, load_thresholds
    from api.monitoring.samples import parse_spec

    window = parse_spec("quotes", "since")
    first = since.date() if since else window.since
    last = until.date() if until else window.until
    assert first is not None and last is not None
    if first > last:
        fail(f"--since {first} is after --until {last}", code=2)
    with clear_errors():
        engine = _open(database_url)
        try:
            result = shadow.compare(engine, first, last, load_thresholds())
        except ThresholdsError as error:
            fail(str(error))
            return
    typer.echo(json.dumps(result, ensure_ascii=False, indent=2))
