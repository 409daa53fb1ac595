"""The learner page's statements (Core, built once); the rows come back as read-only models
(``model_construct``: change rows with an UPDATE, never ``session.add`` on one of these)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Select, and_, bindparam, exists
from sqlalchemy import select as sa_select
from sqlmodel import Session, SQLModel, func

from service.db.engine import table
from service.db.models import Award, Competency, CourseCompetency, Credential, Decision


def _run(session: Session) -> Connection:
    session.flush()  # as the session's autoflush would
    return session.connection()


def _model(model: type[Any], names: tuple[str, ...], row: Any, start: int) -> Any:
    """The columns ``names`` of ``row[start:]`` as a read-only ``model`` (None when its
    key is NULL: an outer join found no row)."""
    chunk = row[start : start + len(names)]
    if chunk[0] is None:
        return None
    return model.model_construct(**dict(zip(names, chunk, strict=True)))


def competencies_of(
    session: Session, *, course_id: int, person_id: int
) -> list[tuple[Competency, Decision | None]]:
    """The course's competencies (by key), each with the learner's latest stored decision,
    in one statement."""
    params = {"course_id": course_id, "person_id": person_id}
    found = _run(session).execute(_competencies_query(), params)
    comp, dec = _names(Competency), _names(Decision)
    return [
        (_model(Competency, comp, row, 0), _model(Decision, dec, row, len(comp))) for row in found
    ]


def person_awards(
    session: Session, *, person_id: int, course_id: int | None = None
) -> list[tuple[Award, Credential | None]]:
    """Every credential of a person (newest first), each with its signed credential when it
    has one, in one statement; read only."""
    params: Mapping[str, int] = {"person_id": person_id}
    if course_id is not None:
        params = {"person_id": person_id, "course_id": course_id}
    found = _run(session).execute(_awards_query(in_course=course_id is not None), params)
    award, cred = _names(Award), _names(Credential)
    return [
        (_model(Award, award, row, 0), _model(Credential, cred, row, len(award))) for row in found
    ]


def has_competencies() -> Any:
    """A column for a statement of the learner page: whether the course ``:course_id`` has
    any competency (when it has none, ``competencies_of`` need not run)."""
    linked = table(CourseCompetency)
    return exists().where(linked.c.course_id == bindparam("course_id"))


def has_awards() -> Any:
    """A column: whether the person ``:person_id`` holds any award in ``:course_id``."""
    award = table(Award)
    return exists().where(
        award.c.person_id == bindparam("person_id"), award.c.course_id == bindparam("course_id")
    )


@functools.cache
def _names(model: type[SQLModel]) -> tuple[str, ...]:
    return tuple(c.key for c in table(model).columns)


@functools.cache
def _competencies_query() -> Select[Any]:
    competency, linked, decision = table(Competency), table(CourseCompetency), table(Decision)
    newest = (
        sa_select(func.max(decision.c.id))
        .where(
            decision.c.person_id == bindparam("person_id"),
            decision.c.course_id == bindparam("course_id"),
        )
        .group_by(decision.c.competency_id)
    )
    return (
        sa_select(competency, decision)
        .join(linked, linked.c.competency_id == competency.c.id)
        .outerjoin(
            decision,
            and_(decision.c.competency_id == competency.c.id, decision.c.id.in_(newest)),
        )
        .where(linked.c.course_id == bindparam("course_id"))
        .order_by(competency.c.key)
    )


@functools.cache
def _awards_query(*, in_course: bool) -> Select[Any]:
    award, credential = table(Award), table(Credential)
    query = (
        sa_select(award, credential)
        .outerjoin(credential, credential.c.uuid == award.c.credential_uuid)
        .where(award.c.person_id == bindparam("person_id"))
        .order_by(award.c.id.desc())
    )
    return query.where(award.c.course_id == bindparam("course_id")) if in_course else query
