"""CLI for products and quotes: `indexloan products validate|show` and `indexloan quote`.

Mounted by api.cli.main: `app.add_typer(products_app, name="products")` and `app.command("quote")(quote_command)`.
Exit codes: 0 ok, 1 unknown enterprise / product / store problem / invalid file, 2 invalid credit code.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

products_app = typer.Typer(help="Product definitions (产品配置): validate and show.", no_args_is_help=True)
err = Console(stderr=True)
out = Console()


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True, markup=True)
    raise typer.Exit(code)


@products_app.command("validate")
def validate(files: Annotated[list[Path], typer.Argument(help="product definition file(s) (YAML)")]) -> None:
    """Check product files; every problem is printed with its path inside the file."""
    from products.catalogue import DefinitionError, load_definition

    bad = 0
    for path in files:
        try:
            d = load_definition(path)
        except DefinitionError as e:
            bad += 1
            err.print(f"[red]invalid[/red] {e.file}: {len(e.issues)} problem(s)", highlight=False)
            for where, msg in e.issues:
                err.print(f"  {where or '<file>'}: {msg}", highlight=False, markup=False)
            continue
        n_ind = sum(1 for _ in d.indicators())
        out.print(f"[green]ok[/green] {path}: {d.code} v{d.version} ({n_ind} indicators, "
                  f"{len(d.dimensions)} dimensions, {len(d.gates)} gates)", highlight=False)
    if bad:
        raise typer.Exit(1)


def _catalogue() -> dict[str, Any]:
    from products.catalogue import DefinitionError, load_catalogue

    try:
        return load_catalogue()
    except DefinitionError as e:
        _fail(str(e))
        raise  # unreachable


@products_app.command("show")
def show(
    code: Annotated[str, typer.Argument(help="product code, e.g. tax_credit")],
    as_json: Annotated[bool, typer.Option("--json", help="print the whole definition as JSON")] = False,
) -> None:
    """Show a product: gates, dimensions and indicators, grades, limit and rate rules."""
    catalogue = _catalogue()
    d = catalogue.get(code)
    if d is None:
        _fail(f"unknown product {code!r}; known: {', '.join(catalogue)}")
        return
    if as_json:
        print(json.dumps(d.model_dump(mode="json"), ensure_ascii=False, indent=2))
        return
    out.print(f"[bold]{d.name.zh}[/bold] {d.name.en}  ({d.code} v{d.version}, effective {d.effective_date})")
    if d.description:
        out.print(d.description.zh)
        out.print(d.description.en)
    out.print(f"scale {d.scale:g}, max PD {d.max_pd:.1%}, quote valid {d.quote_valid_days} days, "
              f"sources: {', '.join(f'{s} ({p})' for s, p in d.sources.items())}")
    gates = Table(title="Hard gates 准入条件")
    for col in ("gate", "rule", "reason"):
        gates.add_column(col)
    for g in d.gates:
        join = " AND " if g.all_of is not None else " OR "
        rule = join.join(f"{c.field} {c.op}{'' if c.value is None else ' ' + str(c.value)}"
                         f" (missing: {c.on_missing})" for c in g.conditions)
        gates.add_row(g.code, rule, g.reason)
    out.print(gates)
    table = Table(title="Scorecard 评分卡")
    for col in ("dimension", "indicator", "field", "weight", "scoring", "if missing"):
        table.add_column(col)
    for dim_code, dim in d.dimensions.items():
        for ind in dim.indicators:
            s = ind.scoring.model_dump(exclude={"kind"})
            missing = ind.on_missing + (f" {ind.missing_score:g}" if ind.missing_score is not None else "")
            table.add_row(f"{dim.name.zh} {dim_code} ({dim.weight:g})", f"{ind.name.zh} {ind.code}", ind.field,
                          f"{ind.weight:g}", f"{ind.scoring.kind} {s}", missing)
    out.print(table)
    grades = ", ".join(f"{g.grade} >= {g.min_index:g}" for g in d.grading.grades)
    out.print(f"grading ({d.grading.method}): {grades}; eligible {'/'.join(d.grading.eligible)}"
              + (f"; official class from {d.grading.official_field}" if d.grading.official_field else ""))
    if d.segments:
        out.print(f"segments by {d.segments.field}: edges {d.segments.edges} -> {d.segments.labels}")
    lim = d.limit
    out.print(f"limit: max {lim.max_cny:,.0f} CNY; caps by grade {lim.cap_by_grade}; caps by segment "
              f"{lim.cap_by_segment}; bases {[f'{b.share:g} x {b.fields}' for b in lim.bases]}; "
              f"coefficients {[c.code for c in lim.coefficients]} (cap {lim.coefficient_cap:g}); "
              f"rounded down to {lim.round_down_to:,.0f}")
    r = d.rate
    out.print(f"rate: {r.reference} + spreads {r.spread_by_grade or r.spread_by_cell}; floor {r.floor}% "
              f"ceiling {r.ceiling}%")
    fee = d.guarantee.fee_pct if d.guarantee.fee_pct is not None else d.guarantee.fee_pct_by_grade
    out.print(f"guarantee fee: {fee}; subsidy: "
              f"{d.subsidy.share_of_interest:.0%} of interest" if d.subsidy else f"guarantee fee: {fee}")
    out.print(f"service: {d.service.promise.zh} / {d.service.promise.en}")


def _money(x: int) -> str:
    return f"{x / 10_000:,.0f}万" if x else "-"


def _table(credit_code: str, quotes: list[dict[str, Any]]) -> Table:
    t = Table(title=f"{credit_code}", title_justify="left")
    for col in ("product", "eligible", "index", "grade/tier", "limit", "rate band %", "rate %", "fee %",
                "subsidy %", "all-in %", "why / next grade"):
        t.add_column(col, overflow="fold")
    for q in quotes:
        if q["eligible"]:
            why = "; ".join(r["zh"] for r in q["top_reasons"][:2])
        else:
            why = "; ".join(r["zh"] for r in q["reasons"][:2])
        ng = q["next_grade"]
        if ng and ng["changes"]:
            c = ng["changes"][0]
            why += f" | → {ng['grade']}: {c['text']['zh']}"  # worded by api.visibility (no withheld value)
        band = q["rate_band"]
        t.add_row(
            f"{q['product_name']['zh']}\n{q['product']}", "yes" if q["eligible"] else "no",
            f"{q['index']:g}/{q['scale']:g}", q["tier"], _money(q["limit_cny"]),
            f"{band[0]:.2f}-{band[1]:.2f}" if band else "-", f"{q['rate']:.2f}" if q["rate"] else "-",
            f"{q['guarantee_fee']['pct']:.2f}" if q["eligible"] else "-",
            f"{q['subsidy']['pct']:.2f}" if q["eligible"] else "-",
            f"{q['all_in_cost']['pct']:.2f}" if q["all_in_cost"] else "-", why,
        )
    return t


def quote_command(
    credit_codes: Annotated[list[str], typer.Argument(metavar="CREDIT_CODE...", help="unified social credit codes")],
    as_of: Annotated[dt.datetime | None, typer.Option("--as-of", formats=["%Y-%m-%d"],
                                                      help="features, rates and products as of this date "
                                                           "(default today)")] = None,
    product: Annotated[list[str] | None, typer.Option("--product", help="product code (repeatable; default all "
                                                                         "in force)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON Lines: one object per credit code")] = False,
    model_dir: Annotated[Path | None, typer.Option("--model", help="a model directory instead of the registry's "
                                                                   "champion")] = None,
    no_model: Annotated[bool, typer.Option("--no-model", help="quote without a risk model (no PD)")] = False,
    database_url: Annotated[str | None, typer.Option("--database-url", help="SQLAlchemy URL of the store")] = None,
    models_dir: Annotated[Path | None, typer.Option("--models-dir", help="registry artifact folder (default: "
                                                                         "<data_dir>/models)")] = None,
) -> None:
    """Quote every product in force (or the chosen ones) for enterprises in the store: the same quote as
    `POST /v1/quotes` (the same versions in force for the date, the same risk model, the same numbers)."""
    from features.uscc import problem

    for code in credit_codes:
        why = problem(code)
        if why is not None:
            _fail(f"invalid credit code {code!r}: {why}", code=2)
    if model_dir is not None and no_model:
        _fail("--model and --no-model exclude each other", code=2)
    day = as_of.date() if as_of else dt.date.today()

    from api.cli.models import clear_errors
    from api.database import migrate
    from api.quoting.service import ModelChoice, Quoter
    from api.quoting.versions import VersionsError
    from products.catalogue import DefinitionError
    from training.errors import TrainingError

    choice = ModelChoice(directory=model_dir, use_model=not no_model)
    with clear_errors():
        try:
            quoter = Quoter(migrate(database_url), str(models_dir) if models_dir else None, choice,
                            definitions=list(_catalogue().values()))
            products = quoter.products_for(day, product)
            state = quoter.state(day)
        except VersionsError as error:
            _fail(f"--{error.field.replace('_', '-')}: {error.message}")
            return
        except (DefinitionError, TrainingError) as error:
            _fail(str(error))
            return
    codes = list(dict.fromkeys(credit_codes))
    missing = [c for c in codes if c not in state.population]
    if missing:
        _fail(f"unknown enterprise(s), not in the store as of {day}: {', '.join(missing)}")
    err.print(choice.describe(state.versions.model), highlight=False, soft_wrap=True)
    for code in codes:
        body = state.population.body(code, products, None)
        if as_json:
            print(json.dumps({"credit_code": code, "as_of": day.isoformat(), **body}, ensure_ascii=False))
        else:
            out.print(_table(code, body["quotes"]))
