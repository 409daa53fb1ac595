"""The learner page's statements (db.prepared); the rows come back as read-only models."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam
from sqlalchemy import select as sa_select
from sqlmodel import Session, func

from service.db import prepared
from service.db.models import Award, Competency, CourseCompetency, Decision


def competencies_of(session: Session, *, course_id: int) -> list[Competency]:
    """The course's competencies, by key."""
    return [
        c
        for row in prepared.rows(session, _course_competencies_query, course_id=course_id)
        if (c := prepared.model(Competency, row)) is not None
    ]


def latest_decisions(session: Session, *, course_id: int, person_id: int) -> dict[int, Decision]:
    """The learner's latest stored decision per competency id."""
    latest = {}
    for row in prepared.rows(
        session, _latest_decisions_query, course_id=course_id, person_id=person_id
    ):
        decision = prepared.model(Decision, row)
        if decision is not None:
            latest[decision.competency_id] = decision
    return latest


def person_awards(session: Session, *, person_id: int, course_id: int | None = None) -> list[Award]:
    """Every issued or pending credential of a person (newest first), read only."""
    if course_id is None:
        found = prepared.rows(session, _awards_of_person, person_id=person_id)
    else:
        found = prepared.rows(
            session, _awards_of_person_in_course, person_id=person_id, course_id=course_id
        )
    return [a for row in found if (a := prepared.model(Award, row)) is not None]


def _course_competencies_query() -> Any:
    competency, linked = prepared.table(Competency), prepared.table(CourseCompetency)
    return (
        sa_select(competency)
        .join(linked, linked.c.competency_id == competency.c.id)
        .where(linked.c.course_id == bindparam("course_id"))
        .order_by(competency.c.key)
    )


def _latest_decisions_query() -> Any:
    decision = prepared.table(Decision)
    newest = (
        sa_select(func.max(decision.c.id))
        .where(
            decision.c.person_id == bindparam("person_id"),
            decision.c.course_id == bindparam("course_id"),
        )
        .group_by(decision.c.competency_id)
    )
    return sa_select(decision).where(decision.c.id.in_(newest))


def _awards_of_person() -> Any:
    award = prepared.table(Award)
    return (
        sa_select(award)
        .where(award.c.person_id == bindparam("person_id"))
        .order_by(award.c.id.desc())
    )


def _awards_of_person_in_course() -> Any:
    award = prepared.table(Award)
    return (
        sa_select(award)
        .where(award.c.person_id == bindparam("person_id"))
        .where(award.c.course_id == bindparam("course_id"))
        .order_by(award.c.id.desc())
    )
