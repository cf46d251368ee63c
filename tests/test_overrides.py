"""Officer overrides (issue 12): a mandatory reason, policy bounds, audited, shown on the quote, monitored."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from api.keys import Role
from api.monitoring.config import load_thresholds, parse_thresholds
from api.monitoring.overrides import rates
from api.monitoring.tables import quote_overrides
from api.tables import quotes
from features.store.audit import audit_log
from products.catalogue import load_catalogue
from tests.api_support import Service, running_service
from tests.monitoring_support import monitoring_report


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory):
    with running_service("sqlite", tmp_path_factory.mktemp("overrides")) as service:
        yield service


def _quote(svc: Service, code: str, role: Role = Role.loan_officer) -> dict:
    body = {"credit_code": code, **({"consent_ref": "AUTH-1"} if role is Role.platform else {})}
    response = svc.client.post("/v1/quotes", json=body, headers=svc.headers(role))
    assert response.status_code == 201, response.text
    return response.json()


def _override(svc: Service, quote_id: str, role: Role = Role.loan_officer, **body):
    return svc.client.post(f"/v1/quotes/{quote_id}/overrides", json=body, headers=svc.headers(role))


def _counts(svc: Service) -> tuple[int, int]:
    with svc.engine.connect() as conn:
        return (conn.execute(sa.select(sa.func.count()).select_from(quote_overrides)).scalar_one(),
                conn.execute(sa.select(sa.func.count()).select_from(audit_log)).scalar_one())


def test_refused_overrides_say_why_in_both_languages_and_write_nothing(svc: Service) -> None:
    quote = _quote(svc, svc.codes[0])
    tech = load_catalogue()["tech_innovation"]
    before = _counts(svc)
    cases = [
        ({"product": "tech_innovation", "amount_cny": 1_000_000}, "reason"),
        ({"product": "tech_innovation", "amount_cny": 1_000_000, "reason": "   "}, "reason"),
        ({"product": "tech_innovation", "amount_cny": tech.limit.max_cny + 10_000, "reason": "big client"},
         "amount_cny"),
        ({"product": "tech_innovation", "amount_cny": 0.0, "reason": "tiny"}, "amount_cny"),
        ({"product": "tech_innovation", "rate": tech.rate.ceiling + 0.5, "reason": "risky"}, "rate"),
        ({"product": "tech_innovation", "rate": tech.rate.floor - 0.01, "reason": "friend"}, "rate"),
        ({"product": "no_such", "rate": 4.0, "reason": "x"}, "product"),
        ({"product": "tech_innovation", "reason": "nothing changed"}, "amount_cny"),
    ]
    for body, field in cases:
        response = _override(svc, quote["quote_id"], **body)
        assert response.status_code == 422, (body, response.text)
        problem = response.json()
        error = problem["errors"][0]
        assert error["field"] == field, (body, problem)
        assert error["message"] and error["message_zh"] and error["message_zh"] != error["message"]
        assert any("\u4e00" <= ch <= "\u9fff" for ch in error["message_zh"])  # Chinese text
    assert _counts(svc) == before
    assert _override(svc, "no-such-quote", product="tech_innovation", rate=4.0, reason="x").status_code == 404
    for role in (Role.platform, Role.risk_analyst):
        assert _override(svc, quote["quote_id"], role, product="tech_innovation", rate=4.0,
                         reason="x").status_code == 403


def test_an_override_is_audited_and_shown_on_the_quote_which_itself_is_unchanged(svc: Service) -> None:
    quote = _quote(svc, svc.codes[1])
    with svc.engine.connect() as conn:
        stored = conn.execute(sa.select(quotes.c.response_json, quotes.c.response_sha256)
                              .where(quotes.c.quote_id == quote["quote_id"])).one()
    product = quote["quotes"][0]
    response = _override(svc, quote["quote_id"], product=product["product"], amount_cny=500_000.0, rate=4.2,
                         reason="客户提供房产抵押 / property pledged")
    assert response.status_code == 201, response.text
    record = response.json()
    assert record["officer"] == "test-loan_officer" and record["quoted_limit_cny"] == product["limit_cny"]
    assert record["quoted_rate"] == product["rate"] and record["amount_cny"] == 500_000.0 and record["rate"] == 4.2
    with svc.engine.connect() as conn:
        audit = conn.execute(sa.select(audit_log).where(audit_log.c.action == "quote.override")
                             .order_by(audit_log.c.seq.desc())).first()
        after = conn.execute(sa.select(quotes.c.response_json, quotes.c.response_sha256)
                             .where(quotes.c.quote_id == quote["quote_id"])).one()
    assert audit.actor == "test-loan_officer" and audit.subject == f"quote:{quote['quote_id']}"
    detail = json.loads(audit.detail_json)
    assert detail["override_id"] == record["id"] and detail["reason"] == record["reason"]
    assert tuple(after) == tuple(stored)  # the quote row, body and hash are untouched
    shown = svc.client.get(f"/v1/quotes/{quote['quote_id']}", headers=svc.headers(Role.risk_analyst)).json()
    assert shown["overrides"] == [record] and shown["quotes"] == quote["quotes"]
    other = _quote(svc, svc.codes[2])  # without an override: exactly the stored bytes, no overrides key
    plain = svc.client.get(f"/v1/quotes/{other['quote_id']}", headers=svc.headers(Role.loan_officer))
    assert "overrides" not in plain.json()


def test_override_rates_per_officer_and_product_are_monitored(svc: Service) -> None:
    import datetime as dt

    issued = [_quote(svc, code) for code in svc.codes[10:14]]
    for quote in issued[:2]:
        assert _override(svc, quote["quote_id"], product="per_mu", rate=5.0, reason="pledge").status_code == 201
    today = dt.date.today()
    with svc.engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(quotes)
                             .where(quotes.c.role == "loan_officer")).scalar_one()
        per_mu = conn.execute(sa.select(sa.func.count(sa.distinct(quote_overrides.c.quote_id)))
                              .where(quote_overrides.c.product == "per_mu")).scalar_one()
    result = rates(svc.engine, today, today, load_thresholds())
    row = next(r for r in result["rows"] if r["product"] == "per_mu")
    assert row == {"officer": "test-loan_officer", "product": "per_mu", "quotes": total, "overrides": per_mu,
                   "share": per_mu / total}
    strict = parse_thresholds({"overrides": {"max_share": 0.01, "min_quotes": 1}}, "test")
    alerts = rates(svc.engine, today, today, strict)["alerts"]
    assert any(a["subject"] == "officer:test-loan_officer:per_mu" and a["figures"]["share"] == row["share"]
               for a in alerts)
    report = monitoring_report(svc, role=Role.risk_approver).json()
    assert row in report["overrides"]["rows"]
