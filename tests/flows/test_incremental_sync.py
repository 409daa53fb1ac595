"""The scheduled sync pulls incrementally where the LMS's API allows (Moodle's ``since``,
Canvas's ``graded_since``), from the last successful pull less an overlap, and in full once
per MICROCRED_SYNC_FULL_INTERVAL_SECONDS so that deletions are still seen; a changed result
queues only the learners it touches; no transaction is open while the LMS answers. Against
the fake Moodle and Canvas at the HTTP boundary."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import select

from service import evaluation
from service.db.engine import session
from service.db.models import CourseSync, Platform, SourceConnection
from service.flows import evaluation_queue, syncing, wiring
from service.settings import Settings
from service.sources import store
from tests import factories
from tests.flows.notx import CheckNoTransaction
from tests.sources.fakes import FakeCanvas, FakeMoodle
from tests.sources.helpers import World, world

pytestmark = pytest.mark.db

T1 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


def _connect(engine: Engine, w: World, *, kind: str, lms_course_id: str) -> None:
    with session(engine, write=True) as s:
        conn = SourceConnection(
            name=f"{kind}-prod",
            kind=kind,
            base_url=f"https://{kind}.test",
            access_token="moodle-token" if kind == "moodle" else "canvas-at-1",
            refresh_token="canvas-rt" if kind == "canvas" else None,
            client_id="10000000000001" if kind == "canvas" else "",
        )
        s.add(conn)
        s.flush()
        wiring.connect_source(
            s,
            course_id=w.course_id,
            connection_id=conn.id,
            lms_course_id=lms_course_id,
            actor="t",
            now=T1,
        )
        s.commit()


def _pull(
    engine: Engine, settings: Settings, w: World, http: httpx.Client, at: dt.datetime
) -> syncing.SyncOutcome:
    outcome = syncing.run_sync(
        engine, settings=settings, course_id=w.course_id, http=http, worker="t", clock=lambda: at
    )
    assert outcome.error == "" and outcome.report is not None, outcome.error
    return outcome


def _since(fake: FakeMoodle) -> dict[str, str]:
    return {
        form["wsfunction"]: form.get("since", "")
        for form in fake.forms
        if form["wsfunction"] in ("mod_assign_get_grades", "core_grading_get_gradingform_instances")
    }


def _full_pulled_at(engine: Engine, w: World) -> dt.datetime | None:
    with session(engine) as s:
        row = s.exec(select(CourseSync).where(CourseSync.course_id == w.course_id)).one()
        return row.full_pulled_at


def _due(engine: Engine, w: World, person_id: int) -> bool:
    with session(engine) as s:
        return evaluation.due(s, course_id=w.course_id, person_id=person_id) == 1


def test_moodle_pulls_what_changed_since_the_last_pull_and_in_full_now_and_then(
    engine: Engine, settings: Settings
) -> None:
    w = world(engine)
    with session(engine, write=True) as s:
        plat = s.get(Platform, w.platform_id)
        assert plat is not None
        cleo = factories.person(s, plat, sub="43")
        s.commit()
        assert cleo.id is not None
        cleo_id = cleo.id
    _connect(engine, w, kind="moodle", lms_course_id="2")
    fake = FakeMoodle.sample()
    fake.grades[8][1]["grade"] = "2.00000"  # Cleo (user 43) has a graded essay too
    transport = CheckNoTransaction(engine, fake.transport())
    with httpx.Client(transport=transport) as http:
        first = _pull(engine, settings, w, http, T1)  # never pulled: in full
        assert _since(fake) == {
            "mod_assign_get_grades": "0",
            "core_grading_get_gradingform_instances": "0",
        }
        assert first.report is not None and first.report.changed_people == {w.bob, cleo_id}
        assert _full_pulled_at(engine, w) == T1
        while evaluation_queue.run_evaluation_jobs(engine, settings=settings)[0]:
            pass  # the worker's evaluation job

        # A teacher regrades Bob's essay in Moodle a minute after the pull.
        regraded = T1 + dt.timedelta(minutes=1)
        fake.grades[8][0] |= {"grade": "4.00000", "timemodified": int(regraded.timestamp())}
        fake.forms.clear()
        second = _pull(engine, settings, w, http, T1 + dt.timedelta(minutes=10))
        since = str(int((T1 - syncing.SYNC_OVERLAP).timestamp()))
        assert _since(fake) == {
            "mod_assign_get_grades": since,
            "core_grading_get_gradingform_instances": since,
        }
        assert second.report is not None
        assert (second.report.updated, second.report.removed) == (1, 0)
        # only the learner whose result changed is evaluated again
        assert second.report.changed_people == {w.bob} and second.queued == 1
        assert _due(engine, w, w.bob) and not _due(engine, w, cleo_id)
        assert _full_pulled_at(engine, w) == T1

        # Cleo's grade is deleted in Moodle: an incremental pull cannot see that ...
        fake.grades[8] = fake.grades[8][:1]
        third = _pull(engine, settings, w, http, T1 + dt.timedelta(minutes=20))
        assert third.report is not None and third.report.removed == 0
        # ... the full pull, once MICROCRED_SYNC_FULL_INTERVAL_SECONDS has passed, does
        fake.forms.clear()
        later = T1 + dt.timedelta(seconds=settings.sync_full_interval_seconds)
        fourth = _pull(engine, settings, w, http, later)
        assert set(_since(fake).values()) == {"0"}
        assert fourth.report is not None and fourth.report.removed == 1
        assert fourth.report.changed_people == {cleo_id}
        assert _full_pulled_at(engine, w) == later
    assert transport.checked >= 20 and transport.held == []


def test_canvas_pulls_the_submissions_graded_since_the_last_pull(
    engine: Engine, settings: Settings
) -> None:
    w = world(engine)
    _connect(engine, w, kind="canvas", lms_course_id="7")
    with session(engine, write=True) as s:
        store.link_person(s, platform_id=w.platform_id, lms_user_id="1002", person_id=w.bob)
        s.commit()
    fake = FakeCanvas.sample()
    transport = CheckNoTransaction(engine, fake.transport())
    with httpx.Client(transport=transport) as http:
        first = _pull(engine, settings, w, http, T1)
        assert first.report is not None and first.report.changed_people == {w.ada, w.bob}
        assert any("/assignments/31/submissions" in c for c in fake.calls)
        # Bob's essay is regraded in Canvas after the pull.
        bob = fake.submissions[31][1]
        bob |= {"score": 2.0, "graded_at": "2026-12-01T09:01:00Z"}
        bob["rubric_assessment"]["_c1"] = {"points": 2.0, "rating_id": "r3", "comments": ""}
        fake.calls.clear()
        second = _pull(engine, settings, w, http, T1 + dt.timedelta(minutes=10))
        listed = [c for c in fake.calls if "/students/submissions" in c]
        assert len(listed) == 1
        assert "graded_since=2026-12-01T08%3A55%3A00%2B00%3A00" in listed[0]
        # no per-assignment lists, no quiz submissions of a quiz nobody took since
        assert not any("/assignments/31/submissions" in c for c in fake.calls)
        assert not any("/quizzes/40/submissions" in c for c in fake.calls)
        assert second.report is not None and second.report.removed == 0
        assert second.report.changed_people == {w.bob} and second.queued == 1
    assert transport.held == []
