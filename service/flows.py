"""Use cases that cross packages (launch -> sync -> evaluate -> award -> deliver).

The only module that imports ``lti``, ``sources``, ``assessment`` and ``issuer`` together.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from service.db.models import Course, Enrolment, Person
from service.db.types import utcnow
from service.lti.types import LaunchContext

# --- lti: record a launch ------------------------------------------------------------------


@dataclass(frozen=True)
class LaunchRecord:
    """Who launched, in which course (None for a launch without context), with which role."""

    person_id: int
    course_id: int | None
    role: str


def _upsert_person(session: Session, launch: LaunchContext, now: dt.datetime) -> Person:
    query = select(Person).where(Person.platform_id == launch.platform_id, Person.sub == launch.sub)
    person = session.exec(query).first()
    if person is None:
        try:
            with session.begin_nested():
                person = Person(platform_id=launch.platform_id, sub=launch.sub)
                session.add(person)
        except IntegrityError:  # a concurrent first launch of the same user won
            person = session.exec(query).one()
    # Name and email are mutable attributes (LTI Core §5.3.6): refresh them when sent; a
    # launch that withholds them (privacy settings) keeps what we knew.
    for attr in ("name", "given_name", "family_name", "email"):
        value = getattr(launch, attr)
        if value:
            setattr(person, attr, value)
    person.updated_at = now
    session.add(person)
    return person


def _upsert_course(session: Session, launch: LaunchContext) -> Course | None:
    if not launch.context_id:
        return None
    query = select(Course).where(
        Course.deployment_id == launch.deployment_pk, Course.context_id == launch.context_id
    )
    course = session.exec(query).first()
    if course is None:
        try:
            with session.begin_nested():
                course = Course(deployment_id=launch.deployment_pk, context_id=launch.context_id)
                session.add(course)
        except IntegrityError:
            course = session.exec(query).one()
    if launch.context_title:
        course.title = launch.context_title
    if launch.context_label:
        course.label = launch.context_label
    session.add(course)
    return course


def record_launch(
    session: Session, *, launch: LaunchContext, now: dt.datetime | None = None
) -> LaunchRecord:
    """Upsert the person (platform, sub), the course (deployment, context) and the enrolment.

    Runs in the launch route's write transaction; the route commits.
    """
    now = now or utcnow()
    person = _upsert_person(session, launch, now)
    course = _upsert_course(session, launch)
    session.flush()
    if course is not None:
        query = select(Enrolment).where(
            Enrolment.course_id == course.id, Enrolment.person_id == person.id
        )
        enrolment = session.exec(query).first()
        if enrolment is None:
            try:
                with session.begin_nested():
                    enrolment = Enrolment(
                        course_id=course.id or 0, person_id=person.id or 0, role=launch.role
                    )
                    session.add(enrolment)
            except IntegrityError:
                enrolment = session.exec(query).one()
        enrolment.role = launch.role
        enrolment.roles = list(launch.roles)
        enrolment.updated_at = now
        session.add(enrolment)
    session.flush()
    return LaunchRecord(
        person_id=person.id or 0, course_id=course.id if course else None, role=launch.role
    )
