"""The administrator's page inside the LMS frame (LTI administrator role): platforms,
repositories, the LMS connection of every connected course (last pull, errors), deliveries
that failed and why, e-mail mismatches, the audit log."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import col, select

from service import flows
from service.db.engine import session as db_session
from service.db.models import AuditEvent, OutboxMessage, Platform
from service.db.types import utcnow
from service.delivery import outbox, repositories
from service.delivery import status as delivery_status
from service.deps import EngineDep
from service.errors import ServiceError
from service.lti import platforms
from service.web import auth
from service.web.appshell import back, page

__all__ = ["router"]

router = APIRouter(tags=["admin"], include_in_schema=False)


def _view(engine: Any) -> dict[str, Any]:
    with db_session(engine) as s:
        rows = list(s.exec(select(Platform).order_by(col(Platform.id))))
        repos = list(repositories.list_all(s))
        failing = list(
            s.exec(
                select(OutboxMessage)
                .where(
                    col(OutboxMessage.status).in_(("dead", "pending", "held"))
                    & ((OutboxMessage.attempts > 0) | (OutboxMessage.status == "dead"))
                )
                .order_by(col(OutboxMessage.updated_at).desc())
                .limit(30)
            )
        )
        counts: dict[str, int] = {}
        for st in s.exec(select(OutboxMessage.status)).all():
            counts[st] = counts.get(st, 0) + 1
        mismatches = list(delivery_status.list_mismatches(s))
        events = list(s.exec(select(AuditEvent).order_by(col(AuditEvent.id).desc()).limit(25)))
        courses = flows.connected_courses(s)
    names = {r.id: r.name for r in repos}
    return {
        "platforms": rows,
        "repositories": repos,
        "failing": failing,
        "repo_names": names,
        "counts": counts,
        "mismatches": mismatches,
        "events": events,
        "courses": courses,
        "now": utcnow(),
    }


@router.get("/app/admin")
def admin_page(request: Request, engine: EngineDep, user: auth.AdminDep) -> HTMLResponse:
    """Platforms, repositories, failed deliveries, e-mail mismatches, recent audit log."""
    return page(request, engine, user, "app/admin.html", tab="admin", **_view(engine))


def _failed(request: Request, engine: Any, user: auth.CurrentUser, exc: ServiceError) -> Response:
    return page(
        request,
        engine,
        user,
        "app/admin.html",
        tab="admin",
        status_code=exc.status_code if exc.status_code < 500 else 502,
        error=exc,
        **_view(engine),
    )


@router.post("/app/admin/platforms/{platform_id}/activate")
def activate(
    request: Request, platform_id: int, engine: EngineDep, user: auth.AdminDep
) -> Response:
    """Activate a platform that registered itself (dynamic registration)."""
    try:
        with db_session(engine, write=True) as s:
            platforms.activate(s, platform_id, actor=f"person:{user.person_id}")
            s.commit()
    except ServiceError as exc:
        return _failed(request, engine, user, exc)
    return back(user, "/app/admin", "activated")


@router.post("/app/admin/outbox/{ref}/retry")
def retry(request: Request, ref: str, engine: EngineDep, user: auth.AdminDep) -> Response:
    """Queue a failed delivery again now."""
    try:
        with db_session(engine, write=True) as s:
            outbox.retry(s, ref, now=utcnow())
            s.commit()
    except ServiceError as exc:
        return _failed(request, engine, user, exc)
    return back(user, "/app/admin", "retried")


@router.post("/app/admin/mismatches/{mismatch_id}/resend")
def resend(request: Request, mismatch_id: int, engine: EngineDep, user: auth.AdminDep) -> Response:
    """Issue the credential again to the learner's current e-mail."""
    try:
        with db_session(engine, write=True) as s:
            delivery_status.resend_mismatch(s, mismatch_id=mismatch_id, now=utcnow())
            s.commit()
    except ServiceError as exc:
        return _failed(request, engine, user, exc)
    return back(user, "/app/admin", "resent")
