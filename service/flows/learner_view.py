"""What a learner sees: their status per competency and their awards."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session

from service.db.models import Award, Competency, Decision
from service.flows import learner_store
from service.flows.issuing import _line


def learner_status(
    session: Session,
    *,
    course_id: int,
    person_id: int,
    awards: Sequence[Award] | None = None,
) -> list[tuple[Competency, Decision | None, list[Award]]]:
    """Per course competency: the learner's latest stored decision and their awards (newest
    first; ``awards``: the learner's awards in the course when the caller has them)."""
    comps = learner_store.competencies_of(session, course_id=course_id)
    if not comps:
        return []
    latest = learner_store.latest_decisions(session, course_id=course_id, person_id=person_id)
    if awards is None:
        awards = learner_store.person_awards(session, person_id=person_id, course_id=course_id)
    by_line: dict[str, list[Award]] = {}
    for award in sorted(awards, key=lambda a: -(a.id or 0)):
        by_line.setdefault(award.line_key, []).append(award)
    return [(comp, latest.get(comp.id or 0), by_line.get(_line(comp), [])) for comp in comps]
