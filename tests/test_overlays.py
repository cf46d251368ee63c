"""Overlays as configuration: a file in a definitions folder lifts its base products' limits and cuts their
rates within the maxima it declares, and quotes identically through the CLI, the API and the batch."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from api.cli.main import app as cli
from api.keys import Role
from products.catalogue import DefinitionError, load_catalogue, parse_definition, reference_rates
from scoring import compile_all, evaluate, evaluate_all, quote_dict
from scoring.sample import random_features
from tests.api_support import Service, running_service
from tests.conftest import settings_env

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "green_finance.yaml"
AS_OF = dt.date(2025, 12, 31)
runner = CliRunner()


def _example() -> dict:
    return yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))


def _folder(tmp_path: Path, data: dict | None = None) -> Path:
    folder = tmp_path / "definitions"
    folder.mkdir(exist_ok=True)
    if data is None:
        shutil.copy(EXAMPLE, folder / EXAMPLE.name)
    else:
        (folder / "overlay.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return folder


def _issues(data: dict) -> list[tuple[str, str]]:
    with pytest.raises(DefinitionError) as caught:
        parse_definition(data)
    return caught.value.issues


def test_the_example_is_not_active_by_default_and_loads_from_a_folder(tmp_path: Path) -> None:
    assert "green_finance" not in load_catalogue()
    with settings_env(products_dir=str(_folder(tmp_path))):
        catalogue = load_catalogue()
    assert catalogue["green_finance"].overlay.base_products == ["per_mu", "tech_innovation", "tax_credit"]
    assert list(catalogue)[:5] == list(load_catalogue())  # the packaged products first, unchanged


@pytest.mark.parametrize(("change", "path"), [
    (lambda d: d["overlay"]["limit_uplift_by_grade"].update(A=1.6), "overlay.limit_uplift_by_grade.A"),
    (lambda d: d["overlay"]["rate_cut_bp_by_grade"].update(B=150), "overlay.rate_cut_bp_by_grade.B"),
    (lambda d: d["overlay"]["rate_cut_bp_by_grade"].update(A=10), "overlay.rate_cut_bp_by_grade"),
    (lambda d: d["overlay"]["limit_uplift_by_grade"].pop("B"), "overlay.limit_uplift_by_grade"),
    (lambda d: d["overlay"].update(base_products=["green_finance"]), "overlay.base_products"),
    (lambda d: d.update(limit={"max_cny": 1_000_000, "cap_by_grade": {"A": 1e6, "B": 1e6}}), "limit"),
])
def test_overlay_rules_out_of_policy_are_refused_with_their_path(change, path: str) -> None:
    data = _example()
    change(data)
    assert path in [where for where, _ in _issues(data)]


def test_cli_validates_and_shows_the_example(tmp_path: Path) -> None:
    valid = runner.invoke(cli, ["products", "validate", str(EXAMPLE)])
    assert valid.exit_code == 0, valid.output
    data = _example()
    data["overlay"]["limit_uplift_by_grade"]["A"] = 1.6
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    refused = runner.invoke(cli, ["products", "validate", str(bad)])
    assert refused.exit_code == 1 and "overlay.limit_uplift_by_grade.A" in refused.output
    with settings_env(products_dir=str(_folder(tmp_path))):
        shown = runner.invoke(cli, ["products", "show", "green_finance", "--seed"])
    assert shown.exit_code == 0 and "overlay on per_mu" in shown.output, shown.output


def test_an_overlay_on_an_unknown_product_is_refused(tmp_path: Path) -> None:
    data = _example()
    data["overlay"]["base_products"] = ["per_mu", "no_such_product"]
    with settings_env(products_dir=str(_folder(tmp_path, data))), pytest.raises(DefinitionError) as caught:
        load_catalogue()
    assert "no_such_product" in str(caught.value)


def test_uplift_and_cut_follow_the_grade_within_the_declared_maxima() -> None:
    definitions = {**load_catalogue(), "green_finance": parse_definition(_example())}
    plans = compile_all(definitions, reference_rates(AS_OF))
    frame = random_features(3000, seed=8, as_of=AS_OF)
    with_overlay = evaluate_all(plans, frame)
    rule = definitions["green_finance"].overlay
    overlay = with_overlay["green_finance"]
    applied_anywhere = 0
    for base in rule.base_products:
        alone = evaluate(plans[base], frame)  # the base product without the overlay
        r = with_overlay[base]
        (o,) = r.overlays
        assert (r.eligible == alone.eligible).all()
        grade = np.array(overlay.plan.grades)[overlay.grade]
        applied = alone.eligible & overlay.eligible
        assert (o.applied == applied).all()
        applied_anywhere += applied.sum()
        uplift = np.array([rule.limit_uplift_by_grade.get(g, 1.0) for g in grade])
        cut = np.array([rule.rate_cut_bp_by_grade.get(g, 0) for g in grade])
        step = plans[base].round_down_to
        assert (r.limit_cny[applied] == np.floor(alone.limit_cny[applied] * uplift[applied] / step + 1e-9) * step).all()
        floor = round(rule.min_rate_pct * 100)
        expected = np.maximum(alone.rate_bp - cut, np.minimum(floor, alone.rate_bp))
        assert (r.rate_bp[applied] == expected[applied]).all()
        assert (r.limit_cny[~applied] == alone.limit_cny[~applied]).all()
        assert (r.rate_bp[~applied] == alone.rate_bp[~applied]).all()
        # never less credit, never a dearer rate, never beyond the maxima the file declares
        assert (r.limit_cny >= alone.limit_cny).all()
        assert (r.limit_cny[applied] <= alone.limit_cny[applied] * rule.max_limit_uplift).all()
        assert (alone.rate_bp[applied] - r.rate_bp[applied] <= rule.max_rate_cut_bp).all()
        assert (r.all_in_bp[applied] == r.rate_bp[applied] + r.fee_bp[applied] - r.subsidy_bp[applied]).all()
        for i in np.flatnonzero(applied)[:5]:
            q = quote_dict(r, int(i))
            assert q["base_terms"]["limit_cny"] == alone.limit_cny[i]
            assert q["base_terms"]["rate"] == alone.rate_bp[i] / 100
            (shown,) = q["overlays"]
            assert shown["product"] == "green_finance" and shown["applied"] and shown["grade"] == grade[i]
            assert q["limit_cny"] == r.limit_cny[i] and q["rate"] == r.rate_bp[i] / 100
    assert applied_anywhere > 20


# --- through every door ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("overlay")
    folder = _folder(directory)
    with settings_env(data_dir=str(directory / "var"), products_dir=str(folder)), running_service(
            "sqlite", directory) as service:
        yield service


def _url(svc: Service) -> str:
    return svc.engine.url.render_as_string(hide_password=False)


def _terms(q: dict) -> tuple:
    overlays = [(o["product"], o["applied"], o["limit_uplift"], o["rate_cut_bp"]) for o in q.get("overlays", [])]
    base = q.get("base_terms") or {}
    return (q["eligible"], q["grade"], q["limit_cny"], q["rate"], base.get("limit_cny"), base.get("rate"),
            tuple(overlays))


def _batch_terms(row: pd.Series, product: str) -> tuple:
    def pct(x: float) -> float | None:
        return None if np.isnan(x) else float(x)

    eligible = bool(row[f"{product}.eligible"])
    applied = bool(row[f"{product}.green_finance.applied"])
    return (eligible, row[f"{product}.grade"], int(row[f"{product}.limit_cny"]), pct(row[f"{product}.rate_pct"]),
            int(row[f"{product}.base_limit_cny"]), pct(row[f"{product}.base_rate_pct"]) if eligible else None,
            (("green_finance", applied, float(row[f"{product}.green_finance.limit_uplift"]),
              int(row[f"{product}.green_finance.rate_cut_bp"])),))


def test_an_overlay_file_quotes_the_same_through_cli_api_and_batch(svc: Service, tmp_path: Path) -> None:
    day = dt.date.today()
    with settings_env(products_dir=str(_folder(tmp_path))):
        api = {}
        for code in svc.codes:
            response = svc.client.post("/v1/quotes", json={"credit_code": code, "as_of": day.isoformat()},
                                       headers=svc.headers(Role.loan_officer))
            assert response.status_code == 201, response.text
            api[code] = {q["product"]: q for q in response.json()["quotes"]}
        lifted = [c for c in svc.codes if any(o["applied"] for q in api[c].values() for o in q.get("overlays", []))]
        assert len(lifted) >= 3, "no firm of the test region gets the overlay"
        chosen = lifted[:12]
        quoted = runner.invoke(cli, ["quote", *chosen, "--json", "--database-url", _url(svc)])
        assert quoted.exit_code == 0, quoted.output
        by_cli = {o["credit_code"]: {q["product"]: q for q in o["quotes"]}
                  for o in map(json.loads, quoted.stdout.splitlines())}
        out = tmp_path / "run.parquet"
        batch = runner.invoke(cli, ["batch", "precredit", "--as-of", day.isoformat(), "--out", str(out),
                                    "--products", "per_mu,tech_innovation", "--database-url", _url(svc)])
        assert batch.exit_code == 0, batch.output
        rows = pd.read_parquet(out).set_index("credit_code")
    assert "green_finance" in api[chosen[0]]
    for code in chosen:
        for product in ("per_mu", "tech_innovation"):
            q = api[code][product]
            assert _terms(by_cli[code][product]) == _terms(q), (code, product)
            assert _batch_terms(rows.loc[code], product) == _terms(q), (code, product)
        applied = [q for q in api[code].values() for o in q.get("overlays", []) if o["applied"]]
        for q in applied:
            assert q["limit_cny"] >= q["base_terms"]["limit_cny"] and q["rate"] <= q["base_terms"]["rate"]
