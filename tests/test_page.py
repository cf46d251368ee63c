"""The loan officer's page in a real headless Chromium against the real service on a loopback port."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from playwright.sync_api import Browser, Page, expect, sync_playwright

from api.http.app import create_app
from api.keys import Role
from api.tables import quotes
from tests.api_support import Service, running_service
from tests.live_server import champion_in, serve

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PRODUCTS = {"tech_innovation", "tax_credit", "per_mu", "two_healthy", "new_villager"}
MAX_REASONS = 5  # the page shows this many reasons per product (app.js)


@dataclass
class Live:
    base_url: str
    service: Service
    code: str  # an enterprise with at least two eligible products

    @property
    def officer_key(self) -> str:
        return self.service.keys[Role.loan_officer]

    def stored(self, quote_id: str) -> dict[str, Any]:
        response = requests.get(f"{self.base_url}/v1/quotes/{quote_id}", timeout=30,
                                headers={"Authorization": f"Bearer {self.officer_key}"})
        assert response.status_code == 200, response.text
        return response.json()

    def quote_count(self) -> int:
        with self.service.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(quotes)).scalar_one()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    directory = tmp_path_factory.mktemp("page")
    models_dir = directory / "models"
    with running_service("sqlite", directory, models_dir, prepare=champion_in(models_dir)) as service:
        url = service.engine.url.render_as_string(hide_password=False)
        with serve(create_app(database_url=url, models_dir=str(models_dir))) as base_url:
            headers = {"Authorization": f"Bearer {service.keys[Role.loan_officer]}"}
            code = None
            for candidate in service.codes:  # the seeded region makes this the same firm every run
                body = requests.post(f"{base_url}/v1/quotes", json={"credit_code": candidate}, headers=headers,
                                     timeout=30).json()
                if sum(q["eligible"] for q in body["quotes"]) >= 2:
                    code = candidate
                    break
            assert code is not None, "no enterprise with two eligible products in the test region"
            yield Live(base_url, service, code)


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
def page(browser: Browser, live: Live) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{live.base_url}/")
    yield page
    context.close()


def _ask(page: Page, key: str, code: str) -> None:
    page.fill("#api-key", key)
    page.fill("#credit-code", code)
    page.click("#submit")


def _texts(items: list[dict[str, Any]], lang: str) -> list[str]:
    return [r[lang] for r in items][:MAX_REASONS]


def _expected_card(q: dict[str, Any], lang: str) -> dict[str, Any]:
    locale_sep = f"{q['limit_cny']:,}"  # zh-CN and en-US both group thousands with commas
    return {
        "title": f"{q['product_name'][lang]} — " + {("zh", True): "可授信", ("zh", False): "不可授信",
                                                    ("en", True): "Eligible", ("en", False): "Not eligible"}[
            (lang, q["eligible"])],
        "grade": q["grade"] or "—",
        "limit": locale_sep,
        "rate": f"{q['rate']:.2f}%" if q["rate"] is not None else "—",
        "reasons": _texts(q["reasons"] + q["top_reasons"], lang),
    }


def _check_cards(page: Page, stored: dict[str, Any], lang: str) -> list[str]:
    shown_reasons: list[str] = []
    for q in stored["quotes"]:
        expected = _expected_card(q, lang)
        card = page.locator(f'.card[data-product="{q["product"]}"]')
        expect(card.locator("h3")).to_have_text(expected["title"])
        expect(card.locator('dd[data-field="grade"]')).to_have_text(expected["grade"])
        expect(card.locator('dd[data-field="limit"]')).to_have_text(expected["limit"])
        expect(card.locator('dd[data-field="rate"]')).to_have_text(expected["rate"])
        expect(card.locator('dd[data-field="fee"]')).not_to_contain_text("NaN")
        expect(card.locator('ul[data-list="reasons"] li')).to_have_text(expected["reasons"])
        shown_reasons += expected["reasons"]
    return shown_reasons


def test_quote_shows_five_products_and_switches_language(page: Page, live: Live, tmp_path: Path) -> None:
    expect(page.locator("#submit")).to_have_text("查询报价")
    _ask(page, live.officer_key, live.code)
    expect(page.locator("#products .card")).to_have_count(5)
    expect(page.locator("#status")).to_have_text("")
    quote_id = page.locator("#quote-id").inner_text()
    stored = live.stored(quote_id)
    assert {q["product"] for q in stored["quotes"]} == PRODUCTS
    assert stored["credit_code"] == live.code
    expect(page.locator("#result-code")).to_have_text(live.code)

    zh_reasons = _check_cards(page, stored, "zh")
    assert zh_reasons, "no product shows a reason"
    expect(page.locator(".card.eligible")).to_have_count(sum(q["eligible"] for q in stored["quotes"]))
    best = stored["best_offer"]
    expect(page.locator("#best-offer")).to_contain_text(best["product_name"]["zh"])
    page.screenshot(path=str(tmp_path / "quote-zh.png"), full_page=True)

    page.click("#lang-en")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("#submit")).to_have_text("Get quote")
    expect(page.locator("#best-offer")).to_contain_text(f"Best offer: {best['product_name']['en']}")
    en_reasons = _check_cards(page, stored, "en")
    assert en_reasons != zh_reasons
    page.screenshot(path=str(tmp_path / "quote-en.png"), full_page=True)

    page.click("#lang-zh")
    expect(page.locator("#submit")).to_have_text("查询报价")
    _check_cards(page, stored, "zh")
    for name in ("quote-zh.png", "quote-en.png"):
        assert (tmp_path / name).stat().st_size > 10_000


@pytest.mark.parametrize(
    ("code", "zh_detail", "en_detail"),
    [
        ("91330302000000000H", "check character", "check character"),
        ("9133030200000", "must be 18 characters", "must be 18 characters"),
        ("91330302O0000000OG", "is not allowed", "is not allowed"),
    ],
)
def test_malformed_credit_code_shows_a_clear_message(page: Page, live: Live, code: str, zh_detail: str,
                                                     en_detail: str) -> None:
    before = live.quote_count()
    _ask(page, live.officer_key, code)
    status = page.locator("#status")
    expect(status).to_have_class("error")
    expect(status).to_contain_text("统一社会信用代码有误")
    expect(status).to_contain_text(re.compile(f"credit_code: .*{re.escape(zh_detail)}"))
    expect(page.locator("#result")).to_be_hidden()
    page.click("#lang-en")
    expect(status).to_contain_text("Invalid unified social credit code")
    expect(status).to_contain_text(en_detail)
    assert live.quote_count() == before


def test_bad_key_and_empty_fields_are_explained(page: Page, live: Live) -> None:
    _ask(page, "ilk_not-a-key", live.code)
    expect(page.locator("#status")).to_have_text(re.compile("^API 密钥无效或已停用"))
    page.fill("#api-key", "")
    page.click("#submit")
    expect(page.locator("#status")).to_have_text("请输入 API 密钥")
    # an earlier result disappears when a later request fails
    _ask(page, live.officer_key, live.code)
    expect(page.locator("#products .card")).to_have_count(5)
    _ask(page, live.officer_key, "91330302000000000H")
    expect(page.locator("#result")).to_be_hidden()
