"""CLI: products validate/show and quote (store reads are replaced by an in-memory features frame)."""

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
from products.catalogue import DEFINITIONS_DIR
from scoring.sample import random_features

app = typer.Typer()
app.add_typer(products_app, name="products")
app.command("quote")(quote_command)
runner = CliRunner()

CODES = list(uscc.generate(np.arange(1, 4), np.array(["330302"] * 3)))
FRAME = random_features(3, seed=2)
FRAME.index = FRAME.index.__class__(CODES, name="credit_code")


@pytest.fixture
def store(monkeypatch):
    import features.store

    calls = []

    def fake_load(credit_codes, as_of, engine=None):
        calls.append((credit_codes, as_of))
        return FRAME.loc[[c for c in credit_codes if c in FRAME.index]]

    monkeypatch.setattr(features.store, "load_features", fake_load)
    return calls


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


def test_show():
    r = runner.invoke(app, ["products", "show", "tax_credit"])
    assert r.exit_code == 0, r.output
    assert "税收信用指数贷" in r.output and "startup" in r.output
    r = runner.invoke(app, ["products", "show", "tax_credit", "--json"])
    assert json.loads(r.output)["code"] == "tax_credit"
    r = runner.invoke(app, ["products", "show", "nope"])
    assert r.exit_code == 1 and "unknown product" in r.output


def test_quote_json_lines(store):
    r = runner.invoke(app, ["quote", *CODES[:2], "--as-of", "2025-12-31", "--json"])
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in r.output.strip().splitlines()]
    assert [x["credit_code"] for x in lines] == CODES[:2]
    assert store[0][1] == dt.date(2025, 12, 31)
    need = {"product", "eligible", "reasons", "index", "points", "grade", "tier", "limit_cny", "rate_band", "rate",
            "guarantee_fee", "subsidy", "all_in_cost", "next_grade", "product_version"}
    for obj in lines:
        assert len(obj["quotes"]) == 5
        for q in obj["quotes"]:
            assert need <= set(q)


def test_quote_product_filter_and_table(store):
    r = runner.invoke(app, ["quote", CODES[0], "--product", "per_mu", "--product", "tax_credit", "--json"])
    assert r.exit_code == 0, r.output
    assert [q["product"] for q in json.loads(r.output)["quotes"]] == ["per_mu", "tax_credit"]
    r = runner.invoke(app, ["quote", CODES[0]])
    assert r.exit_code == 0, r.output
    assert CODES[0] in r.output


def test_quote_errors(store):
    bad = CODES[0][:-1] + ("0" if CODES[0][-1] != "0" else "1")
    r = runner.invoke(app, ["quote", bad])
    assert r.exit_code == 2 and "invalid credit code" in r.output and "check character" in r.output
    unknown = uscc.generate(np.array([99]), np.array(["330302"]))[0]
    r = runner.invoke(app, ["quote", CODES[0], unknown])
    assert r.exit_code == 1 and "unknown enterprise" in r.output and unknown in r.output
    r = runner.invoke(app, ["quote", CODES[0], "--product", "nope"])
    assert r.exit_code == 1 and "unknown product" in r.output
