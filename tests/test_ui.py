"""The console (/ui): a real headless Chromium against the real service on a loopback port, and httpx
TestClient checks of its sign-in cookie, CSRF refusals and redirects."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import itertools
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Page, expect, sync_playwright

from api.http.app import create_app
from api.http.ui.sessions import ui_sessions
from api.keys import Role, create_key, revoke_key
from api.monitoring.tables import quote_overrides, shadow_scores
from api.tables import quotes
from api.workbench.store import ProductVersions
from api.workbench.tables import simulation_jobs
from tests.api_support import Service, running_service
from tests.live_server import champion_in, private_batch_dir, serve

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PRODUCTS = {"tech_innovation", "tax_credit", "per_mu", "two_healthy", "new_villager"}
RISK_PAGES = ("/ui/risk/", "/ui/risk/products", "/ui/risk/models", "/ui/risk/batch", "/ui/risk/audit",
              "/ui/risk/simulations", "/ui/risk/monitoring")


@dataclass
class Live:
    base_url: str
    service: Service
    eligible_code: str  # an enterprise with at least two eligible products
    ineligible_code: str  # one with none

    def key(self, role: Role) -> str:
        return self.service.keys[role]

    def api_quote(self, quote_id: str) -> dict[str, Any]:
        response = requests.get(f"{self.base_url}/v1/quotes/{quote_id}", timeout=30,
                                headers={"Authorization": f"Bearer {self.key(Role.loan_officer)}"})
        assert response.status_code == 200, response.text
        return response.json()

    def quote_count(self) -> int:
        with self.service.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(quotes)).scalar_one()


@contextlib.contextmanager
def console(directory: Path) -> Iterator[Live]:
    """The service with a champion model, served on a loopback port; an eligible and an ineligible firm."""
    models_dir = directory / "models"
    with private_batch_dir(directory / "batch"), \
            running_service("sqlite", directory, models_dir, prepare=champion_in(models_dir)) as service:
        url = service.engine.url.render_as_string(hide_password=False)
        with serve(create_app(database_url=url, models_dir=str(models_dir))) as base_url:
            headers = service.headers(Role.risk_analyst)  # the look-up's quotes are not the officer's
            eligible = ineligible = None
            for candidate in service.codes:  # the seeded region makes these the same firms every run
                body = requests.post(f"{base_url}/v1/quotes", json={"credit_code": candidate}, headers=headers,
                                     timeout=30).json()
                count = sum(q["eligible"] for q in body["quotes"])
                if count >= 2 and eligible is None:
                    eligible = candidate
                if count == 0 and ineligible is None:
                    ineligible = candidate
                if eligible and ineligible:
                    break
            assert eligible and ineligible, "the test region lacks an eligible or an ineligible enterprise"
            yield Live(base_url, service, eligible, ineligible)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with console(tmp_path_factory.mktemp("ui")) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        reason = f"no Chromium at {CHROMIUM}: `make install` installs Debian's chromium"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    yield page
    context.close()


def sign_in(page: Page, live: Live, role: Role = Role.loan_officer) -> None:
    page.goto(f"{live.base_url}/")  # redirects to /ui, then to the sign-in page
    expect(page).to_have_url(re.compile(r"/ui/login"))
    page.fill("#api-key", live.key(role))
    page.click("#sign-in")
    expect(page.locator("#sign-out")).to_be_visible()


def ask(page: Page, code: str, amount: str = "") -> None:
    page.goto(page.url.split("/ui")[0] + "/ui")
    page.fill("#credit-code", code)
    if amount:
        page.fill("#amount", amount)
    page.click("#submit")


# What the page must show for the API's numbers, written out here independently of the page's formatter.

def cny(amount: float, lang: str) -> str:
    digits = f"{int(amount):,}" if float(amount).is_integer() else f"{amount:,.2f}"
    if lang == "en":
        return f"CNY {digits}"
    if amount >= 10_000:
        wan = f"{amount / 10_000:,.2f}".rstrip("0").rstrip(".")
        return f"{digits} 元（{wan}万元）"
    return f"{digits} 元"


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}%"


def check_quote_page(page: Page, stored: dict[str, Any], lang: str) -> None:
    yes, no, eligible, ineligible = {"zh": ("是", "否", "可授信", "不可授信"),
                                     "en": ("Yes", "No", "Eligible", "Not eligible")}[lang]
    expect(page.locator("#quote-id")).to_have_text(stored["quote_id"])
    expect(page.locator("#summary tbody tr")).to_have_count(len(stored["quotes"]))
    expect(page.locator(".card")).to_have_count(len(stored["quotes"]))
    best = stored["best_offer"]
    for q in stored["quotes"]:
        row = page.locator(f'#summary tr[data-product="{q["product"]}"]')
        expect(row.locator('[data-field="eligible"]')).to_have_text(yes if q["eligible"] else no)
        expect(row.locator('[data-field="grade"]')).to_have_text(q["grade"] or "—")
        expect(row.locator('[data-field="limit"]')).to_have_text(cny(q["limit_cny"], lang))
        expect(row.locator('[data-field="rate"]')).to_have_text(pct(q["rate"]))
        expect(row.locator('[data-field="all_in"]')).to_have_text(pct((q["all_in_cost"] or {}).get("pct")))
        expect(row.locator('[data-field="best"]')).to_have_count(1 if best and best["product"] == q["product"] else 0)
        card = page.locator(f'.card[data-product="{q["product"]}"]')
        name = q["product_name"][lang]
        if q["eligible"]:
            expect(card.locator("h3")).to_contain_text(f"{name} — {eligible}")
            expect(card.locator('[data-field="limit"]')).to_have_text(cny(q["limit_cny"], lang))
            expect(card.locator('[data-field="rate"]')).to_have_text(pct(q["rate"]))
            expect(card.locator('[data-field="rate_band"]')).to_have_text(
                f"{pct(q['rate_band'][0])} – {pct(q['rate_band'][1])}")
            cost = q["all_in_cost"]
            expect(card.locator('[data-field="all_in"]')).to_contain_text(
                f"{pct(cost['pct'])} · {cny(cost['cny'], lang)}")
            fee = q["guarantee_fee"]
            expect(card.locator('[data-field="fee"]')).to_contain_text(f"{pct(fee['pct'])} · {cny(fee['cny'], lang)}")
            expect(card.locator('[data-field="promise"]')).to_contain_text(q["service_promise"][lang])
            expect(card.locator("svg.dims g.dim")).to_have_count(len(q["dimensions"]))
            shown = card.locator("svg.dims g.dim").evaluate_all("els => els.map(e => Number(e.dataset.value))")
            assert shown == list(q["dimensions"].values())
            steps = card.locator("svg.shap g.step").evaluate_all("els => els.map(e => Number(e.dataset.contribution))")
            assert steps[:len(q["risk_factors"])] == pytest.approx([f["contribution"] for f in q["risk_factors"]],
                                                                   abs=1e-6)
            expect(card.locator("svg.band circle.point")).to_have_attribute("data-rate", f"{q['rate']:.2f}")
        else:
            expect(card.locator("summary h3")).to_have_text(f"{name} — {ineligible}")
            main = (q["reasons"] or q["top_reasons"])[0][lang]
            expect(card.locator('[data-field="main_reason"]')).to_have_text(main)
            expect(card).not_to_have_attribute("open", "")  # collapsed to its main reason
    expect(page.locator(".card.eligible")).to_have_count(sum(q["eligible"] for q in stored["quotes"]))


# ------------------------------------------------------------------ the officer's path, in a browser

def test_officer_quotes_switches_language_prints_reopens_and_signs_out(page: Page, live: Live,
                                                                       tmp_path: Path) -> None:
    sign_in(page, live)
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    page.fill("#credit-code", live.eligible_code[:17] + ("0" if live.eligible_code[17] != "0" else "1"))
    expect(page.locator("#code-check")).to_contain_text("校验码（第 18 位）")  # checked as you type
    page.fill("#credit-code", live.eligible_code)
    expect(page.locator("#code-check")).to_have_text("校验码正确")
    page.click("#submit")
    expect(page).to_have_url(re.compile(r"/ui/quotes/[0-9a-f-]{36}$"))
    quote_id = page.locator("#quote-id").inner_text()
    stored = live.api_quote(quote_id)  # the API's JSON for the same quote
    assert {q["product"] for q in stored["quotes"]} == PRODUCTS and stored["credit_code"] == live.eligible_code
    check_quote_page(page, stored, "zh")
    expect(page.locator("#best-offer")).to_contain_text(stored["best_offer"]["product_name"]["zh"])

    page.click("#lang-switch")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    check_quote_page(page, stored, "en")
    page.goto(f"{live.base_url}/ui/history")  # the choice is remembered (cookie)
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("h1")).to_have_text("History")

    page.goto(f"{live.base_url}/ui/quotes/{quote_id}")
    page.click("#print-link")
    expect(page.locator("body")).to_have_class("print-view")
    expect(page.locator("#quote-id")).to_have_text(quote_id)
    expect(page.locator("#expires")).to_have_text(
        dt.datetime.fromisoformat(stored["expires_at"]).strftime("%Y-%m-%d %H:%M UTC"))
    for q in stored["quotes"]:
        expect(page.locator("#versions")).to_contain_text(f"{q['product']} {q['product_version']}")
    expect(page.locator("#model-version")).to_have_text(stored["model_version"])
    page.emulate_media(media="print")
    expect(page.locator("header.top")).to_be_hidden()  # the print CSS leaves only the sheet
    pdf = page.pdf(format="A4")
    assert pdf.startswith(b"%PDF") and len(pdf) > 10_000
    page.emulate_media(media="screen")

    page.click("#lang-switch")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    page.goto(f"{live.base_url}/ui/history")
    page.fill("#h-code", live.eligible_code)
    page.fill("#h-from", dt.date.today().isoformat())
    page.click("#h-search")
    row = page.locator(f'#history tr[data-quote="{quote_id}"]')
    expect(row).to_have_count(1)
    codes = page.locator("#history tbody tr td code").all_inner_texts()
    assert codes and set(codes) == {live.eligible_code}  # only quotes of the firm searched for
    row.locator("a.reopen").click()
    expect(page.locator("#replay [data-field=replay]")).to_have_text("按存档快照重算，结果一致")
    check_quote_page(page, stored, "zh")  # the stored numbers, as first shown
    page.screenshot(path=str(tmp_path / "reopened.png"), full_page=True)
    assert (tmp_path / "reopened.png").stat().st_size > 10_000

    page.click("#sign-out")
    expect(page).to_have_url(re.compile(r"/ui/login\?m=bye"))
    expect(page.locator("#message")).to_have_text("已退出登录")
    page.goto(f"{live.base_url}/ui/quotes/{quote_id}")
    expect(page).to_have_url(re.compile(r"/ui/login"))  # the session is gone


def test_an_ineligible_firm_shows_every_product_collapsed_to_its_main_reason(page: Page, live: Live) -> None:
    sign_in(page, live)
    ask(page, live.ineligible_code)
    expect(page.locator("#summary")).to_be_visible()
    stored = live.api_quote(page.locator("#quote-id").inner_text())
    assert not any(q["eligible"] for q in stored["quotes"])
    check_quote_page(page, stored, "zh")
    expect(page.locator("#best-offer")).to_have_text("无可授信产品")
    expect(page.locator("details.card[open]")).to_have_count(0)


def test_a_loan_officer_is_refused_every_risk_page(page: Page, live: Live) -> None:
    sign_in(page, live)
    for path in RISK_PAGES:
        response = page.goto(f"{live.base_url}{path}")
        assert response is not None and response.status == 403, path
        expect(page.locator("#error-heading")).to_have_text("无权访问")
        expect(page.locator("#error-detail")).to_contain_text("客户经理")
        expect(page.locator("body")).not_to_contain_text("Traceback")


def test_risk_staff_see_products_models_batch_runs_and_the_audit_chain(page: Page, live: Live) -> None:
    sign_in(page, live, Role.risk_approver)
    expect(page).to_have_url(re.compile(r"/ui/risk/products$"))
    definitions = requests.get(f"{live.base_url}/v1/products", headers=live.service.headers(Role.risk_approver),
                               timeout=30).json()
    for d in definitions:
        row = page.locator(f'#products tr[data-product="{d["code"]}"][data-version="{d["version"]}"]')
        expect(row).to_contain_text(d["effective_date"])
        expect(row.locator('[data-field="state"]')).to_have_text("生效中")
    page.click("text=风险模型")
    models = requests.get(f"{live.base_url}/v1/models", headers=live.service.headers(Role.risk_approver),
                          timeout=30).json()
    champion = next(m for m in models if m["stage"] == "champion")
    row = page.locator(f'#models tr[data-model="{champion["id"]}"]')
    expect(row.locator('[data-field="stage"]')).to_have_attribute("data-stage", "champion")
    expect(row.locator('[data-field="stage"]')).to_have_text("冠军（在用）")
    expect(row).to_contain_text(f"{champion['oot_auc']:.3f}")
    report = page.request.get(live.base_url + row.locator("a.report").get_attribute("href"))
    assert report.status == 200 and "sandbox" in report.headers["content-security-policy"]
    started = requests.post(f"{live.base_url}/v1/batch/precredit", json={"format": "csv"}, timeout=30,
                            headers=live.service.headers(Role.risk_analyst))
    assert started.status_code == 202, started.text
    job_id = started.json()["job_id"]
    deadline = time.monotonic() + 180
    while (job := requests.get(f"{live.base_url}/v1/batch/precredit/{job_id}", timeout=30,
                               headers=live.service.headers(Role.risk_analyst)).json())["status"] != "succeeded":
        assert job["status"] != "failed" and time.monotonic() < deadline, job
        time.sleep(0.2)
    page.goto(f"{live.base_url}/ui/risk/batch")
    expect(page.locator("h1")).to_have_text("批量预授信")
    row = page.locator(f'#jobs tr[data-job="{job_id}"]')
    expect(row.locator('[data-field="status"]')).to_have_text("succeeded")
    total = job["progress"]["partitions_total"]
    expect(row.locator("progress")).to_have_attribute("value", str(job["progress"]["partitions_done"]))
    expect(row).to_contain_text(f"{total}/{total}")
    download = page.request.get(live.base_url + row.locator("a.download").get_attribute("href"))
    assert download.status == 200 and download.headers["x-content-sha256"] == job["result_sha256"]
    assert hashlib.sha256(download.body()).hexdigest() == job["result_sha256"]
    page.goto(f"{live.base_url}/ui/risk/audit")
    expect(page.locator("#audit-status")).to_contain_text("审计链完整")


@pytest.mark.parametrize(("code", "detail"), [
    ("91330302000000000H", "check character"),
    ("9133030200000", "must be 18 characters"),
    ("91330302O0000000OG", "is not allowed"),
])
def test_a_malformed_credit_code_gives_a_clear_message(page: Page, live: Live, code: str, detail: str) -> None:
    sign_in(page, live)
    before = live.quote_count()
    ask(page, code)
    message = page.locator("#message")
    expect(message).to_contain_text("统一社会信用代码有误")
    expect(message).to_contain_text(re.compile(f"credit_code: .*{re.escape(detail)}"))
    expect(page.locator("#summary")).to_have_count(0)
    expect(page.locator("#credit-code")).to_have_value(code)  # kept for correcting
    page.click("#lang-switch")
    expect(page.locator("#submit")).to_have_text("Get quote")
    assert live.quote_count() == before


def test_an_unknown_firm_gives_a_clear_message(page: Page, live: Live) -> None:
    sign_in(page, live)
    before = live.quote_count()
    ask(page, "91330302000000000G")  # valid, but not in the store
    expect(page.locator("#message")).to_contain_text("库中没有该企业的数据")
    expect(page.locator("#message")).to_contain_text("not in the store")
    assert live.quote_count() == before


def test_an_expired_session_gives_a_clear_message(page: Page, live: Live) -> None:
    sign_in(page, live)
    with live.service.engine.begin() as conn:  # every session of this run ends now
        conn.execute(ui_sessions.update().values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
    page.fill("#credit-code", live.eligible_code)
    page.click("#submit")
    expect(page).to_have_url(re.compile(r"/ui/login\?m=ended"))
    expect(page.locator("#message")).to_have_text("会话已过期或已结束，请重新登录")


# ------------------------------------------------------------------ HTTP-level checks (TestClient)

@pytest.fixture
def client(live: Live) -> TestClient:
    """A client of the already started app, over https (so that the Secure cookie comes back)."""
    return TestClient(live.service.client.app, base_url="https://testserver")


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def _signed_in(client: TestClient, key: str) -> str:
    form = client.get("/ui/login")
    response = client.post("/ui/login", data={"api_key": key, "csrf": _csrf(form.text)}, follow_redirects=False)
    assert response.status_code == 303, response.text
    return _csrf(client.get("/ui/history").text)


def test_root_redirects_to_the_console_and_the_console_to_sign_in(client: TestClient) -> None:
    root = client.get("/", follow_redirects=False)
    assert root.status_code == 307 and root.headers["location"] == "/ui"
    console = client.get("/ui", follow_redirects=False)
    assert console.status_code == 303 and console.headers["location"] == "/ui/login?m=in"


def test_the_session_cookie_is_secure_http_only_strict_and_expires(client: TestClient, live: Live) -> None:
    form = client.get("/ui/login")
    response = client.post("/ui/login", data={"api_key": live.key(Role.loan_officer), "csrf": _csrf(form.text)},
                           follow_redirects=False)
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("ilui_session="))
    attributes = {a.strip().split("=")[0].lower(): a.strip() for a in cookie.split(";")}
    assert {"secure", "httponly", "max-age", "path"} <= attributes.keys()
    assert attributes["samesite"].lower() == "samesite=strict"
    assert 0 < int(attributes["max-age"].split("=")[1]) <= 8 * 3600
    token = cookie.split(";")[0].split("=", 1)[1]
    with live.service.engine.connect() as conn:
        hashes = set(conn.execute(sa.select(ui_sessions.c.token_hash)).scalars())
    assert token not in hashes and hashlib.sha256(token.encode()).hexdigest() in hashes  # only its hash stored
    page = client.get("/ui").text
    assert live.key(Role.loan_officer) not in page and live.key(Role.loan_officer) not in cookie
    headers = client.get("/ui").headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"


def test_posts_without_the_right_csrf_token_are_refused(client: TestClient, live: Live) -> None:
    csrf = _signed_in(client, live.key(Role.loan_officer))
    before = live.quote_count()
    for token in ("", "0" * 64, csrf[:-1] + ("0" if csrf[-1] != "0" else "1")):
        response = client.post("/ui/quote", data={"csrf": token, "credit_code": live.eligible_code})
        assert response.status_code == 403 and "安全校验未通过" in response.text
        assert client.post("/ui/logout", data={"csrf": token}, follow_redirects=False).status_code == 403
    assert live.quote_count() == before
    assert client.get("/ui", follow_redirects=False).status_code == 200  # still signed in
    other = TestClient(live.service.client.app, base_url="https://testserver")
    _signed_in(other, live.key(Role.loan_officer))  # another session's token does not open this one's forms
    assert other.post("/ui/logout", data={"csrf": csrf}, follow_redirects=False).status_code == 403
    login = client.post("/ui/login", data={"api_key": live.key(Role.loan_officer), "csrf": "forged"})
    assert login.status_code == 403  # the sign-in form has its own (double-submit) token
    response = client.post("/ui/quote", data={"csrf": csrf, "credit_code": live.eligible_code},
                           follow_redirects=False)
    assert response.status_code == 303 and live.quote_count() == before + 1


def test_a_revoked_or_expired_key_ends_its_sessions(client: TestClient, live: Live) -> None:
    engine = live.service.engine
    key = create_key(engine, Role.loan_officer, "ui-revoked")
    _signed_in(client, key)
    assert client.get("/ui", follow_redirects=False).status_code == 200
    with engine.connect() as conn:
        key_id = conn.execute(sa.text("SELECT id FROM api_keys WHERE name = 'ui-revoked'")).scalar_one()
    revoke_key(engine, key_id, "test", "left the bank")
    ended = client.get("/ui", follow_redirects=False)
    assert ended.status_code == 303 and ended.headers["location"] == "/ui/login?m=ended"

    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
    short = create_key(engine, Role.loan_officer, "ui-short", expires_at=soon)
    form = client.get("/ui/login")
    response = client.post("/ui/login", data={"api_key": short, "csrf": _csrf(form.text)}, follow_redirects=False)
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("ilui_session="))
    assert int(re.search(r"Max-Age=(\d+)", cookie).group(1)) <= 2  # never outlives its key


def test_a_bad_key_is_refused_with_a_message(client: TestClient) -> None:
    form = client.get("/ui/login")
    response = client.post("/ui/login", data={"api_key": "ilk_not-a-key", "csrf": _csrf(form.text)})
    assert response.status_code == 401 and "API 密钥无效、已停用或已过期" in response.text
    assert "ilui_session=" not in response.headers.get("set-cookie", "")


def test_language_switch_stays_inside_the_console(client: TestClient) -> None:
    response = client.get("/ui/lang/en", params={"next": "//evil.example/"}, follow_redirects=False)
    assert response.headers["location"] == "/ui" and "ilui_lang=en" in response.headers["set-cookie"]
    assert client.get("/ui/login").text.count('lang="en"') == 1


def test_the_platform_sees_only_its_view_of_a_quote(page: Page, live: Live) -> None:
    """The platform's pages hold what its API view holds: no points per dimension, no SHAP inputs."""
    sign_in(page, live, Role.platform)
    page.goto(f"{live.base_url}/ui")
    page.fill("#credit-code", live.eligible_code)
    page.click("#submit")
    expect(page.locator("#message")).to_contain_text("平台角色须提供企业授权编号")  # as POST /v1/quotes
    page.fill("#consent-ref", "AUTH-UI-1")
    page.click("#submit")
    expect(page.locator("#summary")).to_be_visible()
    quote_id = page.locator("#quote-id").inner_text()
    seen = requests.get(f"{live.base_url}/v1/quotes/{quote_id}", headers=live.service.headers(Role.platform),
                        timeout=30).json()
    assert all("dimensions" not in q and "risk_factors" not in q for q in seen["quotes"])
    expect(page.locator(".card")).to_have_count(len(seen["quotes"]))
    for q in seen["quotes"]:
        limit = page.locator(f'.card[data-product="{q["product"]}"] [data-field="limit"]')
        if q["eligible"] and "limit_cny" in q:
            expect(limit).to_have_text(cny(q["limit_cny"], "zh"))
        elif q["eligible"]:  # a product whose platform_fields leave the limit out: not on the page either
            expect(limit).to_have_count(0)
    expect(page.locator("svg.dims")).to_have_count(0)
    expect(page.locator("svg.shap")).to_have_count(0)
    expect(page.locator('[data-field="index"]')).to_have_count(
        sum(1 for q in seen["quotes"] if q["eligible"] and "index" in q))


def test_collateral_narrows_the_products_quoted(client: TestClient, live: Live) -> None:
    csrf = _signed_in(client, live.key(Role.loan_officer))
    response = client.post("/ui/quote", data={"csrf": csrf, "credit_code": live.eligible_code,
                                              "collateral": "unsecured", "amount": "1,000,000"},
                           follow_redirects=False)
    assert response.status_code == 303, response.text
    quote_id = response.headers["location"].rsplit("/", 1)[1]
    stored = live.api_quote(quote_id)
    definitions = {d.code: d for d in live.service.client.app.state.quoting.definitions}
    assert {q["product"] for q in stored["quotes"]} == {c for c, d in definitions.items()
                                                        if d.collateral == "unsecured"}
    with live.service.engine.connect() as conn:
        request = conn.execute(sa.select(quotes.c.request_json).where(quotes.c.quote_id == quote_id)).scalar_one()
    assert '"requested_amount_cny":1000000.0' in request.replace(" ", "")
    bad = client.post("/ui/quote", data={"csrf": csrf, "credit_code": live.eligible_code, "amount": "lots"})
    assert bad.status_code == 422 and "申请金额须为大于 0" in bad.text


def test_a_form_sent_twice_issues_one_quote(client: TestClient, live: Live) -> None:
    csrf = _signed_in(client, live.key(Role.loan_officer))
    form = {"csrf": csrf, "credit_code": live.eligible_code, "form_id": "f3a1c2d4-0000-4000-8000-000000000001"}
    before = live.quote_count()
    first = client.post("/ui/quote", data=form, follow_redirects=False)
    again = client.post("/ui/quote", data=form, follow_redirects=False)
    assert first.status_code == again.status_code == 303
    assert first.headers["location"] == again.headers["location"] and live.quote_count() == before + 1
    changed = client.post("/ui/quote", data={**form, "credit_code": live.ineligible_code}, follow_redirects=False)
    assert changed.headers["location"] != first.headers["location"] and live.quote_count() == before + 2


def test_errors_under_the_console_are_pages_in_the_readers_language(client: TestClient, live: Live) -> None:
    _signed_in(client, live.key(Role.loan_officer))
    missing = client.get("/ui/quotes/00000000-0000-4000-8000-000000000000")
    assert missing.status_code == 404 and "未找到该报价" in missing.text and "sign-out" in missing.text
    unknown = client.get("/ui/no-such-page")
    assert unknown.status_code == 404 and unknown.headers["content-type"].startswith("text/html")
    invalid = client.get("/ui/history", params={"code": "X" * 40})
    assert invalid.status_code == 422 and "text/html" in invalid.headers["content-type"]
    bad_date = client.get("/ui/history", params={"from": "2026-13-01"})
    assert bad_date.status_code == 422 and "日期格式应为 YYYY-MM-DD" in bad_date.text
    api = client.get("/v1/quotes/nope")  # the API keeps its problem documents
    assert api.headers["content-type"].startswith("application/problem+json")


def test_keyboard_only_on_a_tablet(browser: Browser, live: Live) -> None:
    """Sign in and quote with the keyboard alone on a tablet-sized screen; every field has its label."""
    context = browser.new_context(viewport={"width": 820, "height": 1180})
    try:
        page = context.new_page()
        page.goto(f"{live.base_url}/ui/login")
        labelled = "() => [...document.querySelectorAll('input:not([type=hidden]), select')]" \
                   ".every(e => e.labels.length > 0)"
        assert page.evaluate(labelled)
        page.keyboard.type(live.key(Role.loan_officer))  # the key field has the focus
        page.keyboard.press("Enter")
        expect(page.locator("#credit-code")).to_be_focused()
        assert page.evaluate(labelled)
        page.keyboard.type(live.eligible_code)
        page.keyboard.press("Tab")
        expect(page.locator("#amount")).to_be_focused()
        page.keyboard.type("1000000")
        page.keyboard.press("Enter")
        expect(page.locator("#summary")).to_be_visible()
        boxes = [c.bounding_box() for c in page.locator(".card").all()]
        assert len({round(b["x"]) for b in boxes}) == 1  # one column of cards
        assert max(b["x"] + b["width"] for b in boxes) <= 820
    finally:
        context.close()


# ------------------------------------------------------------------ the risk workbench

_drafts = itertools.count(1)


def draft_text(live: Live, code: str = "tax_credit") -> tuple[str, dict[str, Any]]:
    """A new version of a seed product as JSON (what an analyst pastes): effective tomorrow, one term changed."""
    seed = next(s for s in ProductVersions(live.service.engine).seeds if s.code == code)
    data = seed.model_dump(mode="json")
    data["version"] = f"{seed.version}-ui{next(_drafts)}-{os.getpid()}"
    data["effective_date"] = (dt.date.today() + dt.timedelta(days=1)).isoformat()
    data["quote_valid_days"] = seed.quote_valid_days + 1
    return json.dumps(data, ensure_ascii=False), data


def api_versions(live: Live) -> list[dict[str, Any]]:
    response = requests.get(f"{live.base_url}/v1/products/versions", headers=live.service.headers(Role.risk_analyst),
                            timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def ui_draft(client: TestClient, live: Live, csrf: str) -> int:
    text, _ = draft_text(live)
    response = client.post("/ui/risk/products", data={"csrf": csrf, "definition": text, "note": "longer validity"},
                           follow_redirects=False)
    assert response.status_code == 303, response.text
    return int(response.headers["location"].rsplit("/", 1)[1])


def state_of(html: str) -> str:
    found = re.search(r'id="version-state" data-state="([a-z]+)"', html)
    assert found, html[:800]
    return found.group(1)


def test_the_products_page_lists_every_version_in_the_stores_state(client: TestClient, live: Live) -> None:
    csrf = _signed_in(client, live.key(Role.risk_analyst))
    version_id = ui_draft(client, live, csrf)
    page = client.get("/ui/risk/products").text
    for entry in api_versions(live):  # seeds and the store's, each in the state the API gives it
        key = f'data-id="{entry["id"]}"' if entry["id"] else f'data-version="{entry["version"]}"'
        row = re.search(rf'<tr data-product="{entry["code"]}"[^>]*{re.escape(key)}.*?</tr>', page, re.S)
        assert row, entry
        assert f'data-state="{entry["status"]}"' in row.group(0)
    version = client.get(f"/ui/risk/products/{version_id}")
    assert version.status_code == 200 and state_of(version.text) == "draft" and "草稿" in version.text
    diff = requests.get(f"{live.base_url}/v1/products/versions/{version_id}/diff", timeout=30,
                        headers=live.service.headers(Role.risk_analyst)).json()
    shown = re.findall(r'<tr data-path="([^"]+)"', version.text)
    assert shown == [c["path"] for c in diff["changes"]] and "quote_valid_days" in shown
    assert 'id="submit-version"' in version.text and 'id="approve-version"' not in version.text
    seed = client.get("/ui/risk/products/seed/tax_credit/" + next(
        e["version"] for e in api_versions(live) if e["origin"] == "seed" and e["code"] == "tax_credit"))
    assert seed.status_code == 200 and state_of(seed.text) == "active" and 'id="diff-none"' in seed.text
    assert client.get("/ui/risk/products/999999").status_code == 404
    huge = client.get(f"/ui/risk/products/{2**70}")  # past any id the store can hold: refused, never a 500
    assert huge.status_code == 422 and huge.headers["content-type"].startswith("text/html")


def test_a_bad_definition_is_refused_with_its_field_errors(client: TestClient, live: Live) -> None:
    csrf = _signed_in(client, live.key(Role.risk_analyst))
    before = len(api_versions(live))
    not_yaml = client.post("/ui/risk/products", data={"csrf": csrf, "definition": "code: [unclosed"})
    assert not_yaml.status_code == 422 and "不是有效的 YAML/JSON" in not_yaml.text
    text, data = draft_text(live)
    data["rate"]["floor"] = "low"
    invalid = client.post("/ui/risk/products", data={"csrf": csrf, "definition": json.dumps(data)})
    assert invalid.status_code == 422 and "产品配置有误" in invalid.text
    assert re.search(r'<li data-field="definition\.rate\.floor">', invalid.text)
    assert json.dumps(data)[:40] in invalid.text.replace("&#34;", '"')  # kept for correcting
    seed_version = json.loads(text) | {"version": next(s.version for s in ProductVersions(live.service.engine).seeds
                                                       if s.code == "tax_credit")}
    clash = client.post("/ui/risk/products", data={"csrf": csrf, "definition": json.dumps(seed_version)})
    assert clash.status_code == 409 and "版本号已被使用" in clash.text
    forged = client.post("/ui/risk/products", data={"csrf": "0" * 64, "definition": text})
    assert forged.status_code == 403 and "安全校验未通过" in forged.text
    assert len(api_versions(live)) == before


def test_maker_checker_through_the_console(client: TestClient, live: Live) -> None:
    engine = live.service.engine
    analyst = _signed_in(client, live.key(Role.risk_analyst))
    version_id = ui_draft(client, live, analyst)
    assert client.post(f"/ui/risk/products/{version_id}/submit", data={"csrf": "x"}).status_code == 403
    assert state_of(client.get(f"/ui/risk/products/{version_id}").text) == "draft"
    submitted = client.post(f"/ui/risk/products/{version_id}/submit", data={"csrf": analyst})
    assert submitted.status_code == 200 and state_of(submitted.text) == "submitted"  # after the redirect
    assert 'id="approve-version"' not in submitted.text and 'id="submit-version"' not in submitted.text
    refused = client.post(f"/ui/risk/products/{version_id}/approve", data={"csrf": analyst})
    assert refused.status_code == 403 and "无权访问" in refused.text  # approving is the approver's role

    # the submitter holding an approver's key too: the store's maker-checker refusal, in both languages
    same_person = TestClient(live.service.client.app, base_url="https://testserver")
    own = _signed_in(same_person, create_key(engine, Role.risk_approver, "test-risk_analyst"))
    mine = same_person.post(f"/ui/risk/products/{version_id}/approve", data={"csrf": own})
    assert mine.status_code == 403 and "提交人不能审批自己提交的版本" in mine.text and "maker-checker" in mine.text
    assert "Traceback" not in mine.text and state_of(mine.text) == "submitted"

    approver = TestClient(live.service.client.app, base_url="https://testserver")
    checker = _signed_in(approver, live.key(Role.risk_approver))
    page = approver.get(f"/ui/risk/products/{version_id}").text
    assert 'id="approve-version"' in page and 'id="submit-version"' not in page
    assert approver.post(f"/ui/risk/products/{version_id}/approve", data={"csrf": analyst}).status_code == 403
    no_reason = approver.post(f"/ui/risk/products/{version_id}/reject", data={"csrf": checker, "reason": " "})
    assert no_reason.status_code == 422 and "驳回必须说明理由" in no_reason.text
    approved = approver.post(f"/ui/risk/products/{version_id}/approve", data={"csrf": checker, "reason": "ok"})
    assert approved.status_code == 200 and state_of(approved.text) == "scheduled"  # effective tomorrow
    assert next(e for e in api_versions(live) if e["id"] == version_id)["status"] == "scheduled"
    again = approver.post(f"/ui/risk/products/{version_id}/approve", data={"csrf": checker})
    assert again.status_code == 409 and "只有已提交的版本可以审批" in again.text

    other = ui_draft(client, live, analyst)
    rejected = approver.post(f"/ui/risk/products/{other}/reject", data={"csrf": checker, "reason": "too generous"})
    assert rejected.status_code == 200 and state_of(rejected.text) == "rejected" and "too generous" in rejected.text


@pytest.mark.parametrize("role", [Role.loan_officer, Role.platform])
def test_officers_and_the_platform_are_refused_the_workbench(client: TestClient, live: Live, role: Role) -> None:
    csrf = _signed_in(client, live.key(role))
    before = len(api_versions(live))
    for path in (*RISK_PAGES, "/ui/risk/products/1", "/ui/risk/simulations/x"):
        page = client.get(path, follow_redirects=False)
        assert page.status_code == 403 and "无权访问" in page.text, path
    text, _ = draft_text(live)
    for path, data in (("/ui/risk/products", {"definition": text}), ("/ui/risk/products/1/submit", {}),
                       ("/ui/risk/products/1/approve", {}), ("/ui/risk/simulations", {"version_id": "1"})):
        assert client.post(path, data={"csrf": csrf, **data}).status_code == 403, path
    assert len(api_versions(live)) == before


def test_a_simulation_started_from_the_console(client: TestClient, live: Live) -> None:
    csrf = _signed_in(client, live.key(Role.risk_analyst))
    version_id = ui_draft(client, live, csrf)
    form = client.get(f"/ui/risk/simulations?version={version_id}").text
    assert f'<option value="{version_id}" selected>' in form
    bad = client.post("/ui/risk/simulations", data={"csrf": csrf, "version_id": str(version_id), "as_of": "2026-02-30"})
    assert bad.status_code == 422 and "日期格式应为 YYYY-MM-DD" in bad.text
    missing = client.post("/ui/risk/simulations", data={"csrf": csrf, "version_id": "999999"})
    assert missing.status_code == 422 and "无此产品版本" in missing.text
    started = client.post("/ui/risk/simulations", data={"csrf": csrf, "version_id": str(version_id)},
                          follow_redirects=False)
    assert started.status_code == 303, started.text
    job_id = started.headers["location"].rsplit("/", 1)[1]
    job = live.service.client.app.state.simulations.wait(job_id)
    assert job.status == "succeeded", job.error
    page = client.get(f"/ui/risk/simulations/{job_id}").text
    assert 'data-status="succeeded"' in page and 'http-equiv="refresh"' not in page
    summary = client.get(f"/v1/products/simulations/{job_id}", headers=live.service.headers(Role.risk_analyst)
                         ).json()["summary"]
    changed = summary["products"]["tax_credit"]["changed"]
    assert f'data-field="changed">{changed:,}<' in page
    report = client.get(f"/ui/risk/simulations/{job_id}/report")
    api_report = client.get(f"/v1/products/simulations/{job_id}/report",
                            headers=live.service.headers(Role.risk_analyst))
    assert report.status_code == 200 and report.text == api_report.text
    assert "sandbox" in report.headers["content-security-policy"]
    listing = client.get("/ui/risk/simulations").text
    assert f'data-job="{job_id}"' in listing
    assert client.get("/ui/risk/simulations/no-such-job").status_code == 404

    running = "00000000-0000-4000-8000-0000000000aa"  # a job another worker process is running, half done
    with live.service.engine.begin() as conn:
        conn.execute(simulation_jobs.insert().values(
            job_id=running, status="running", requested_by="test-risk_analyst", created_at=dt.datetime.now(dt.UTC),
            started_at=dt.datetime.now(dt.UTC), request_json=json.dumps({"as_of": "2026-01-05", "version_id": 1}),
            rows_done=600, rows_total=1200))
    progress = client.get(f"/ui/risk/simulations/{running}").text
    assert 'http-equiv="refresh"' in progress and 'id="report-link"' not in progress
    assert re.search(r'<progress id="simulation-progress" max="1200" value="600">', progress)
    assert client.get(f"/ui/risk/simulations/{running}/report").status_code == 409


def test_the_monitoring_page_shows_the_apis_alerts(client: TestClient, live: Live) -> None:
    _signed_in(client, live.key(Role.risk_approver))
    # while the report is computed in the background the page says so (202) and refreshes itself
    deadline = time.monotonic() + 300
    while (page := client.get("/ui/risk/monitoring")).status_code == 202:
        assert 'id="monitoring-computing"' in page.text and 'http-equiv="refresh"' in page.text
        assert time.monotonic() < deadline, "the monitoring report took too long"
        time.sleep(0.2)
    report = client.get("/v1/monitoring", headers=live.service.headers(Role.risk_approver)).json()
    for lang in ("zh", "en"):
        client.get(f"/ui/lang/{lang}")
        page = client.get("/ui/risk/monitoring")
        assert page.status_code == 200
        text = page.text.replace("&#39;", "'").replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
        assert len(re.findall(r'<tr class="(?:alert|warning)" data-kind=', page.text)) == len(report["alerts"])
        for alert in report["alerts"]:
            assert alert[lang] in text, alert
        for row in report["psi"]:
            assert f'data-name="{row["name"]}"' in page.text
        counts = {"zh": f"{report['alert_count']} 条警报", "en": f"{report['alert_count']} alerts"}[lang]
        assert counts in page.text
        models = report["shadow"]["models"]  # the challenger comparison: each model's row, or "none" when none
        assert ('id="no-challenger"' in page.text) == (not models)
        for model in models:
            assert f'<tr data-model="{model["model_id"]}">' in page.text
    client.get("/ui/lang/zh")
    bad = client.get("/ui/risk/monitoring", params={"current": "yesterday"})
    assert bad.status_code == 422 and "text/html" in bad.headers["content-type"]


def test_the_monitoring_page_shows_the_challenger_comparison(client: TestClient, live: Live) -> None:
    """A challenger's shadow rows beside recent quotes (as the shadow scorer stores them): the page shows the
    comparison `GET /v1/monitoring/shadow` computes, and its decision-change warnings."""
    with live.service.engine.begin() as conn:
        recent = conn.execute(sa.select(quotes.c.quote_id).order_by(quotes.c.created_at.desc()).limit(6)
                              ).scalars().all()
        assert len(recent) >= 4
        for i, quote_id in enumerate(recent):
            flipped = i % 2 == 0  # half the decisions would change
            decisions = {"tax_credit": {"champion": [True, 1_000_000.0, 3.5],
                                        "challenger": [not flipped, 1_000_000.0 if not flipped else 0.0, 3.5]}}
            conn.execute(shadow_scores.insert().values(
                quote_id=quote_id, model_id="ui-challenger", champion_model="champion", champion_pd=0.01 * (i + 1),
                pd=0.012 * (i + 1) + (0.02 if i == 1 else 0.0), decisions_json=json.dumps(decisions),
                created_at=dt.datetime.now(dt.UTC)))
    _signed_in(client, live.key(Role.risk_analyst))
    shadow = client.get("/v1/monitoring/shadow", headers=live.service.headers(Role.risk_analyst)).json()
    model = next(m for m in shadow["models"] if m["model_id"] == "ui-challenger")
    page = client.get("/ui/risk/monitoring").text
    row = re.search(r'<tr data-model="ui-challenger">.*?</tr>', page, re.S)
    assert row, page[-2000:]
    assert f'data-field="rank_correlation">{model["rank_correlation"]:.3f}<' in row.group(0)
    assert f'<td class="num">{model["quotes"]}</td>' in row.group(0)
    share = model["products"]["tax_credit"]["share_changed"]
    assert f"<code>tax_credit</code> {100 * share:.1f}%" in row.group(0)
    warning = next(a for a in shadow["alerts"] if a["subject"] == "challenger:ui-challenger:tax_credit")
    assert warning["zh"] in page and 'data-subject="challenger:ui-challenger:tax_credit"' in page


def test_an_officer_overrides_a_quote_with_a_reason(client: TestClient, live: Live) -> None:
    csrf = _signed_in(client, live.key(Role.loan_officer))
    issued = client.post("/ui/quote", data={"csrf": csrf, "credit_code": live.eligible_code}, follow_redirects=False)
    quote_id = issued.headers["location"].rsplit("/", 1)[1]
    stored = live.api_quote(quote_id)
    product = next(q for q in stored["quotes"] if q["eligible"])
    definition = next(d for d in live.service.client.app.state.quoting.definitions
                      if d.code == product["product"] and d.version == product.get("product_version", d.version))
    page = client.get(f"/ui/quotes/{quote_id}").text
    assert 'id="override-form"' in page and 'id="no-overrides"' in page

    def count() -> int:
        with live.service.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(quote_overrides)
                                .where(quote_overrides.c.quote_id == quote_id)).scalar_one()

    url = f"/ui/quotes/{quote_id}/overrides"
    base = {"csrf": csrf, "product": product["product"], "rate": f"{definition.rate.floor:.2f}"}
    no_reason = client.post(url, data={**base, "reason": "  "})
    assert no_reason.status_code == 422 and "人工调整必须填写原因" in no_reason.text
    outside = client.post(url, data={**base, "amount_cny": f"{definition.limit.max_cny * 2:.0f}", "reason": "x"})
    assert outside.status_code == 422 and "超出" in outside.text and 'aria-invalid="true"' in outside.text
    not_number = client.post(url, data={**base, "rate": "cheap", "reason": "x"})
    assert not_number.status_code == 422 and "须为数字" in not_number.text
    assert client.post(url, data={**base, "csrf": "0" * 64, "reason": "x"}).status_code == 403
    assert count() == 0
    saved = client.post(url, data={**base, "reason": "pledge offered by the owner"})
    assert saved.status_code == 200 and count() == 1
    assert re.search(r'data-field="reason">pledge offered by the owner<', saved.text)
    assert live.api_quote(quote_id)["overrides"][0]["reason"] == "pledge offered by the owner"

    risk = TestClient(live.service.client.app, base_url="https://testserver")
    risk_csrf = _signed_in(risk, live.key(Role.risk_analyst))
    seen = risk.get(f"/ui/quotes/{quote_id}").text
    assert "pledge offered by the owner" in seen and 'id="override-form"' not in seen
    assert risk.post(url, data={**base, "csrf": risk_csrf, "reason": "x"}).status_code == 403 and count() == 1


def test_draft_submit_approve_in_a_browser(browser: Browser, live: Live) -> None:
    """An analyst drafts and submits a version; an approver approves it; the list shows it scheduled."""
    text, data = draft_text(live, "per_mu")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        sign_in(page, live, Role.risk_analyst)
        expect(page).to_have_url(re.compile(r"/ui/risk/products$"))
        page.fill("#definition", text)
        page.fill("#note", "one more day of validity")
        page.click("#save-draft")
        expect(page).to_have_url(re.compile(r"/ui/risk/products/\d+$"))
        expect(page.locator("#version-state")).to_have_attribute("data-state", "draft")
        expect(page.locator('#diff tr[data-path="quote_valid_days"]')).to_be_visible()
        version_id = page.url.rsplit("/", 1)[1]
        page.click("#submit-version")
        expect(page.locator("#version-state")).to_have_attribute("data-state", "submitted")
        page.click("#sign-out")

        sign_in(page, live, Role.risk_approver)
        row = page.locator(f'#products tr[data-id="{version_id}"]')
        expect(row.locator('[data-field="state"]')).to_have_text("已提交待审批")
        row.locator("a.open-version").click()
        page.fill("#approve-reason", "checked against the policy")
        page.locator("#approve-reason").press("Enter")  # keyboard: the form submits
        expect(page.locator("#version-state")).to_have_attribute("data-state", "scheduled")
        expect(page.locator("#version-state")).to_contain_text("已批准待生效")
        expect(page.locator('#decisions [data-field="decided_by"]')).to_contain_text("test-risk_approver")
        page.click("#lang-switch")
        expect(page.locator("#version-state")).to_contain_text("Approved, scheduled")
        page.goto(f"{live.base_url}/ui/risk/products")
        expect(page.locator(f'#products tr[data-id="{version_id}"] [data-field="state"]')).to_have_text(
            "Approved, scheduled")
        labelled = "() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]" \
                   ".every(e => e.labels.length > 0)"
        assert page.evaluate(labelled)
    finally:
        context.close()
    assert next(e for e in api_versions(live) if str(e["id"]) == version_id)["version"] == data["version"]
