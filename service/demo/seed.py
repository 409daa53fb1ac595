"""Seed the tool for the demo course: what an administrator and instructor set up once.

Institution defaults and bounds, two competencies with credential fields per level, the
course's mapping of rubric criteria and quizzes to them, a stacked credential, the
connection to the demo LMS's Moodle web services and its NRPS roster URL, the roster with
each learner's Moodle user id (the demo's NRPS ids are not Moodle's numbers, as a real
Moodle's are, so the link is seeded), the proctoring service's statements about the
supervised quiz sittings, and two delivery targets on loopback (a webhook received by the
demo LMS and the course gradebook through LTI AGS). Results are NOT seeded: the worker's
scheduled sync pulls them over HTTP, like a real Moodle's.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, select

from service.db.engine import session as db_session
from service.db.models import (
    Course,
    Deployment,
    Enrolment,
    ImportRun,
    Person,
    SourceConnection,
)
from service.db.types import utcnow
from service.delivery import repositories
from service.demo import moodle_ws
from service.demo.config import DemoConfig
from service.demo.course import Course as SampleCourse
from service.demo.course import sample_course
from service.flows import wiring
from service.policies import repository as policies_repo
from service.policies import service as policies
from service.sources import store
from service.sources.types import Asserter, LearnerRef, Verification, VerificationEvent

__all__ = ["COMPETENCIES", "seed"]

INSTITUTION_DEFAULTS: dict[str, Any] = {
    "aggregation": "average",
    "attempt_grading": "highest",
    "levels": {
        "beginning": {"threshold": "50%"},
        "intermediate": {"threshold": "65%"},
        "advanced": {"threshold": "85%", "verification": "supervised"},
    },
}
INSTITUTION_BOUNDS: dict[str, Any] = {
    "levels": {
        "beginning": {"threshold": {"min": "40%", "max": "60%"}},
        "intermediate": {"threshold": {"min": "55%", "max": "80%"}},
        "advanced": {"threshold": {"min": "75%", "max": "95%"}, "verification": "supervised"},
    },
    "aggregation": ["average", "weighted_average", "highest", "latest"],
}

# key, name, description, level outcomes, items (criterion ids or quiz ids of the sample)
COMPETENCIES: tuple[tuple[str, str, str, dict[str, str], tuple[str, ...]], ...] = (
    (
        "data-investigation",
        "Investigating with data",
        "Frames a question data can answer, prepares the data and summarises it.",
        {
            "beginning": "Frames a simple data question and computes basic summaries with help.",
            "intermediate": "Frames a precise question, cleans a data set and documents "
            "every change, and chooses fitting summary statistics.",
            "advanced": "Independently designs an investigation, handles messy data "
            "reproducibly and interprets statistics critically, in a supervised setting.",
        },
        ("crit-question", "crit-clean", "quiz-stats"),
    ),
    (
        "data-communication",
        "Communicating with data",
        "Chooses fitting charts and explains findings and their uncertainty in plain words.",
        {
            "beginning": "Reads common charts and describes what they show.",
            "intermediate": "Chooses a fitting chart and explains a finding with its uncertainty.",
            "advanced": "Communicates findings to a non-specialist audience clearly and "
            "honestly, in a supervised setting.",
        },
        ("crit-communicate", "quiz-viz"),
    ),
)
STACK = {
    "name": "Data literacy",
    "requires": [
        {"competency": "data-investigation", "level": "intermediate"},
        {"competency": "data-communication", "level": "intermediate"},
    ],
}
CONNECTION_NAME = "demo-moodle"
PROCTORING = "push:demo-proctoring"


def _item(course: SampleCourse, ref: str) -> tuple[str, str]:
    """The tool's item key for a sample criterion or quiz (as the Moodle connector keys it)."""
    crit = next((c for c in course.criteria if c.id == ref), None)
    if crit is not None:
        key = f"{moodle_ws.ASSIGNMENT_CMID}/{moodle_ws.criterion_number(course, ref)}"
        return key, crit.title
    quiz = next(q for q in course.quizzes if q.id == ref)
    return str(moodle_ws.quiz_cmid(course, ref)), quiz.title


def _course_row(s: Session, platform_id: int, config: DemoConfig, sample: SampleCourse) -> Course:
    deployment = s.exec(
        select(Deployment).where(
            Deployment.platform_id == platform_id,
            Deployment.deployment_id == config.tool.deployment_id,
        )
    ).one()
    course = s.exec(
        select(Course).where(
            Course.deployment_id == deployment.id, Course.context_id == sample.context_id
        )
    ).first()
    if course is None:
        course = Course(
            deployment_id=deployment.id or 0,
            context_id=sample.context_id,
            title=sample.title,
            label=sample.label,
        )
        s.add(course)
        s.flush()
    return course


def _policies(s: Session, course_id: int, sample: SampleCourse) -> None:
    if policies_repo.latest_version(s, policies_repo.INSTITUTION) is None:
        policies.save_institution(
            s,
            defaults=INSTITUTION_DEFAULTS,
            bounds=INSTITUTION_BOUNDS,
            author="demo",
            note="demo institution defaults",
        )
    for key, name, description, outcomes, refs in COMPETENCIES:
        row = policies_repo.competency_by_key(s, key)
        if row is None:
            row = policies.create_competency(
                s,
                key=key,
                name=name,
                author="demo",
                description=description,
                level_descriptions=outcomes,
            )
            for level, eqf in (("beginning", 3), ("intermediate", 4), ("advanced", 5)):
                policies.set_level_template(
                    s,
                    competency_row=row,
                    level=level,
                    author="demo",
                    title=f"{name} ({level})",
                    validity_days=3 * 365,
                    workload_hours=10.0,
                    ects_credits=0.5,
                    eqf_level=eqf,
                    iscedf_code="0542",
                )
        assert row.id is not None
        scope = policies_repo.competency_scope(course_id, row.id)
        if policies_repo.latest_version(s, scope) is None:
            items = [dict(zip(("item", "label"), _item(sample, ref), strict=True)) for ref in refs]
            policies.save_competency_override(
                s,
                course_id=course_id,
                competency_row=row,
                document={"items": items},
                author="demo",
                note="demo mapping",
            )


def _roster(s: Session, platform_id: int, course_id: int, sample: SampleCourse) -> None:
    for m in sample.members:
        person = s.exec(
            select(Person).where(Person.platform_id == platform_id, Person.sub == m.user_id)
        ).first()
        if person is None:
            person = Person(
                platform_id=platform_id,
                sub=m.user_id,
                name=m.name,
                given_name=m.given_name,
                family_name=m.family_name,
                email=m.email,
            )
            s.add(person)
            s.flush()
        assert person.id is not None
        if (
            s.exec(
                select(Enrolment).where(
                    Enrolment.course_id == course_id, Enrolment.person_id == person.id
                )
            ).first()
            is None
        ):
            s.add(Enrolment(course_id=course_id, person_id=person.id, role=m.role, roles=m.roles))
        store.link_person(
            s,
            platform_id=platform_id,
            lms_user_id=str(moodle_ws.user_number(sample, m.user_id)),
            person_id=person.id,
        )


def _proctoring(s: Session, course_id: int, sample: SampleCourse, now: dt.datetime) -> None:
    """The supervised quiz sittings, as a proctoring service posts them (push API)."""
    events = []
    for a in sample.quiz_attempts:
        quiz = next(q for q in sample.quizzes if q.id == a.quiz_id)
        if not a.supervised or quiz.supervision == "unsupervised":
            continue
        events.append(
            (
                f"{a.user_id} {a.quiz_id} attempt {a.attempt}",
                VerificationEvent(
                    origin=PROCTORING,
                    learner=LearnerRef(sub=a.user_id),
                    item_id=str(moodle_ws.quiz_cmid(sample, a.quiz_id)),
                    level=Verification(quiz.supervision),
                    asserted_by=Asserter.PROCTORING,
                    occurred_at=a.finished_at,
                    attempt=a.attempt,
                    note="Exam room B, photo ID checked",
                ),
            )
        )
    run = ImportRun(kind="push", origin=PROCTORING, actor="demo", status="running", started_at=now)
    s.add(run)
    store.apply(s, course_id=course_id, results=[], events=events, run=run, keep="always", now=now)


def _targets(s: Session, config: DemoConfig) -> None:
    names = {r.name for r in repositories.list_all(s)}
    if "Demo LMS webhook" not in names:
        repositories.create(
            s,
            kind="webhook",
            name="Demo LMS webhook",
            config={"url": config.base + moodle_ws.WEBHOOK_PATH},
            secret=moodle_ws.ws_token(config.issuer + "#webhook"),
        )
    if "Course gradebook" not in names:
        repositories.create(s, kind="ags", name="Course gradebook", config={})


def _connection(s: Session, platform_id: int, config: DemoConfig) -> SourceConnection:
    row = s.exec(select(SourceConnection).where(SourceConnection.name == CONNECTION_NAME)).first()
    if row is None:
        row = SourceConnection(name=CONNECTION_NAME, kind="moodle", base_url="", access_token="")
    row.platform_id = platform_id
    row.base_url = config.base  # ports may change between runs
    row.access_token = moodle_ws.ws_token(config.issuer)
    s.add(row)
    s.flush()
    return row


def seed(engine: Engine, config: DemoConfig, *, platform_id: int) -> int:
    """Set the demo course up in the tool (idempotent). Returns the course id."""
    sample = sample_course()
    now = utcnow()
    with db_session(engine, write=True) as s:
        course = _course_row(s, platform_id, config, sample)
        assert course.id is not None
        _policies(s, course.id, sample)
        _roster(s, platform_id, course.id, sample)
        connection = _connection(s, platform_id, config)
        setup = wiring.connect_source(
            s,
            course_id=course.id,
            connection_id=connection.id,
            lms_course_id=str(moodle_ws.LMS_COURSE_ID),
            actor="demo",
            now=now,
        )
        # the roster service a launch would name (NRPS claim): the worker's roster sync
        setup.nrps_url = config.memberships_url(sample.context_id)
        if not setup.stacks:
            setup.stacks = [STACK]
        s.add(setup)
        _proctoring(s, course.id, sample, now)
        _targets(s, config)
        s.commit()
        return course.id
