"""Quotes with a champion risk model: PD, model version, SHAP risk factors, exact replay."""

from __future__ import annotations

import numpy as np
import pytest

from api.cli.demo import ensure_champion
from api.keys import Role
from features import uscc
from tests.api_support import Service, running_service


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("api-model")

    def prepare(engine) -> None:  # noqa: ANN001
        from training.registry import Registry

        ensure_champion(engine, directory)
        assert Registry(engine).champion() is not None

    with running_service("sqlite", directory, prepare=prepare) as service:
        yield service


def test_quote_carries_pd_model_version_and_risk_factors(svc: Service) -> None:
    response = svc.client.post("/v1/quotes", json={"credit_code": svc.codes[3]}, headers=svc.headers(Role.loan_officer))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["model_version"]
    risk = body["risk"]
    factors = body["quotes"][0]["risk_factors"]
    assert 0.0 < risk["pd"] < 1.0 and factors
    for q in body["quotes"]:
        assert q["model_version"] == body["model_version"] and q["pd"] == pytest.approx(risk["pd"])
        assert {"feature", "value", "contribution", "zh", "en"} <= set(q["risk_factors"][0])
    replay = svc.client.get(f"/v1/quotes/{body['quote_id']}/replay", headers=svc.headers(Role.risk_analyst)).json()
    assert replay["identical"], replay["differences"]


def test_platform_gets_risk_reasons_without_values(svc: Service) -> None:
    response = svc.client.post("/v1/quotes", json={"credit_code": svc.codes[3], "consent_ref": "AUTH-7"},
                               headers=svc.headers(Role.platform))
    assert response.status_code == 201
    for q in response.json()["quotes"]:
        assert "risk_factors" not in q
        for reason in q.get("risk_reasons", []):
            assert set(reason) <= {"code", "zh", "en"}


def test_every_enterprise_quotes_as_the_one_row_path_and_replays_from_its_snapshot(svc: Service) -> None:
    """The prepared population (blocks of rows, array takes) gives exactly the quote of a one-row
    population (the path a replay takes) for every enterprise, its snapshot replays to the same quote, and
    the body holds no NaN or infinity (orjson would write those as null)."""
    import datetime as dt
    import json

    from api.quoting.population import Population
    from api.quoting.snapshot import fast_json, features_from_json

    service = svc.client.app.state.quoting
    today = dt.date.today()
    state = service.state(today)
    population, versions = state.population, state.versions
    products = versions.products
    assert len(population) == len(svc.codes) > 1000
    for position, code in enumerate(population.frame.index):
        fast, snapshot, _ = service.quote(code, today, products, 2_000_000.0)
        alone = Population(population.frame.iloc[[position]], versions)
        assert fast == alone.body(code, products, 2_000_000.0), code
        assert snapshot == alone.snapshot(code), code
        replayed = features_from_json(code, json.loads(fast_json(snapshot))["features"])
        assert Population(replayed, versions).body(code, products, 2_000_000.0) == fast, code
        assert json.loads(fast_json(fast)) == json.loads(json.dumps(fast, allow_nan=False)), code


def test_a_subset_of_products_keeps_the_requested_order(svc: Service) -> None:
    body = {"credit_code": svc.codes[5], "products": ["per_mu", "tax_credit"]}
    response = svc.client.post("/v1/quotes", json=body, headers=svc.headers(Role.loan_officer))
    assert response.status_code == 201, response.text
    assert [q["product"] for q in response.json()["quotes"]] == ["per_mu", "tax_credit"]
    stored = svc.client.get(response.headers["Location"], headers=svc.headers(Role.loan_officer))
    assert stored.content == response.content


def test_blocks_of_any_size_give_the_same_quotes(svc: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows at block edges (and a short last block) quote as in one big block."""
    import datetime as dt

    import api.quoting.population

    whole = svc.client.app.state.quoting.state(dt.date.today()).population
    monkeypatch.setattr(api.quoting.population, "BLOCK", 500)
    small = api.quoting.population.Population(whole.frame, whole.versions)
    products = whole.versions.products
    for position in (0, 1, 499, 500, 501, 999, 1000, len(whole) - 1):
        code = whole.frame.index[position]
        assert whole.body(code, products, None) == small.body(code, products, None), position
    assert len(small._blocks) == 3


def test_a_quote_for_an_earlier_date_reads_the_store_and_replays(svc: Service) -> None:
    """Not today: features are read from the store as of that date (off the event loop), stored with a
    snapshot of that row, and the stored quote replays identically."""
    import datetime as dt

    earlier = (dt.date.today() - dt.timedelta(days=30)).isoformat()
    request = {"credit_code": svc.codes[7], "as_of": earlier}
    response = svc.client.post("/v1/quotes", json=request, headers=svc.headers(Role.loan_officer))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["as_of"] == earlier and len(body["quotes"]) == 5
    replay = svc.client.get(f"/v1/quotes/{body['quote_id']}/replay", headers=svc.headers(Role.risk_analyst)).json()
    assert replay["identical"], replay["differences"]
    uncovered = svc.client.post("/v1/quotes", json={**request, "as_of": "1990-01-01"},
                                headers=svc.headers(Role.loan_officer))  # no product in force then
    assert uncovered.status_code == 422 and uncovered.json()["errors"][0]["field"] == "as_of"
    absent = uscc.generate(np.array([999_999]), np.array(["330302"]))[0]
    unknown = svc.client.post("/v1/quotes", json={**request, "credit_code": absent},
                              headers=svc.headers(Role.loan_officer))
    assert unknown.status_code == 404 and unknown.json()["errors"][0]["field"] == "credit_code"
