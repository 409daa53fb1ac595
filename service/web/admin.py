"""The administrator's page inside the LMS frame: the tenant of the session (its platform
and deployment), the institution's delivery targets, this tenant's deliveries that failed
and why, its e-mail mismatches, the LMS connection of each of its connected courses (last
pull, errors) and its audit log.

Who may open it, and what it shows, is the README's "Roles and administration": an
institution or system Administrator of the launch's platform (``auth.AdminDep``), for the
session's platform and deployment only. A delivery belongs to the tenant whose course holds
the award it delivers; an id from another tenant answers as a missing one. Registering or
activating a platform is not done here: a platform that registered itself waits for
``microcred platform activate ID`` on the server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import func
from sqlmodel import Session, col, select

from service import audit
from service.assessment.types import VerificationLevel
from service.db.models import (
    AuditEvent,
    Award,
    Competency,
    Course,
    DeliveryRepository,
    Deployment,
    EmailMismatch,
    OutboxMessage,
    Person,
    Platform,
    VerificationEvent,
)
from service.db.types import utcnow
from service.delivery import outbox, repositories
from service.delivery import status as delivery_status
from service.deps import RowId, SessionDep, WriteSessionDep
from service.errors import NotFound, ServiceError
from service.flows import syncing
from service.policies import institution
from service.web import auth
from service.web.appshell import page, submit

__all__ = ["audited", "router"]

router = APIRouter(tags=["admin"], include_in_schema=False)

_AUDIT_ROWS = 25


def _in_tenant(user: auth.CurrentUser) -> Any:
    """A delivery is this tenant's when its key (``outbox_message.credential_id``) is the
    delivery key of an award in a course of the session's deployment."""
    keys = (
        select(Award.delivery_key)
        .join(Course, col(Course.id) == Award.course_id)
        .where(Course.deployment_id == user.deployment_id)
    )
    return col(OutboxMessage.credential_id).in_(keys)


def _audit_rows(s: Session, user: auth.CurrentUser) -> list[AuditEvent]:
    # The deployment's rows, and the platform's own rows (registered, activated), each read
    # newest first through its index.
    rows = [
        event
        for where in (
            (AuditEvent.deployment_id == user.deployment_id,),
            (AuditEvent.platform_id == user.platform_id, col(AuditEvent.deployment_id).is_(None)),
        )
        for event in s.exec(
            select(AuditEvent).where(*where).order_by(col(AuditEvent.id).desc()).limit(_AUDIT_ROWS)
        )
    ]
    return sorted(rows, key=lambda e: e.id or 0, reverse=True)[:_AUDIT_ROWS]


_ACTIONS = {
    "credential.issued": "Credential issued",
    "credential.revoked": "Credential revoked",
    "award.approved": "Award approved",
    "award.flagged": "Award flagged for review",
    "award.kept": "Award kept after review",
    "award.reaward_allowed": "Re-award allowed",
    "policy.saved": "Rules saved",
    "course.competency_added": "Competency added to the course",
    "course.competency_setup_changed": "Competency mapping changed",
    "course.award_rules_changed": "Award rules changed",
    "course.source_connected": "LMS source connected",
    "verification_event.changed": "Sitting attested",
    "outbox.retried": "Delivery retried",
    "email_mismatch.resent": "Credential re-sent to a new e-mail",
    "platform.registered": "Platform registered",
    "platform.activated": "Platform activated",
    "platform.renamed": "Platform renamed",
    "repository.added": "Repository added",
    "repository.changed": "Repository changed",
    "repository.test_requested": "Repository connection test asked for",
    "policy.institution_changed": "Institution thresholds changed",
}


@dataclass(frozen=True)
class AuditLine:
    """One audit row as people read it; the raw subject and actor stay beside it."""

    event: AuditEvent
    action: str
    subject: str
    actor: str


def _id_after(ref: str, prefix: str) -> int | None:
    head = ref[len(prefix) :].split("/", 1)[0]
    return int(head) if head.isascii() and head.isdigit() else None


def _person_name(p: Person | None) -> str | None:
    if p is None:
        return None
    return p.name or " ".join(x for x in (p.given_name, p.family_name) if x) or p.sub


def _course_words(s: Session, course_id: int | None) -> str | None:
    course = s.get(Course, course_id) if course_id is not None else None
    return f"course “{course.title}”" if course is not None and course.title else None


def _in_words(s: Session, ref: str) -> str | None:
    """Names for a ``kind:id`` reference where microcred knows them; None otherwise."""
    if ref.startswith("person:"):
        pid = _id_after(ref, "person:")
        return _person_name(s.get(Person, pid)) if pid is not None else None
    if ref.startswith("policy:course:"):
        rest = ref[len("policy:") :]
        course = _course_words(s, _id_after(rest, "course:"))
        if course is None:
            return None
        _, _, comp = rest.partition("/competency:")
        competency = s.get(Competency, int(comp)) if comp.isdigit() else None
        return f"rules of {competency.name}, {course}" if competency else f"rules of {course}"
    if ref.startswith("course:"):
        return _course_words(s, _id_after(ref, "course:"))
    if ref.startswith("credential:"):
        award = s.exec(
            select(Award).where(Award.credential_uuid == ref[len("credential:") :])
        ).first()
        if award is None:
            return None
        held = s.get(Competency, award.competency_id) if award.competency_id else None
        what = held.name if held else award.line_key.split(":", 1)[-1]
        who = _person_name(s.get(Person, award.person_id)) or "?"
        return f"{award.level.capitalize()} {what} credential of {who}"
    if ref.startswith("verification_event:"):
        eid = _id_after(ref, "verification_event:")
        event = s.get(VerificationEvent, eid) if eid is not None else None
        person = s.get(Person, event.person_id) if event is not None else None
        return f"sitting of {_person_name(person)}" if person is not None else None
    if ref.startswith("platform:"):
        plid = _id_after(ref, "platform:")
        platform = s.get(Platform, plid) if plid is not None else None
        return f"platform {platform.name or platform.issuer}" if platform else None
    if ref.startswith("repository:"):
        found_repo = s.exec(
            select(DeliveryRepository).where(DeliveryRepository.uuid == ref[len("repository:") :])
        ).first()
        return f"repository {found_repo.name}" if found_repo is not None else None
    if ref == "policy:institution":
        return "institution thresholds and bounds"
    if ref.startswith("outbox:"):
        row = s.exec(select(OutboxMessage).where(OutboxMessage.uuid == ref[len("outbox:") :]))
        found = row.first()
        return f"delivery {found.kind}" if found is not None else None
    return None


def _audit_lines(s: Session, events: list[AuditEvent]) -> list[AuditLine]:
    return [
        AuditLine(
            event=e,
            action=_ACTIONS.get(e.action, e.action),
            subject=_in_words(s, e.subject) or e.subject,
            actor=_in_words(s, e.actor) or e.actor,
        )
        for e in events
    ]


def _view(s: Session, user: auth.CurrentUser) -> dict[str, Any]:
    deployment = s.get(Deployment, user.deployment_id)
    repos = list(repositories.list_all(s))
    failing = list(
        s.exec(
            select(OutboxMessage)
            .where(
                col(OutboxMessage.status).in_(("dead", "pending", "held"))
                & ((OutboxMessage.attempts > 0) | (OutboxMessage.status == "dead"))
                & _in_tenant(user)
            )
            .order_by(col(OutboxMessage.updated_at).desc())
            .limit(30)
        )
    )
    counts: dict[str, int] = {
        status: n
        for status, n in s.exec(
            select(OutboxMessage.status, func.count())
            .where(_in_tenant(user))
            .group_by(col(OutboxMessage.status))
        ).all()
    }
    mismatches = list(
        s.exec(
            select(EmailMismatch)
            .join(OutboxMessage, col(OutboxMessage.id) == EmailMismatch.outbox_message_id)
            .where(col(EmailMismatch.resolved_at).is_(None), _in_tenant(user))
            .order_by(col(EmailMismatch.detected_at).desc())
        )
    )
    events = _audit_lines(s, _audit_rows(s, user))
    version, institution_levels = institution.form(s)
    courses = [
        c for c in syncing.connected_courses(s) if c.course.deployment_id == user.deployment_id
    ]
    names = {r.id: r.name for r in repos}
    return {
        "deployment": deployment,
        "repositories": repos,
        "failing": failing,
        "repo_names": names,
        "counts": counts,
        "mismatches": mismatches,
        "events": events,
        "courses": courses,
        "now": utcnow(),
        "institution": version,
        "institution_levels": institution_levels,
        "sittings": {v.key: v.described for v in VerificationLevel},
    }


@router.get("/app/admin")
def admin_page(request: Request, session: SessionDep, user: auth.AdminDep) -> HTMLResponse:
    """This platform and deployment: failed deliveries, e-mail mismatches, audit log."""
    return page(request, session, user, "app/admin.html", tab="admin", **_view(session, user))


def _submit(
    request: Request, session: Session, user: auth.CurrentUser, work: Callable[[], None], done: str
) -> Response:
    """A form post of this page (``appshell.submit``), audited under the session's tenant."""

    def failed(exc: ServiceError) -> Response:
        status = exc.status_code if exc.status_code < 500 else 502
        view = _view(session, user)
        return page(
            request,
            session,
            user,
            "app/admin.html",
            tab="admin",
            status_code=status,
            error=exc,
            **view,
        )

    return submit(session, user, work, to="/app/admin", done=done, failed=failed)


def audited(
    session: Session, user: auth.CurrentUser, action: str, subject: str, **detail: Any
) -> None:
    """An audit row of an administrator's change, under the session's tenant."""
    scope = audit.Scope(deployment_id=user.deployment_id, platform_id=user.platform_id)
    audit.record(session, scope, actor=user.actor, action=action, subject=subject, **detail)


@router.post("/app/admin/outbox/{ref}/retry")
def retry(request: Request, ref: str, session: WriteSessionDep, user: auth.AdminDep) -> Response:
    """Queue a failed delivery of this tenant again now."""

    def work() -> None:
        found = session.exec(
            select(OutboxMessage.id).where(col(OutboxMessage.uuid) == ref, _in_tenant(user))
        ).first()
        if found is None:  # missing, or another tenant's: the same answer
            raise NotFound(f"no delivery {ref!r} in this platform's courses")
        row = outbox.retry(session, found, now=utcnow())
        audited(session, user, "outbox.retried", f"outbox:{row.uuid}")

    return _submit(request, session, user, work, "retried")


@router.post("/app/admin/mismatches/{mismatch_id}/resend")
def resend(
    request: Request, mismatch_id: RowId, session: WriteSessionDep, user: auth.AdminDep
) -> Response:
    """Issue the credential again to the learner's current e-mail."""

    def work() -> None:
        found = session.exec(
            select(EmailMismatch.id)
            .join(OutboxMessage, col(OutboxMessage.id) == EmailMismatch.outbox_message_id)
            .where(EmailMismatch.id == mismatch_id, _in_tenant(user))
        ).first()
        if found is None:  # missing, or another tenant's: the same answer
            raise NotFound(f"no e-mail mismatch {mismatch_id} in this platform's courses")
        delivery_status.resend_mismatch(session, mismatch_id=mismatch_id, now=utcnow())
        audited(session, user, "email_mismatch.resent", f"email_mismatch:{mismatch_id}")

    return _submit(request, session, user, work, "resent")
