"""One quote, one truth: `indexloan quote --json`, `POST /v1/quotes` and `indexloan batch precredit` give the
same firm on the same day the same eligibility, grade, index, limit, point rate and PD, with the champion
model on, today and on an earlier date (whose reference rate differs from today's); and refuse the same
dates (the future, a date the rate table does not cover) with a clear error."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from api.cli.demo import ensure_champion
from api.cli.main import app as cli
from api.keys import Role
from products.catalogue import reference_rates
from tests.api_support import Service, running_service
from tests.conftest import settings_env

FIRMS = 80
EARLIER = dt.date(2025, 3, 31)  # data of the 2024-12-31 snapshot; LPR 3.10% then, 3.00% today
UNCOVERED = dt.date(2024, 3, 31)  # before every product's effective date (and the rate table's first LPR)
runner = CliRunner()


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("one-quote")
    with settings_env(data_dir=str(directory / "var")), running_service(
            "sqlite", directory, prepare=lambda engine: ensure_champion(engine, directory)) as service:
        yield service


def _url(svc: Service) -> str:
    return svc.engine.url.render_as_string(hide_password=False)


def _firms(svc: Service) -> list[str]:
    """Firms in the store on the earlier date (and so today too), chosen at random."""
    present = list(svc.client.app.state.quoting.state(EARLIER).population.frame.index)
    assert len(present) > FIRMS
    return sorted(np.random.default_rng(3).choice(present, size=FIRMS, replace=False).tolist())


def _from_api(svc: Service, code: str, day: dt.date) -> dict[str, dict]:
    response = svc.client.post("/v1/quotes", json={"credit_code": code, "as_of": day.isoformat()},
                               headers=svc.headers(Role.loan_officer))
    assert response.status_code == 201, response.text
    return {q["product"]: q for q in response.json()["quotes"]}


def _from_cli(svc: Service, codes: list[str], day: dt.date) -> dict[str, dict[str, dict]]:
    result = runner.invoke(cli, ["quote", *codes, "--as-of", day.isoformat(), "--json", "--database-url", _url(svc)])
    assert result.exit_code == 0, result.output
    assert "risk model" in result.stderr  # the model used is stated
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [obj["credit_code"] for obj in lines] == codes
    return {obj["credit_code"]: {q["product"]: q for q in obj["quotes"]} for obj in lines}


def _from_batch(svc: Service, day: dt.date, out: Path) -> pd.DataFrame:
    result = runner.invoke(cli, ["batch", "precredit", "--as-of", day.isoformat(), "--out", str(out),
                                 "--database-url", _url(svc)])
    assert result.exit_code == 0, result.output
    return pd.read_parquet(out).set_index("credit_code")


def _fields(q: dict) -> tuple:
    return (q["eligible"], q["grade"], q["index"], q["limit_cny"], q["rate"], q["pd"])


def _batch_fields(row: pd.Series, product: str) -> tuple:
    rate = row[f"{product}.rate_pct"]
    return (bool(row[f"{product}.eligible"]), row[f"{product}.grade"], float(row[f"{product}.index"]),
            int(row[f"{product}.limit_cny"]), None if np.isnan(rate) else float(rate), float(row["pd"]))


@pytest.mark.parametrize("day", [dt.date.today(), EARLIER], ids=["today", "earlier"])
def test_cli_api_and_batch_give_the_same_quote(svc: Service, day: dt.date, tmp_path: Path) -> None:
    codes = _firms(svc)
    cli_quotes = _from_cli(svc, codes, day)
    batch = _from_batch(svc, day, tmp_path / "precredit.parquet")
    compared = eligible = 0
    for code in codes:
        api_quotes = _from_api(svc, code, day)
        assert list(api_quotes) == list(cli_quotes[code]) and len(api_quotes) == 5
        for product, q in api_quotes.items():
            assert q["pd"] is not None  # the champion model is on everywhere
            assert _fields(cli_quotes[code][product]) == _fields(q), (code, product)
            assert _batch_fields(batch.loc[code], product) == _fields(q), (code, product)
            assert q["reference_rate"]["pct"] == reference_rates(day)[q["reference_rate"]["name"]]
            compared += 1
            eligible += q["eligible"]
    assert compared == FIRMS * 5 and 0 < eligible < compared  # offers and declines both compared


def test_the_earlier_date_prices_on_that_dates_rate(svc: Service) -> None:
    code = _firms(svc)[0]
    then, now = _from_api(svc, code, EARLIER), _from_api(svc, code, dt.date.today())
    lpr = {day: q["reference_rate"]["pct"] for day, quotes in ((EARLIER, then), ("today", now))
           for q in quotes.values() if q["reference_rate"]["name"] == "lpr_1y"}
    assert lpr[EARLIER] == reference_rates(EARLIER)["lpr_1y"] != lpr["today"]


@pytest.mark.parametrize("day, why", [(dt.date.today() + dt.timedelta(days=1), "future"),
                                      (UNCOVERED, "in force")], ids=["future", "uncovered"])
def test_every_door_refuses_the_same_dates(svc: Service, day: dt.date, why: str, tmp_path: Path) -> None:
    code = svc.codes[0]
    response = svc.client.post("/v1/quotes", json={"credit_code": code, "as_of": day.isoformat()},
                               headers=svc.headers(Role.loan_officer))
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "as_of" and why in response.json()["detail"]
    quoted = runner.invoke(cli, ["quote", code, "--as-of", day.isoformat(), "--database-url", _url(svc)])
    assert quoted.exit_code == 1 and "--as-of" in quoted.output and why in quoted.output, quoted.output
    out = tmp_path / "x.parquet"
    batch = runner.invoke(cli, ["batch", "precredit", "--as-of", day.isoformat(), "--out", str(out),
                                "--database-url", _url(svc)])
    assert batch.exit_code == 1 and why in batch.output, batch.output
    assert not out.exists()


def test_cli_states_and_honours_its_model_choice(svc: Service) -> None:
    code = svc.codes[1]
    plain = runner.invoke(cli, ["quote", code, "--json", "--no-model", "--database-url", _url(svc)])
    assert plain.exit_code == 0, plain.output
    assert "no risk model" in plain.stderr
    body = json.loads(plain.stdout)
    assert body["model_version"] is None and all(q["pd"] is None for q in body["quotes"])
    both = runner.invoke(cli, ["quote", code, "--no-model", "--model", "somewhere", "--database-url", _url(svc)])
    assert both.exit_code == 2


def test_versions_need_the_definitions_and_rates_of_their_date() -> None:
    """The one builder: definitions by effective date (the latest on or before the date), rates of that date,
    a clear field-level error for a date they do not cover."""
    from api.quoting.versions import VersionsError, versions_for
    from products.catalogue import load_catalogue

    catalogue = load_catalogue()
    tax = catalogue["tax_credit"]
    older = tax.model_copy(update={"version": "old", "effective_date": dt.date(2020, 1, 1)})
    newer = tax.model_copy(update={"version": "new", "effective_date": dt.date(2025, 6, 1)})
    every = [older, newer, catalogue["per_mu"]]
    assert versions_for(dt.date(2025, 5, 31), None, None, definitions=every).plans["tax_credit"].version == "old"
    picked = versions_for(dt.date(2025, 6, 1), None, None, definitions=every)
    assert picked.plans["tax_credit"].version == "new" and picked.products == ["tax_credit", "per_mu"]
    assert picked.rates == reference_rates(dt.date(2025, 6, 1))
    with pytest.raises(VersionsError) as uncovered:
        versions_for(dt.date(2024, 1, 31), None, None, definitions=[older])  # tax_credit prices on lpr_1y
    assert uncovered.value.field == "as_of" and "lpr_1y" in uncovered.value.message
    with pytest.raises(VersionsError) as later:
        versions_for(dt.date(2024, 1, 31), None, None, ["per_mu"], definitions=every)
    assert later.value.field == "products" and "per_mu" in later.value.message
    with pytest.raises(VersionsError) as unknown:
        versions_for(dt.date(2025, 6, 1), None, None, ["nope"], definitions=every)
    assert unknown.value.field == "products"
    with pytest.raises(VersionsError) as future:
        versions_for(dt.date.today() + dt.timedelta(days=1), None, None, definitions=every)
    assert future.value.field == "as_of"
