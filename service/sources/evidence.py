"""Reading the evidence store: a course's (or some learners') stored results with their
effective verification, and one result's versions. :mod:`service.sources.store` writes
them and re-exports these names.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import true
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from service.db import probes
from service.db.models import Evidence
from service.db.models import VerificationEvent as EventRow
from service.sources.types import Verification

__all__ = ["EvidenceRecord", "list_evidence"]


@dataclass(frozen=True)
class EvidenceRecord:
    """A stored result with its effective verification, as the flows layer reads it.

    ``verification`` is the strongest of the result's own level and every verification
    event for the same sitting; ``verification_basis`` says where it came from.
    """

    id: int
    course_id: int
    person_id: int
    origin: str
    kind: str
    item_id: str
    item_title: str
    criterion_id: str
    criterion_title: str
    score: float | None
    max_score: float | None
    level_id: str | None
    level_name: str | None
    level_points: float | None
    level_scale: tuple[tuple[str, str, float], ...]
    attempt: int
    submitted_at: dt.datetime | None
    graded_at: dt.datetime | None
    verification: Verification
    verification_basis: str
    asserted_by: str
    version: int
    events: tuple[int, ...] = field(default=())


def _learners_evidence(course_id: int, person_ids: Sequence[int]) -> SelectOfScalar[Evidence]:
    """A worker batch's learners' results, one index probe per learner (``db.probes``: the
    ``person_id IN (...)`` form read the whole course's results per batch on a table not
    analysed yet), in the same order as the course's query."""
    wanted = probes.int_keys(person_ids, "wanted")
    found = (
        select(Evidence)
        .where(Evidence.course_id == course_id, col(Evidence.person_id) == wanted.c.i)
        .offset(0)  # not flattened into a join: probed per learner
        .lateral("found")
    )
    row = aliased(Evidence, found)
    return (
        select(row)
        .select_from(wanted)
        .join(found, true())
        .order_by(col(row.person_id), col(row.id))
    )


def list_evidence(
    session: Session,
    *,
    course_id: int,
    person_ids: Sequence[int] | None = None,
) -> list[EvidenceRecord]:
    """Every stored result of a course (or of ``person_ids``), verification events
    applied."""
    q = select(Evidence).where(Evidence.course_id == course_id)
    e = select(EventRow).where(EventRow.course_id == course_id)
    if person_ids is not None and session.get_bind().dialect.name == "postgresql":
        rows = session.exec(_learners_evidence(course_id, person_ids)).all()
        e = e.where(col(EventRow.person_id).in_(person_ids))
    else:
        if person_ids is not None:
            q = q.where(col(Evidence.person_id).in_(person_ids))
            e = e.where(col(EventRow.person_id).in_(person_ids))
        rows = session.exec(q.order_by(col(Evidence.person_id), col(Evidence.id))).all()
    by_sitting: dict[tuple[int, str], list[EventRow]] = {}
    for ev in session.exec(e).all():
        by_sitting.setdefault((ev.person_id, ev.item_id), []).append(ev)
    out = []
    for r in rows:
        assert r.id is not None
        own = Verification(r.verification)
        best, basis, used = own, f"the result itself ({r.asserted_by})", []
        for ev in by_sitting.get((r.person_id, r.item_id), []):
            if ev.attempt not in (0, r.attempt):
                continue
            level = Verification(ev.level)
            assert ev.id is not None
            used.append(ev.id)
            if level.rank > best.rank:
                best = level
                basis = f"verification event {ev.id} ({ev.asserted_by}, {ev.origin})"
        out.append(
            EvidenceRecord(
                id=r.id,
                course_id=r.course_id,
                person_id=r.person_id,
                origin=r.origin,
                kind=r.source_kind,
                item_id=r.item_id,
                item_title=r.item_title,
                criterion_id=r.criterion_id,
                criterion_title=r.criterion_title,
                score=r.score,
                max_score=r.max_score,
                level_id=r.level_id,
                level_name=r.level_name,
                level_points=r.level_points,
                level_scale=tuple((str(a), str(b), float(c)) for a, b, c in r.level_scale),
                attempt=r.attempt,
                submitted_at=r.submitted_at,
                graded_at=r.graded_at,
                verification=best,
                verification_basis=basis,
                asserted_by=r.asserted_by,
                version=r.version,
                events=tuple(used),
            )
        )
    return out
