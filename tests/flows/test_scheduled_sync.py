"""The worker's scheduled sync against the demo LMS (Moodle web services and NRPS over
loopback HTTP): learners who never open the tool get their credentials; the roster makes
them exist first; results removed in the LMS go; no request and no transaction waits on
the LMS."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading

import httpx
import pytest
from sqlmodel import col, select

from service.cli import workers
from service.db.engine import session as db_session
from service.db.models import (
    AuditEvent,
    Award,
    CourseSync,
    Enrolment,
    Evidence,
    Person,
    PersonLink,
)
from service.db.types import utcnow
from service.demo import moodle_ws
from service.demo.course import Course as SampleCourse
from service.flows import evaluating, syncing, wiring
from tests.flows.conftest import Live, launch, pull
from tests.flows.notx import CheckNoTransaction

pytestmark = pytest.mark.db


def _person(live: Live, sub: str) -> Person | None:
    with db_session(live.engine) as s:
        return s.exec(select(Person).where(Person.sub == sub)).first()


def _issued(live: Live, sub: str) -> dict[str, str]:
    person = _person(live, sub)
    assert person is not None
    with db_session(live.engine) as s:
        rows = s.exec(
            select(Award).where(Award.person_id == person.id, Award.state == "issued")
        ).all()
    return {a.line_key: a.level for a in rows}


def _lms_course(live: Live) -> SampleCourse:
    course: SampleCourse = live.apps.lms.state.platform.course
    return course


def _set_lms_course(live: Live, course: SampleCourse) -> None:
    """A teacher changes something in the LMS (the demo serves what it holds)."""
    live.apps.lms.state.platform.course = course


def _due_now(live: Live) -> None:
    """Let the course's interval pass (the schedule, not a request, makes it due)."""
    with db_session(live.engine, write=True) as s:
        row = s.exec(select(CourseSync).where(CourseSync.course_id == live.course_id)).one()
        assert row.attempted_at is not None
        row.attempted_at = row.attempted_at.replace(year=row.attempted_at.year - 1)
        row.wanted_at = None
        s.add(row)
        s.commit()


def _full_pull_due(live: Live) -> None:
    """Let MICROCRED_SYNC_FULL_INTERVAL_SECONDS pass since the last full pull."""
    with db_session(live.engine, write=True) as s:
        row = s.exec(select(CourseSync).where(CourseSync.course_id == live.course_id)).one()
        assert row.full_pulled_at is not None
        row.full_pulled_at -= dt.timedelta(seconds=live.settings.sync_full_interval_seconds)
        s.add(row)
        s.commit()


def test_a_learner_who_never_launches_gets_a_credential_from_the_worker(live: Live) -> None:
    # Nobody opens the tool. The worker as `microcred worker` builds it (service.cli), run
    # once: its scheduled sync pulls the course, evaluates and awards.
    assert _issued(live, "u-learn-2") == {}
    asked = moodle_ws.calls("mod_assign_get_assignments")
    worker = workers._delivery_worker(live.settings, threads=1, batch=4)
    try:
        worker.run(threading.Event(), idle_exit=True)
    finally:
        worker.close()
        worker.engine.dispose()
    assert _issued(live, "u-learn-2") == {
        "competency:data-investigation": "intermediate",
        "competency:data-communication": "intermediate",
        "stack:Data literacy": "awarded",
    }
    assert moodle_ws.calls("mod_assign_get_assignments") == asked + 1


def test_a_grade_changed_in_the_lms_reaches_the_learner_at_the_next_scheduled_pull(
    live: Live,
) -> None:
    assert [o.error for o in pull(live)] == [""]
    before = _issued(live, "u-learn-4")  # Kenji: weak results
    assert before.get("competency:data-investigation") != "advanced"
    # Kenji's statistics quiz is regraded to full marks, and his rubric raised, in the LMS.
    course = _lms_course(live)
    attempts = tuple(
        dataclasses.replace(a, score=20.0)
        if (a.user_id, a.quiz_id) == ("u-learn-4", "quiz-stats")
        else a
        for a in course.quiz_attempts
    )
    rubric = tuple(
        dataclasses.replace(r, level_id="exemplary") if r.user_id == "u-learn-4" else r
        for r in course.rubric_results
    )
    _set_lms_course(
        live, dataclasses.replace(course, quiz_attempts=attempts, rubric_results=rubric)
    )
    assert pull(live) == []  # not due yet: the interval has not passed, nobody asked
    _due_now(live)
    [outcome] = pull(live)
    assert outcome.error == "" and outcome.report is not None
    assert outcome.report.updated > 0
    # only the learner whose results changed is evaluated again
    assert outcome.report.changed_people == {_person(live, "u-learn-4").id}  # type: ignore[union-attr]
    assert outcome.queued == 1  # only the learner whose grade changed
    after = _issued(live, "u-learn-4")
    assert after != before
    assert after["competency:data-investigation"] == "advanced"


def test_the_roster_creates_learners_who_never_launched_and_marks_those_who_left(
    live: Live,
) -> None:
    # Ingrid (u-learn-5) is not known to the tool at all yet: no launch, no seed.
    with db_session(live.engine, write=True) as s:
        ingrid = s.exec(select(Person).where(Person.sub == "u-learn-5")).one()
        for model in (PersonLink, Enrolment):
            for row in s.exec(select(model).where(model.person_id == ingrid.id)):
                s.delete(row)
        s.flush()
        s.delete(ingrid)
        s.commit()
    assert _person(live, "u-learn-5") is None
    [outcome] = pull(live)
    assert outcome.error == ""
    ingrid = _person(live, "u-learn-5")
    assert ingrid is not None
    assert (ingrid.name, ingrid.email) == ("Ingrid Larsen", "ingrid.larsen@demo-university.test")
    with db_session(live.engine) as s:
        enrolment = s.exec(select(Enrolment).where(Enrolment.person_id == ingrid.id)).one()
        assert (enrolment.role, enrolment.status) == ("learner", "active")
        assert ingrid.id in {p.id for p in evaluating.course_learners(s, course_id=live.course_id)}
        health = syncing.sync_health(s, course_id=live.course_id)
    assert health.members == 6 and health.roster_error == ""
    # Ingrid leaves the course in the LMS (the last member: Moodle's numbering is unchanged)
    course = _lms_course(live)
    _set_lms_course(
        live, dataclasses.replace(course, members=tuple(m for m in course.members[:-1]))
    )
    _due_now(live)
    [outcome] = pull(live)
    with db_session(live.engine) as s:
        enrolment = s.exec(select(Enrolment).where(Enrolment.person_id == ingrid.id)).one()
        assert enrolment.status == "removed"
        assert ingrid.id not in {
            p.id for p in evaluating.course_learners(s, course_id=live.course_id)
        }
    # A launch is proof of membership again.
    _set_lms_course(live, course)
    launch(live, "u-learn-5")
    with db_session(live.engine) as s:
        enrolment = s.exec(select(Enrolment).where(Enrolment.person_id == ingrid.id)).one()
        assert enrolment.status == "active"


def test_a_result_removed_in_the_lms_is_deleted_and_its_learner_re_evaluated(
    live: Live,
) -> None:
    pull(live)
    sofia = _person(live, "u-learn-3")
    assert sofia is not None
    with db_session(live.engine) as s:
        quiz = select(Evidence).where(Evidence.person_id == sofia.id, Evidence.item_id == "21")
        assert len(s.exec(quiz).all()) == 3  # three statistics attempts
    course = _lms_course(live)
    kept = tuple(
        a
        for a in course.quiz_attempts
        if not (a.user_id == "u-learn-3" and a.quiz_id == "quiz-stats" and a.attempt == 3)
    )
    _set_lms_course(live, dataclasses.replace(course, quiz_attempts=kept))
    _due_now(live)
    [outcome] = pull(live)  # an incremental pull: what it did not read is not deleted
    assert outcome.report is not None and outcome.report.removed == 0
    _full_pull_due(live)
    _due_now(live)
    [outcome] = pull(live)  # the periodic full pull sees the deletion
    assert outcome.report is not None and outcome.report.removed == 1
    assert outcome.report.changed_people == {sofia.id}
    with db_session(live.engine) as s:
        attempts = sorted(r.attempt for r in s.exec(quiz))
        events = s.exec(select(AuditEvent).where(AuditEvent.action == "evidence.removed")).all()
    assert attempts == [1, 2]
    [event] = events
    assert event.detail["person_id"] == sofia.id and event.detail["last"]["score"] == 16.0


def test_a_launch_asks_for_a_pull_and_makes_no_lms_request(live: Live) -> None:
    before = moodle_ws.calls()
    tab = launch(live, "u-learn-2")
    assert moodle_ws.calls() == before  # nothing pulled in the request
    page = tab.get("/app/me").text
    assert "Results have not been pulled from the LMS yet." in page
    with db_session(live.engine) as s:
        assert syncing.sync_health(s, course_id=live.course_id).waiting
    pull(live)
    assert moodle_ws.calls() > before
    page = tab.get("/app/me").text
    assert "Results last pulled from the LMS just now" in page
    assert "Investigating with data (Intermediate)" in page


def test_no_transaction_is_open_while_the_lms_answers(live: Live) -> None:
    transport = CheckNoTransaction(live.engine)
    with httpx.Client(transport=transport, timeout=30) as http:
        [outcome] = syncing.run_due_syncs(
            live.engine, settings=live.settings, http=http, worker="test"
        )
    assert outcome.error == ""
    assert transport.checked >= 8  # the NRPS token and roster, and every Moodle function
    assert transport.held == []


def test_two_workers_never_pull_the_same_course_at_once(live: Live) -> None:
    now = utcnow()
    assert syncing.claim_sync(live.engine, course_id=live.course_id, worker="a", now=now)
    assert not syncing.claim_sync(live.engine, course_id=live.course_id, worker="b", now=now)
    with db_session(live.engine) as s:
        assert live.course_id not in syncing.due_syncs(s, settings=live.settings, now=now)
    # a lease that ran out (a worker died mid-pull) is taken over
    later = now + syncing.SYNC_LEASE
    assert syncing.claim_sync(live.engine, course_id=live.course_id, worker="b", now=later)


def test_a_failing_pull_is_retried_later_and_shown(live: Live) -> None:
    from service.db.models import SourceConnection

    with db_session(live.engine, write=True) as s:
        conn = s.exec(select(SourceConnection)).one()
        conn.base_url = "http://127.0.0.1:9"  # nothing listens (discard port)
        s.add(conn)
        s.commit()
    [outcome] = pull(live)
    assert outcome.error
    with db_session(live.engine) as s:
        health = syncing.sync_health(s, course_id=live.course_id)
    assert health.failures == 1 and health.error and health.pulled_at is None
    assert pull(live) == []  # backing off, not hammering the LMS every second
    with db_session(live.engine) as s:
        assert s.exec(select(col(Evidence.id))).first() is None  # nothing written


def test_an_instructor_connects_the_course_on_its_page(live: Live) -> None:
    import re

    from service.db.models import SourceConnection

    with db_session(live.engine, write=True) as s:
        wiring.connect_source(
            s,
            course_id=live.course_id,
            connection_id=None,
            lms_course_id="",
            actor="t",
            now=utcnow(),
        )
        s.commit()
    tab = launch(live, "u-instr-1")
    page = tab.get("/app/course").text
    assert "Connect to the LMS" in page and "Sync from LMS" not in page
    csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert csrf
    form = {"kind": "moodle", "base_url": live.lms_url, "lms_course_id": "course 101"}
    bad = tab.post("/app/course/connect", form | {"token": "t"}, csrf=csrf.group(1))
    assert bad.status_code == 422 and "LMS course id: a number" in bad.text
    token = moodle_ws.ws_token(live.apps.config.issuer)
    done = tab.post(
        "/app/course/connect", form | {"lms_course_id": "101", "token": token}, csrf=csrf.group(1)
    )
    assert done.status_code == 303, done.text
    page = tab.get("/app/course").text
    assert "Sync from LMS" in page and token not in page  # never shown back
    with db_session(live.engine) as s:
        conn = s.exec(
            select(SourceConnection).where(SourceConnection.name.startswith("course-"))
        ).one()  # type: ignore[attr-defined]
        raw = (
            s.connection()
            .exec_driver_sql(f"SELECT access_token FROM source_connection WHERE id = {conn.id}")
            .scalar()
        )
    assert conn.access_token == token and token not in str(raw)  # encrypted at rest
    [outcome] = pull(live)
    assert outcome.error == "" and outcome.report is not None and outcome.report.new > 0
    page = tab.get("/app/course").text
    assert "Results last pulled from the LMS just now" in page and "Roster: 6 members" in page


def test_the_admin_page_lists_each_connected_course_with_its_health(live: Live) -> None:
    admin = launch(live, "u-admin-1")  # the demo's site administrator
    before = admin.get("/app/admin")
    assert before.status_code == 200
    assert "demo-moodle" in before.text and "Not yet" in before.text
    pull(live)
    after = admin.get("/app/admin").text
    assert "Roster: 6." in after and '<span class="badge ok">OK</span>' in after
