"""schemathesis against the served `/openapi.json`: no 5xx and no response that contradicts the schema.

The real app runs under uvicorn on a loopback port over a populated store with a champion model;
every operation is called with generated data as an admin, a loan officer and the platform, and each
generated enterprise or quote is also swapped for one that exists, so the checks reach the quote
engine, replay and the profile, not only the validators.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.http.app import create_app
from api.keys import Role
from tests.api_support import Service, running_service
from tests.conftest import settings_env
from tests.live_server import champion_in, private_batch_dir, serve

ROLES = (Role.admin, Role.loan_officer, Role.platform)  # the platform's whitelisted body must fit the schema too
MAX_EXAMPLES = 25

# The schema is read from an app built the same way as the served one (schemathesis's lazy fixture
# loader does not work with pytest 9); test_served_schema_is_the_one_tested keeps the two equal.
SCHEMA_DOCUMENT = create_app().openapi()
schema = schemathesis.openapi.from_dict(SCHEMA_DOCUMENT)

# Rules JSON Schema cannot state, so schema-valid data may still be refused with 422 naming the field:
# the credit code's check character (mod 31), a date relative to today, product codes and dates from
# configuration, and the platform role's duty to send the enterprise's consent reference.
CHECK_CHARACTER = ("credit_code", "check character")
# The versions in force on a date (api.quoting.versions.in_force) add: no product or no reference rate in force
# on that date, and a product not yet in effect then.
IN_FORCE = {("as_of", "is in the future"), ("products", "unknown product"), ("products", "not in force on"),
            ("as_of", "no product definition is in force"), ("as_of", "reference rate table has no value")}
WHITELIST_CURSOR = {("cursor", "is not a cursor of this listing"), ("cursor", "belongs to")}
BUSINESS_RULES = {
    ("POST", "/v1/quotes"): {CHECK_CHARACTER, *IN_FORCE,
                             ("consent_ref", "must send the enterprise's consent reference")},
    ("GET", "/v1/enterprises/{credit_code}/profile"): {CHECK_CHARACTER},
    ("POST", "/v1/batch/precredit"): IN_FORCE,
    # whitelists: an opaque cursor is a string to the schema, and a rejection needs a reason that is not blank
    ("GET", "/v1/whitelists/products/{product}/rows"): WHITELIST_CURSOR,
    ("GET", "/v1/whitelists/products/{product}/changes"): WHITELIST_CURSOR,
    ("POST", "/v1/whitelists"): {("products", "not in this run")},
    ("POST", "/v1/whitelists/{whitelist_id}/reject"): {("reason", "a reason is required")},
    # monitoring samples: a pattern cannot tell a real or past date, a date with products in force, a known job
    ("GET", "/v1/monitoring"): {(f, text) for f in ("reference", "current") for text in (
        "is not a date", "is in the future", "no product definition is in force", "the first date is after",
        "is unknown or has not succeeded", "can only be the reference")},
    ("GET", "/v1/monitoring/shadow"): {("since", "is not a date"), ("until", "is not a date"),
                                       ("since", "is after until")},
    # product versions and simulations: a definition is checked by the product schema (every rule, located by its
    # path inside `definition`), which OpenAPI cannot express; a simulated version must exist
    ("POST", "/v1/products/versions"): {("definition", "")},
    ("POST", "/v1/products/simulations"): {("definition", ""), ("version_id", "no product version"),
                                           ("as_of", ""), ("body", "give exactly one of version_id or definition")},
    # overrides: the mandatory reason and the product's policy bounds
    ("POST", "/v1/quotes/{quote_id}/overrides"): {("reason", "a reason is required"), ("reason", "the reason"),
                                                  ("product", "the quote has no product"),
                                                  ("amount_cny", "is outside"), ("rate", "is outside"),
                                                  ("amount_cny", "an override changes")},
}


@dataclass
class Live:
    base_url: str
    service: Service
    quote_ids: list[str]
    http: requests.Session

    def headers(self, role: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.service.keys[role]}"}

    def pick(self, options: list[str], seed: Any) -> str:
        # the same generated value always maps to the same existing one: runs stay reproducible
        digest = hashlib.sha256(json.dumps(seed, sort_keys=True, default=str).encode()).digest()
        return options[int.from_bytes(digest[:4], "big") % len(options)]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    directory: Path = tmp_path_factory.mktemp("schemathesis")
    models_dir = directory / "models"
    # schemathesis sends bad keys on purpose (and expects 401 each time): no failed-authentication throttle here
    with (settings_env(auth_failures_burst="1000000", rate_limit_address_burst="1000000"),
          private_batch_dir(directory / "batch"),
          running_service("sqlite", directory, models_dir, prepare=champion_in(models_dir)) as service):
        url = service.engine.url.render_as_string(hide_password=False)
        app = create_app(database_url=url, models_dir=str(models_dir))
        with serve(app) as base_url, requests.Session() as http:
            quote_ids = []
            for code in service.codes[:3]:
                created = http.post(f"{base_url}/v1/quotes", json={"credit_code": code},
                                    headers={"Authorization": f"Bearer {service.keys[Role.admin]}"})
                assert created.status_code == 201, created.text
                quote_ids.append(created.json()["quote_id"])
            yield Live(base_url, service, quote_ids, http)


def _allowed_rejection(case: schemathesis.Case, response: requests.Response) -> bool:
    rules = BUSINESS_RULES.get((case.method.upper(), case.path), set())
    if response.status_code != 422 or not rules:
        return False
    errors = response.json().get("errors", [])
    return bool(errors) and all(any(e["field"].startswith(field) and text in e["message"] for field, text in rules)
                                for e in errors)


def _check(case: schemathesis.Case, live: Live, role: Role) -> None:
    response = case.call(base_url=live.base_url, session=live.http, headers=live.headers(role))
    if _allowed_rejection(case, response):
        case.validate_response(response, excluded_checks=[positive_data_acceptance], headers=live.headers(role))
    else:
        case.validate_response(response, headers=live.headers(role))


def _with_existing_ids(case: schemathesis.Case, live: Live) -> schemathesis.Case | None:
    """The same request aimed at an enterprise or quote that exists (None when it names neither)."""
    if case.method.upper() != case.operation.method.upper():
        return None  # the unsupported-method probes are schemathesis's own (405)
    path = dict(case.path_parameters or {})
    body = case.body
    changed = False
    if "credit_code" in path:
        path["credit_code"] = live.pick(live.service.codes, path["credit_code"])
        changed = True
    if "quote_id" in path:
        path["quote_id"] = live.pick(live.quote_ids, path["quote_id"])
        changed = True
    if isinstance(body, dict) and "credit_code" in body:
        body = {**body, "credit_code": live.pick(live.service.codes, body["credit_code"])}
        changed = True
    if not changed:
        return None
    return case.operation.Case(method=case.method, path_parameters=path, headers=dict(case.headers or {}),
                               query=dict(case.query or {}), body=body, media_type=case.media_type)


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case, live: Live) -> None:
    for role in ROLES:
        _check(case, live, role)
        variant = _with_existing_ids(case, live)
        if variant is not None:
            variant.call_and_validate(base_url=live.base_url, session=live.http, headers=live.headers(role))


def test_served_schema_is_the_one_tested(live: Live) -> None:
    served = live.http.get(f"{live.base_url}/openapi.json")
    assert served.status_code == 200
    assert served.json() == SCHEMA_DOCUMENT
    assert {"/v1/quotes", "/v1/audit/verify", "/healthz"} <= set(SCHEMA_DOCUMENT["paths"])


def test_undecodable_body_is_a_field_level_400(live: Live) -> None:
    response = live.http.post(f"{live.base_url}/v1/quotes", data=b"\xff\xfe{", headers={
        **live.headers(Role.loan_officer), "Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["errors"] == [{"field": "body", "message": response.json()["detail"]}]
    assert "UTF-8" in response.json()["detail"]
