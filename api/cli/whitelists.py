"""`indexloan whitelists ...`: propose a finished pre-credit run as a whitelist, publish or reject it (never the
proposer), list and show whitelists with their counts per product and grade, read the change feed, export a file.

Mounted by api.cli.main: `app.add_typer(whitelists_app, name="whitelists")`. Every failure is one message and
a non-zero exit (2 for bad input).
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from api.cli.models import ByOption, DatabaseOption, JsonOption, clear_errors, fail

whitelists_app = typer.Typer(help="Pre-credit whitelists (预授信白名单): propose, publish (maker-checker), pull.",
                             no_args_is_help=True)
out = Console()


def _engine(database_url: str | None):  # type: ignore[no-untyped-def]
    from api.database import migrate

    return migrate(database_url)


def _products(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [p.strip() for v in values for p in v.split(",") if p.strip()]


def _run(action):  # type: ignore[no-untyped-def]
    """Call `action()`, turning a refused operation into one line on stderr and an exit code."""
    from api.precredit.whitelists import WhitelistError

    with clear_errors():
        try:
            return action()
        except WhitelistError as error:
            fail(error.message, 2 if error.status == 422 else 1)


def _print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, default=str))


def _show(record: dict[str, Any]) -> None:
    out.print(f"whitelist {record['whitelist_id']}: [bold]{record['status']}[/bold] as of {record['as_of']}"
              + (f", publication {record['publication_no']}" if record["publication_no"] else "")
              + f"; proposed by {record['proposed_by']} at {record['proposed_at']}"
              + (f"; {record['status']} by {record['decided_by']} at {record['decided_at']}"
                 if record["decided_by"] else ""), highlight=False)
    if record.get("decision_note"):
        out.print(f"note: {record['decision_note']}", highlight=False)
    table = Table()
    for column in ("product", "version", "rows", "total limit (CNY)", "rows per grade", "vs whitelist",
                   "entered", "left", "changed", "per grade: +entered -left ~changed"):
        table.add_column(column, justify="right" if column in ("rows", "total limit (CNY)", "entered", "left",
                                                              "changed") else "left")
    for code, p in record["products"].items():
        grades = " ".join(f"{g}:{c['rows']:,}" for g, c in p.get("grades", {}).items())
        ch = p.get("changes") or {}
        by_grade = " ".join(f"{g}: +{c.get('entered', 0)} -{c.get('left', 0)} ~{c.get('changed', 0)}"
                            for g, c in ch.get("by_grade", {}).items())
        table.add_row(code, p["product_version"], f"{p['rows']:,}", f"{p.get('limit_cny', 0):,}", grades,
                      str(ch.get("base_whitelist_id") or "-"), f"{ch.get('entered', 0):,}", f"{ch.get('left', 0):,}",
                      f"{ch.get('changed', 0):,}", by_grade)
    out.print(table)


@whitelists_app.command("propose")
def propose_command(
    by: ByOption,
    job: Annotated[str | None, typer.Option("--job", help="a pre-credit batch job that has succeeded")] = None,
    run: Annotated[Path | None, typer.Option("--run", help="or a run file written by `indexloan batch precredit "
                                                           "--out FILE` (its .summary.json beside it)")] = None,
    products: Annotated[list[str] | None, typer.Option("--products", help="products (comma-separated or repeated; "
                                                                          "default every product of the run)")] = None,
    note: Annotated[str | None, typer.Option("--note", help="a note for the approver")] = None,
    as_json: JsonOption = False,
    database_url: DatabaseOption = None,
) -> None:
    """Propose a finished pre-credit run as the whitelist of its products for its as-of date."""
    if (job is None) == (run is None):
        fail("give either --job JOB_ID or --run FILE", 2)
    from api.precredit import whitelists as wl

    def action():  # type: ignore[no-untyped-def]
        engine = _engine(database_url)
        source = wl.job_source(engine, job) if job is not None else wl.file_source(run)  # type: ignore[arg-type]
        return wl.propose(engine, source, _products(products), by, note)

    with contextlib.nullcontext() if as_json else out.status("importing the run's eligible rows..."):
        record = _run(action).to_json()
    if as_json:
        _print_json(record)
    else:
        _show(record)
        out.print(f"publish with: indexloan whitelists publish {record['whitelist_id']} --by <another approver>",
                  highlight=False)


@whitelists_app.command("publish")
def publish_command(
    whitelist_id: Annotated[int, typer.Argument(help="the proposed whitelist", min=1, max=2**31 - 1)],
    by: ByOption,
    note: Annotated[str | None, typer.Option("--note", help="approval note")] = None,
    files: Annotated[bool, typer.Option("--files/--no-files", help="write the download files now (else the "
                                                                   "service writes each on its first request)")] = True,
    as_json: JsonOption = False,
    database_url: DatabaseOption = None,
) -> None:
    """Publish a proposed whitelist; the proposer cannot (maker-checker)."""
    from api.precredit import whitelists as wl

    def action():  # type: ignore[no-untyped-def]
        engine = _engine(database_url)
        record = wl.publish(engine, whitelist_id, by, note)
        if files:
            for product in record.products:
                for fmt in ("parquet", "csv"):
                    wl.file_for(engine, wl.published(engine, product, record.id), fmt)
        return record

    record = _run(action).to_json()
    _print_json(record) if as_json else _show(record)


@whitelists_app.command("reject")
def reject_command(
    whitelist_id: Annotated[int, typer.Argument(help="the proposed whitelist", min=1, max=2**31 - 1)],
    by: ByOption,
    reason: Annotated[str, typer.Option("--reason", help="why (recorded)")],
    as_json: JsonOption = False,
    database_url: DatabaseOption = None,
) -> None:
    """Reject a proposed whitelist (its rows are dropped; the record stays)."""
    from api.precredit import whitelists as wl

    record = _run(lambda: wl.reject(_engine(database_url), whitelist_id, by, reason)).to_json()
    _print_json(record) if as_json else _show(record)


@whitelists_app.command("list")
def list_command(
    status: Annotated[str | None, typer.Option("--status", help="importing | proposed | published | rejected")] = None,
    product: Annotated[str | None, typer.Option("--product", help="only whitelists of this product")] = None,
    as_json: JsonOption = False,
    database_url: DatabaseOption = None,
) -> None:
    """Whitelists, newest first; the current one of each product is marked."""
    from api.precredit import whitelists as wl

    if status is not None and status not in wl.STATUSES:
        fail(f"--status must be one of {', '.join(wl.STATUSES)}, got {status!r}", 2)
    records = _run(lambda: [r.to_json() for r in wl.list_all(_engine(database_url), status, product)])
    if as_json:
        _print_json(records)
        return
    table = Table(title="whitelists")
    for column in ("id", "status", "as of", "products (rows)", "proposed by", "decided by", "publication"):
        table.add_column(column)
    for r in records:
        products = ", ".join(f"{p} ({v['rows']:,}{'' if v['superseded_by'] is None else ', superseded'})"
                             for p, v in r["products"].items())
        table.add_row(str(r["whitelist_id"]), r["status"], r["as_of"], products, r["proposed_by"],
                      r["decided_by"] or "-", str(r["publication_no"] or "-"))
    out.print(table)


@whitelists_app.command("show")
def show_command(
    whitelist_id: Annotated[int, typer.Argument(help="a whitelist", min=1, max=2**31 - 1)],
    as_json: JsonOption = False,
    database_url: DatabaseOption = None,
) -> None:
    """A whitelist: who proposed and decided, rows and limits per product and grade, its change counts."""
    from api.precredit import whitelists as wl

    record = _run(lambda: wl.get(_engine(database_url), whitelist_id)).to_json()
    _print_json(record) if as_json else _show(record)


@whitelists_app.command("changes")
def changes_command(
    product: Annotated[str, typer.Option("--product", help="the product whose change feed to read")],
    cursor: Annotated[str | None, typer.Option("--cursor", help="where the last pull stopped (default: from the "
                                                                "product's first publication)")] = None,
    limit: Annotated[int, typer.Option("--limit", help="changes at most", min=1, max=10_000)] = 1000,
    as_json: JsonOption = False,
    database_url: DatabaseOption = None,
) -> None:
    """The product's changes after a cursor (entered, left, changed) and the cursor to continue from."""
    from api.precredit import whitelists as wl

    page = _run(lambda: wl.changes_page(_engine(database_url), product, cursor, limit))
    if as_json:
        _print_json({"product": product, "items": page.items, "next_cursor": page.next_cursor, "more": page.more})
        return
    table = Table(title=f"{product}: {len(page.items)} changes" + (" (more)" if page.more else ""))
    for column in ("publication", "credit code", "kind", "changed", "grade", "limit (CNY)", "rate %"):
        table.add_column(column)
    for item in page.items:
        row = item["row"] or item["previous"] or {}

        def was_now(field: str, row: dict[str, Any] = row, item: dict[str, Any] = item) -> str:
            before, now = (item["previous"] or {}).get(field), (item["row"] or {}).get(field)
            return f"{before} -> {now}" if item["kind"] == "changed" and before != now else str(row.get(field, "-"))

        table.add_row(str(item["publication_no"]), item["credit_code"], item["kind"], ",".join(item["changed"]),
                      was_now("grade"), was_now("limit_cny"), was_now("rate_pct"))
    out.print(table)
    out.print(f"next cursor: {page.next_cursor}", highlight=False, soft_wrap=True)


@whitelists_app.command("export")
def export_command(
    product: Annotated[str, typer.Option("--product", help="the product")],
    out_file: Annotated[Path, typer.Option("--out", help="a .parquet or .csv file")],
    whitelist_id: Annotated[int | None, typer.Option("--whitelist", help="a published whitelist (default: the "
                                                                         "current one)", min=1)] = None,
    database_url: DatabaseOption = None,
) -> None:
    """Write a published whitelist of a product as the platform receives it (Parquet or CSV)."""
    fmt = out_file.suffix.lower().lstrip(".")
    if fmt not in ("parquet", "csv"):
        fail(f"--out must end in .parquet or .csv, got {out_file.name!r}", 2)
    from api.precredit import whitelists as wl

    def action():  # type: ignore[no-untyped-def]
        engine = _engine(database_url)
        pub = wl.published(engine, product, whitelist_id)
        return pub, wl.file_for(engine, pub, fmt)

    pub, (path, sha, size) = _run(action)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, out_file)
    out.print(f"{product} whitelist {pub.view.whitelist_id} (as of {pub.as_of.isoformat()}, {pub.rows:,} rows) -> "
              f"{out_file} ({size:,} bytes, sha256 {sha})", highlight=False, soft_wrap=True)
