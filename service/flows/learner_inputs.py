"""A learner's evaluation inputs reduced to one digest (``learner_state``): a launch compares
it with the digest of the learner's last evaluation (stamped by the worker's evaluation job,
or by the launch that queued it) and queues an evaluation only when they differ."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, func, select

from service.db import prepared
from service.db.models import (
    Award,
    Competency,
    CompetencyLevelTemplate,
    CourseCompetency,
    CourseSetup,
    CourseSync,
    Enrolment,
    PolicyVersion,
)
from service.db.models import Evidence as EvidenceRow
from service.db.models import VerificationEvent as VerificationRow


@dataclass(frozen=True)
class LearnerState:
    """What a learner's launch found: whether their evaluation is current, whether the
    course pulls results from an LMS and when it last did."""

    inputs: str  # learner_inputs() now
    evaluated_inputs: str  # ... at the learner's last evaluation or launch ("" never)
    evaluated_at: dt.datetime | None
    connected: bool
    synced_at: dt.datetime | None

    def evaluation_due(self, now: dt.datetime, max_age: dt.timedelta) -> bool:
        if self.inputs != self.evaluated_inputs or self.evaluated_at is None:
            return True
        return now - self.evaluated_at >= max_age

    def sync_due(self, now: dt.datetime, interval: dt.timedelta) -> bool:
        return self.connected and (self.synced_at is None or now - self.synced_at >= interval)


def _scalar(query: Any) -> Any:
    return query.scalar_subquery()


@functools.cache
def _learner_state_query() -> Any:
    """One statement: everything an evaluation of the learner reads, reduced to counts and
    high-water marks, plus the course's source wiring and last pull.

    The evaluation's inputs are the learner's evidence and verification events in the
    course, the course's competencies, their catalogue entries and templates, every policy
    layer (append-only versions), the course's award rules, and the learner's awards.
    Built once (parameters ``course_id``, ``person_id``): building it costs more than
    running it.
    """
    return sa_select(*learner_state_columns(bindparam("course_id"), bindparam("person_id")))


def learner_state_columns(course_id: Any, person_id: Any) -> list[Any]:
    """The columns of ``_learner_state_query`` for a course and person: parameters, or
    the columns of an enclosing query (``_returning_learner_query``)."""
    in_course = (EvidenceRow.course_id == course_id, EvidenceRow.person_id == person_id)
    verified = (VerificationRow.course_id == course_id, VerificationRow.person_id == person_id)
    awards = (Award.course_id == course_id, Award.person_id == person_id)
    return [
        _scalar(select(func.count(col(EvidenceRow.id))).where(*in_course)),
        _scalar(select(func.max(EvidenceRow.updated_at)).where(*in_course)),
        # every change of a result bumps its version: the sum grows with any change
        _scalar(select(func.sum(EvidenceRow.version)).where(*in_course)),
        _scalar(select(func.count(col(VerificationRow.id))).where(*verified)),
        _scalar(select(func.max(VerificationRow.id)).where(*verified)),
        _scalar(select(func.max(VerificationRow.updated_at)).where(*verified)),
        _scalar(select(func.max(PolicyVersion.id))),
        _scalar(select(func.max(Competency.updated_at))),
        _scalar(select(func.max(CompetencyLevelTemplate.updated_at))),
        _scalar(
            select(func.count(col(CourseCompetency.id))).where(
                CourseCompetency.course_id == course_id
            )
        ),
        _scalar(
            select(func.max(CourseCompetency.id)).where(CourseCompetency.course_id == course_id)
        ),
        _scalar(select(CourseSetup.updated_at).where(CourseSetup.course_id == course_id)),
        _scalar(select(func.count(col(Award.id))).where(*awards)),
        _scalar(select(func.max(Award.updated_at)).where(*awards)),
        _scalar(select(CourseSetup.source_connection_id).where(CourseSetup.course_id == course_id)),
        _scalar(select(CourseSync.pulled_at).where(CourseSync.course_id == course_id)),
    ]


def _as_text(value: Any) -> str:
    # SQLite returns max() of a datetime column as text, PostgreSQL as a datetime (in the
    # session's time zone with psycopg, in UTC with asyncpg: the same instant, one text)
    if isinstance(value, dt.datetime):
        return (value.astimezone(dt.UTC) if value.tzinfo else value).isoformat()
    return str(value)


def _as_time(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    when = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def learner_state(
    session: Session, *, enrolment: Enrolment, row: Sequence[Any] | None = None
) -> LearnerState:
    """The learner's evaluation inputs now, against what their last launch evaluated
    (``row``: the values of ``learner_state_columns``, when read already)."""
    if row is None:
        params = {"course_id": enrolment.course_id, "person_id": enrolment.person_id}
        # The driver's values: they are only hashed (SQLite's datetimes stay text, unparsed).
        row = prepared.one(session, _learner_state_query, convert=False, **params)
        assert row is not None  # scalar subqueries: always one row
    *inputs, source, synced_at = row
    digest = hashlib.sha256("|".join(_as_text(v) for v in inputs).encode()).hexdigest()
    return LearnerState(
        inputs=digest,
        evaluated_inputs=enrolment.evaluated_inputs,
        evaluated_at=enrolment.evaluated_at,
        connected=source is not None,
        synced_at=_as_time(synced_at),
    )
