"""Pre-credit whitelists end to end, on SQLite and PostgreSQL: a risk analyst proposes a finished pre-credit job,
a different risk approver publishes it, the platform pulls it page by page, as a file and as a change feed.

The scenario (built once per backend): run A -> whitelist W1 (proposed by the analyst, published by the
approver); one firm's per-mu data changes (a new source file is ingested for it); run B -> whitelist W2
(proposed by the admin, who may not publish it; published by the approver).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from api.cli.main import app
from api.keys import Role
from api.precredit.whitelist_rows import visible_fields
from api.tables import batch_jobs, whitelist_rows
from features.ingest import ingest_directory
from features.sources import SOURCES
from features.store import audit
from features.store.tables import source_table
from products.catalogue import load_catalogue
from tests.api_support import Service, running_service
from tests.conftest import settings_env
from tests.factories import write_csv

PRODUCTS = list(load_catalogue())
ROW_COLUMNS = ("grade", "tier", "limit_cny", "rate_lo_pct", "rate_hi_pct", "rate_pct", "reasons", "reasons_zh",
               "reasons_en")  # what a whitelist row takes from the run as it is
DERIVED = ("product", "product_version", "guarantee_fee_pct", "subsidy_pct", "expires_on")
RAW_FIELD_NAMES = {f for spec in SOURCES.values() for f in spec.field_names} - {"grade"}
runner = CliRunner()


@dataclass
class Scenario:
    svc: Service
    run_a: pd.DataFrame
    run_b: pd.DataFrame
    summary_b: dict[str, Any]
    w1: dict[str, Any]
    w2: dict[str, Any]
    changed_firm: str
    refused_publish: Any  # the admin's attempt to publish their own proposal


def _wait(svc: Service, job_id: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = svc.client.get(f"/v1/batch/precredit/{job_id}", headers=svc.headers(Role.risk_analyst)).json()
        if body["status"] in ("succeeded", "failed"):
            assert body["status"] == "succeeded", body["error"]
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.1)


def _run(svc: Service, **body: Any) -> tuple[str, pd.DataFrame, dict]:
    started = svc.client.post("/v1/batch/precredit", json={"partitions": 2, **body},
                              headers=svc.headers(Role.risk_analyst))
    assert started.status_code == 202, started.text
    done = _wait(svc, started.json()["job_id"])
    with svc.engine.connect() as conn:
        path = conn.execute(sa.select(batch_jobs.c.result_path).where(batch_jobs.c.job_id == done["job_id"])
                            ).scalar_one()
    frame = (pd.read_parquet(path) if path.endswith(".parquet")
             else pd.read_csv(path, dtype={"credit_code": str}, keep_default_na=False, na_values=[""]))
    return done["job_id"], frame, done["summary"]


def _propose(svc: Service, job_id: str, role: Role = Role.risk_analyst, **body: Any):  # noqa: ANN202
    return svc.client.post("/v1/whitelists", json={"job_id": job_id, **body}, headers=svc.headers(role))


def _publish(svc: Service, whitelist_id: int, role: Role = Role.risk_approver):  # noqa: ANN202
    return svc.client.post(f"/v1/whitelists/{whitelist_id}/publish", json={"note": "checked"},
                           headers=svc.headers(role))


def _change_one_firm(svc: Service, run_a: pd.DataFrame, directory: Path) -> str:
    """A per_mu-eligible firm graded A by rank (no official class) gets the official class A+: a new per_mu
    record dated yesterday, ingested like any government file."""
    table = source_table("per_mu")
    with svc.engine.connect() as conn:
        rows = pd.read_sql(sa.select(table), conn)
    rows = rows.sort_values("as_of").groupby("credit_code").tail(1).set_index("credit_code")
    candidates = run_a[run_a["per_mu.eligible"] & (run_a["per_mu.grade"].astype(str) == "A")]["credit_code"]
    firm = next(c for c in candidates if pd.isna(rows.loc[c, "per_mu_class"]))
    record = {"credit_code": firm, "as_of": (dt.date.today() - dt.timedelta(days=1)).isoformat()}
    for spec in SOURCES["per_mu"].fields:
        value = rows.loc[firm, spec.name]
        record[spec.name] = (None if pd.isna(value) else bool(value) if spec.kind == "bool"
                             else int(value) if spec.kind == "int" else value)
    record["per_mu_class"] = "A+"
    write_csv(directory / "changed", "per_mu", [record])
    report = ingest_directory(svc.engine, directory / "changed", directory / "quarantine")
    assert report.ok and report.sources["per_mu"].rows_accepted == 1, report.as_json()
    return firm


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def scenario(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp(f"whitelists-{request.param}")
    with settings_env(batch_dir=str(directory / "jobs")), running_service(request.param, directory) as svc:
        job_a, run_a, _ = _run(svc)
        proposed = _propose(svc, job_a, note="first whitelist")
        assert proposed.status_code == 201, proposed.text
        w1 = proposed.json()
        assert proposed.headers["location"] == f"/v1/whitelists/{w1['whitelist_id']}"
        published = _publish(svc, w1["whitelist_id"])
        assert published.status_code == 200, published.text
        w1 = published.json()

        firm = _change_one_firm(svc, run_a, directory)
        job_b, run_b, summary_b = _run(svc)
        proposed = _propose(svc, job_b, Role.admin)
        assert proposed.status_code == 201, proposed.text
        refused = _publish(svc, proposed.json()["whitelist_id"], Role.admin)
        published = _publish(svc, proposed.json()["whitelist_id"])
        assert published.status_code == 200, published.text
        yield Scenario(svc, run_a, run_b, summary_b, w1, published.json(), firm, refused)


# ------------------------------------------------------------------------------------- expectations


def _eligible(run: pd.DataFrame, product: str, fields: list[str]) -> list[dict[str, Any]]:
    """The run's eligible rows of `product`, restricted to the platform's fields (those the run holds)."""
    rows = run[run[f"{product}.eligible"]].sort_values("credit_code")
    out = []
    for _, r in rows.iterrows():
        item: dict[str, Any] = {"credit_code": r["credit_code"]}
        for c in ROW_COLUMNS:
            if c in fields:
                v = r[f"{product}.{c}"]
                item[c] = ("" if pd.isna(v) else str(v)) if c.startswith("reasons") else (
                    int(v) if c == "limit_cny" else float(v) if "_pct" in c else str(v))
        out.append(item)
    return out


def _comparable(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in item.items() if k not in DERIVED} for item in items]


def _pages(svc: Service, product: str, role: Role = Role.platform, limit: int = 37, **query: Any) -> tuple[list, dict]:
    items, cursor, whitelist = [], None, None
    while True:
        params = {"limit": limit, **query, **({"cursor": cursor} if cursor else {})}
        response = svc.client.get(f"/v1/whitelists/products/{product}/rows", params=params, headers=svc.headers(role))
        assert response.status_code == 200, response.text
        body = response.json()
        assert whitelist is None or body["whitelist"]["whitelist_id"] == whitelist["whitelist_id"]
        whitelist = body["whitelist"]
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items, whitelist


def _feed(svc: Service, product: str, cursor: str | None, limit: int = 2) -> tuple[list, str]:
    items: list = []
    while True:
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        response = svc.client.get(f"/v1/whitelists/products/{product}/changes", params=params,
                                  headers=svc.headers(Role.platform))
        assert response.status_code == 200, response.text
        body = response.json()
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if not body["more"]:
            return items, cursor


def _expected_changes(a: list[dict], b: list[dict]) -> dict[str, str]:
    old, new = {r["credit_code"]: r for r in a}, {r["credit_code"]: r for r in b}
    out = {c: "entered" for c in new.keys() - old.keys()} | {c: "left" for c in old.keys() - new.keys()}
    out |= {c: "changed" for c in new.keys() & old.keys() if new[c] != old[c]}
    return out


# ------------------------------------------------------------------------------------- the raw-value scan


def _formats(value: Any) -> set[str]:
    if isinstance(value, bool) or value is None:
        return set()
    if isinstance(value, str):
        return {value} if len(value) >= 4 and not value.isdigit() else set()
    if isinstance(value, dt.date | pd.Timestamp):
        return {pd.Timestamp(value).date().isoformat()}
    v = float(value)
    if v != v or abs(v) < 10:  # NaN, and small numbers that are anyone's (0, 1, a count of 3)
        return set()
    shown = {repr(v), f"{v:.2f}", f"{v:,.2f}", f"{v:.1f}", f"{v:.0f}", f"{v:,.0f}", f"{v / 1e4:.2f}万"}
    if v.is_integer():
        shown |= {str(int(v)), f"{int(v):,}"}
    return shown


def _raw_values(svc: Service, codes: set[str]) -> dict[str, set[str]]:
    """Every raw government value of these firms, in the usual number formats."""
    out: dict[str, set[str]] = {c: set() for c in codes}
    with svc.engine.connect() as conn:
        for name, spec in SOURCES.items():
            table = source_table(name)
            frame = pd.read_sql(sa.select(table).where(table.c.credit_code.in_(sorted(codes))), conn)
            for _, row in frame.iterrows():
                for field in spec.field_names:
                    if field != "grade":
                        out[row["credit_code"]] |= _formats(row[field])
    return out


NUMBER = re.compile(r"(?<![\w.,])-?\d[\d,]*(?:\.\d+)?万?")


def _assert_no_raw_value(text: str, raw: set[str], own: set[str]) -> None:
    """No number in `text` is one of the firm's raw values as usually printed, and no raw text appears."""
    numbers = {r for r in raw if NUMBER.fullmatch(r)}
    leaked = (set(NUMBER.findall(text)) & numbers) | {r for r in raw - numbers if r in text}
    assert not leaked - own, f"raw value(s) {sorted(leaked - own)[:5]} in {text[:300]}"


def _own_numbers(item: dict[str, Any]) -> set[str]:
    """The row's own outputs (a limit may equal a registered capital by chance): not a leak."""
    own: set[str] = set()
    for key, value in item.items():
        if key == "credit_code" or isinstance(value, bool):
            continue
        try:
            own |= _formats(float(value))
        except (TypeError, ValueError):
            continue
    return own


# ------------------------------------------------------------------------------------- must show


def test_pages_and_files_equal_the_runs_eligible_rows_restricted_to_the_platforms_fields(scenario: Scenario
                                                                                         ) -> None:
    svc = scenario.svc
    definitions = load_catalogue()
    for product in PRODUCTS:
        fields = visible_fields(definitions[product].platform_fields)
        items, whitelist = _pages(svc, product)
        assert whitelist["whitelist_id"] == scenario.w2["whitelist_id"] and whitelist["current"]
        assert whitelist["fields"] == fields and whitelist["rows"] == len(items)
        assert all(list(item) == fields for item in items)
        expected = _eligible(scenario.run_b, product, fields)
        assert _comparable(items) == expected, product
        assert {i["product"] for i in items} <= {product}
        assert {i["product_version"] for i in items} <= {scenario.summary_b["versions"]["products"][product]["version"]}
        for fmt in ("parquet", "csv"):
            response = svc.client.get(f"/v1/whitelists/products/{product}/file", params={"format": fmt},
                                      headers=svc.headers(Role.platform))
            assert response.status_code == 200, response.text
            if fmt == "parquet":
                table = pq.read_table(io.BytesIO(response.content))
                assert table.column_names == fields
                rows = [{k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in r.items()}
                        for r in table.to_pylist()]
                assert rows == items
            else:  # CSV: the same cells as text
                frame = pd.read_csv(io.StringIO(response.text), dtype=str, keep_default_na=False)
                assert list(frame.columns) == fields
                assert frame["credit_code"].tolist() == [i["credit_code"] for i in items]
                for f in fields:
                    shown = [("" if i[f] is None else str(i[f])) for i in items]
                    assert [_csv_cell(v, f) for v in frame[f]] == [_csv_cell(v, f) for v in shown], (product, f)
            assert response.headers["x-whitelist-id"] == str(scenario.w2["whitelist_id"])
    # narrowed by the product's own platform_fields: tax_credit shows grades and tiers, never limits or rates
    assert "limit_cny" not in visible_fields(definitions["tax_credit"].platform_fields)
    assert {"limit_cny", "rate_pct", "guarantee_fee_pct", "subsidy_pct"} <= set(
        visible_fields(definitions["per_mu"].platform_fields))


def _csv_cell(value: str, field: str) -> str:
    if field.endswith("_pct") and value not in ("", None):
        return repr(float(value))
    return value


def test_fees_subsidies_and_terms_are_the_platforms_quote(scenario: Scenario) -> None:
    svc = scenario.svc
    for product in PRODUCTS:
        items, whitelist = _pages(svc, product, limit=1000)
        for item in items[:: max(1, len(items) // 4)][:4]:
            quote = svc.client.post("/v1/quotes", json={"credit_code": item["credit_code"], "products": [product],
                                                        "consent_ref": "AUTH-WL"}, headers=svc.headers(Role.platform))
            assert quote.status_code == 201, quote.text
            q = quote.json()["quotes"][0]
            assert q["eligible"] and q["grade"] == item["grade"] and q["tier"] == item["tier"]
            if "limit_cny" in item:
                assert q["limit_cny"] == item["limit_cny"] and q["rate"] == item["rate_pct"]
                assert q["rate_band"] == [item["rate_lo_pct"], item["rate_hi_pct"]]
                assert q["guarantee_fee"]["pct"] == item["guarantee_fee_pct"]
                assert q["subsidy"]["pct"] == item["subsidy_pct"]
                published = dt.datetime.fromisoformat(whitelist["published_at"]).date()
                assert item["expires_on"] == (published + dt.timedelta(days=q["expiry_days"])).isoformat()
            else:
                assert "limit_cny" not in q and "rate" not in q  # the quote hides them from the platform too


def test_no_raw_government_value_reaches_the_platform(scenario: Scenario) -> None:
    svc = scenario.svc
    responses: list[tuple[str, list[dict]]] = []
    for product in PRODUCTS:
        items, _ = _pages(svc, product, limit=500)
        responses.append((product, items))
        changes, _ = _feed(svc, product, None, limit=500)
        responses.append((product, [c["row"] or c["previous"] for c in changes]))
        for fmt in ("csv", "parquet"):
            response = svc.client.get(f"/v1/whitelists/products/{product}/file", params={"format": fmt},
                                      headers=svc.headers(Role.platform))
            rows = (pd.read_csv(io.StringIO(response.text), dtype=str, keep_default_na=False).to_dict("records")
                    if fmt == "csv" else pq.read_table(io.BytesIO(response.content)).to_pylist())
            responses.append((product, rows))
    codes = {item["credit_code"] for _, items in responses for item in items}
    raw = _raw_values(svc, codes)
    scanned = 0
    for _, items in responses:
        for item in items:
            text = json.dumps(item, ensure_ascii=False, default=str)
            assert not set(item) & RAW_FIELD_NAMES and "value" not in item and "points" not in item
            assert not any(f"{source}." in text for source in SOURCES)
            # the row's identity and our own dates and version are not government values: scan the rest
            rest = json.dumps({k: v for k, v in item.items() if k not in ("credit_code", "product_version",
                                                                          "expires_on")},
                              ensure_ascii=False, default=str)
            _assert_no_raw_value(rest, raw[item["credit_code"]], _own_numbers(item))
            scanned += 1
    assert scanned > 1000
    # the scan does see a value when one is there: a firm's raw figure slipped into a reason text
    item = responses[0][1][0]
    figure = next(r for r in sorted(raw[item["credit_code"]]) if NUMBER.fullmatch(r) and "," in r)
    with pytest.raises(AssertionError, match="raw value"):
        _assert_no_raw_value(json.dumps({**item, "reasons_en": f"taxable sales {figure} below"}),
                             raw[item["credit_code"]], _own_numbers(item))
    # the whole responses too: keys and source-qualified names
    for path in ("/v1/whitelists/products", f"/v1/whitelists/products/{PRODUCTS[0]}",
                 f"/v1/whitelists/products/{PRODUCTS[0]}/rows", f"/v1/whitelists/products/{PRODUCTS[0]}/changes"):
        body = svc.client.get(path, headers=svc.headers(Role.platform))
        assert body.status_code == 200
        assert not any(f'"{name}"' in body.text for name in RAW_FIELD_NAMES)


def test_the_change_listing_shows_the_changed_firm_and_rank_moves_once_per_cursor(scenario: Scenario) -> None:
    svc = scenario.svc
    definitions = load_catalogue()
    w1_cursors = {p: r["changes_cursor"] for p, r in _history_w1(svc, scenario).items()}
    for product in PRODUCTS:
        fields = visible_fields(definitions[product].platform_fields)
        expected = _expected_changes(_eligible(scenario.run_a, product, fields),
                                     _eligible(scenario.run_b, product, fields))
        items, end = _feed(svc, product, w1_cursors[product])
        codes = [i["credit_code"] for i in items]
        assert len(codes) == len(set(codes)), "a change listed twice"
        assert {i["credit_code"]: i["kind"] for i in items} == expected, product
        assert {i["whitelist_id"] for i in items} <= {scenario.w2["whitelist_id"]}
        calibrated = scenario.summary_b["versions"]["products"][product]["cuts_calibrated"]
        for item in items:
            if item["credit_code"] == scenario.changed_firm:
                continue
            # anyone else moved only through a rank-based grade (cut-offs calibrated on the population)
            assert calibrated, (product, item)
            a = _grade(scenario.run_a, product, item["credit_code"])
            b = _grade(scenario.run_b, product, item["credit_code"])
            assert a != b, (product, item)
        # the same cursor again: nothing more, and it costs nothing (304)
        again = svc.client.get(f"/v1/whitelists/products/{product}/changes", params={"cursor": end},
                               headers=svc.headers(Role.platform))
        assert again.json()["items"] == [] and not again.json()["more"] and again.json()["next_cursor"] == end
        cached = svc.client.get(f"/v1/whitelists/products/{product}/changes", params={"cursor": end},
                                headers={**svc.headers(Role.platform), "If-None-Match": again.headers["etag"]})
        assert cached.status_code == 304 and cached.content == b""
    per_mu = {i["credit_code"]: i for i in _feed(svc, "per_mu", w1_cursors["per_mu"])[0]}
    firm = per_mu[scenario.changed_firm]
    assert firm["kind"] == "changed" and firm["previous"]["grade"] == "A" and firm["row"]["grade"] == "A+"
    assert "grade" in firm["changed"]
    for item in per_mu.values():  # `changed` names exactly the fields that differ
        if item["kind"] == "changed":
            differ = {f for f in item["row"] if item["row"][f] != item["previous"][f]} - {"expires_on"}
            assert set(item["changed"]) == differ, item
    # from the start of the feed: the first publication's rows (all entered), then the second's changes
    everything, _ = _feed(svc, "per_mu", None, limit=50)
    first = [i for i in everything if i["whitelist_id"] == scenario.w1["whitelist_id"]]
    assert {i["kind"] for i in first} == {"entered"} and len(first) == scenario.w1["products"]["per_mu"]["rows"]
    assert [i["credit_code"] for i in everything[len(first):]] == sorted(per_mu)


def _grade(run: pd.DataFrame, product: str, code: str) -> tuple[bool, str]:
    row = run.loc[run["credit_code"] == code].iloc[0]
    return bool(row[f"{product}.eligible"]), str(row[f"{product}.grade"])


def _history_w1(svc: Service, scenario: Scenario) -> dict[str, dict]:
    out = {}
    for product in PRODUCTS:
        history = svc.client.get(f"/v1/whitelists/products/{product}", headers=svc.headers(Role.platform)).json()
        assert [h["whitelist_id"] for h in history["published"]] == [scenario.w2["whitelist_id"],
                                                                      scenario.w1["whitelist_id"]]
        assert [h["current"] for h in history["published"]] == [True, False]
        out[product] = history["published"][1]
    return out


def test_counts_per_product_and_grade_for_risk_staff(scenario: Scenario) -> None:
    svc = scenario.svc
    record = svc.client.get(f"/v1/whitelists/{scenario.w2['whitelist_id']}", headers=svc.headers(Role.risk_analyst))
    assert record.status_code == 200
    body = record.json()
    assert body["status"] == "published" and body["proposed_by"] == "test-admin"
    assert body["decided_by"] == "test-risk_approver" and body["publication_no"] == 2
    for product, p in body["products"].items():
        items, _ = _feed(svc, product, _history_w1(svc, scenario)[product]["changes_cursor"], limit=500)
        changes = p["changes"]
        assert changes["base_whitelist_id"] == scenario.w1["whitelist_id"]
        assert (changes["entered"], changes["left"], changes["changed"]) == tuple(
            sum(i["kind"] == k for i in items) for k in ("entered", "left", "changed"))
        by_grade: dict[str, dict[str, int]] = {}
        for i in items:
            grade = (i["previous"] if i["kind"] == "left" else i["row"])["grade"]
            by_grade.setdefault(grade, {}).setdefault(i["kind"], 0)
            by_grade[grade][i["kind"]] += 1
        assert changes["by_grade"] == dict(sorted(by_grade.items()))
        eligible = scenario.run_b[scenario.run_b[f"{product}.eligible"]]
        assert p["rows"] == len(eligible) and p["limit_cny"] == int(eligible[f"{product}.limit_cny"].sum())
        assert {g: c["rows"] for g, c in p["grades"].items()} == {
            str(g): int(n) for g, n in eligible[f"{product}.grade"].astype(str).value_counts().items()}
    assert body["products"]["per_mu"]["changes"]["grade_moves"].get("A->A+", 0) >= 1


def test_the_previous_whitelist_stays_retrievable(scenario: Scenario) -> None:
    svc = scenario.svc
    definitions = load_catalogue()
    for product in ("per_mu", "tax_credit"):
        fields = visible_fields(definitions[product].platform_fields)
        items, whitelist = _pages(svc, product, whitelist_id=scenario.w1["whitelist_id"])
        assert not whitelist["current"] and whitelist["whitelist_id"] == scenario.w1["whitelist_id"]
        assert _comparable(items) == _eligible(scenario.run_a, product, fields)
        file = svc.client.get(f"/v1/whitelists/products/{product}/file",
                              params={"whitelist_id": scenario.w1["whitelist_id"], "format": "csv"},
                              headers=svc.headers(Role.platform))
        assert file.status_code == 200 and file.text.count("\n") == len(items) + 1


def test_a_proposer_cannot_publish_their_own_proposal(scenario: Scenario) -> None:
    refused = scenario.refused_publish
    assert refused.status_code == 403 and refused.headers["content-type"] == "application/problem+json"
    assert "maker-checker" in refused.json()["detail"] and "test-admin proposed" in refused.json()["detail"]
    svc = scenario.svc
    # an analyst may propose, not publish
    analyst = svc.client.post(f"/v1/whitelists/{scenario.w2['whitelist_id']}/publish", json={},
                              headers=svc.headers(Role.risk_analyst))
    assert analyst.status_code == 403
    again = _publish(svc, scenario.w2["whitelist_id"])
    assert again.status_code == 409 and "published" in again.json()["detail"]


PULLS = ["/v1/whitelists/products", "/v1/whitelists/products/per_mu", "/v1/whitelists/products/per_mu/rows",
         "/v1/whitelists/products/per_mu/file", "/v1/whitelists/products/per_mu/changes"]


@pytest.mark.parametrize("path", PULLS)
def test_a_loan_officer_cannot_pull_whitelists(scenario: Scenario, path: str) -> None:
    svc = scenario.svc
    refused = svc.client.get(path, headers=svc.headers(Role.loan_officer))
    assert refused.status_code == 403 and refused.headers["content-type"] == "application/problem+json"
    assert "loan_officer may not use this endpoint" in refused.json()["detail"]
    assert svc.client.get(path).status_code == 401
    assert svc.client.get(path, headers=svc.headers(Role.platform)).status_code == 200


def test_the_platform_cannot_propose_list_or_decide(scenario: Scenario) -> None:
    svc = scenario.svc
    wid = scenario.w2["whitelist_id"]
    for role in (Role.platform, Role.loan_officer):
        headers = svc.headers(role)
        assert svc.client.post("/v1/whitelists", json={"job_id": "x"}, headers=headers).status_code == 403
        assert svc.client.get("/v1/whitelists", headers=headers).status_code == 403
        assert svc.client.get(f"/v1/whitelists/{wid}", headers=headers).status_code == 403
        assert svc.client.post(f"/v1/whitelists/{wid}/publish", json={}, headers=headers).status_code == 403
        assert svc.client.post(f"/v1/whitelists/{wid}/reject", json={"reason": "no"}, headers=headers
                               ).status_code == 403


def test_conditional_requests_cost_nothing_when_unchanged(scenario: Scenario) -> None:
    svc = scenario.svc
    for path, params in (("/v1/whitelists/products", {}), ("/v1/whitelists/products/per_mu", {}),
                         ("/v1/whitelists/products/per_mu/rows", {"limit": 10}),
                         ("/v1/whitelists/products/per_mu/file", {"format": "parquet"}),
                         ("/v1/whitelists/products/per_mu/file", {"format": "csv"})):
        first = svc.client.get(path, params=params, headers=svc.headers(Role.platform))
        assert first.status_code == 200 and first.headers["etag"]
        again = svc.client.get(path, params=params, headers={**svc.headers(Role.platform),
                                                             "If-None-Match": first.headers["etag"]})
        assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == first.headers["etag"]
        other = svc.client.get(path, params=params, headers={**svc.headers(Role.platform),
                                                             "If-None-Match": 'W/"something-else"'})
        assert other.status_code == 200
    # a page of the previous whitelist is another representation than the current one's
    old = svc.client.get("/v1/whitelists/products/per_mu/rows", params={"whitelist_id": scenario.w1["whitelist_id"]},
                         headers=svc.headers(Role.platform))
    new = svc.client.get("/v1/whitelists/products/per_mu/rows", headers=svc.headers(Role.platform))
    assert old.headers["etag"] != new.headers["etag"]


def test_every_step_is_audited(scenario: Scenario) -> None:
    svc = scenario.svc
    with svc.engine.connect() as conn:
        rows = conn.execute(sa.select(audit.audit_log.c.action, audit.audit_log.c.actor, audit.audit_log.c.subject)
                            .where(audit.audit_log.c.action.like("whitelist.%")).order_by(audit.audit_log.c.seq)).all()
        assert audit.verify(conn).ok
    w1, w2 = (f"whitelist:{scenario.w1['whitelist_id']}", f"whitelist:{scenario.w2['whitelist_id']}")
    steps = [(a, who, s) for a, who, s in rows if s in (w1, w2) and a != "whitelist.download"]
    assert steps[:4] == [("whitelist.propose", "test-risk_analyst", w1),
                         ("whitelist.publish", "test-risk_approver", w1),
                         ("whitelist.propose", "test-admin", w2), ("whitelist.publish", "test-risk_approver", w2)]
    assert any(a == "whitelist.download" and who == "test-platform" for a, who, _ in rows)


# ------------------------------------------------------------------------------------- bad input: 4xx, never 500


@pytest.mark.parametrize(("method", "path", "params", "body", "status", "field"), [
    ("GET", "/v1/whitelists/products/per_mu/rows", {"cursor": "not-a-cursor"}, None, 422, "cursor"),
    ("GET", "/v1/whitelists/products/per_mu/rows", {"cursor": "eyJrIjoicm93cyJ9"}, None, 422, "cursor"),
    ("GET", "/v1/whitelists/products/per_mu/rows", {"limit": 0}, None, 422, "limit"),
    ("GET", "/v1/whitelists/products/per_mu/rows", {"limit": 10_001}, None, 422, "limit"),
    ("GET", "/v1/whitelists/products/per_mu/rows", {"limit": "many"}, None, 422, "limit"),
    ("GET", "/v1/whitelists/products/per_mu/rows", {"whitelist_id": 0}, None, 422, "whitelist_id"),
    ("GET", "/v1/whitelists/products/per_mu/rows", {"whitelist_id": 2**40}, None, 422, "whitelist_id"),
    ("GET", "/v1/whitelists/products/per_mu/rows", {"whitelist_id": 999_999}, None, 404, "whitelist_id"),
    ("GET", "/v1/whitelists/products/gold_loan/rows", {}, None, 404, "product"),
    ("GET", "/v1/whitelists/products/per_mu/file", {"format": "xlsx"}, None, 422, "format"),
    ("GET", "/v1/whitelists/products/per_mu/changes", {"cursor": "%%%"}, None, 422, "cursor"),
    ("POST", "/v1/whitelists", {}, {"job_id": "no-such-job"}, 404, "job_id"),
    ("POST", "/v1/whitelists", {}, {"job_id": 17}, 422, "job_id"),
    ("POST", "/v1/whitelists", {}, {}, 422, "job_id"),
    ("POST", "/v1/whitelists", {}, {"job_id": "x", "products": []}, 422, "products"),
    ("POST", "/v1/whitelists", {}, {"job_id": "x", "extra": 1}, 422, "extra"),
    ("POST", "/v1/whitelists/0/publish", {}, {}, 422, "whitelist_id"),
    ("POST", "/v1/whitelists/999999/publish", {}, {}, 404, "whitelist_id"),
    ("POST", "/v1/whitelists/999999/reject", {}, {"reason": "no"}, 404, "whitelist_id"),
    ("POST", "/v1/whitelists/1/reject", {}, {}, 422, "reason"),
    ("POST", "/v1/whitelists/1/reject", {}, {"reason": ""}, 422, "reason"),
    ("GET", "/v1/whitelists", {"status": "pending"}, None, 422, "status"),
    ("GET", "/v1/whitelists/abc", {}, None, 422, "whitelist_id"),
])
def test_bad_input_is_a_field_level_4xx(scenario: Scenario, method: str, path: str, params: dict, body: Any,
                                        status: int, field: str) -> None:
    svc = scenario.svc
    role = Role.risk_approver if path.endswith(("publish", "reject")) else (
        Role.risk_analyst if method == "POST" or path == "/v1/whitelists" or path.startswith("/v1/whitelists/abc")
        else Role.platform)
    response = svc.client.request(method, path, params=params, json=body, headers=svc.headers(role))
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == [field], response.json()


def test_a_cursor_of_another_product_or_listing_is_refused(scenario: Scenario) -> None:
    svc = scenario.svc
    page = svc.client.get("/v1/whitelists/products/per_mu/rows", params={"limit": 1},
                          headers=svc.headers(Role.platform)).json()
    for path in ("/v1/whitelists/products/tax_credit/rows", "/v1/whitelists/products/per_mu/changes"):
        refused = svc.client.get(path, params={"cursor": page["next_cursor"]}, headers=svc.headers(Role.platform))
        assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "cursor"
    pinned = svc.client.get("/v1/whitelists/products/per_mu/rows", params={
        "cursor": page["next_cursor"], "whitelist_id": scenario.w1["whitelist_id"]}, headers=svc.headers(Role.platform))
    assert pinned.status_code == 422


# ------------------------------------------------------------------------------------- the other paths


def test_csv_jobs_rejection_and_a_republication_without_changes(scenario: Scenario) -> None:
    """A CSV job proposed twice for per_mu: the first rejected (rows dropped), the second published; same
    data as W2, so the feed after W2 is empty while the current whitelist moves on."""
    svc = scenario.svc
    job, frame, _ = _run(svc, products=["per_mu"], format="csv")
    duplicate = _propose(svc, job, products=["per_mu"])
    assert duplicate.status_code == 201, duplicate.text
    first = duplicate.json()
    assert first["products"]["per_mu"]["rows"] == int(frame["per_mu.eligible"].sum())
    assert first["products"]["per_mu"]["changes"]["entered"] == 0  # a preview against W2: nothing differs
    again = _propose(svc, job)
    assert again.status_code == 409 and f"whitelist {first['whitelist_id']}" in again.json()["detail"]
    no_reason = svc.client.post(f"/v1/whitelists/{first['whitelist_id']}/reject", json={"reason": " "},
                                headers=svc.headers(Role.risk_approver))
    assert no_reason.status_code == 422 and no_reason.json()["errors"][0]["field"] == "reason"
    rejected = svc.client.post(f"/v1/whitelists/{first['whitelist_id']}/reject", json={"reason": "wrong month"},
                               headers=svc.headers(Role.risk_approver))
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    assert _publish(svc, first["whitelist_id"]).status_code == 409
    with svc.engine.connect() as conn:
        left = conn.execute(sa.select(sa.func.count()).select_from(whitelist_rows).where(
            whitelist_rows.c.whitelist_id == first["whitelist_id"])).scalar_one()
    assert left == 0

    end = _feed(svc, "per_mu", None, limit=1000)[1]
    w2_page = svc.client.get("/v1/whitelists/products/per_mu/rows", params={"limit": 5},
                             headers=svc.headers(Role.platform))
    assert w2_page.json()["whitelist"]["current"]
    second = _propose(svc, job, products=["per_mu"])
    assert second.status_code == 201
    published = _publish(svc, second.json()["whitelist_id"])
    assert published.status_code == 200
    items, _ = _pages(svc, "per_mu")
    assert _comparable(items) == _eligible(frame, "per_mu", visible_fields(load_catalogue()["per_mu"].platform_fields))
    assert _comparable(items) == _comparable(_pages(svc, "per_mu", whitelist_id=scenario.w2["whitelist_id"])[0])
    superseded = svc.client.get("/v1/whitelists/products/per_mu/rows", params={
        "limit": 5, "whitelist_id": scenario.w2["whitelist_id"]}, headers={
        **svc.headers(Role.platform), "If-None-Match": w2_page.headers["etag"]})
    assert superseded.status_code == 200 and not superseded.json()["whitelist"]["current"]  # not a stale 304
    assert superseded.json()["items"] == w2_page.json()["items"]
    after = svc.client.get("/v1/whitelists/products/per_mu/changes", params={"cursor": end},
                           headers=svc.headers(Role.platform)).json()
    assert after["items"] == [] and after["next_cursor"] != end  # moved past the new, empty publication
    current = svc.client.get("/v1/whitelists/products", headers=svc.headers(Role.platform)).json()["products"]
    ids = {p["product"]: p["whitelist_id"] for p in current}
    assert ids["per_mu"] == second.json()["whitelist_id"] and ids["tax_credit"] == scenario.w2["whitelist_id"]
    listed = svc.client.get("/v1/whitelists", params={"status": "rejected"}, headers=svc.headers(Role.admin)).json()
    assert [w["whitelist_id"] for w in listed] == [first["whitelist_id"]]


def test_a_large_proposal_answers_202_and_is_followed_until_proposed(scenario: Scenario,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from api.http.routers import whitelists as router
    from api.precredit import whitelists as wl

    svc = scenario.svc
    job, frame, _ = _run(svc, products=["tech_innovation"])
    slow = wl.complete_proposal

    def loading_slowly(engine: sa.Engine, proposal: wl.Proposal) -> wl.Whitelist:
        time.sleep(0.5)
        return slow(engine, proposal)

    monkeypatch.setattr(router, "PROPOSE_WAIT_SECONDS", 0.01)
    monkeypatch.setattr(router.wl, "complete_proposal", loading_slowly)
    accepted = _propose(svc, job)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["status"] == "importing"
    deadline = time.monotonic() + 60
    while (record := svc.client.get(accepted.headers["location"], headers=svc.headers(Role.risk_approver)).json()
           )["status"] == "importing":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert record["status"] == "proposed" and record["rows"] == int(frame["tech_innovation.eligible"].sum())
    rejected = svc.client.post(accepted.headers["location"] + "/reject", json={"reason": "only a test"},
                               headers=svc.headers(Role.risk_approver))
    assert rejected.status_code == 200


def test_cli_propose_publish_reject_list_show_changes(scenario: Scenario, tmp_path: Path) -> None:
    svc = scenario.svc
    url = svc.engine.url.render_as_string(hide_password=False)
    job, _, _ = _run(svc, products=["two_healthy"])
    db = ["--database-url", url]
    proposed = runner.invoke(app, ["whitelists", "propose", "--job", job, "--by", "carol", "--json", *db])
    assert proposed.exit_code == 0, proposed.output
    wid = json.loads(proposed.stdout)["whitelist_id"]
    own = runner.invoke(app, ["whitelists", "publish", str(wid), "--by", "Carol", *db])
    assert own.exit_code == 1 and "maker-checker" in own.output and "Traceback" not in own.output
    shown = runner.invoke(app, ["whitelists", "show", str(wid), "--json", *db])
    assert shown.exit_code == 0 and json.loads(shown.stdout)["status"] == "proposed"
    published = runner.invoke(app, ["whitelists", "publish", str(wid), "--by", "dave", "--json", *db])
    assert published.exit_code == 0, published.output
    assert json.loads(published.stdout)["decided_by"] == "dave"
    listed = runner.invoke(app, ["whitelists", "list", "--product", "two_healthy", "--json", *db])
    assert wid in [w["whitelist_id"] for w in json.loads(listed.stdout)]
    changes = runner.invoke(app, ["whitelists", "changes", "--product", "two_healthy", "--limit", "5", "--json", *db])
    assert changes.exit_code == 0 and len(json.loads(changes.stdout)["items"]) == 5
    plain = runner.invoke(app, ["whitelists", "changes", "--product", "two_healthy", "--limit", "3", *db])
    assert plain.exit_code == 0 and "next cursor:" in plain.output
    with settings_env(batch_dir=str(tmp_path / "files")):
        exported = runner.invoke(app, ["whitelists", "export", "--product", "two_healthy", "--out",
                                       str(tmp_path / "wl.csv"), *db])
    assert exported.exit_code == 0, exported.output
    assert (tmp_path / "wl.csv").read_text().startswith('"credit_code","product"')
    # a run file from `indexloan batch precredit --out FILE` (its summary beside it): here the job's own file
    with svc.engine.connect() as conn:
        path = conn.execute(sa.select(batch_jobs.c.result_path).where(batch_jobs.c.job_id == job)).scalar_one()
    from_file = runner.invoke(app, ["whitelists", "propose", "--run", path, "--by", "erin", "--json", *db])
    assert from_file.exit_code == 0, from_file.output
    assert json.loads(from_file.stdout)["job_id"] is None and json.loads(from_file.stdout)["status"] == "proposed"
    twice = runner.invoke(app, ["whitelists", "propose", "--run", path, "--by", "erin", *db])
    assert twice.exit_code == 1 and "already proposed" in twice.output
    dropped = runner.invoke(app, ["whitelists", "reject", str(json.loads(from_file.stdout)["whitelist_id"]),
                                  "--by", "dave", "--reason", "from a file, only a test", *db])
    assert dropped.exit_code == 0, dropped.output
    for args, code in ((["changes", "--product", "two_healthy", "--cursor", "garbage"], 2),
                       (["propose", "--run", str(tmp_path / "none.parquet"), "--by", "x"], 1),
                       (["propose", "--run", str(tmp_path / "run.txt"), "--by", "x"], 2),
                       (["publish", "999999", "--by", "x"], 1),
                       (["reject", str(wid), "--by", "x", "--reason", "late"], 1),
                       (["propose", "--by", "x"], 2), (["propose", "--job", "nope", "--by", "x"], 1),
                       (["list", "--status", "pending"], 2), (["export", "--product", "per_mu", "--out", "x.xlsx"], 2)):
        result = runner.invoke(app, ["whitelists", *args, *db])
        assert result.exit_code == code, (args, result.output)
        assert "Traceback" not in result.output and "error:" in result.output
