"""The instructor's pages read the course's rules in force without writing them, so a page
never fails because the worker wrote meanwhile.

On SQLite a read transaction that then writes fails at once ("database is locked", no busy
wait) when another connection committed since it began. The setup and learners pages used
to number a competency's rules the first time they showed them (an ``effective_policy``
row), inside their read transaction: in the real-Moodle lane the setup page answered 503
right after *Add* when `microcred serve`'s worker had just queued a sync's evaluations.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, func
from sqlmodel import select

from service import evaluation
from service.db.engine import session as db_session
from service.db.models import EffectivePolicy
from service.policies import service as policies
from tests.flows.conftest import Live, Tab, launch


@contextmanager
def _the_worker_writes_while_a_page_reads(live: Live) -> Iterator[list[str]]:
    """Once a request (a server thread) has read the course's rules, the worker commits a
    write, as its scheduled sync does when it queues the learners whose results changed."""
    fired: list[str] = []
    main = threading.main_thread()

    def after(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if fired or threading.current_thread() is main or "FROM policy_version" not in statement:
            return
        fired.append(statement)
        with db_session(live.engine, write=True) as s:
            evaluation.enqueue(s, course_id=live.course_id, reason="sync")
            s.commit()

    event.listen(live.engine, "after_cursor_execute", after)
    try:
        yield fired
    finally:
        event.remove(live.engine, "after_cursor_execute", after)


def _added(live: Live, tab: Tab) -> None:
    """The instructor adds a catalogue competency the course never assessed: its rules in
    force have no number yet."""
    with db_session(live.engine, write=True) as s:
        policies.create_competency(s, key="data-ethics", name="Data ethics", author="test")
        s.commit()
    page = tab.get("/app/setup")
    csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
    assert csrf is not None
    added = tab.post("/app/setup/competencies", {"key": "data-ethics"}, csrf=csrf.group(1))
    assert added.status_code == 303, added.text


def _numbered(live: Live) -> int:
    with db_session(live.engine) as s:
        return int(s.exec(select(func.count()).select_from(EffectivePolicy)).one())


def test_the_setup_page_shows_a_new_competency_while_the_worker_writes(live: Live) -> None:
    tab = launch(live, "u-instr-1")
    _added(live, tab)
    before = _numbered(live)
    with _the_worker_writes_while_a_page_reads(live) as fired:
        shown = tab.get("/app/setup")
    assert fired, "the page did not read the rules"
    assert shown.status_code == 200, shown.text[:2000]
    assert "Data ethics" in shown.text
    assert _numbered(live) == before  # a page numbers nothing


def test_the_learners_page_previews_a_new_competency_while_the_worker_writes(
    live: Live,
) -> None:
    tab = launch(live, "u-instr-1")
    _added(live, tab)
    before = _numbered(live)
    with _the_worker_writes_while_a_page_reads(live) as fired:
        shown = tab.get("/app/course")
    assert fired, "the page did not read the rules"
    assert shown.status_code == 200, shown.text[:2000]
    assert _numbered(live) == before
