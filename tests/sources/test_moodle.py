"""Moodle web services connector against the fake Moodle, and sync into the real DB."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import select

from service.db.engine import session
from service.db.models import Evidence, ImportRun
from service.sources import store, sync
from service.sources.connectors.base import RetryPolicy
from service.sources.connectors.moodle import MoodleConnector
from service.sources.errors import (
    SourceAuthFailed,
    SourceDataError,
    SourceRefused,
    SourceUnavailable,
)
from service.sources.types import SourceKind
from tests.sources.fakes import FakeMoodle
from tests.sources.helpers import NOW, World, history, world


def connector(fake: FakeMoodle, sleeps: list[float] | None = None) -> MoodleConnector:
    return MoodleConnector(
        base_url="https://moodle.test/",
        token="moodle-token",
        origin="moodle:1",
        client=httpx.Client(transport=fake.transport()),
        policy=RetryPolicy(attempts=3, base_delay=0.5),
        sleep=(sleeps if sleeps is not None else []).append,
    )


def run_sync(engine: Engine, w: World, fake: FakeMoodle, sleeps: list[float] | None = None):  # type: ignore[no-untyped-def]
    with session(engine, write=True) as s:
        report = sync.sync_course(
            s,
            course_id=w.course_id,
            connector=connector(fake, sleeps),
            now=NOW,
            lms_course_id="2",
        )
        s.commit()
    return report


def test_fetch_normalises_quiz_assignment_and_rubric() -> None:
    fetched = connector(FakeMoodle.sample()).fetch_course("2")
    kinds = sorted(
        (r.kind.value, r.learner.sub, r.criterion_id, r.attempt) for _, r in fetched.results
    )
    assert kinds == [
        ("assignment", "42", "", 1),
        ("quiz", "42", "", 1),
        ("quiz", "42", "", 2),
        ("rubric_criterion", "42", "21", 1),
        ("rubric_criterion", "42", "22", 1),
    ]
    by = {(r.kind, r.criterion_id, r.attempt): r for _, r in fetched.results}
    quiz = by[(SourceKind.QUIZ, "", 2)]
    assert (quiz.item_id, quiz.score, quiz.max_score) == ("70", 9.5, 10.0)
    assert quiz.submitted_at is not None and quiz.submitted_at.tzinfo is not None
    crit = by[(SourceKind.RUBRIC_CRITERION, "21", 1)]
    # Only the active filling (status 1) counts, not the archived one (status 3).
    assert crit.level is not None and (crit.level.id, crit.level.points) == ("13", 2.0)
    assert [lv[1] for lv in crit.level.scale] == ["Not yet", "Developing", "Proficient"]
    assert crit.criterion_title == "Argument" and crit.item_title == "Essay"
    assert by[(SourceKind.ASSIGNMENT, "", 1)].score == 3.0  # learner 43's -1 is "not graded"
    assert fetched.problems == []


def test_token_travels_in_the_body_not_the_url() -> None:
    fake = FakeMoodle.sample()
    connector(fake).fetch_course("2")
    assert fake.urls and all("moodle-token" not in u for u in fake.urls)


def test_sync_stores_then_is_idempotent_then_updates(engine: Engine) -> None:
    w = world(engine)
    fake = FakeMoodle.sample()
    first = run_sync(engine, w, fake)
    assert (first.new, first.updated, first.unchanged) == (5, 0, 0)
    assert first.rejected == []
    again = run_sync(engine, w, fake)
    assert (again.new, again.updated, again.unchanged) == (0, 0, 5)
    fake.attempts[(5, 42)][1]["sumgrades"] = 10.0  # regraded
    third = run_sync(engine, w, fake)
    assert (third.new, third.updated, third.unchanged) == (0, 1, 4)
    with session(engine) as s:
        recs = store.list_evidence(s, course_id=w.course_id)
        assert {r.person_id for r in recs} == {w.bob}
        assert all(r.origin == "moodle:1" for r in recs)
        assert all(r.verification.value == "authenticated" for r in recs)
        [regraded] = [r for r in recs if r.kind == "quiz" and r.attempt == 2]
        assert [h.values["score"] for h in history(s, evidence_id=regraded.id)] == [9.5, 10.0]


def test_unknown_learner_is_rejected_with_reason_the_rest_stored(engine: Engine) -> None:
    w = world(engine)
    fake = FakeMoodle.sample()
    fake.attempts[(5, 43)] = [
        {
            "id": 510,
            "userid": 43,
            "attempt": 1,
            "state": "finished",
            "timefinish": 1763900600,
            "sumgrades": 4.0,
        }
    ]
    report = run_sync(engine, w, fake)
    assert report.new == 5
    [p] = report.rejected
    assert p.where == "quiz 70 attempt 510" and "lms_user_id=43" in p.reason


def test_expired_token_is_a_clear_auth_error_and_nothing_is_written(engine: Engine) -> None:
    w = world(engine)
    fake = FakeMoodle.sample()
    fake.token = "rotated"
    with pytest.raises(SourceAuthFailed, match="invalidtoken") as info:
        run_sync(engine, w, fake)
    assert "Manage tokens" in (info.value.hint or "")
    assert not info.value.retryable
    with session(engine) as s:
        assert s.exec(select(Evidence)).all() == [] and s.exec(select(ImportRun)).all() == []


def test_5xx_is_retried_with_backoff_then_succeeds(engine: Engine) -> None:
    w = world(engine)
    fake = FakeMoodle.sample()
    fake.fail["mod_quiz_get_user_attempts"] = [503, 502]
    sleeps: list[float] = []
    report = run_sync(engine, w, fake, sleeps)
    assert report.new == 5
    assert sleeps == [0.5, 1.0]


def test_a_late_failure_leaves_nothing_half_imported(engine: Engine) -> None:
    """Quizzes were read fine; the rubric call keeps failing: no quiz result is written."""
    w = world(engine)
    fake = FakeMoodle.sample()
    fake.fail["core_grading_get_gradingform_instances"] = [500, 500, 500]
    with pytest.raises(SourceUnavailable, match="after 3 attempts") as info:
        run_sync(engine, w, fake)
    assert info.value.retryable
    assert "mod_quiz_get_user_attempts" in fake.calls
    with session(engine) as s:
        assert s.exec(select(Evidence)).all() == []


def test_missing_rubric_and_partial_data_are_reported_per_record(engine: Engine) -> None:
    w = world(engine)
    fake = FakeMoodle.sample()
    fake.areas[0]["definitions"] = []  # rubric method but no definition visible
    fake.attempts[(5, 42)][0]["sumgrades"] = None  # essay question still to mark
    report = run_sync(engine, w, fake)
    reasons = {(p.where, p.field): p.reason for p in report.rejected}
    assert "Moodle returned no rubric definition" in reasons[("assignment 90", "rubric")]
    assert "not graded yet" in reasons[("quiz 70 attempt 501", "sumgrades")]
    assert report.new == 2  # attempt 2 and the assignment grade


def test_filling_with_a_level_not_in_the_rubric_is_rejected() -> None:
    fake = FakeMoodle.sample()
    fake.instances[3][0]["rubric"]["criteria"][1]["levelid"] = 999
    fetched = connector(fake).fetch_course("2")
    [p] = fetched.problems
    assert p.field == "levelid" and "level 999" in p.reason
    assert sum(r.kind is SourceKind.RUBRIC_CRITERION for _, r in fetched.results) == 1


def test_missing_capability_names_the_function() -> None:
    fake = FakeMoodle.sample()
    fake.fail["mod_quiz_get_quizzes_by_courses"] = [
        {
            "exception": "required_capability_exception",
            "errorcode": "nopermissions",
            "message": "Sorry, but you do not currently have permissions to do that",
        }
    ]
    with pytest.raises(SourceRefused, match="mod_quiz_get_quizzes_by_courses") as info:
        connector(fake).fetch_course("2")
    assert "capability" in (info.value.hint or "")


def test_answer_in_an_unexpected_shape_is_a_data_error() -> None:
    fake = FakeMoodle.sample()
    fake.fail["mod_quiz_get_quizzes_by_courses"] = [{"quizzes": "nope"}]
    with pytest.raises(SourceDataError, match="expected a list under 'quizzes'"):
        connector(fake).fetch_course("2")
    fake = FakeMoodle.sample()
    del fake.quizzes[0]["coursemodule"]
    with pytest.raises(SourceDataError, match="documented shape"):
        connector(fake).fetch_course("2")


def test_html_error_page_is_a_data_error_not_a_crash() -> None:
    fake = FakeMoodle.sample()
    fake.fail["gradereport_user_get_grade_items"] = [404]
    with pytest.raises(SourceRefused, match="HTTP 404"):
        connector(fake).fetch_course("2")
    with pytest.raises(SourceRefused, match="not a Moodle course id"):
        connector(fake).fetch_course("abc")


def test_attempts_are_asked_only_for_learners_with_a_quiz_grade() -> None:
    fake = FakeMoodle.sample()
    fake.users = [42, 43, 44, 45]
    connector(fake).fetch_course("2")
    # One gradebook call instead of one attempts call per enrolled user and quiz.
    assert fake.calls.count("gradereport_user_get_grade_items") == 1
    assert fake.calls.count("mod_quiz_get_user_attempts") == 1


def test_a_retry_after_in_superscript_digits_falls_back_to_exponential_backoff() -> None:
    from service.sources.connectors.base import backoff_seconds

    policy = RetryPolicy(base_delay=1.0, max_delay=30.0)
    assert backoff_seconds(policy, 3, "²") == 4.0
    assert backoff_seconds(policy, 1, " 7 ") == 7.0
    assert backoff_seconds(policy, 1, None) == 1.0


def test_assignments_are_asked_for_a_course_the_service_user_is_not_enrolled_in() -> None:
    # A service user with system capabilities is enrolled nowhere: without
    # includenotenrolledcourses Moodle answers no course and a warning (issue #16, item 3).
    fake = FakeMoodle.sample()
    assert not fake.enrolled
    fetched = connector(fake).fetch_course("2")
    [form] = [f for f in fake.forms if f["wsfunction"] == "mod_assign_get_assignments"]
    assert form["includenotenrolledcourses"] == "1"
    assert {r.kind for _, r in fetched.results} >= {
        SourceKind.ASSIGNMENT,
        SourceKind.RUBRIC_CRITERION,
    }
    assert fetched.problems == [] and fetched.complete


def test_every_moodle_warning_is_an_attention_item_with_the_fix(engine: Engine) -> None:
    w = world(engine)
    fake = FakeMoodle.sample()
    first = run_sync(engine, w, fake)
    assert first.new > 0 and first.rejected == []
    fake.warnings["mod_assign_get_grades"] = [
        {
            "item": "assignment",
            "itemid": 8,
            "warningcode": "1",
            "message": "No access rights in module context",
        }
    ]
    fake.grades = {}  # the grades Moodle withheld
    fake.instances = {}
    report = run_sync(engine, w, fake)
    [warned] = [p for p in report.rejected if p.field == "warnings"]
    assert "mod_assign_get_grades" in warned.where and "assignment 8" in warned.where
    assert "No access rights in module context" in warned.reason
    assert "mod/assign:viewgrades" in warned.reason  # what to give the service user
    # Part of the course was withheld: what it held before is kept, and the report says so.
    assert report.removed == 0
    assert any(p.field == "removed" for p in report.rejected)
    with session(engine) as s:
        kinds = {r.kind for r in store.list_evidence(s, course_id=w.course_id)}
    assert "rubric_criterion" in kinds


def test_a_result_gone_from_a_complete_pull_is_deleted(engine: Engine) -> None:
    w = world(engine)
    fake = FakeMoodle.sample()
    run_sync(engine, w, fake)
    fake.attempts[(5, 42)] = fake.attempts[(5, 42)][:1]  # attempt 2 deleted in Moodle
    report = run_sync(engine, w, fake)
    assert report.removed == 1 and report.rejected == []
    with session(engine) as s:
        quiz = [
            r.attempt for r in store.list_evidence(s, course_id=w.course_id) if r.kind == "quiz"
        ]
    assert quiz == [1]
