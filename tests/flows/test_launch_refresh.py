"""What a learner's launch refreshes before their page: it asks the worker for an LMS pull
at most once per interval (never pulling in the request), and evaluates only when something
it reads changed (or it is old)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from sqlmodel import Session, col, func, select

from service import evaluation
from service.db.engine import session as db_session
from service.db.models import (
    Award,
    Competency,
    CompetencyLevelTemplate,
    Course,
    CourseCompetency,
    CourseSetup,
    CourseSync,
    Decision,
    Deployment,
    Enrolment,
    Evidence,
    Person,
    Platform,
    PolicyVersion,
    VerificationEvent,
    WebSession,
)
from service.db.types import utcnow
from service.demo import moodle_ws
from service.flows import syncing
from service.lti import store
from service.lti.types import LaunchContext
from tests.flows.conftest import Live, evaluate, launch, pull

pytestmark = pytest.mark.db


def _enrolment(s: Session, live: Live, sub: str) -> Enrolment:
    person = s.exec(select(Person).where(Person.sub == sub)).one()
    return s.exec(
        select(Enrolment).where(
            Enrolment.person_id == person.id, Enrolment.course_id == live.course_id
        )
    ).one()


def _launch_context(s: Session, person_id: int) -> LaunchContext:
    """The launch behind the learner's session, as the launch route saw it (a resource
    link launch keeps no copy of its request: its rows hold what it needs)."""
    row = s.exec(select(WebSession).where(WebSession.person_id == person_id)).first()
    assert row is not None and row.course_id is not None
    person, course = s.get(Person, person_id), s.get(Course, row.course_id)
    platform, deployment = s.get(Platform, row.platform_id), s.get(Deployment, row.deployment_id)
    assert person and course and platform and deployment
    return LaunchContext(
        launch_id=row.launch_id,
        platform_id=row.platform_id,
        deployment_pk=row.deployment_id,
        issuer=platform.issuer,
        client_id=platform.client_id,
        deployment_id=deployment.deployment_id,
        message_type="LtiResourceLinkRequest",
        sub=person.sub,
        role="learner",
        roles=list(row.roles),
        name=person.name,
        email=person.email,
        context_id=course.context_id,
        context_title=course.title,
        context_label=course.label,
    )


def _counts(live: Live) -> tuple[int, int]:
    with db_session(live.engine) as s:
        decisions = s.exec(select(func.count()).select_from(Decision)).one()
    # pulls the demo LMS answered (each starts with the gradebook)
    pulls = moodle_ws.calls("gradereport_user_get_grade_items")
    return int(decisions), pulls


def _wanted(live: Live) -> bool:
    with db_session(live.engine) as s:
        return syncing.sync_health(s, course_id=live.course_id).waiting


def _launched_after_a_pull(live: Live, sub: str) -> None:
    """The first launch asks for a pull; the worker pulls and evaluates; the next launch
    stamps what it evaluated."""
    launch(live, sub)
    assert _wanted(live)
    assert [o.error for o in pull(live)] == [""]
    launch(live, sub)
    evaluate(live)


def test_a_returning_learner_with_nothing_new_is_neither_pulled_nor_evaluated(
    live: Live,
) -> None:
    _launched_after_a_pull(live, "u-learn-2")
    first = _counts(live)
    with db_session(live.engine) as s:
        stamped = _enrolment(s, live, "u-learn-2")
        assert stamped.evaluated_at is not None and len(stamped.evaluated_inputs) == 64
    tab = launch(live, "u-learn-2")
    assert _counts(live) == first  # no decision stored, no LMS pull (interval 300 s)
    assert not _wanted(live)  # and none asked for
    with db_session(live.engine) as s:
        again = _enrolment(s, live, "u-learn-2")
        assert (again.evaluated_at, again.evaluated_inputs) == (
            stamped.evaluated_at,
            stamped.evaluated_inputs,
        )
    page = tab.get("/app/me")
    assert page.status_code == 200 and "Investigating with data (Intermediate)" in page.text


def test_a_learner_the_worker_evaluated_sees_their_levels_at_the_first_launch(
    live: Live,
) -> None:
    launch(live, "u-instr-1")  # the course's first launch brings its gradebook URL
    pull(live)  # the worker pulls the roster and results and evaluates; Lucas never launched
    tab = launch(live, "u-learn-2")
    assert not _queued(live, "u-learn-2")  # the worker's evaluation stamped what it saw
    page = tab.get("/app/me")
    assert 'data-testid="pending"' not in page.text
    assert "Investigating with data (Intermediate)" in page.text


def _decisions(live: Live, sub: str) -> list[tuple[int, str]]:
    with db_session(live.engine) as s:
        person = s.exec(select(Person).where(Person.sub == sub)).one()
        rows = s.exec(
            select(Decision).where(Decision.person_id == person.id).order_by(col(Decision.id))
        ).all()
        return [(d.competency_id, d.evidence_hash) for d in rows]


def test_a_result_changed_since_the_last_launch_is_evaluated_on_the_next(live: Live) -> None:
    _launched_after_a_pull(live, "u-learn-3")  # Sofia: intermediate in both competencies
    before = _decisions(live, "u-learn-3")
    with db_session(live.engine, write=True) as s:
        person = s.exec(select(Person).where(Person.sub == "u-learn-3")).one()
        quiz = select(Evidence).where(Evidence.person_id == person.id, Evidence.item_id == "21")
        for row in s.exec(quiz):
            # as an import that evaluated nothing would leave it: full marks, a new version
            row.score, row.version, row.updated_at = row.max_score, row.version + 1, utcnow()
            s.add(row)
        s.commit()
    launch(live, "u-learn-3")  # within the pull interval: the changed rows stay as they are
    # the launch evaluated nothing itself: it queued the learner for the worker
    assert _decisions(live, "u-learn-3") == before and _queued(live, "u-learn-3")
    evaluate(live)
    after = _decisions(live, "u-learn-3")
    new = after[len(before) :]
    assert after[: len(before)] == before and new  # evaluated again, on the new evidence
    assert {h for _c, h in new}.isdisjoint({h for _c, h in before})
    launch(live, "u-learn-3")
    evaluate(live)
    assert _decisions(live, "u-learn-3") == after  # and not a third time
    assert not _queued(live, "u-learn-3")


def _queued(live: Live, sub: str) -> bool:
    with db_session(live.engine) as s:
        person = s.exec(select(Person).where(Person.sub == sub)).one()
        assert person.id is not None
        return evaluation.due(s, course_id=live.course_id, person_id=person.id) == 1


def test_an_old_evaluation_is_redone_and_an_old_pull_repeated(live: Live) -> None:
    _launched_after_a_pull(live, "u-learn-1")
    decisions, pulls = _counts(live)
    with db_session(live.engine, write=True) as s:
        enrolment = _enrolment(s, live, "u-learn-1")
        stamp = enrolment.evaluated_inputs
        assert enrolment.evaluated_at is not None
        enrolment.evaluated_at = enrolment.evaluated_at - dt.timedelta(hours=2)
        s.add(enrolment)
        s.commit()
    launch(live, "u-learn-1")  # max age 3600 s: evaluated again, nothing new stored
    with db_session(live.engine) as s:
        redone = _enrolment(s, live, "u-learn-1")
        assert redone.evaluated_at is not None
        assert utcnow() - redone.evaluated_at < dt.timedelta(minutes=5)
        assert redone.evaluated_inputs == stamp
    assert _counts(live) == (decisions, pulls)  # same evidence and rules: same decisions
    with db_session(live.engine, write=True) as s:
        # the last pull was 10 minutes ago; the worker's own schedule is not due
        row = s.exec(select(CourseSync).where(CourseSync.course_id == live.course_id)).one()
        assert row.pulled_at is not None
        row.pulled_at -= dt.timedelta(minutes=10)
        row.attempted_at = utcnow()
        s.add(row)
        s.commit()
    launch(live, "u-learn-1")
    assert _counts(live)[1] == pulls  # the launch pulled nothing itself ...
    assert _wanted(live)  # ... it asked the worker, since the last pull was older than 300 s
    pull(live)
    assert _counts(live)[1] == pulls + 1


def _bump_result(s: Session, person_id: int, live: Live) -> None:
    row = s.exec(select(Evidence).where(Evidence.person_id == person_id)).first()
    assert row is not None
    row.score, row.version = (row.score or 0) + 1, row.version + 1
    s.add(row)


def _add_verification(s: Session, person_id: int, live: Live) -> None:
    s.add(
        VerificationEvent(
            course_id=live.course_id,
            person_id=person_id,
            origin="proctor",
            item_id="21",
            sitting_id="late",
            level="proctored",
            asserted_by="proctor",
            occurred_at=utcnow(),
        )
    )


def _new_policy_version(s: Session, person_id: int, live: Live) -> None:
    latest = s.exec(select(PolicyVersion).order_by(col(PolicyVersion.id).desc())).first()
    assert latest is not None
    s.add(
        PolicyVersion(
            scope=latest.scope,
            scope_key=latest.scope_key,
            course_id=latest.course_id,
            competency_id=latest.competency_id,
            version=latest.version + 1,
            document=latest.document,
            bounds=latest.bounds,
        )
    )


def _touch(model: type, where: Callable[[Live], object] | None = None) -> Callable[..., None]:
    def mutate(s: Session, person_id: int, live: Live) -> None:
        query = select(model)
        if where is not None:
            query = query.where(where(live))
        row = s.exec(query).first()
        assert row is not None
        row.updated_at = utcnow() + dt.timedelta(seconds=1)
        s.add(row)

    return mutate


def _revoke_award(s: Session, person_id: int, live: Live) -> None:
    award = s.exec(select(Award).where(Award.person_id == person_id)).first()
    assert award is not None
    award.state, award.updated_at = "revoked", utcnow() + dt.timedelta(seconds=1)
    s.add(award)


def _add_course_competency(s: Session, person_id: int, live: Live) -> None:
    comp = Competency(key="late-addition", name="Late addition")
    s.add(comp)
    s.flush()
    s.add(CourseCompetency(course_id=live.course_id, competency_id=comp.id or 0))


@pytest.mark.parametrize(
    "change",
    [
        _bump_result,
        _add_verification,
        _new_policy_version,
        _touch(Competency),
        _touch(CompetencyLevelTemplate),
        _touch(CourseSetup, lambda live: CourseSetup.course_id == live.course_id),
        _revoke_award,
        _add_course_competency,
    ],
    ids=[
        "a result changed",
        "a verification statement added",
        "a policy layer got a new version",
        "a catalogue entry changed",
        "a level template changed",
        "the course's award rules changed",
        "an award was revoked",
        "a competency was added to the course",
    ],
)
def test_every_input_of_an_evaluation_changes_the_learner_state(
    live: Live, change: Callable[[Session, int, Live], None]
) -> None:
    _launched_after_a_pull(live, "u-learn-2")
    with db_session(live.engine, write=True) as s:
        enrolment = _enrolment(s, live, "u-learn-2")
        before = store.learner_state(s, enrolment=enrolment)
        assert before.inputs == enrolment.evaluated_inputs  # stamped by the launch
        change(s, enrolment.person_id, live)
        s.flush()
        after = store.learner_state(s, enrolment=enrolment)
        assert after.inputs != before.inputs
        assert after.evaluation_due(utcnow(), dt.timedelta(hours=1))
        # a launch reads the same state within its one statement for person and course
        context = _launch_context(s, enrolment.person_id)
        record = store.record_user(s, launch=context, now=utcnow())
        assert (
            record is not None
            and record.learner is not None
            and record.learner.inputs == after.inputs
        )


def test_another_learners_results_leave_the_state_alone(live: Live) -> None:
    _launched_after_a_pull(live, "u-learn-2")
    with db_session(live.engine, write=True) as s:
        enrolment = _enrolment(s, live, "u-learn-2")
        before = store.learner_state(s, enrolment=enrolment)
        other = s.exec(select(Person).where(Person.sub == "u-learn-3")).one()
        assert other.id is not None
        _bump_result(s, other.id, live)
        s.flush()
        after = store.learner_state(s, enrolment=enrolment)
        assert after == before
        assert not after.evaluation_due(utcnow(), dt.timedelta(hours=1))
        assert after.connected and after.synced_at is not None
        interval = dt.timedelta(seconds=300)
        assert not after.sync_due(after.synced_at + interval - dt.timedelta(seconds=1), interval)
        assert after.sync_due(after.synced_at + interval, interval)
