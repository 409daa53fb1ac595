"""The instructor, setup, learner and admin pages in a real browser, at a laptop's width
and at a phone's (390 px): nothing runs off the side, and revoking asks first."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.flows.conftest import Live, launch, pull
from tests.web.test_credential_page_browser import ARGS, CHROMIUM

pytestmark = pytest.mark.browser


@pytest.fixture
def browser_page():  # type: ignore[no-untyped-def]
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (scripts/test.sh installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def test_no_page_runs_off_the_side_at_390_or_1280_px(live: Live, browser_page) -> None:  # type: ignore[no-untyped-def]
    instructor = launch(live, "u-instr-1")
    assert instructor.post("/app/course/sync", {}).status_code == 303
    pull(live)  # pages with every learner's levels and credentials on them
    learner, admin = launch(live, "u-learn-3"), launch(live, "u-admin-1")
    pages = [
        f"{live.tool_url}/app/course?mc_session={instructor.token}",
        f"{live.tool_url}/app/setup?mc_session={instructor.token}",
        f"{live.tool_url}/app/me?mc_session={learner.token}",
        f"{live.tool_url}/app/admin?mc_session={admin.token}",
        f"{live.tool_url}/",
        f"{live.lms_url}/",  # the demo LMS's course page with its launch buttons
    ]
    wide: list[str] = []
    for width in (1280, 390):
        page = browser_page.new_page(viewport={"width": width, "height": 800})
        for url in pages:
            page.goto(url)
            scroll = page.evaluate("document.documentElement.scrollWidth")
            if scroll > width:
                wide.append(f"{url.split('?')[0]} at {width} px is {scroll} px wide")
        page.close()
    assert wide == []


def test_revoke_asks_for_a_reason_and_a_tick_before_anything_is_sent(
    live: Live,
    browser_page,  # type: ignore[no-untyped-def]
) -> None:
    instructor = launch(live, "u-instr-1")
    assert instructor.post("/app/course/sync", {}).status_code == 303
    pull(live)  # the worker pulls what Sync from LMS queued, and awards
    page = browser_page.new_page(viewport={"width": 390, "height": 800})
    page.goto(f"{live.tool_url}/app/course?mc_session={instructor.token}")
    first = page.locator("details.revoke").first
    first.locator("summary").click()
    form = first.locator("form")
    assert form.is_visible()
    form.locator("input[name=reason]").fill("Awarded in error")
    # The browser refuses to send it until the tick is there (no script involved).
    assert form.evaluate("f => f.checkValidity()") is False
    form.locator("input[name=confirm]").check()
    assert form.evaluate("f => f.checkValidity()") is True
    with page.expect_navigation():
        form.locator("button[type=submit]").click()
    assert "Revoked everywhere it went" in page.content()


def test_a_page_with_a_pending_evaluation_updates_itself_when_the_worker_is_done(
    live: Live,
    browser_page,  # type: ignore[no-untyped-def]
) -> None:
    learner = launch(live, "u-learn-2")  # queues a pull and Lucas's evaluation, awards nothing
    page = browser_page.new_page(viewport={"width": 390, "height": 800})
    page.goto(f"{live.tool_url}/app/me?mc_session={learner.token}")
    note = page.locator("[data-testid=pending]")
    assert "being evaluated" in note.inner_text() and note.get_attribute("role") == "status"
    assert page.locator(".lvl-intermediate").count() == 0
    pull(live)  # the worker's sync and evaluation jobs
    # pending.js sees /app/pending say "done" and reloads the page, without the note
    page.wait_for_selector("[data-testid=pending]", state="detached", timeout=60_000)
    page.wait_for_load_state()
    assert page.locator(".lvl-intermediate").count() >= 2
    assert "done=" not in page.url


def test_a_learner_the_roster_removed_is_marked_on_the_course_page(
    live: Live,
    browser_page,  # type: ignore[no-untyped-def]
) -> None:
    from tests.flows.test_course_learners import _roster_without

    instructor = launch(live, "u-instr-1")
    assert instructor.post("/app/course/sync", {}).status_code == 303
    pull(live)
    _roster_without(live, "u-learn-2")  # Lucas: his results and credentials stay
    for width in (1280, 390):
        page = browser_page.new_page(viewport={"width": width, "height": 800})
        page.goto(f"{live.tool_url}/app/course?mc_session={instructor.token}")
        row = page.locator("tr", has_text="Lucas")
        badge = row.locator(".badge", has_text="Removed from roster")
        cell, box = row.locator("th").bounding_box(), badge.bounding_box()
        assert badge.is_visible() and cell and box  # within its cell, not over the levels
        assert box["x"] + box["width"] <= cell["x"] + cell["width"]
        assert page.locator("text=Removed from roster").count() == 1
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        if shots := __import__("os").environ.get("MICROCRED_SHOTS"):
            page.screenshot(path=f"{shots}/removed-{width}.png", full_page=True)
        page.close()
