"""Append-only audit log: every change an administrator or instructor makes.

Each row says whose it is (``Scope``): the course, deployment and platform it belongs to, so
an administrator of one tenant reads only that tenant's rows (README "Roles and
administration"). A caller that knows the course passes a ``Scope``; otherwise the subject
says it (``course:N``, ``policy:course:N…``, ``credential:UUID`` of an award,
``verification_event:N``, ``platform:N``) and one query looks the rest up. Rows about
institution-wide things (the competency catalogue, keys, API tokens) have no tenant, and no
administration page shows them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from service.db import engine as db_engine
from service.db.engine import transaction_cache
from service.db.models import AuditEvent, Award, Course, Deployment, VerificationEvent

__all__ = ["Scope", "record", "scope_of"]


@dataclass(frozen=True)
class Scope:
    """The tenant an audit row belongs to; a course alone gives its deployment and
    platform (looked up)."""

    course_id: int | None = None
    deployment_id: int | None = None
    platform_id: int | None = None


def _from_subject(session: Session, subject: str) -> Scope:
    kind, _, ref = subject.partition(":")
    if kind == "policy" and ref.startswith("course:"):  # a course's policy is the course's
        kind, _, ref = ref.partition(":")
    head = ref.split("/", 1)[0]
    number = int(head) if head.isascii() and head.isdigit() else None
    if kind == "course":
        return Scope(course_id=number)
    if kind == "platform":
        return Scope(platform_id=number)
    if kind == "credential" and ref:
        query = select(Award.course_id).where(Award.credential_uuid == ref)
    elif kind == "verification_event" and number is not None:
        query = select(VerificationEvent.course_id).where(VerificationEvent.id == number)
    else:
        return Scope()
    return Scope(course_id=session.exec(query).first())


def scope_of(session: Session, *, subject: str, scope: Scope | None = None) -> Scope:
    """The full tenant of a row about ``subject`` (``scope`` when given, else the subject's)."""
    found = scope if scope is not None else _from_subject(session, subject)
    if found.course_id is None or found.deployment_id is not None:
        return found
    # a course's deployment never changes: read once per transaction (a worker's batch
    # records one row per credential in the same course)
    known = transaction_cache(session, "audit_course_tenant")
    row = known.get(found.course_id)
    if row is None:
        row = session.exec(
            select(Course.deployment_id, Deployment.platform_id)
            .join(Deployment, col(Deployment.id) == Course.deployment_id)
            .where(Course.id == found.course_id)
        ).first()
        if row is None:
            return Scope()
        known[found.course_id] = row
    return Scope(course_id=found.course_id, deployment_id=row[0], platform_id=row[1])


def record(
    session: Session,
    scope: Scope | None = None,
    /,
    *,
    actor: str,
    action: str,
    subject: str = "",
    **detail: Any,
) -> AuditEvent | None:
    """Add one audit row (``scope``: its tenant, when the caller knows it; positional, so
    that no ``detail`` key can be taken for it). Inside a worker's batch
    (``db.engine.batched_adds``) the row is held as plain values, written with the batch's
    others, and None is returned."""
    tenant = scope_of(session, subject=subject, scope=scope)
    values: dict[str, Any] = {
        "actor": actor,
        "action": action,
        "subject": subject,
        "detail": detail,
        "course_id": tenant.course_id,
        "deployment_id": tenant.deployment_id,
        "platform_id": tenant.platform_id,
    }
    if db_engine.holding(session):
        db_engine.add_values(session, AuditEvent, values)
        return None
    event = AuditEvent(**values)
    session.add(event)
    return event
