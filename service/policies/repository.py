"""Queries for competencies, policy versions, effective policies and decisions."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam
from sqlmodel import Session, col, func, select
from sqlmodel.sql.expression import SelectOfScalar

from service.assessment import canonical
from service.assessment.types import Decision as EngineDecision
from service.db.models import (
    Competency,
    CompetencyLevelTemplate,
    Course,
    CourseCompetency,
    EffectivePolicy,
    PolicyVersion,
)

INSTITUTION = "institution"


def course_scope(course_id: int) -> str:
    return f"course:{course_id}"


def competency_scope(course_id: int, competency_id: int) -> str:
    return f"course:{course_id}/competency:{competency_id}"


def competency_by_key(session: Session, key: str) -> Competency | None:
    return session.exec(select(Competency).where(Competency.key == key)).first()


def competencies(session: Session) -> Sequence[Competency]:
    return session.exec(select(Competency).order_by(col(Competency.key))).all()


def level_templates(session: Session, competency_id: int) -> Sequence[CompetencyLevelTemplate]:
    return session.exec(
        select(CompetencyLevelTemplate)
        .where(CompetencyLevelTemplate.competency_id == competency_id)
        .order_by(col(CompetencyLevelTemplate.id))
    ).all()


def course_link(session: Session, course_id: int, competency_id: int) -> CourseCompetency | None:
    return session.exec(
        select(CourseCompetency).where(
            CourseCompetency.course_id == course_id,
            CourseCompetency.competency_id == competency_id,
        )
    ).first()


@functools.cache
def _course_competencies_query() -> SelectOfScalar[Competency]:
    # Built once (parameter ``course_id``): every learner page and evaluation runs it.
    return (
        select(Competency)
        .join(CourseCompetency, col(CourseCompetency.competency_id) == col(Competency.id))
        .where(CourseCompetency.course_id == bindparam("course_id"))
        .order_by(col(Competency.key))
    )


def course_competencies(session: Session, course_id: int) -> Sequence[Competency]:
    return session.exec(_course_competencies_query(), params={"course_id": course_id}).all()


def courses_with_rules(session: Session) -> Sequence[Course]:
    """Courses that assess a competency or hold a course override, by id."""
    linked = select(CourseCompetency.course_id)
    overridden = select(PolicyVersion.course_id).where(col(PolicyVersion.course_id).is_not(None))
    return session.exec(
        select(Course)
        .where(col(Course.id).in_(linked) | col(Course.id).in_(overridden))
        .order_by(col(Course.id))
    ).all()


def latest_version(session: Session, scope_key: str) -> PolicyVersion | None:
    return session.exec(
        select(PolicyVersion)
        .where(PolicyVersion.scope_key == scope_key)
        .order_by(col(PolicyVersion.version).desc())
    ).first()


def latest_versions(session: Session, scope_keys: Sequence[str]) -> dict[str, PolicyVersion]:
    """``latest_version`` of each scope, in one query."""
    newest = (
        select(PolicyVersion.scope_key, func.max(PolicyVersion.version).label("version"))
        .where(col(PolicyVersion.scope_key).in_(scope_keys))
        .group_by(col(PolicyVersion.scope_key))
        .subquery()
    )
    rows = session.exec(
        select(PolicyVersion).join(
            newest,
            (col(PolicyVersion.scope_key) == newest.c.scope_key)
            & (col(PolicyVersion.version) == newest.c.version),
        )
    )
    return {r.scope_key: r for r in rows}


def versions(session: Session, scope_key: str) -> Sequence[PolicyVersion]:
    return session.exec(
        select(PolicyVersion)
        .where(PolicyVersion.scope_key == scope_key)
        .order_by(col(PolicyVersion.version).desc())
    ).all()


def effective_by_hashes(
    session: Session, course_id: int, policy_hashes: Sequence[str]
) -> dict[tuple[int, str], EffectivePolicy]:
    """The course's numbered policies with these rules' hashes, by (competency, hash)."""
    rows = session.exec(
        select(EffectivePolicy).where(
            EffectivePolicy.course_id == course_id,
            col(EffectivePolicy.policy_hash).in_(policy_hashes),
        )
    )
    return {(r.competency_id, r.policy_hash): r for r in rows}


def effective_by_hash(
    session: Session, course_id: int, competency_id: int, policy_hash: str
) -> EffectivePolicy | None:
    return effective_by_hashes(session, course_id, [policy_hash]).get((competency_id, policy_hash))


def last_effective_version(session: Session, course_id: int, competency_id: int) -> int:
    found = session.exec(
        select(func.max(EffectivePolicy.version)).where(
            EffectivePolicy.course_id == course_id,
            EffectivePolicy.competency_id == competency_id,
        )
    ).one()
    return int(found or 0)


def decision_values(
    *,
    decision: EngineDecision,
    evidence_hash: str,
    person_id: int,
    course_id: int,
    competency_row: Competency,
    effective_row: EffectivePolicy,
) -> dict[str, Any]:
    """A decision row's columns as plain values (a worker's batch inserts its decisions
    together: ``db.engine.insert_ids``)."""
    assert competency_row.id is not None and effective_row.id is not None
    return {
        "person_id": person_id,
        "course_id": course_id,
        "competency_id": competency_row.id,
        "effective_policy_id": effective_row.id,
        "policy_version": effective_row.version,
        "policy_hash": effective_row.policy_hash,
        "evidence_hash": evidence_hash,
        "level": decision.level.key,
        "score": decision.score,
        "reasons": canonical.decision_to_dict(decision),
        "evaluated_at": decision.evaluated_at,
    }
