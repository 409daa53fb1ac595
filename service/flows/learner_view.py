"""What a learner sees: their status per competency and their awards."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select
from sqlmodel import Session

from service import evaluation
from service.db.models import Award, Competency, Decision
from service.flows import learner_store, syncing
from service.flows.issuing import _line


@dataclass(frozen=True)
class CourseState:
    """What the learner's page reads of the course before anything per competency or
    award: the sync health, whether an evaluation of the learner is due, and whether there
    are competencies and awards to read at all."""

    health: syncing.SyncHealth
    evaluations: int  # 1 while the learner waits for an evaluation, else 0
    has_competencies: bool
    has_awards: bool


def course_state(session: Session, *, course_id: int, person_id: int) -> CourseState:
    """``CourseState`` in one statement."""
    session.flush()  # as the session's autoflush would
    params = {"course_id": course_id, "person_id": person_id}
    row = session.connection().execute(_course_state_query(), params).first()
    extra = row[syncing.HEALTH_WIDTH :] if row is not None else (0, False, False)
    return CourseState(
        health=syncing.health_of(row),
        evaluations=int(extra[0] or 0),
        has_competencies=bool(extra[1]),
        has_awards=bool(extra[2]),
    )


@functools.cache
def _course_state_query() -> Select[Any]:
    return syncing.health_query().add_columns(
        evaluation.due_query(per_person=True).scalar_subquery(),
        learner_store.has_competencies(),
        learner_store.has_awards(),
    )


def learner_status(
    session: Session, *, course_id: int, person_id: int, awards: Sequence[Award]
) -> list[tuple[Competency, Decision | None, list[Award]]]:
    """Per course competency: the learner's latest stored decision and their awards on its
    line (newest first; ``awards``: the learner's awards in the course)."""
    by_line: dict[str, list[Award]] = {}
    for award in sorted(awards, key=lambda a: -(a.id or 0)):
        by_line.setdefault(award.line_key, []).append(award)
    found = learner_store.competencies_of(session, course_id=course_id, person_id=person_id)
    return [(comp, decision, by_line.get(_line(comp), [])) for comp, decision in found]
