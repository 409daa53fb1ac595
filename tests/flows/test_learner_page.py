"""The learner's page reads a fixed number of statements, however many credentials."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from service.db.engine import session as db_session
from service.db.types import utcnow
from service.delivery import repositories
from service.demo.course import Course as SampleCourse
from service.flows import syncing
from tests.flows.conftest import Live, Tab, launch, pull

pytestmark = pytest.mark.db


@contextmanager
def statements(live: Live) -> Iterator[list[str]]:
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(live.engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(live.engine, "before_cursor_execute", note)


def _page(live: Live, tab: Tab) -> tuple[str, int]:
    with statements(live) as seen:
        page = tab.get("/app/me")
    assert page.status_code == 200, page.text[:2000]
    return page.text, len(seen)


def test_the_learner_page_reads_the_same_statements_for_one_credential_or_many(
    live: Live,
) -> None:
    with db_session(live.engine, write=True) as s:
        repositories.create(
            s,
            kind="badgr",
            name="Career portfolio",
            config={"base_url": "http://127.0.0.1:9", "issuer_id": "i1"},
            secret="s",
            consent_policy="ask",
        )
        s.commit()
    tabs = {sub: launch(live, sub) for sub in ("u-learn-1", "u-learn-4", "u-learn-5")}
    pull(live)  # the worker's scheduled sync awards them: Amara 3 credentials, Kenji none
    # Kenji's statistics quiz is regraded to full marks in the LMS: one credential
    course: SampleCourse = live.apps.lms.state.platform.course
    attempts = tuple(
        dataclasses.replace(a, score=20.0)
        if (a.user_id, a.quiz_id) == ("u-learn-4", "quiz-stats")
        else a
        for a in course.quiz_attempts
    )
    live.apps.lms.state.platform.course = dataclasses.replace(course, quiz_attempts=attempts)
    with db_session(live.engine, write=True) as s:
        syncing.request_sync(s, course_id=live.course_id, now=utcnow())
        s.commit()
    pull(live)
    pages = {sub: _page(live, tab) for sub, tab in tabs.items()}
    shown = {sub: text.count("Open the public page") for sub, (text, _) in pages.items()}
    asked = {sub: text.count("to Career portfolio?") for sub, (text, _) in pages.items()}
    assert shown == {"u-learn-1": 3, "u-learn-4": 1, "u-learn-5": 0}
    assert asked["u-learn-1"] > 1 and asked["u-learn-4"] == 1  # their destinations are read
    counts = {sub: n for sub, (_, n) in pages.items()}
    assert counts["u-learn-1"] == counts["u-learn-4"]  # not a statement per credential
    # without a credential: not even the reads of awards and destinations
    assert counts["u-learn-5"] < counts["u-learn-4"]
