"""What-if simulation: figures that reconcile exactly with quoting every firm one by one, through the CLI and
the API job. A draft that raises the tech_innovation A cut-off shows fewer A grades and lists exactly the
firms that move; an unchanged draft moves nobody."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from api.cli.main import app as cli
from api.keys import Role
from api.precredit.inputs import load_model
from api.quoting.service import Quoter
from api.workbench.simulate import simulate
from api.workbench.store import ProductVersions
from features.store.load import load_features
from products.catalogue import DEFINITIONS_DIR, load_catalogue, parse_definition
from products.schema import ProductDefinition
from tests.api_support import Service, running_service
from tests.live_server import champion_in, private_batch_dir

LGD = 0.45
CODE = "tech_innovation"


def tech(version: str, a_cut: float, today: dt.date) -> ProductDefinition:
    data = load_catalogue(DEFINITIONS_DIR)[CODE].model_dump(mode="json")
    data.update(version=version, effective_date=today.isoformat())
    data["grading"]["grades"][0]["min_index"] = a_cut
    return parse_definition(data)


@pytest.fixture(scope="module")
def today() -> dt.date:
    """Read when the module's store is prepared, not when the file is collected: a run may cross midnight
    in between, and a version effective on a past date is refused."""
    return dt.date.today()


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory, today: dt.date) -> Iterator[Service]:
    """A store with a champion model and an approved tech_innovation version (A from 68) in force today."""
    directory = tmp_path_factory.mktemp("simulate")
    models = directory / "registry"

    def prepare(engine: Any) -> None:
        champion_in(models)(engine)
        store = ProductVersions(engine)
        drafted = store.draft(tech("2099.1", 68, today), "alice")
        store.approve(store.submit(drafted.id, "alice").id, "bob")

    with private_batch_dir(directory / "batch"), running_service("sqlite", directory, models_dir=models,
                                                                 prepare=prepare) as service:
        service.models_dir = models  # type: ignore[attr-defined]
        yield service


def _simulate(svc: Service, draft: ProductDefinition) -> Any:
    today = draft.effective_date
    features = load_features(None, today, engine=svc.engine)
    model = load_model(svc.engine, str(svc.models_dir), None)
    assert model is not None
    return simulate(features, draft, ProductVersions(svc.engine).published()[1], today, model, LGD)


def _quotes(quoter: Quoter, codes: list[str], today: dt.date) -> dict[str, dict[str, Any]]:
    """Every firm quoted one by one (the quote's own path), tech_innovation's quote by credit code."""
    products = quoter.products_for(today, [CODE])
    out = {}
    for code in codes:
        body = quoter.quote(code, today, products, None)
        assert body is not None
        out[code] = body[0]["quotes"][0]
    return out


def _grade_a(quotes: dict[str, dict[str, Any]]) -> set[str]:
    return {c for c, q in quotes.items() if q["grade"] == "A"}


def _reconcile(figures: dict[str, Any], quotes: dict[str, dict[str, Any]]) -> None:
    """The simulation's figures are the sums of the firms' quotes, grade by grade."""
    for grade, g in figures["grades"].items():
        mine = [q for q in quotes.values() if q["grade"] == grade]
        offers = [q for q in mine if q["eligible"]]
        assert g["enterprises"] == len(mine) and g["eligible"] == len(offers), grade
        assert g["total_limit_cny"] == sum(q["limit_cny"] for q in offers), grade
        if offers:
            rates = [round(q["rate"] * 100) for q in offers]
            assert g["average_rate_pct"] == round(sum(rates) / len(rates) / 100, 4), grade
            loss = sum(q["pd"] * LGD * q["limit_cny"] for q in offers)
            assert g["expected_loss_cny"] == pytest.approx(loss, abs=0.0051), grade  # reported to the fen
    total = figures["total"]
    assert total["enterprises"] == len(quotes)
    assert total["total_limit_cny"] == sum(q["limit_cny"] for q in quotes.values() if q["eligible"])


def test_an_unchanged_draft_moves_nobody(svc: Service, today: dt.date) -> None:
    active = ProductVersions(svc.engine).active(CODE, today)
    sim = _simulate(svc, active)
    summary = sim.summary()["products"][CODE]
    assert summary["changed"] == summary["grade_changed"] == 0 and summary["sample"] == []
    assert summary["figures"]["before"] == summary["figures"]["after"]
    assert all(set(row) == {grade} for grade, row in summary["migration"].items())


def test_raising_the_a_cut_off_moves_exactly_the_firms_quoting_shows(svc: Service, today: dt.date) -> None:
    draft = tech("2099.2", 75, today)
    sim = _simulate(svc, draft)
    summary = sim.summary()["products"][CODE]
    before_q = _quotes(Quoter(svc.engine, str(svc.models_dir)), list(sim.codes), today)
    published = ProductVersions(svc.engine).published()[1]
    after_q = _quotes(Quoter(svc.engine, str(svc.models_dir), definitions=[*published, draft]), list(sim.codes), today)
    assert {q["product_version"] for q in after_q.values()} == {"2099.2"}

    moved = _grade_a(before_q) - _grade_a(after_q)
    assert moved and not _grade_a(after_q) - _grade_a(before_q)
    fewer = summary["figures"]
    assert fewer["after"]["grades"].get("A", {"enterprises": 0})["enterprises"] < fewer["before"]["grades"]["A"][
        "enterprises"]
    # the firms listed as changing are exactly those whose quote changes (here: the ones leaving grade A)
    differs = {c for c in sim.codes if any(before_q[c][k] != after_q[c][k]
                                           for k in ("eligible", "grade", "limit_cny", "rate"))}
    assert set(sim.changed_codes()) == differs == moved
    assert summary["changed"] == summary["grade_changed"] == len(moved)
    assert summary["migration"]["A"].get("B", 0) == len(moved)
    _reconcile(summary["figures"]["before"], before_q)
    _reconcile(summary["figures"]["after"], after_q)
    for firm in summary["sample"]:  # the sample shows the quotes' own reasons and numbers
        code = firm["credit_code"]
        assert firm["before"]["grade"] == "A" and firm["after"]["grade"] == after_q[code]["grade"]
        assert firm["after"]["limit_cny"] == after_q[code]["limit_cny"] and firm["why"]


def test_cli_prints_the_summary_and_writes_a_self_contained_report(svc: Service, tmp_path: Path,
                                                                   today: dt.date) -> None:
    draft = tmp_path / "draft.yaml"
    draft.write_text(yaml.safe_dump(tech("2099.3", 75, today).model_dump(mode="json"), allow_unicode=True,
                                    sort_keys=False), encoding="utf-8")
    report, changes = tmp_path / "report.html", tmp_path / "changes.csv"
    url = svc.engine.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(cli, ["products", "simulate", str(draft), "--out", str(report), "--json",
                                      "--changes", str(changes), "--database-url", url, "--models-dir",
                                      str(svc.models_dir)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    product = summary["products"][CODE]
    assert product["changed"] == product["grade_changed"] > 0
    assert product == _simulate(svc, tech("2099.3", 75, today)).summary()["products"][CODE]
    text = report.read_text(encoding="utf-8")
    assert text.count("data:image/png;base64,") == 3 and "http" not in text.replace("http-equiv", "")
    assert "<script" not in text and "评级迁移" in text and "Grade migration" in text
    assert len(changes.read_text().splitlines()) == product["changed"] + 1  # a header, then one row per firm

    bad = tmp_path / "bad.yaml"
    bad.write_text(draft.read_text(encoding="utf-8").replace("min_index: 75.0", "min_index: high"),
                   encoding="utf-8")
    refused = CliRunner().invoke(cli, ["products", "simulate", str(bad), "--out", str(tmp_path / "no.html"),
                                       "--database-url", url])
    assert refused.exit_code == 1 and "grading.grades[0].min_index" in refused.output
    assert not (tmp_path / "no.html").exists()


def test_api_job_reports_progress_and_the_same_summary(svc: Service, today: dt.date) -> None:
    headers = svc.headers(Role.risk_analyst)
    draft = tech("2099.4", 75, today).model_dump(mode="json")
    started = svc.client.post("/v1/products/simulations", json={"definition": draft}, headers=headers)
    assert started.status_code == 202, started.text
    job_id = started.json()["job_id"]
    assert started.headers["Location"] == f"/v1/products/simulations/{job_id}"
    job = svc.client.app.state.simulations.wait(job_id)
    assert job.status == "succeeded", job.error
    view = svc.client.get(f"/v1/products/simulations/{job_id}", headers=headers).json()
    enterprises = view["summary"]["enterprises"]
    assert view["progress"] == {"rows_done": enterprises, "rows_total": enterprises}
    assert view["summary"]["products"][CODE] == _simulate(svc, tech("2099.4", 75, today)).summary()["products"][CODE]
    report = svc.client.get(view["report_url"], headers=headers)
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")

    bad = {**draft, "grading": {**draft["grading"], "method": "guesswork"}}
    refused = svc.client.post("/v1/products/simulations", json={"definition": bad}, headers=headers)
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"].startswith("definition.grading")
    future = svc.client.post("/v1/products/simulations", json={"version_id": 1, "as_of": "2999-01-01"},
                             headers=headers)
    assert future.status_code == 422 and future.json()["errors"][0]["field"] == "as_of"
    both = svc.client.post("/v1/products/simulations", json={"version_id": 1, "definition": draft}, headers=headers)
    assert both.status_code == 422
    officer = svc.client.post("/v1/products/simulations", json={"version_id": 1}, headers=svc.headers(Role.platform))
    assert officer.status_code == 403
