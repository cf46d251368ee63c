"""CLI for products and quotes: `indexloan products validate|show`, the version lifecycle
(`products draft|submit|approve|reject|history|diff`, `products simulate`) and `indexloan quote`.

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
    as_of: Annotated[dt.datetime | None, typer.Option(
        "--as-of", formats=["%Y-%m-%d"], help="the version in force on this date (default today)")] = None,
    seed: Annotated[bool, typer.Option("--seed", help="the packaged definition file, not the store's version")] = False,
    database_url: Annotated[str | None, typer.Option("--database-url", help="SQLAlchemy URL of the store")] = None,
) -> None:
    """Show a product as quotes use it: the version in force in the store (seeds + approved versions) on a
    date, or with --seed the packaged file: gates, dimensions and indicators, grades, limit and rate rules."""
    if seed:
        known = _catalogue()
    else:  # every code the store knows: seeds and stored versions
        store = _step(lambda: _versions(database_url))
        known = {d.code: d for d in _step(store.published)[1]}
    if code not in known:
        _fail(f"unknown product {code!r}; known: {', '.join(sorted(known))}")
        return
    day = as_of.date() if as_of is not None else dt.date.today()
    d = known[code] if seed else _step(lambda: store.active(code, day))
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
    if d.grading.cutoffs_by_segment:
        out.print(f"cut-offs by segment: {d.grading.cutoffs_by_segment}")
    if d.segments:
        form = f"edges {d.segments.edges}" if d.segments.edges is not None else f"groups {d.segments.groups}"
        out.print(f"segments by {d.segments.field}: {form} -> {d.segments.labels}")
    if d.overlay is not None:
        ov = d.overlay
        out.print(f"overlay on {', '.join(ov.base_products)}: limit x {ov.limit_uplift_by_grade} (max "
                  f"{ov.max_limit_uplift:g}x), rate - {ov.rate_cut_bp_by_grade} bp (max {ov.max_rate_cut_bp} bp, "
                  f"never under {ov.min_rate_pct:g}%)", highlight=False)
        out.print(f"service: {d.service.promise.zh} / {d.service.promise.en}")
        return
    lim = d.limit
    out.print(f"limit: max {lim.max_cny:,.0f} CNY; caps by grade {lim.cap_by_grade}; caps by segment "
              f"{lim.cap_by_segment}; bases {[f'{b.share:g} x {b.fields}' for b in lim.bases]}; "
              f"coefficients {[c.code for c in lim.coefficients]} (cap {lim.coefficient_cap:g}); "
              f"rounded down to {lim.round_down_to:,.0f}")
    r = d.rate
    out.print(f"rate: {r.reference} + spreads {r.spread_by_grade or r.spread_by_cell}; floor {r.floor}% "
              f"ceiling {r.ceiling}%; stage tilt {r.stage_tilt}")
    for opt in d.collateral_choices():
        gu = opt.guarantee
        fee = None if gu is None else gu.fee_pct if gu.fee_pct is not None else gu.fee_pct_by_grade
        when = f" when {[c.model_dump(exclude_defaults=True) for c in gu.when]}" if gu is not None and gu.when else ""
        floor = opt.rate_floor if opt.rate_floor is not None else r.floor
        out.print(f"collateral {opt.code}: floor {floor}%, spread shift {opt.spread_shift_pp:+g} pp, "
                  f"guarantee fee {fee}{when}")
    for sub in d.subsidy:
        amount = f"{sub.share_of_interest:.0%} of interest" if sub.share_of_interest is not None else \
            f"{sub.points_pp:g} pp"
        when = f" when {[c.model_dump(exclude_defaults=True) for c in sub.when]}" if sub.when else ""
        out.print(f"subsidy: {amount}{when}")
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
        for o in q.get("overlays", []):
            if o["applied"]:
                why += f" | +{o['product_name']['zh']} ×{o['limit_uplift']:g} −{o['rate_cut_bp']}bp"
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
            # the seed definitions and the versions approved in the store: the service's definitions
            quoter = Quoter(migrate(database_url), str(models_dir) if models_dir else None, choice)
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


# ---------------------------------------------------------------------------------------------
# product versions under maker-checker (issue 12): draft, submit, approve, reject, history, diff

ByOption = Annotated[str | None, typer.Option("--by", help="who does this (recorded; default INDEXLOAN_OPERATOR "
                                                          "or the login name)")]
DatabaseOption = Annotated[str | None, typer.Option("--database-url", help="SQLAlchemy URL of the store")]
JsonOption = Annotated[bool, typer.Option("--json", help="print one JSON object")]


def _actor(by: str | None) -> str:
    import getpass

    from features.settings import get_settings

    return (by or get_settings().operator or getpass.getuser()).strip()


def _versions(database_url: str | None):  # type: ignore[no-untyped-def]
    from api.database import migrate
    from api.workbench.store import ProductVersions

    return ProductVersions(migrate(database_url))


def _step(action: Any) -> Any:
    """Run a lifecycle step; its refusal is one line on stderr and exit 1 (2 for bad input)."""
    from rich.markup import escape

    from api.cli.models import clear_errors
    from api.quoting.versions import VersionsError
    from api.workbench.store import ProductVersionError
    from products.catalogue import DefinitionError

    with clear_errors():
        try:
            return action()
        except VersionsError as error:
            _fail(escape(f"--{error.field.replace('_', '-')}: {error.message}"))
        except ProductVersionError as error:
            _fail(escape(error.message), 2 if error.status == 422 else 1)
        except DefinitionError as error:
            _fail(escape(str(error)))
    return None


def _print_version(record: dict[str, Any], as_json: bool, what: str) -> None:
    if as_json:
        print(json.dumps(record, ensure_ascii=False))
        return
    out.print(f"{what} version {record['id']}: {record['code']} v{record['version']} effective "
              f"{record['effective_date']} ({record['status']}) sha256 {record['sha256'][:12]}", highlight=False)


@products_app.command("draft")
def draft_command(
    file: Annotated[Path, typer.Argument(help="a product definition file (YAML)")],
    note: Annotated[str | None, typer.Option("--note", help="what changes and why")] = None,
    by: ByOption = None, as_json: JsonOption = False, database_url: DatabaseOption = None,
) -> None:
    """Store a product definition as a draft version (validated; its body kept by sha256)."""
    from products.catalogue import load_definition

    record = _step(lambda: _versions(database_url).draft(load_definition(file), _actor(by), note))
    _print_version(record.to_json(), as_json, "drafted")


@products_app.command("submit")
def submit_command(version_id: Annotated[int, typer.Argument(metavar="ID", help="a draft version's id")],
                   by: ByOption = None, as_json: JsonOption = False, database_url: DatabaseOption = None) -> None:
    """Submit a draft for approval by another person."""
    record = _step(lambda: _versions(database_url).submit(version_id, _actor(by)))
    _print_version(record.to_json(), as_json, "submitted")


@products_app.command("approve")
def approve_command(version_id: Annotated[int, typer.Argument(metavar="ID", help="a submitted version's id")],
                    reason: Annotated[str | None, typer.Option("--reason", help="why (recorded)")] = None,
                    by: ByOption = None, as_json: JsonOption = False, database_url: DatabaseOption = None) -> None:
    """Approve a submitted version (never your own): it takes effect on its effective date."""
    record = _step(lambda: _versions(database_url).approve(version_id, _actor(by), reason))
    _print_version(record.to_json("approved"), as_json, "approved")


@products_app.command("reject")
def reject_command(version_id: Annotated[int, typer.Argument(metavar="ID", help="a draft or submitted version")],
                   reason: Annotated[str, typer.Option("--reason", help="why (recorded)")],
                   by: ByOption = None, as_json: JsonOption = False, database_url: DatabaseOption = None) -> None:
    """Reject a draft or a submitted version, with a reason."""
    record = _step(lambda: _versions(database_url).reject(version_id, _actor(by), reason))
    _print_version(record.to_json(), as_json, "rejected")


@products_app.command("history")
def history_command(code: Annotated[str | None, typer.Argument(help="a product code (default every product)")] = None,
                    as_json: JsonOption = False, database_url: DatabaseOption = None) -> None:
    """Every version (seeds and the store's) with its status today and who did each step."""
    entries = _step(lambda: _versions(database_url).history(code))
    if as_json:
        print(json.dumps({"versions": entries}, ensure_ascii=False))
        return
    table = Table(title="product versions 产品版本")
    for col in ("id", "product", "version", "effective", "status", "drafted by", "submitted by", "decided by",
                "sha256"):
        table.add_column(col)
    for e in entries:
        table.add_row(str(e["id"] or "seed"), e["code"], e["version"], e["effective_date"], e["status"],
                      e.get("created_by") or "", e.get("submitted_by") or "", e.get("decided_by") or "",
                      e["sha256"][:12])
    out.print(table)


@products_app.command("diff")
def diff_command(version_id: Annotated[int, typer.Argument(metavar="ID", help="a version's id")],
                 against: Annotated[str, typer.Option("--against", help="`active` (in force today) or a version id")]
                 = "active",
                 as_json: JsonOption = False, database_url: DatabaseOption = None) -> None:
    """What a version changes, path by path, against the active version or another one."""
    result = _step(lambda: _versions(database_url).diff(version_id, against))
    if as_json:
        print(json.dumps(result, ensure_ascii=False))
        return
    v = result["version"]
    table = Table(title=f"version {v['id']} ({v['code']} v{v['version']}) against {result['against']}")
    for col in ("path", "before", "after"):
        table.add_column(col, overflow="fold")
    for change in result["changes"]:
        table.add_row(change["path"], json.dumps(change["before"], ensure_ascii=False),
                      json.dumps(change["after"], ensure_ascii=False))
    out.print(table)
    if not result["changes"]:
        out.print("no differences")


def _draft_definition(engine: Any, draft: str) -> Any:
    """A version id of the store, or a definition file."""
    from api.workbench.store import ProductVersions
    from products.catalogue import load_definition

    if draft.isdigit() and not Path(draft).exists():
        return ProductVersions(engine).definition(int(draft))
    return load_definition(Path(draft))


@products_app.command("simulate")
def simulate_command(
    draft: Annotated[str, typer.Argument(metavar="DRAFT_FILE_OR_VERSION", help="a definition file or a version id")],
    out_file: Annotated[Path, typer.Option("--out", help="the HTML report to write")],
    as_of: Annotated[dt.datetime | None, typer.Option("--as-of", formats=["%Y-%m-%d"], help="the population as of "
                                                      "this date (default today)")] = None,
    changes: Annotated[Path | None, typer.Option("--changes", help="also write every firm that changes (CSV)")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as one JSON object")] = False,
    no_model: Annotated[bool, typer.Option("--no-model", help="without the risk model (no PD, no expected loss)")]
    = False,
    database_url: DatabaseOption = None,
    models_dir: Annotated[Path | None, typer.Option("--models-dir", help="registry artifact folder")] = None,
) -> None:
    """What-if: the whole population of a date under a draft and under the version in force, per grade."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from api.database import migrate
    from api.precredit.inputs import load_model
    from api.quoting.versions import check_as_of
    from api.workbench.report import render
    from api.workbench.simulate import simulate
    from api.workbench.store import ProductVersions
    from features.settings import get_settings
    from features.store.load import load_features

    day = as_of.date() if as_of else dt.date.today()

    def run() -> Any:
        check_as_of(day)
        engine = migrate(database_url)
        definition = _draft_definition(engine, draft)
        with err.status(f"loading the population as of {day.isoformat()}..."):
            features = load_features(None, day, engine=engine)
            model = None if no_model else load_model(engine, str(models_dir) if models_dir else None, None)
            known = ProductVersions(engine).published()[1]
        with Progress(TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err,
                      transient=True) as bar:
            task = bar.add_task("rows", total=max(len(features), 1))
            return simulate(features, definition, known, day, model, get_settings().simulation_lgd,
                            lambda done, total: bar.update(task, completed=done, total=max(total, 1)))

    sim = _step(run)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    partial = out_file.with_name(f".{out_file.name}.partial")
    partial.write_text(render(sim), encoding="utf-8")
    partial.replace(out_file)  # written aside, renamed: never a half-written report
    if changes is not None:
        sim.changes_frame().to_csv(changes)
    summary = sim.summary()
    if as_json:
        print(json.dumps(summary, ensure_ascii=False))
        return
    p = summary["products"][sim.product]
    out.print(f"{sim.product}: {p['changed']:,} of {summary['enterprises']:,} firms change "
              f"({p['grade_changed']:,} change grade); report {out_file}", highlight=False)
