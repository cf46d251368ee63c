"""Screenshots of the console for the docs: `python -m tests.ui_screenshots [OUT_DIR]` (default docs/screenshots).

The quote page in Chinese and English for an eligible and an ineligible firm, the risk models page and a
product version awaiting approval (with its diff against the version in force), taken in headless Chromium
from the same seeded test region as tests/test_ui.py."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from api.keys import Role
from tests.test_ui import CHROMIUM, LAUNCH_ARGS, ask, console, draft_text, sign_in

VIEWPORT = {"width": 1280, "height": 900}


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch, console(Path(scratch)) as live, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True)
        page = browser.new_context(viewport=VIEWPORT).new_page()
        sign_in(page, live)
        for name, code in (("eligible", live.eligible_code), ("ineligible", live.ineligible_code)):
            ask(page, code)
            page.wait_for_selector("#summary")
            page.screenshot(path=str(out / f"quote-{name}-zh.png"), full_page=True)
            page.click("#lang-switch")
            page.wait_for_selector("#summary")
            page.screenshot(path=str(out / f"quote-{name}-en.png"), full_page=True)
            page.click("#lang-switch")
        page.context.close()
        page = browser.new_context(viewport=VIEWPORT).new_page()
        sign_in(page, live, Role.risk_approver)
        page.goto(f"{live.base_url}/ui/risk/models")
        page.screenshot(path=str(out / "risk-models-zh.png"), full_page=True)
        page.context.close()
        page = browser.new_context(viewport=VIEWPORT).new_page()
        sign_in(page, live, Role.risk_analyst)
        page.fill("#definition", draft_text(live)[0])
        page.fill("#note", "报价有效期延长一天 / one more day of validity")
        page.click("#save-draft")
        page.click("#submit-version")
        page.wait_for_selector('#version-state[data-state="submitted"]')
        version_url = page.url
        page.context.close()
        page = browser.new_context(viewport=VIEWPORT).new_page()
        sign_in(page, live, Role.risk_approver)
        page.goto(version_url)
        page.screenshot(path=str(out / "risk-version-zh.png"), full_page=True)
        browser.close()
    for png in sorted(out.glob("*.png")):
        print(png, png.stat().st_size)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots"))
