"""Security (issue 14) over real HTTP: hostile input refused, callers bounded, keys revocable and expiring,
security headers and a docs page from bundled assets, no secrets in logs. docs/security.md maps each threat
to the test here or in tests/test_faults.py that covers it."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from api.http.app import create_app
from api.http.logs import redact
from api.keys import Role, create_key
from api.tables import quotes
from features import uscc
from features.ingest import ingest_directory
from tests.api_support import running_service
from tests.conftest import settings_env
from tests.live_server import serve


@dataclass
class Live:
    base: str
    engine: sa.Engine
    keys: dict[Role, str]
    codes: list[str]
    http: httpx.Client

    def headers(self, role: Role = Role.loan_officer, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}", **extra}

    def count_quotes(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(quotes)).scalar_one()


@contextlib.contextmanager
def live_service(directory: Path, **settings: str) -> Iterator[Live]:
    with settings_env(**settings), running_service("sqlite", directory) as service:
        url = service.engine.url.render_as_string(hide_password=False)
        app = create_app(database_url=url)
        with serve(app) as base, httpx.Client(base_url=base, timeout=30) as http:
            # quotes are rendered ahead in a background thread after start: let it finish, so that what these
            # tests time (rate limits per second) is the requests, not a thread sharing the GIL with them
            assert app.state.quoting.wait_for_rebuilds(timeout=600)
            yield Live(base, service.engine, service.keys, service.codes, http)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_service(tmp_path_factory.mktemp("security")) as service:
        yield service


# ------------------------------------------------------------------ headers and the docs page

HEADERS = {"x-frame-options": "DENY", "x-content-type-options": "nosniff", "referrer-policy": "no-referrer"}


def test_security_headers_on_every_response(live: Live) -> None:
    responses = [live.http.get(path) for path in ("/", "/docs", "/docs/assets/swagger-ui.css", "/ui/static/ui.js",
                                                 "/openapi.json", "/healthz", "/metrics", "/nope")]
    responses.append(live.http.get("/v1/products"))  # 401
    responses.append(live.http.get("/v1/products", headers=live.headers()))
    responses.append(live.http.post("/v1/quotes", content=b"x" * 70_000, headers=live.headers()))  # 413
    for r in responses:
        for name, value in HEADERS.items():
            assert r.headers.get(name) == value, (r.url, name, dict(r.headers))
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert responses[-2].headers["cache-control"] == "no-store"  # API answers are not cached


def test_docs_page_is_served_from_bundled_assets_without_inline_script(live: Live) -> None:
    page = live.http.get("/docs")
    assert page.status_code == 200
    html = page.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets and all(a.startswith("/") and not a.startswith("//") for a in assets), assets
    assert "http://" not in html and "https://" not in html  # no CDN
    for script in re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S):
        assert "src=" in script[0] and not script[1].strip(), "inline script"
    for asset in assets:
        assert live.http.get(asset).status_code == 200, asset
    assert "SwaggerUIBundle" in live.http.get("/static/docs.js").text
    assert live.http.get("/redoc").status_code == 404


def test_docs_page_renders_in_a_browser_under_the_csp(live: Live) -> None:
    """Swagger UI shows every operation, the CSP refuses nothing, and the page asks no other host for anything."""
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip(f"no Chromium at {chromium}: `make install` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    from tests.test_ui import LAUNCH_ARGS

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=LAUNCH_ARGS, headless=True)
        try:
            page = browser.new_page()
            messages: list[str] = []
            requested: list[str] = []
            page.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
            page.on("request", lambda r: requested.append(r.url))
            page.goto(f"{live.base}/docs")
            page.wait_for_selector(".opblock-summary", timeout=30_000)
            operations = page.locator(".opblock-summary").count()
        finally:
            browser.close()
    paths = live.http.get("/openapi.json").json()["paths"]
    assert operations == sum(len(item) for item in paths.values())
    assert not [m for m in messages if "error" in m.lower() or "refused" in m.lower()], messages
    assert all(url.startswith(live.base) for url in requested), requested


# ------------------------------------------------------------------ strict input


def _post(live: Live, body: bytes, content_type: str = "application/json") -> httpx.Response:
    return live.http.post("/v1/quotes", content=body, headers=live.headers(**{"Content-Type": content_type}))


def test_only_strict_utf8_json_bodies_are_read(live: Live) -> None:
    before = live.count_quotes()
    code = live.codes[0]
    good = json.dumps({"credit_code": code})
    cases = {
        "utf-16": (good.encode("utf-16"), 400, "body"),
        "utf-16-le": (good.encode("utf-16-le"), 400, "body"),
        "utf-32": (good.encode("utf-32"), 400, "body"),
        "bom": (b"\xef\xbb\xbf" + good.encode(), 400, "body"),
        "latin-1": (('{"credit_code": "' + code + '", "purpose": "caf\xe9"}').encode("latin-1"), 400, "body"),
        "duplicate key": (f'{{"credit_code": "{code}", "credit_code": "{live.codes[1]}"}}'.encode(), 422,
                          "credit_code"),
        "boolean amount": (json.dumps({"credit_code": code, "requested_amount_cny": True}).encode(), 422,
                           "requested_amount_cny"),
        "text amount": (json.dumps({"credit_code": code, "requested_amount_cny": "3000000"}).encode(), 422,
                        "requested_amount_cny"),
        "NaN": (f'{{"credit_code": "{code}", "requested_amount_cny": NaN}}'.encode(), 422, "body"),
        "Infinity": (f'{{"credit_code": "{code}", "requested_amount_cny": Infinity}}'.encode(), 422, "body"),
        "10001 digits": (f'{{"credit_code": "{code}", "requested_amount_cny": {"9" * 10001}}}'.encode(), 422,
                         "body"),
        "deep nesting": (f'{{"credit_code": "{code}", "products": {"[" * 5000}{"]" * 5000}}}'.encode(), 422,
                         "body"),
        "bidi override": (json.dumps({"credit_code": code, "purpose": "loan \u202egnp.exe"}).encode(), 422,
                          "purpose"),
        "NUL": (json.dumps({"credit_code": code, "purpose": "a\u0000b"}).encode(), 422, "purpose"),
        "control in consent": (json.dumps({"credit_code": code, "consent_ref": "AUTH\u001b[31m"}).encode(), 422,
                               "consent_ref"),
        "long purpose": (json.dumps({"credit_code": code, "purpose": "x" * 100_000}).encode(), 422, "purpose"),
    }
    for name, (body, status, field) in cases.items():
        if len(body) > 64 * 1024:
            body, status, field = json.dumps({"credit_code": code, "purpose": "x" * 300}).encode(), 422, "purpose"
        r = _post(live, body)
        assert r.status_code == status, (name, r.status_code, r.text[:300])
        assert r.headers["content-type"].startswith("application/problem+json"), name
        problem = r.json()
        assert any(e["field"].startswith(field) for e in problem.get("errors", [])), (name, problem)
    assert live.count_quotes() == before  # nothing was issued
    assert _post(live, good.encode()).status_code == 201  # the same body, well-formed, is fine


# ------------------------------------------------------------------ bounded callers


def test_chunked_and_declared_oversized_bodies_are_refused(live: Live) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(100):  # 6.4 MB offered in 64 KB chunks; refused after the first two
            yield b"9" * 65536

    r = live.http.post("/v1/quotes", content=chunks(), headers=live.headers(**{"Content-Type": "application/json"}))
    assert r.status_code == 413 and r.headers.get("connection") == "close"
    # a declared 400 MB body: refused from the header, before any of it is read
    host, port = live.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"POST /v1/quotes HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                     f"Authorization: Bearer {live.keys[Role.loan_officer]}\r\nContent-Length: {400 << 20}\r\n\r\n"
                     .encode() + b"{" * 1000)
        assert sock.recv(65536).startswith(b"HTTP/1.1 413 ")


def test_bad_keys_are_throttled_per_address_without_database_lookups(tmp_path: Path) -> None:
    with live_service(tmp_path, auth_failures_burst="20", auth_failures_per_minute="10") as live:
        statements = []
        sa.event.listen(live.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
        good = live.http.get("/v1/products", headers=live.headers())  # cached before the flood
        assert good.status_code == 200
        statuses = []
        for i in range(1000):
            r = live.http.get("/v1/products", headers={"Authorization": f"Bearer ilk_guess{i:06d}"})
            statuses.append(r.status_code)
            if r.status_code == 429:
                assert int(r.headers["Retry-After"]) >= 1
        assert statuses.count(401) <= 21 and statuses.count(429) >= 979, {s: statuses.count(s) for s in set(statuses)}
        lookups = [s for s in statements if "api_keys" in s]
        assert len(lookups) <= 21  # a guess past the budget costs no query
        # the address's known key (cached) still works; a valid key looked up for the first time waits too
        assert live.http.get("/v1/products", headers=live.headers()).status_code == 200


def test_rate_limits_per_key_and_per_address_answer_429_with_retry_after(tmp_path: Path) -> None:
    with live_service(tmp_path, rate_limit_key_per_second="5", rate_limit_key_burst="10",
                      rate_limit_address_per_second="20", rate_limit_address_burst="30") as live:
        statuses = [live.http.get("/v1/products", headers=live.headers()).status_code for _ in range(25)]
        assert statuses[:10] == [200] * 10 and statuses.count(429) >= 10, statuses
        limited = live.http.get("/v1/products", headers=live.headers())
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
        assert limited.headers["content-type"].startswith("application/problem+json")
        # another key from the same address has its own budget, until the address's is spent
        other = [live.http.get("/v1/products", headers=live.headers(Role.admin)).status_code for _ in range(30)]
        assert other[:3] == [200] * 3 and 429 in other
        assert live.http.get("/healthz").status_code == 200  # probes are never limited
        time.sleep(2.5)
        assert live.http.get("/v1/products", headers=live.headers()).status_code == 200


# ------------------------------------------------------------------ keys


def test_revocation_over_the_api_is_effective_at_once(live: Live) -> None:
    key = create_key(live.engine, Role.platform, "to-revoke")
    headers = {"Authorization": f"Bearer {key}"}
    assert live.http.get("/v1/products", headers=headers).status_code == 200  # now cached in the worker
    with live.engine.connect() as conn:
        key_id = conn.execute(sa.text("SELECT id FROM api_keys WHERE name = 'to-revoke'")).scalar_one()
    body = {"key_id": key_id, "reason": "leaked"}
    assert live.http.post("/v1/keys/revoke", json=body, headers=live.headers(Role.risk_approver)).status_code == 403
    assert live.http.get("/v1/products", headers=headers).status_code == 200
    revoked = live.http.post("/v1/keys/revoke", json=body, headers=live.headers(Role.admin))
    assert revoked.status_code == 200 and revoked.json()["id"] == key_id
    assert live.http.get("/v1/products", headers=headers).status_code == 401  # at once, not after 30 s
    again = live.http.post("/v1/keys/revoke", json=body, headers=live.headers(Role.admin))
    assert again.status_code == 409
    unknown = live.http.post("/v1/keys/revoke", json={"key_id": 999_999, "reason": "x"},
                             headers=live.headers(Role.admin))
    assert unknown.status_code == 404 and unknown.json()["errors"][0]["field"] == "key_id"
    assert live.http.post("/v1/keys/revoke", json={"key_id": True, "reason": "x"},
                          headers=live.headers(Role.admin)).status_code == 422
    with live.engine.connect() as conn:
        actions = conn.execute(sa.text("SELECT action, actor FROM audit_log WHERE subject = :s"),
                               {"s": f"key:{key_id}"}).all()
    assert ("key.revoke", "test-admin") in [tuple(a) for a in actions]


def test_expired_keys_are_refused_even_when_cached(live: Live) -> None:
    past = create_key(live.engine, Role.loan_officer, "expired", expires_at=dt.datetime.now(dt.UTC)
                      - dt.timedelta(seconds=1))
    assert live.http.get("/v1/products", headers={"Authorization": f"Bearer {past}"}).status_code == 401
    soon = create_key(live.engine, Role.loan_officer, "expires-soon", expires_at=dt.datetime.now(dt.UTC)
                      + dt.timedelta(seconds=1.5))
    assert live.http.get("/v1/products", headers={"Authorization": f"Bearer {soon}"}).status_code == 200
    time.sleep(1.6)
    assert live.http.get("/v1/products", headers={"Authorization": f"Bearer {soon}"}).status_code == 401


# ------------------------------------------------------------------ logs


def test_logs_hold_no_keys_and_no_full_credit_codes(live: Live) -> None:
    code = live.codes[3]
    assert redact(f"key ilk_{'A' * 40} for {code} Bearer sekret") == (
        f"key ilk_[redacted] for {code[:8]}********{code[-2:]} Bearer [redacted]")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    from api.http.logs import RedactingFilter, log

    handler = Keep()
    handler.addFilter(RedactingFilter())
    log.addHandler(handler)
    try:
        log.error("lookup for %s with Bearer %s failed", code, live.keys[Role.admin])
    finally:
        log.removeHandler(handler)
    text = "\n".join(r.getMessage() for r in records)
    assert code not in text and live.keys[Role.admin] not in text
    assert not re.search(r"ilk_[A-Za-z0-9_-]{10,}", text)
    assert uscc.problem(code) is None


# ------------------------------------------------------------------ ingestion and product files


def test_ingestion_refuses_future_and_impossible_dates_and_unsafe_names(live: Live, tmp_path: Path) -> None:
    import pandas as pd

    region = tmp_path / "region"
    region.mkdir()
    source = pd.read_sql("SELECT * FROM src_registry LIMIT 4", live.engine).drop(columns=["batch_id"])
    source["credit_code"] = live.codes[:4]
    source["as_of"] = ["2999-12-31", "2025-06-30", "2025-06-30", "2025-06-30"]
    source["established_date"] = ["2010-01-01", "1700-01-01", "2010-01-01", "2010-01-01"]
    source["name"] = [source["name"][0], source["name"][1], "Evil \u202eCorp", "x" * 100_000]
    source.to_csv(region / "registry.csv", index=False)
    report = ingest_directory(live.engine, region, tmp_path / "quarantine")
    result = report.sources["registry"]
    assert result.rows_rejected == 4 and result.rows_accepted == 0
    reasons = pd.read_csv(result.quarantine_file)["_reason"].tolist()
    assert "after the day of ingestion" in reasons[0]
    assert "is before 1800-01-01" in reasons[1]
    assert "U+202E" in reasons[2]
    assert "longer than 200 characters" in reasons[3]
    # a row dated in the future that was stored before is never shown as the latest record
    with live.engine.begin() as conn:
        conn.execute(sa.text("UPDATE src_registry SET as_of = '2999-12-31' WHERE credit_code = :c AND as_of = "
                             "(SELECT MAX(as_of) FROM src_registry WHERE credit_code = :c)"), {"c": live.codes[5]})
    profile = live.http.get(f"/v1/enterprises/{live.codes[5]}/profile", headers=live.headers()).json()
    assert profile["sources"]["registry"].get("as_of") != "2999-12-31"


def test_ingestion_refuses_a_100000_column_file_and_an_endless_line_before_parsing(tmp_path: Path) -> None:
    from api.database import migrate

    region = tmp_path / "wide"
    region.mkdir()
    (region / "registry.csv").write_text(",".join(f"c{i}" for i in range(100_000)) + "\n" + "1," * 99_999 + "1\n")
    start = time.monotonic()
    report = ingest_directory(migrate(f"sqlite:///{tmp_path / 'wide.db'}"), region, tmp_path / "q")
    assert time.monotonic() - start < 5
    assert "header line is longer" in (report.sources["registry"].error or "")
    # a normal header, then one 2 MB line: refused by its width, before pandas parses the file
    from features.sources import SOURCES, all_fields

    header = ",".join(f.name for f in all_fields(SOURCES["registry"]))
    (region / "registry.csv").write_text(header + "\n" + "9" * (2 << 20) + "\n")
    report = ingest_directory(migrate(f"sqlite:///{tmp_path / 'wide.db'}"), region, tmp_path / "q")
    assert "line 2 is longer than" in (report.sources["registry"].error or ""), report.as_json()


def test_product_files_refuse_duplicate_keys_and_give_clear_errors_for_any_bytes(tmp_path: Path) -> None:
    from products.catalogue import DEFINITIONS_DIR, DefinitionError, load_definition

    original = (DEFINITIONS_DIR / "per_mu.yaml").read_text(encoding="utf-8")
    assert "\nmax_pd:" in original
    files = {
        "duplicate.yaml": original.replace("\nmax_pd:", "\nmax_pd: 0.9\nmax_pd:", 1).encode(),
        "utf16.yaml": original.encode("utf-16"),
        "binary.yaml": bytes(range(256)) * 10,
        "digits.yaml": b"code: x\nmax_pd: " + b"9" * 10001 + b"\n",
        "deep.yaml": b"code: " + b"[" * 20000,
        "empty.yaml": b"",
    }
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(DefinitionError) as raised:
            load_definition(path)
        assert str(raised.value), name
    with pytest.raises(DefinitionError, match="given twice"):
        load_definition(tmp_path / "duplicate.yaml")


def test_the_modules_warnings_reach_a_handler_only_through_the_redacting_one() -> None:
    """The service's modules log under their own names (`api.quoting.service`, `training.families`, ...): a
    warning of theirs goes through the service's redacting handler, so no handler (here the root's, as a host's
    logging set-up would have) ever gets a full credit code from them. Before, they had no handler: Python's
    last-resort handler printed them unredacted."""
    from api.http import logs

    logs.configure()
    code = "91330302000000000G"
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage() + (record.exc_text or ""))

    keep = Keep()
    root = logging.getLogger()
    root.handlers.insert(0, keep)  # before any handler of the root's that may redact in its own filter
    try:
        for name in ("api.quoting.service", "training.families", "features.ingest"):
            logging.getLogger(name).warning("rebuilding for %s failed", code)
    finally:
        root.removeHandler(keep)
    assert len(seen) == 3
    assert all(code not in line and f"{code[:8]}********{code[-2:]}" in line for line in seen)
