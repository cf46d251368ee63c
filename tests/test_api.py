"""The HTTP API end to end over a real database (SQLite always, PostgreSQL when reachable)."""

from __future__ import annotations

import json
import time

import pytest
import sqlalchemy as sa

from api.keys import Role
from api.tables import quotes
from features.sources import SOURCES
from features.store.audit import audit_log
from tests.api_support import Service, running_service
from tests.conftest import BACKENDS
from tests.live_server import private_batch_dir


@pytest.fixture(scope="module", params=BACKENDS)
def svc(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp(f"api-{request.param}")
    with private_batch_dir(directory / "batch"), running_service(request.param, directory) as service:
        yield service


def _quote(svc: Service, role: Role = Role.loan_officer, **body):
    body.setdefault("credit_code", svc.codes[0])
    if role is Role.platform:
        body.setdefault("consent_ref", "AUTH-TEST-1")
    return svc.client.post("/v1/quotes", json=body, headers=svc.headers(role))


def _count_quotes(svc: Service) -> int:
    with svc.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(quotes)).scalar_one()


def test_quote_has_every_product_and_is_stored(svc: Service) -> None:
    response = _quote(svc, requested_amount_cny=1_000_000)
    assert response.status_code == 201, response.text
    body = response.json()
    assert {q["product"] for q in body["quotes"]} == {"tech_innovation", "tax_credit", "per_mu", "two_healthy",
                                                      "new_villager"}
    for q in body["quotes"]:
        for field in ("eligible", "reasons", "index", "points", "grade", "tier", "limit_cny", "rate_band", "rate",
                      "guarantee_fee", "subsidy", "all_in_cost", "next_grade", "product_version"):
            assert field in q, (q["product"], field)
        assert sum(q["points"].values()) == pytest.approx(q["index"], abs=1e-9)
    assert response.headers["Location"] == f"/v1/quotes/{body['quote_id']}"
    stored = svc.client.get(f"/v1/quotes/{body['quote_id']}", headers=svc.headers(Role.loan_officer))
    assert stored.status_code == 200 and stored.json()["quotes"] == body["quotes"]


def test_replay_is_identical(svc: Service) -> None:
    for code in svc.codes[:5]:
        quote_id = _quote(svc, credit_code=code).json()["quote_id"]
        replay = svc.client.get(f"/v1/quotes/{quote_id}/replay", headers=svc.headers(Role.risk_analyst)).json()
        assert replay["identical"], replay["differences"]
        against = svc.client.get(f"/v1/quotes/{quote_id}/replay?against=current",
                                 headers=svc.headers(Role.risk_analyst))
        assert against.status_code == 200 and against.json()["identical"]


def test_replay_reports_a_difference_when_the_stored_result_differs(svc: Service) -> None:
    quote_id = _quote(svc).json()["quote_id"]
    with svc.engine.begin() as conn:
        row = conn.execute(sa.select(quotes.c.response_json).where(quotes.c.quote_id == quote_id)).scalar_one()
        doc = json.loads(row)
        doc["quotes"][0]["limit_cny"] += 10_000
        conn.execute(quotes.update().where(quotes.c.quote_id == quote_id).values(response_json=json.dumps(doc)))
    replay = svc.client.get(f"/v1/quotes/{quote_id}/replay", headers=svc.headers(Role.risk_analyst)).json()
    assert not replay["identical"]
    assert any(d["path"].endswith("limit_cny") for d in replay["differences"])


def test_idempotent_retry_returns_the_first_result(svc: Service) -> None:
    headers = {**svc.headers(Role.platform), "Idempotency-Key": "retry-123"}
    body = {"credit_code": svc.codes[1], "consent_ref": "AUTH-9"}
    first = svc.client.post("/v1/quotes", json=body, headers=headers)
    before = _count_quotes(svc)
    second = svc.client.post("/v1/quotes", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert _count_quotes(svc) == before
    conflict = svc.client.post("/v1/quotes", json={**body, "requested_amount_cny": 5e5}, headers=headers)
    assert conflict.status_code == 409


RAW_FIELD_NAMES = {f for spec in SOURCES.values() for f in spec.field_names} - {"grade"}


def _keys(doc) -> set[str]:  # noqa: ANN001
    if isinstance(doc, dict):
        return set(doc) | set().union(*(_keys(v) for v in doc.values()))
    if isinstance(doc, list):
        return set().union(*(_keys(v) for v in doc)) if doc else set()
    return set()


def test_platform_never_receives_raw_government_data(svc: Service) -> None:
    response = _quote(svc, Role.platform, credit_code=svc.codes[2])
    assert response.status_code == 201
    keys = _keys(response.json())
    assert not keys & RAW_FIELD_NAMES
    assert "value" not in keys and "points" not in keys and "next_grade" not in keys
    text = response.text
    assert not any(f"{source}." in text for source in SOURCES)
    officer = _quote(svc, credit_code=svc.codes[2]).json()
    assert "points" in officer["quotes"][0]  # the officer does see the scorecard


def test_platform_sees_only_its_own_quotes(svc: Service) -> None:
    officer_quote = _quote(svc).json()["quote_id"]
    assert svc.client.get(f"/v1/quotes/{officer_quote}", headers=svc.headers(Role.platform)).status_code == 404
    own = _quote(svc, Role.platform).json()["quote_id"]
    assert svc.client.get(f"/v1/quotes/{own}", headers=svc.headers(Role.platform)).status_code == 200


@pytest.mark.parametrize(
    ("body", "field", "status"),
    [
        ({"credit_code": "91330302000000000H"}, "credit_code", 422),
        ({"credit_code": "not-a-code"}, "credit_code", 422),
        ({"credit_code": 12345}, "credit_code", 422),
        ({"products": ["gold_loan"]}, "products", 422),
        ({"requested_amount_cny": -5}, "requested_amount_cny", 422),
        ({"requested_amount_cny": 1e15}, "requested_amount_cny", 422),
        ({"requested_amount_cny": "lots"}, "requested_amount_cny", 422),
        ({"as_of": "2999-01-01"}, "as_of", 422),
        ({"unexpected": 1}, "unexpected", 422),
    ],
)
def test_bad_input_is_a_clear_4xx_and_nothing_is_stored(svc: Service, body: dict, field: str, status: int) -> None:
    before = _count_quotes(svc)
    response = _quote(svc, **body)
    assert response.status_code == status, response.text
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert problem["status"] == status and problem["detail"]
    assert any(e["field"].startswith(field) for e in problem["errors"]), problem
    assert _count_quotes(svc) == before


def test_unknown_enterprise_missing_consent_and_oversized_body(svc: Service) -> None:
    before = _count_quotes(svc)
    unknown = _quote(svc, credit_code="91330302000000000G")
    assert unknown.status_code == 404 and unknown.json()["errors"][0]["field"] == "credit_code"
    no_consent = svc.client.post("/v1/quotes", json={"credit_code": svc.codes[0]}, headers=svc.headers(Role.platform))
    assert no_consent.status_code == 422 and no_consent.json()["errors"][0]["field"] == "consent_ref"
    huge = svc.client.post("/v1/quotes", content=b'{"credit_code": "' + b"9" * 100_000 + b'"}',
                           headers={**svc.headers(Role.loan_officer), "Content-Type": "application/json"})
    assert huge.status_code == 413
    not_json = svc.client.post("/v1/quotes", content=b"{oops", headers={**svc.headers(Role.loan_officer),
                                                                          "Content-Type": "application/json"})
    assert not_json.status_code == 422
    assert _count_quotes(svc) == before


def test_the_usual_quote_request_skips_dependency_solving_with_the_same_answer(
        svc: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    from api.http.routers import quotes as quotes_router

    taken: list[bool] = []
    plain = quotes_router._plain_arguments

    def watched(request, body):  # type: ignore[no-untyped-def]
        found = plain(request, body)
        taken.append(found is not None)
        return found

    def same(response) -> dict:  # type: ignore[no-untyped-def]
        return {k: v for k, v in response.json().items() if k not in ("quote_id", "created_at", "expires_at")}

    monkeypatch.setattr(quotes_router, "_plain_arguments", watched)
    _quote(svc)  # the key is now in the process's cache
    fast = _quote(svc, products=["tax_credit", "per_mu"], consent_ref="AUTH-9")
    keyed = svc.client.post("/v1/quotes", json={"credit_code": svc.codes[1]},
                            headers={**svc.headers(Role.loan_officer), "Idempotency-Key": "usual-1"})
    assert taken[-2:] == [True, True] and fast.status_code == keyed.status_code == 201
    monkeypatch.setattr(quotes_router, "_plain_arguments", lambda request, body: None)  # FastAPI's own handler
    solved = _quote(svc, products=["tax_credit", "per_mu"], consent_ref="AUTH-9")
    assert solved.status_code == 201 and same(solved) == same(fast)
    again = svc.client.post("/v1/quotes", json={"credit_code": svc.codes[1]},
                            headers={**svc.headers(Role.loan_officer), "Idempotency-Key": "usual-1"})
    assert again.json() == keyed.json() and again.headers["Idempotent-Replayed"] == "true"

    monkeypatch.setattr(quotes_router, "_plain_arguments", watched)
    taken.clear()
    too_long = svc.client.post("/v1/quotes", json={"credit_code": svc.codes[0]},
                               headers={**svc.headers(Role.loan_officer), "Idempotency-Key": "k" * 129})
    text = svc.client.post("/v1/quotes", content=b'{"credit_code": "x"}',
                           headers={**svc.headers(Role.loan_officer), "Content-Type": "text/plain"})
    strict = _quote(svc, requested_amount_cny="3000000")
    assert taken == [False, False, False]  # each answered by FastAPI's handler, with its field-level errors
    assert too_long.status_code == 422 and too_long.json()["errors"][0]["field"] == "Idempotency-Key"
    assert text.status_code == 422
    assert strict.status_code == 422 and strict.json()["errors"][0]["field"] == "requested_amount_cny"


def test_authentication_is_required(svc: Service) -> None:
    assert svc.client.post("/v1/quotes", json={"credit_code": svc.codes[0]}).status_code == 401
    bad = svc.client.post("/v1/quotes", json={"credit_code": svc.codes[0]}, headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and bad.json()["title"] == "Unauthorized"


# Every endpoint (as the OpenAPI document names it) x every role, plus no key at all: the roles that get a 2xx;
# the others get 403 (401 without a key). PUBLIC endpoints answer everyone, keys or not.
RISK = {Role.risk_analyst, Role.risk_approver, Role.admin}
PUBLIC = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")}
ROLE_MATRIX = {
    ("GET", "/healthz"): set(Role),
    ("GET", "/readyz"): set(Role),
    ("GET", "/metrics"): set(Role),
    ("POST", "/v1/quotes"): set(Role),
    ("GET", "/v1/quotes/{quote_id}"): set(Role),
    ("GET", "/v1/quotes/{quote_id}/replay"): {Role.loan_officer} | RISK,
    ("GET", "/v1/enterprises/{credit_code}/profile"): {Role.loan_officer},
    ("GET", "/v1/products"): set(Role),
    ("GET", "/v1/products/{code}"): set(Role),
    ("GET", "/v1/models"): RISK,
    ("GET", "/v1/audit/verify"): {Role.risk_approver, Role.admin},
    ("POST", "/v1/batch/precredit"): RISK,
    ("GET", "/v1/batch/precredit/{job_id}"): RISK,
    ("GET", "/v1/batch/precredit/{job_id}/result"): RISK,
    ("POST", "/v1/batch/precredit/{job_id}/cancel"): RISK,  # and only the job's own key or an admin
    ("POST", "/v1/keys/revoke"): {Role.admin},
    ("POST", "/v1/whitelists"): {Role.risk_analyst, Role.admin},
    ("GET", "/v1/whitelists"): RISK,
    ("GET", "/v1/whitelists/{whitelist_id}"): RISK,
    ("POST", "/v1/whitelists/{whitelist_id}/publish"): {Role.risk_approver, Role.admin},
    ("POST", "/v1/whitelists/{whitelist_id}/reject"): {Role.risk_approver, Role.admin},
    ("GET", "/v1/whitelists/products"): {Role.platform} | RISK,
    ("GET", "/v1/whitelists/products/{product}"): {Role.platform} | RISK,
    ("GET", "/v1/whitelists/products/{product}/rows"): {Role.platform} | RISK,
    ("GET", "/v1/whitelists/products/{product}/file"): {Role.platform} | RISK,
    ("GET", "/v1/whitelists/products/{product}/changes"): {Role.platform} | RISK,
    ("GET", "/v1/products/versions"): RISK,
    ("POST", "/v1/products/versions"): {Role.risk_analyst, Role.admin},
    ("GET", "/v1/products/versions/{version_id}"): RISK,
    ("GET", "/v1/products/versions/{version_id}/diff"): RISK,
    ("POST", "/v1/products/versions/{version_id}/submit"): {Role.risk_analyst, Role.admin},
    ("POST", "/v1/products/versions/{version_id}/approve"): {Role.risk_approver},
    ("POST", "/v1/products/versions/{version_id}/reject"): {Role.risk_approver},
    ("POST", "/v1/products/simulations"): RISK,
    ("GET", "/v1/products/simulations/{simulation_id}"): RISK,
    ("GET", "/v1/products/simulations/{simulation_id}/report"): RISK,
    ("GET", "/v1/monitoring"): RISK,
    ("GET", "/v1/monitoring/shadow"): RISK,
    ("POST", "/v1/quotes/{quote_id}/overrides"): {Role.loan_officer},
}
BODIES = {
    "/v1/quotes": lambda svc: {"credit_code": svc.codes[0], "consent_ref": "AUTH-1"},
    "/v1/batch/precredit": lambda svc: {"products": ["per_mu"], "format": "csv", "partitions": 1},
    "/v1/keys/revoke": lambda svc: {"key_id": _throwaway_key(svc), "reason": "role matrix"},
    "/v1/whitelists": lambda svc: {"job_id": _succeeded_job(svc)},
    "/v1/whitelists/{whitelist_id}/publish": lambda svc: {},
    "/v1/whitelists/{whitelist_id}/reject": lambda svc: {"reason": "role matrix"},
    "/v1/products/versions": lambda svc: {"definition": _future_definition()},
    "/v1/products/versions/{version_id}/submit": lambda svc: None,
    "/v1/products/versions/{version_id}/approve": lambda svc: {"reason": "role matrix"},
    "/v1/products/versions/{version_id}/reject": lambda svc: {"reason": "role matrix"},
    "/v1/products/simulations": lambda svc: {"version_id": _product_version(svc, "draft")},
    "/v1/quotes/{quote_id}/overrides": lambda svc: {"product": "tax_credit", "amount_cny": 1_000_000.0,
                                                    "reason": "role matrix"},
}


def _future_definition() -> dict:
    """A new version of per_mu taking effect in 2100: stored and approved, it changes no quote of today."""
    import uuid

    from products.catalogue import load_catalogue

    data = load_catalogue()["per_mu"].model_dump(mode="json")
    return {**data, "version": f"rm-{uuid.uuid4().hex[:8]}", "effective_date": "2100-01-01"}


def _product_version(svc: Service, status: str) -> int:
    """A fresh product version drafted (and, for "submitted", submitted) by the analyst."""
    drafted = svc.client.post("/v1/products/versions", json={"definition": _future_definition()},
                              headers=svc.headers(Role.risk_analyst))
    assert drafted.status_code == 201, drafted.text
    version_id = drafted.json()["id"]
    if status == "submitted":
        submitted = svc.client.post(f"/v1/products/versions/{version_id}/submit",
                                    headers=svc.headers(Role.risk_analyst))
        assert submitted.status_code == 200, submitted.text
    return version_id


@pytest.fixture(scope="module")
def finished_simulation(svc: Service) -> str:
    """A simulation that has succeeded, so that its status and report can be read."""
    started = svc.client.post("/v1/products/simulations", json={"version_id": _product_version(svc, "draft")},
                              headers=svc.headers(Role.risk_analyst))
    assert started.status_code == 202, started.text
    assert _finish_simulation(svc, started.json()["job_id"]) == "succeeded"
    return started.json()["job_id"]


def _finish_simulation(svc: Service, job_id: str) -> str:
    deadline = time.monotonic() + 180
    while (status := svc.client.get(f"/v1/products/simulations/{job_id}", headers=svc.headers(Role.admin))
           .json()["status"]) not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
    return status


@pytest.fixture(scope="module")
def finished_job(svc: Service) -> str:
    """A small pre-credit job that has succeeded, so that its status and result can be read."""
    started = svc.client.post("/v1/batch/precredit", json=BODIES["/v1/batch/precredit"](svc),
                              headers=svc.headers(Role.admin))
    assert started.status_code == 202, started.text
    job_id = started.json()["job_id"]
    assert _finish(svc, job_id) == "succeeded"
    return job_id


def _throwaway_key(svc: Service) -> int:
    """A new key's id, for the revocation endpoint to revoke."""
    from api.keys import create_key

    create_key(svc.engine, Role.platform, "role-matrix-throwaway")
    with svc.engine.connect() as conn:
        return conn.execute(sa.text("SELECT MAX(id) FROM api_keys")).scalar_one()


def _finish(svc: Service, job_id: str, ends: tuple[str, ...] = ("succeeded", "failed")) -> str:
    """Wait for a background job to end (its audit row lands then), and return its final status."""
    deadline = time.monotonic() + 180
    while (status := svc.client.get(f"/v1/batch/precredit/{job_id}", headers=svc.headers(Role.admin))
           .json()["status"]) not in ends:
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
    return status


def _succeeded_job(svc: Service) -> str:
    from api.tables import batch_jobs

    with svc.engine.connect() as conn:
        return conn.execute(sa.select(batch_jobs.c.job_id).where(batch_jobs.c.status == "succeeded")
                            .order_by(batch_jobs.c.created_at)).scalars().first()


def _proposal(svc: Service) -> int:
    """A fresh whitelist proposal (by the analyst) of the finished job."""
    response = svc.client.post("/v1/whitelists", json=BODIES["/v1/whitelists"](svc),
                               headers=svc.headers(Role.risk_analyst))
    assert response.status_code == 201, response.text
    return response.json()["whitelist_id"]


def _settle_proposals(svc: Service) -> None:
    """Reject what a role-matrix call left pending, so the next call may propose the same job again."""
    pending = svc.client.get("/v1/whitelists", params={"status": "proposed"}, headers=svc.headers(Role.admin))
    for whitelist in pending.json():
        svc.client.post(f"/v1/whitelists/{whitelist['whitelist_id']}/reject", json={"reason": "role matrix"},
                        headers=svc.headers(Role.admin))


@pytest.fixture(scope="module")
def published_whitelist(svc: Service, finished_job: str) -> int:
    """The finished job published as the per_mu whitelist (proposed by the analyst, published by the approver)."""
    whitelist_id = _proposal(svc)
    published = svc.client.post(f"/v1/whitelists/{whitelist_id}/publish", json={},
                                headers=svc.headers(Role.risk_approver))
    assert published.status_code == 200, published.text
    return whitelist_id


def test_role_matrix_names_every_endpoint(svc: Service) -> None:
    operations = {(method.upper(), path) for path, item in svc.client.app.openapi()["paths"].items()
                  for method in item}
    assert operations == set(ROLE_MATRIX)


@pytest.mark.parametrize(("method", "path"), list(ROLE_MATRIX))
@pytest.mark.parametrize("role", [*Role, None], ids=[*(r.value for r in Role), "no-key"])
def test_role_matrix(svc: Service, finished_job: str, published_whitelist: int, finished_simulation: str,
                     method: str, path: str, role: Role | None) -> None:
    # each role quotes for itself first, so that "{quote_id}" is a quote it may see when allowed at all
    quote_id = _quote(svc, role or Role.admin).json()["quote_id"]
    # a whitelist to read, or a fresh proposal to decide on
    whitelist_id = _proposal(svc) if method == "POST" and "{whitelist_id}" in path else published_whitelist
    url = (path.replace("{quote_id}", quote_id).replace("{credit_code}", svc.codes[0])
           .replace("{code}", "tax_credit").replace("{job_id}", finished_job)
           .replace("{whitelist_id}", str(whitelist_id)).replace("{product}", "per_mu")
           .replace("{simulation_id}", finished_simulation))
    if "{version_id}" in path:  # a fresh version to decide on, in the state the step starts from
        url = url.replace("{version_id}", str(_product_version(svc, "submitted" if path.endswith("/approve")
                                                                else "draft")))
    if path.endswith("/cancel") and role in RISK:  # a queued job of this role's own to cancel
        own = svc.client.post("/v1/batch/precredit", json=BODIES["/v1/batch/precredit"](svc), headers=svc.headers(role))
        url = url.replace(finished_job, own.json()["job_id"])
    body = BODIES.get(path, lambda _svc: None)(svc) if method == "POST" else None
    response = svc.client.request(method, url, json=body, headers=svc.headers(role) if role else {})
    if (method, path) in PUBLIC or role in ROLE_MATRIX[(method, path)]:
        assert 200 <= response.status_code < 300, (role, path, response.text)
        if method == "POST" and path == "/v1/batch/precredit":
            # leave no job running behind: its late audit rows would race later tests that edit the chain
            assert _finish(svc, response.json()["job_id"]) == "succeeded"
        if path.endswith("/cancel"):  # cancelled while running: wait for the worker's last audit row too
            assert _finish(svc, response.json()["job_id"], ("cancelled",)) == "cancelled"
        if method == "POST" and path == "/v1/products/simulations":
            assert _finish_simulation(svc, response.json()["job_id"]) == "succeeded"
    else:
        assert response.status_code == (401 if role is None else 403), (role, path, response.status_code)
    if method == "POST" and path.startswith("/v1/whitelists"):
        _settle_proposals(svc)


def test_profile_shows_provenance(svc: Service) -> None:
    response = svc.client.get(f"/v1/enterprises/{svc.codes[0]}/profile", headers=svc.headers(Role.loan_officer))
    assert response.status_code == 200
    registry = response.json()["sources"]["registry"]
    assert registry["present"] and registry["provenance"]["provider"] == "market_regulation"
    assert len(registry["provenance"]["file_sha256"]) == 64
    bad = svc.client.get("/v1/enterprises/XYZ/profile", headers=svc.headers(Role.loan_officer))
    assert bad.status_code == 422


def test_products_health_and_metrics(svc: Service) -> None:
    products = svc.client.get("/v1/products", headers=svc.headers(Role.platform)).json()
    assert {p["code"] for p in products} >= {"per_mu", "tax_credit"}
    assert svc.client.get("/v1/products/nope", headers=svc.headers(Role.platform)).status_code == 404
    assert svc.client.get("/healthz").json() == {"status": "ok"}
    assert svc.client.get("/readyz").json()["status"] == "ready"
    _quote(svc)
    metrics = svc.client.get("/metrics").text
    assert "indexloan_quotes_total" in metrics and "indexloan_http_request_seconds" in metrics


def test_audit_chain_detects_edits_and_deletions(svc: Service) -> None:
    _quote(svc)
    headers = svc.headers(Role.admin)
    assert svc.client.get("/v1/audit/verify", headers=headers).json()["ok"]
    with svc.engine.begin() as conn:
        last = conn.execute(sa.select(sa.func.max(audit_log.c.seq))).scalar_one()
        original = conn.execute(sa.select(audit_log.c.actor).where(audit_log.c.seq == 2)).scalar_one()
        conn.execute(audit_log.update().where(audit_log.c.seq == 2).values(actor="mallory"))
    broken = svc.client.get("/v1/audit/verify", headers=headers).json()
    assert not broken["ok"] and any("row 2" in p for p in broken["problems"])
    with svc.engine.begin() as conn:
        conn.execute(audit_log.update().where(audit_log.c.seq == 2).values(actor=original))
    assert svc.client.get("/v1/audit/verify", headers=headers).json()["ok"]
    with svc.engine.begin() as conn:
        saved = conn.execute(sa.select(audit_log).where(audit_log.c.seq == last)).first()
        conn.execute(audit_log.delete().where(audit_log.c.seq == last))
    tail = svc.client.get("/v1/audit/verify", headers=headers).json()
    assert not tail["ok"] and any("removed" in p for p in tail["problems"])
    with svc.engine.begin() as conn:
        conn.execute(audit_log.insert().values(**saved._mapping))
    assert svc.client.get("/v1/audit/verify", headers=headers).json()["ok"]
