"""Revocation and re-award: ``revoke_award``, ``revoke_credential``,
``unrevoke_credential``, ``allow_reaward``, ``keep_award`` (a person's revocation blocks
re-award: docs/awarding.md)."""

from __future__ import annotations

import datetime as dt

from sqlmodel import Session, col, select

from service import audit
from service.db.models import Award, Credential, OutboxMessage
from service.delivery import awards as delivery_awards
from service.errors import Conflict
from service.flows.issuing import _course_award, _revoke
from service.flows.setup_store import _lock_learner
from service.issuer import service as issuer_service
from service.settings import Settings


def revoke_award(
    session: Session,
    *,
    settings: Settings,
    course_id: int,
    award_id: int,
    reason: str,
    actor: str,
    now: dt.datetime,
) -> Credential:
    """Revoke a course award's credential from the instructor page (``revoke_credential``,
    within the instructor's course)."""
    award = _course_award(session, course_id=course_id, award_id=award_id)
    if award.credential_uuid is None:
        state = award.state.replace("_", " ")
        raise Conflict(f"award {award_id} is {state}: it has no credential to revoke")
    return revoke_credential(
        session, settings=settings, uuid=award.credential_uuid, reason=reason, actor=actor, now=now
    )


def revoke_credential(
    session: Session, *, settings: Settings, uuid: str, reason: str, actor: str, now: dt.datetime
) -> Credential:
    """Revoke a credential, the same act on the instructor page, ``microcred credential
    revoke`` and the API: status list, revocation queued to every repository the credential
    reached, the ledger (its re-award block, what the learner's page says) and the audit
    row, in the caller's transaction. One a person revoked is refused (409); one the rule
    revoked takes the person's reason and block: no bit is flipped, nothing sent twice.

    A credential a higher level superseded (revoked by its id, or from an instructor page
    older than the upgrade) is revoked and blocks re-award like any other, but nothing is
    sent: the repositories hold the higher level's badge, which stays. A credential outside
    the award ledger (issued through the API) has its own deliveries, if any, revoked.
    """
    reason = reason.strip()
    award = session.exec(select(Award).where(Award.credential_uuid == uuid)).first()
    if award is None:
        credential = issuer_service.revoke(
            session, settings=settings, uuid=uuid, reason=reason, actor=actor, now=now
        )
        delivery_awards.propagate_revocation(session, uuid, reason, now=now)
        return credential
    _lock_learner(session, course_id=award.course_id, person_id=award.person_id)
    session.refresh(award)
    credential = _revoke(
        session, settings=settings, award=award, reason=reason, actor=actor, now=now, by_person=True
    )
    session.flush()
    return credential


def unrevoke_credential(
    session: Session, *, settings: Settings, uuid: str, reason: str, actor: str, now: dt.datetime
) -> Credential:
    """Undo a revocation made in error, where that cannot leave a copy elsewhere revoked.

    A course award's revocation is final: its badge was withdrawn from every repository and
    re-award is blocked, so undoing it means allowing re-award (a new credential). A
    credential whose revocation was sent to a repository cannot be undone here either: the
    repository's copy would stay revoked while ours says valid.
    """
    if session.exec(select(Award.id).where(Award.credential_uuid == uuid)).first() is not None:
        raise Conflict(
            "this credential was awarded in a course; its revocation is final",
            hint="Allow re-award on the course's instructor page: the next evaluation issues "
            "a new credential for what the evidence shows.",
        )
    sent = session.exec(
        select(OutboxMessage.id).where(
            OutboxMessage.credential_id == uuid, col(OutboxMessage.kind).like("%revoke%")
        )
    ).first()
    if sent is not None:
        raise Conflict(
            "the revocation was sent to a repository that holds this credential",
            hint="Issue a new credential instead; the repository's copy stays revoked.",
        )
    return issuer_service.unrevoke(
        session, settings=settings, uuid=uuid, reason=reason, actor=actor, now=now
    )


def allow_reaward(
    session: Session, *, course_id: int, award_id: int, actor: str, now: dt.datetime
) -> Award:
    """Lift the re-award block of a revoked credential: the next evaluation issues what the
    evidence shows again (the caller re-evaluates the learner)."""
    award = _course_award(session, course_id=course_id, award_id=award_id)
    _lock_learner(session, course_id=course_id, person_id=award.person_id)
    session.refresh(award)
    if award.state != "revoked" or not award.reaward_blocked:
        raise Conflict(f"award {award_id} does not block re-award")
    for row in session.exec(
        select(Award).where(
            Award.course_id == course_id,
            Award.person_id == award.person_id,
            Award.line_key == award.line_key,
            Award.state == "revoked",
            col(Award.reaward_blocked).is_(True),
        )
    ):
        row.reaward_blocked, row.updated_at = False, now
        session.add(row)
    audit.record(
        session,
        actor=actor,
        action="award.reaward_allowed",
        subject=f"credential:{award.credential_uuid}",
        level=award.level,
        revoked_for=award.review,
    )
    session.flush()
    return award


def keep_award(
    session: Session, *, course_id: int, award_id: int, actor: str, now: dt.datetime
) -> Award:
    """Clear a review flag: the instructor keeps the credential as it is."""
    award = _course_award(session, course_id=course_id, award_id=award_id)
    if award.review and award.state == "issued":
        audit.record(
            session,
            actor=actor,
            action="award.kept",
            subject=f"credential:{award.credential_uuid}",
            review=award.review,
        )
        award.review, award.updated_at = "", now
        session.add(award)
        session.flush()
    return award
