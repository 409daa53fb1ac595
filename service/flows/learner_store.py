"""The learner page's statements (Core, built once); the rows come back as read-only models
(``model_construct``: change rows with an UPDATE, never ``session.add`` on one of these)."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy import select as sa_select
from sqlmodel import Session, func

from service.db.engine import table
from service.db.models import Award, Competency, CourseCompetency, Decision


def competencies_of(session: Session, *, course_id: int) -> list[Competency]:
    """The course's competencies, by key."""
    found = session.execute(_course_competencies_query(), {"course_id": course_id})
    return [Competency.model_construct(**row) for row in found.mappings()]


def latest_decisions(session: Session, *, course_id: int, person_id: int) -> dict[int, Decision]:
    """The learner's latest stored decision per competency id."""
    params = {"course_id": course_id, "person_id": person_id}
    found = session.execute(_latest_decisions_query(), params)
    decisions = [Decision.model_construct(**row) for row in found.mappings()]
    return {d.competency_id: d for d in decisions}


def person_awards(session: Session, *, person_id: int, course_id: int | None = None) -> list[Award]:
    """Every issued or pending credential of a person (newest first), read only."""
    if course_id is None:
        found = session.execute(_awards_of_person(), {"person_id": person_id})
    else:
        params = {"person_id": person_id, "course_id": course_id}
        found = session.execute(_awards_of_person_in_course(), params)
    return [Award.model_construct(**row) for row in found.mappings()]


@functools.cache
def _course_competencies_query() -> Any:
    competency, linked = table(Competency), table(CourseCompetency)
    return (
        sa_select(competency)
        .join(linked, linked.c.competency_id == competency.c.id)
        .where(linked.c.course_id == bindparam("course_id"))
        .order_by(competency.c.key)
    )


@functools.cache
def _latest_decisions_query() -> Any:
    decision = table(Decision)
    newest = (
        sa_select(func.max(decision.c.id))
        .where(
            decision.c.person_id == bindparam("person_id"),
            decision.c.course_id == bindparam("course_id"),
        )
        .group_by(decision.c.competency_id)
    )
    return sa_select(decision).where(decision.c.id.in_(newest))


@functools.cache
def _awards_of_person() -> Any:
    award = table(Award)
    return (
        sa_select(award)
        .where(award.c.person_id == bindparam("person_id"))
        .order_by(award.c.id.desc())
    )


@functools.cache
def _awards_of_person_in_course() -> Any:
    award = table(Award)
    return (
        sa_select(award)
        .where(award.c.person_id == bindparam("person_id"))
        .where(award.c.course_id == bindparam("course_id"))
        .order_by(award.c.id.desc())
    )
