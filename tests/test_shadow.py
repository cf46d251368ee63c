"""The challenger in shadow (issue 12): it scores every live quote beside the champion without changing it; its
PD and decisions are stored keyed by quote id; the comparison report supports the promotion decision."""

from __future__ import annotations

import datetime as dt
import json
import time

import pandas as pd
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from api.cli.main import app as cli
from api.keys import Role
from api.monitoring import shadow
from api.monitoring.config import load_thresholds
from api.monitoring.tables import shadow_scores
from api.quoting.service import ModelChoice, Quoter
from api.quoting.snapshot import features_from_json
from api.tables import quotes
from tests.api_support import Service, running_service
from tests.monitoring_support import monitoring_report, quick_model
from training.registry import Registry

QUOTED = 60


@pytest.fixture(scope="module")
def models() -> dict[str, str]:
    return {}


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory, models: dict[str, str]):
    directory = tmp_path_factory.mktemp("shadow")

    def prepare(engine: sa.Engine) -> None:
        models["champion"] = quick_model(engine, directory, 5, "champion")
        models["challenger"] = quick_model(engine, directory, 9, "challenger")

    with running_service("sqlite", directory, prepare=prepare) as service:
        yield service


@pytest.fixture(scope="module")
def issued(svc: Service) -> list[dict]:
    bodies = []
    for code in svc.codes[:QUOTED * 7:7]:
        response = svc.client.post("/v1/quotes", json={"credit_code": code, "requested_amount_cny": 2_000_000},
                                   headers=svc.headers(Role.loan_officer))
        assert response.status_code == 201, response.text
        bodies.append(response.json())
    assert svc.client.app.state.quoting.shadow.flush(60)
    return bodies


def _shadow_rows(svc: Service) -> dict[str, sa.Row]:
    with svc.engine.connect() as conn:
        return {r.quote_id: r for r in conn.execute(sa.select(shadow_scores))}


def test_the_challenger_scores_every_quote_without_changing_it(svc: Service, issued: list[dict],
                                                               models: dict[str, str]) -> None:
    rows = _shadow_rows(svc)
    assert set(rows) == {b["quote_id"] for b in issued}
    challenger = Registry(svc.engine).load(models["challenger"])
    with svc.engine.connect() as conn:
        stored = {r.quote_id: r for r in conn.execute(sa.select(quotes))}
    for body in issued:
        row = rows[body["quote_id"]]
        assert row.model_id == models["challenger"] and row.champion_model == models["champion"]
        assert body["model_version"] == models["champion"] and row.champion_pd == body["risk"]["pd"]
        snapshot = json.loads(stored[body["quote_id"]].snapshot_json)
        frame = features_from_json(body["credit_code"], snapshot["features"])
        assert row.pd == float(challenger.predict(frame)[0])  # the challenger's own PD, bit for bit
        assert json.loads(stored[body["quote_id"]].response_json)["quotes"] == body["quotes"]
        assert models["challenger"] not in stored[body["quote_id"]].response_json
    for body in issued[:3]:
        replay = svc.client.get(f"/v1/quotes/{body['quote_id']}/replay", headers=svc.headers(Role.risk_analyst))
        assert replay.json()["identical"], replay.json()["differences"]


def test_stored_decisions_are_what_quoting_with_the_challenger_gives(svc: Service, issued: list[dict],
                                                                     models: dict[str, str]) -> None:
    registry = Registry(svc.engine)
    directory = registry.artifact_dir(registry.get(models["challenger"]))
    as_challenger = Quoter(svc.engine, model=ModelChoice(directory=directory))
    rows = _shadow_rows(svc)
    today = dt.date.today()
    for body in issued:
        decisions = json.loads(rows[body["quote_id"]].decisions_json)
        products = [q["product"] for q in body["quotes"]]
        other, _, _ = as_challenger.quote(body["credit_code"], today, products, 2_000_000.0)
        for mine, theirs in zip(body["quotes"], other["quotes"], strict=True):
            rate = lambda q: -1 if q["rate"] is None else round(q["rate"] * 100)  # noqa: E731
            assert decisions[mine["product"]]["champion"] == [mine["eligible"], mine["limit_cny"], rate(mine)]
            assert decisions[mine["product"]]["challenger"] == [theirs["eligible"], theirs["limit_cny"],
                                                                 rate(theirs)]


def test_comparison_report_cli_and_endpoint(svc: Service, issued: list[dict], models: dict[str, str]) -> None:
    today = dt.date.today()
    result = shadow.compare(svc.engine, today, today, load_thresholds())
    (model,) = result["models"]
    assert model["model_id"] == models["challenger"] and model["quotes"] == len(issued)
    rows = list(_shadow_rows(svc).values())
    frame = pd.DataFrame({"champion": [r.champion_pd for r in rows], "challenger": [r.pd for r in rows]})
    assert model["rank_correlation"] == pytest.approx(frame.corr(method="spearman").iloc[0, 1], abs=1e-12)
    for product, figures in model["products"].items():
        changed = 0
        for r in rows:
            (ce, cl, cr), (xe, xl, xr) = json.loads(r.decisions_json)[product].values()
            changed += ce != xe or (ce and xe and (cl != xl or cr != xr))
        assert figures["changed"] == changed and figures["quotes"] == len(issued)
    window = {"since": today.isoformat(), "until": today.isoformat()}
    endpoint = svc.client.get("/v1/monitoring/shadow", params=window, headers=svc.headers(Role.risk_approver))
    assert endpoint.status_code == 200 and endpoint.json() == json.loads(json.dumps(result))
    url = svc.engine.url.render_as_string(hide_password=False)
    printed = CliRunner().invoke(cli, ["models", "compare", "--since", window["since"], "--until", window["until"],
                                       "--database-url", url])
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.stdout) == json.loads(json.dumps(result))
    report = monitoring_report(svc).json()
    assert report["shadow"]["models"][0]["quotes"] == len(issued)


def test_a_quote_scored_from_its_snapshot_gets_the_same_rows_as_from_its_population_block(
        svc: Service, models: dict[str, str]) -> None:
    """A quote whose date's population was rebuilt meanwhile is scored from its snapshot: the same figures."""
    from dataclasses import replace

    from api.keys import Principal
    from api.quoting.issuing import QuoteOrder, issue

    service = svc.client.app.state.quoting
    today = dt.date.today()
    principal = Principal(1, "test", Role.loan_officer)
    orders = [QuoteOrder(code, today, service.products_for(today, None), None, None, "{}", None, principal)
              for code in svc.codes[3:400:41]]
    group = [issue(service, order) for order in orders]
    assert all(i.population is not None for i in group)
    challenger = Registry(svc.engine).load(models["challenger"])
    scorer = service.shadow
    scorer._blocks.clear()
    from_blocks = scorer.rows_for(group, [challenger])
    assert scorer._blocks  # scored as population blocks
    blocks = dict(scorer._blocks)
    from_snapshots = scorer.rows_for([replace(i, population=None) for i in group], [challenger])
    assert dict(scorer._blocks) == blocks  # no block needed
    assert len(from_blocks) == len(group)
    strip = [{k: v for k, v in r.items() if k != "created_at"} for r in from_blocks]
    assert strip == [{k: v for k, v in r.items() if k != "created_at"} for r in from_snapshots]


def test_without_a_challenger_nothing_is_scored(svc: Service, issued: list[dict], models: dict[str, str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    Registry(svc.engine).retire(models["challenger"], "test-approver", "challenger withdrawn")
    monkeypatch.setattr(shadow, "REFRESH_SECONDS", 0.0)
    before = len(_shadow_rows(svc))
    response = svc.client.post("/v1/quotes", json={"credit_code": svc.codes[1]}, headers=svc.headers(Role.admin))
    assert response.status_code == 201
    assert svc.client.app.state.quoting.shadow.flush(30)
    assert len(_shadow_rows(svc)) == before


def test_with_no_challenger_quotes_are_not_queued_and_a_new_one_is_noticed_unprompted(
        svc: Service, models: dict[str, str], tmp_path_factory: pytest.TempPathFactory,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """While the registry has no challenger, an issued quote is not handed to the scorer's thread at all (no
    wake-up per quote); the thread keeps reading the registry on its own, so a challenger registered later is
    scoring the next quotes without any quote having to notice it first."""
    registry = Registry(svc.engine)
    for record in registry.list("challenger"):
        registry.retire(record.id, "test-approver", "challenger withdrawn")
    monkeypatch.setattr(shadow, "REFRESH_SECONDS", 0.3)
    scorer = svc.client.app.state.quoting.shadow
    groups: list[int] = []
    score = scorer.score
    monkeypatch.setattr(scorer, "score", lambda group: groups.append(len(group)) or score(group))
    time.sleep(2 * (shadow.REFRESH_SECONDS + shadow.IDLE_SECONDS))  # the idle thread has read the registry
    response = svc.client.post("/v1/quotes", json={"credit_code": svc.codes[2]}, headers=svc.headers(Role.admin))
    assert response.status_code == 201
    assert scorer.flush(30) and groups == []

    challenger = quick_model(svc.engine, tmp_path_factory.mktemp("late-challenger"), 11, "challenger")
    time.sleep(2 * (shadow.REFRESH_SECONDS + shadow.IDLE_SECONDS))  # no quote meanwhile
    response = svc.client.post("/v1/quotes", json={"credit_code": svc.codes[3]}, headers=svc.headers(Role.admin))
    assert response.status_code == 201
    assert scorer.flush(30) and groups
    row = _shadow_rows(svc).get(response.json()["quote_id"])
    assert row is not None and row.model_id == challenger
