"""The credential page in headless Chromium: keyboard focus, scripts on and off."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from sqlmodel import create_engine

from service.web import credential_preview, credential_samples, errors
from tests.threaded_server import serving

pytestmark = pytest.mark.browser

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (scripts/test.sh installs it)")
    app = FastAPI()
    app.state.engine = create_engine("sqlite://")  # for SessionDep; the loaders never read
    errors.install(app)
    static = Path(credential_preview.__file__).parent / "static"
    app.mount("/static", StaticFiles(directory=static), name="static")
    app.include_router(credential_preview.router)
    with serving(app) as port:
        yield f"http://127.0.0.1:{port}"


def test_keyboard_focus_is_visible_and_reaches_the_downloads(base_url: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{base_url}/_preview/credentials/valid")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.className") == "skip"
        seen = []
        for _ in range(40):  # bounded walk through the focus order
            page.keyboard.press("Tab")
            info = page.evaluate(
                "(() => { const e = document.activeElement; const s = getComputedStyle(e);"
                " return [e.tagName, e.textContent.trim(), s.outlineStyle, s.outlineWidth]; })()"
            )
            seen.append(info[1])
            assert info[2] == "solid" and info[3] == "3px", info
            if info[1] == "Badge image (PNG)":
                break
        assert "Badge image (PNG)" in seen
        browser.close()


def test_scripts_enable_copy_and_the_recipient_check(base_url: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page()
        page.goto(f"{base_url}/_preview/credentials/valid")
        assert page.is_visible("button.copy[data-copy='cred-json-url']")
        page.fill("#recipient-email", credential_samples.LEARNER_EMAIL.upper())
        page.click("form.recipient-check button")
        page.wait_for_function("document.querySelector('.recipient-result').textContent !== ''")
        assert page.text_content(".recipient-result", timeout=5000).startswith("Yes")
        page.fill("#recipient-email", "someone.else@example.org")
        page.click("form.recipient-check button")
        page.wait_for_function(
            "document.querySelector('.recipient-result').textContent.startsWith('No')"
        )
        browser.close()


def test_page_works_without_javascript(base_url: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_context(java_script_enabled=False).new_page()
        page.goto(f"{base_url}/_preview/credentials/revoked")
        assert page.is_visible("text=Revoked")
        assert page.is_visible("text=Badge image (PNG)")
        page.goto(f"{base_url}/_preview/credentials/valid")
        # script-only controls stay hidden; the no-script routes are there
        assert not page.is_visible("form.recipient-check")
        assert not page.is_visible("button.copy[data-copy='cred-json-url']")
        assert page.is_visible("#cred-json-url")
        badge = page.query_selector("img.hero-badge")
        assert badge is not None
        assert page.evaluate("(img) => img.naturalWidth", badge) == 256
        browser.close()
