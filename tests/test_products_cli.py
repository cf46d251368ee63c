"""CLI: products validate/show, and quote from a real SQLite store holding a small synthetic region."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import typer
import yaml
from typer.testing import CliRunner

from api.cli.products import products_app, quote_command
from features import uscc
from products.catalogue import DEFINITIONS_DIR, load_catalogue

app = typer.Typer()
app.add_typer(products_app, name="products")
app.command("quote")(quote_command)
runner = CliRunner()



@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[str]]:
    """A real SQLite store with a small synthetic region (no model in its registry): (URL, credit codes)."""
    import sqlalchemy as sa

    from api.database import migrate
    from features.ingest import ingest_directory
    from features.synthetic import generate_region, write_region

    directory = tmp_path_factory.mktemp("cli-quote")
    write_region(generate_region(300, 5), directory / "region", "parquet")
    url = f"sqlite:///{directory / 'store.db'}"
    engine = migrate(url)
    assert ingest_directory(engine, directory / "region", directory / "quarantine").ok
    with engine.connect() as conn:
        codes = conn.execute(sa.text("SELECT DISTINCT credit_code FROM src_registry ORDER BY credit_code")
                             ).scalars().all()
    return url, list(codes)


def test_validate_ok_and_errors(tmp_path: Path):
    r = runner.invoke(app, ["products", "validate", str(DEFINITIONS_DIR / "per_mu.yaml")])
    assert r.exit_code == 0, r.output
    data = yaml.safe_load((DEFINITIONS_DIR / "tech_innovation.yaml").read_text(encoding="utf-8"))
    data["dimensions"]["capability"]["indicators"][2]["weight"] = -1
    data["limit"]["cap_by_grade"]["B"] = -3
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    r = runner.invoke(app, ["products", "validate", str(bad)])
    assert r.exit_code == 1
    assert "dimensions.capability.indicators[2].weight" in r.output
    assert "limit.cap_by_grade.B" in r.output


def test_validate_reports_a_250_percent_fee_and_every_other_error_at_once(tmp_path: Path):
    data = yaml.safe_load((DEFINITIONS_DIR / "tech_innovation.yaml").read_text(encoding="utf-8"))
    data["guarantee"]["fee_pct"] = 250  # a structural error ...
    data["limitt"] = {"max_cny": 1}  # ... another ...
    data["rate"]["floor"] = 7  # ... and a semantic one (floor above the 6% ceiling), in another section
    bad = tmp_path / "three.yaml"
    bad.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    r = runner.invoke(app, ["products", "validate", str(bad)])
    assert r.exit_code == 1
    flat = " ".join(r.output.split())  # the console wraps long lines
    assert "3 problem(s)" in flat
    assert "guarantee.fee_pct" in flat and "limitt" in flat and "rate.floor: floor 7 above ceiling 6" in flat
    assert "未知字段" in r.output.replace("\n", "") and "高于上限" in r.output.replace("\n", "")  # zh and en


def test_show(tmp_path: Path) -> None:
    db = ["--database-url", f"sqlite:///{tmp_path / 'store.db'}"]
    r = runner.invoke(app, ["products", "show", "tax_credit", *db])
    assert r.exit_code == 0, r.output
    assert "税收信用指数贷" in r.output and "startup" in r.output
    seed = load_catalogue()["tax_credit"]
    r = runner.invoke(app, ["products", "show", "tax_credit", "--json", *db])
    assert json.loads(r.output) == seed.model_dump(mode="json")  # nothing approved yet: the seed is in force
    r = runner.invoke(app, ["products", "show", "tax_credit", "--json", "--seed"])  # no store needed
    assert json.loads(r.output) == seed.model_dump(mode="json")
    for args in (db, ["--seed"]):
        r = runner.invoke(app, ["products", "show", "nope", *args])
        assert r.exit_code == 1 and "unknown product" in r.output


def test_show_gives_the_version_in_force_in_the_store(tmp_path: Path) -> None:
    from api.database import migrate
    from api.workbench.store import ProductVersions

    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = ProductVersions(migrate(url))
    later = dt.date.today() + dt.timedelta(days=30)
    newer = load_catalogue()["tax_credit"].model_copy(update={"version": "2099.1", "effective_date": later})
    store.approve(store.submit(store.draft(newer, "alice").id, "alice").id, "bob")

    def shown(*args: str) -> str:
        r = runner.invoke(app, ["products", "show", "tax_credit", "--json", "--database-url", url, *args])
        assert r.exit_code == 0, r.output
        return json.loads(r.output)["version"]

    assert shown() == load_catalogue()["tax_credit"].version  # scheduled, not yet in force
    assert shown("--as-of", later.isoformat()) == "2099.1"
    assert shown("--as-of", later.isoformat(), "--seed") == load_catalogue()["tax_credit"].version


def test_quote_json_lines(store: tuple[str, list[str]]) -> None:
    url, codes = store
    r = runner.invoke(app, ["quote", *codes[:2], "--as-of", "2025-12-31", "--json", "--database-url", url])
    assert r.exit_code == 0, r.output
    assert "no champion model" in r.stderr  # which model was used (here none) is stated
    lines = [json.loads(x) for x in r.stdout.strip().splitlines()]
    assert [x["credit_code"] for x in lines] == codes[:2]
    assert {x["as_of"] for x in lines} == {"2025-12-31"}
    need = {"product", "eligible", "reasons", "index", "points", "grade", "tier", "limit_cny", "rate_band", "rate",
            "guarantee_fee", "subsidy", "all_in_cost", "next_grade", "product_version"}
    for obj in lines:
        assert len(obj["quotes"]) == 5 and obj["model_version"] is None
        for q in obj["quotes"]:
            assert need <= set(q)


def test_quote_product_filter_and_table(store: tuple[str, list[str]]) -> None:
    url, codes = store
    r = runner.invoke(app, ["quote", codes[0], "--product", "per_mu", "--product", "tax_credit", "--json",
                            "--database-url", url])
    assert r.exit_code == 0, r.output
    assert [q["product"] for q in json.loads(r.stdout)["quotes"]] == ["per_mu", "tax_credit"]
    r = runner.invoke(app, ["quote", codes[0], "--database-url", url])
    assert r.exit_code == 0, r.output
    assert codes[0] in r.stdout


def test_quote_errors(store: tuple[str, list[str]]) -> None:
    url, codes = store
    bad = codes[0][:-1] + ("0" if codes[0][-1] != "0" else "1")
    r = runner.invoke(app, ["quote", bad, "--database-url", url])
    assert r.exit_code == 2 and "invalid credit code" in r.output and "check character" in r.output
    unknown = uscc.generate(np.array([999_999]), np.array(["330302"]))[0]
    r = runner.invoke(app, ["quote", codes[0], unknown, "--database-url", url])
    assert r.exit_code == 1 and "unknown enterprise" in r.output and unknown in r.output
    r = runner.invoke(app, ["quote", codes[0], "--product", "nope", "--database-url", url])
    assert r.exit_code == 1 and "unknown product" in r.output
    r = runner.invoke(app, ["quote", codes[0], "--as-of", "2999-01-01", "--database-url", url])
    assert r.exit_code == 1 and "future" in r.output
