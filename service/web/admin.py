"""The administrator's page inside the LMS frame: the tenant of the session (its platform
and deployment), the institution's delivery targets, this tenant's deliveries that failed
and why, its e-mail mismatches and its audit log.

Who may open it, and what it shows, is the README's "Roles and administration": an
institution or system Administrator of the launch's platform (``auth.AdminDep``), for the
session's platform and deployment only. A delivery belongs to the tenant whose course holds
the award it delivers; an id from another tenant answers as a missing one. Registering or
activating a platform is not done here: a platform that registered itself waits for
``microcred platform activate ID`` on the server.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import func
from sqlmodel import Session, col, select

from service import audit
from service.db.engine import session as db_session
from service.db.models import (
    AuditEvent,
    Award,
    Course,
    Deployment,
    EmailMismatch,
    OutboxMessage,
)
from service.db.types import utcnow
from service.delivery import outbox, repositories
from service.delivery import status as delivery_status
from service.deps import EngineDep, RowId
from service.errors import NotFound, ServiceError
from service.web import auth
from service.web.appshell import back, page

__all__ = ["router"]

router = APIRouter(tags=["admin"], include_in_schema=False)

_AUDIT_ROWS = 25


def _delivery_keys(user: auth.CurrentUser) -> Any:
    """The delivery keys (``outbox_message.credential_id``) of the awards in the courses of
    the session's deployment: what makes a delivery this tenant's."""
    return (
        select(Award.delivery_key)
        .join(Course, col(Course.id) == Award.course_id)
        .where(Course.deployment_id == user.deployment_id)
    )


def _in_tenant(user: auth.CurrentUser) -> Any:
    return col(OutboxMessage.credential_id).in_(_delivery_keys(user))


def _audit_rows(s: Session, user: auth.CurrentUser) -> list[AuditEvent]:
    # The deployment's rows, and the platform's own rows (registered, activated), each read
    # newest first through its index.
    ae = col(AuditEvent.id)
    of_deployment = s.exec(
        select(AuditEvent)
        .where(AuditEvent.deployment_id == user.deployment_id)
        .order_by(ae.desc())
        .limit(_AUDIT_ROWS)
    ).all()
    of_platform = s.exec(
        select(AuditEvent)
        .where(
            AuditEvent.platform_id == user.platform_id,
            col(AuditEvent.deployment_id).is_(None),
        )
        .order_by(ae.desc())
        .limit(_AUDIT_ROWS)
    ).all()
    rows = sorted([*of_deployment, *of_platform], key=lambda e: e.id or 0, reverse=True)
    return rows[:_AUDIT_ROWS]


def _view(engine: Any, user: auth.CurrentUser) -> dict[str, Any]:
    with db_session(engine) as s:
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
        events = _audit_rows(s, user)
    names = {r.id: r.name for r in repos}
    return {
        "deployment": deployment,
        "repositories": repos,
        "failing": failing,
        "repo_names": names,
        "counts": counts,
        "mismatches": mismatches,
        "events": events,
    }


@router.get("/app/admin")
def admin_page(request: Request, engine: EngineDep, user: auth.AdminDep) -> HTMLResponse:
    """This platform and deployment: failed deliveries, e-mail mismatches, audit log."""
    return page(request, engine, user, "app/admin.html", tab="admin", **_view(engine, user))


def _failed(request: Request, engine: Any, user: auth.CurrentUser, exc: ServiceError) -> Response:
    return page(
        request,
        engine,
        user,
        "app/admin.html",
        tab="admin",
        status_code=exc.status_code if exc.status_code < 500 else 502,
        error=exc,
        **_view(engine, user),
    )


def _tenant_scope(user: auth.CurrentUser) -> audit.Scope:
    return audit.Scope(deployment_id=user.deployment_id, platform_id=user.platform_id)


@router.post("/app/admin/outbox/{ref}/retry")
def retry(request: Request, ref: str, engine: EngineDep, user: auth.AdminDep) -> Response:
    """Queue a failed delivery of this tenant again now."""
    try:
        with db_session(engine, write=True) as s:
            found = s.exec(
                select(OutboxMessage.id).where(col(OutboxMessage.uuid) == ref, _in_tenant(user))
            ).first()
            if found is None:  # missing, or another tenant's: the same answer
                raise NotFound(f"no delivery {ref!r} in this platform's courses")
            row = outbox.retry(s, found, now=utcnow())
            audit.record(
                s,
                _tenant_scope(user),
                actor=f"person:{user.person_id}",
                action="outbox.retried",
                subject=f"outbox:{row.uuid}",
            )
            s.commit()
    except ServiceError as exc:
        return _failed(request, engine, user, exc)
    return back(user, "/app/admin", "retried")


@router.post("/app/admin/mismatches/{mismatch_id}/resend")
def resend(
    request: Request, mismatch_id: RowId, engine: EngineDep, user: auth.AdminDep
) -> Response:
    """Issue the credential again to the learner's current e-mail."""
    try:
        with db_session(engine, write=True) as s:
            found = s.exec(
                select(EmailMismatch.id)
                .join(OutboxMessage, col(OutboxMessage.id) == EmailMismatch.outbox_message_id)
                .where(EmailMismatch.id == mismatch_id, _in_tenant(user))
            ).first()
            if found is None:  # missing, or another tenant's: the same answer
                raise NotFound(f"no e-mail mismatch {mismatch_id} in this platform's courses")
            delivery_status.resend_mismatch(s, mismatch_id=mismatch_id, now=utcnow())
            audit.record(
                s,
                _tenant_scope(user),
                actor=f"person:{user.person_id}",
                action="email_mismatch.resent",
                subject=f"email_mismatch:{mismatch_id}",
            )
            s.commit()
    except ServiceError as exc:
        return _failed(request, engine, user, exc)
    return back(user, "/app/admin", "resent")
