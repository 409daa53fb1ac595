"""JSON API for deliveries: the outbox, repositories, consent, destinations, mismatches.

Mounted under ``/api``; the app adds the API-token dependency when it includes the router.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from sqlmodel import select

from service.db.engine import table
from service.db.models import DeliveryAttempt
from service.db.types import utcnow
from service.delivery import awards, outbox, repositories, status
from service.delivery.schemas import (
    ConsentIn,
    MismatchPublic,
    OutboxList,
    OutboxPublic,
    RepositoryCreate,
    RepositoryPublic,
)
from service.deps import RowId, SessionDep, WriteSessionDep

router = APIRouter(prefix="/api", tags=["delivery"])


def _detail(session: Any, ref: str) -> OutboxPublic:
    row = outbox.get(session, ref)
    log = session.exec(
        select(DeliveryAttempt)
        .where(table(DeliveryAttempt).c.outbox_message_id == row.id)
        .order_by(table(DeliveryAttempt).c.id)
    ).all()
    return OutboxPublic.of(row, now=utcnow(), attempts=list(log))


@router.get("/outbox", response_model=OutboxList)
def list_outbox(
    session: SessionDep,
    status_: str | None = Query(default=None, alias="status"),
    kind: str | None = None,
    credential_id: str | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
) -> OutboxList:
    """Outbox rows, most recently changed first, with repository token warnings."""
    now = utcnow()
    rows = outbox.list_messages(
        session, status=status_, kind=kind, credential_id=credential_id, limit=limit
    )
    return OutboxList(
        warnings=[w.message for w in repositories.token_warnings(session, now=now)],
        items=[OutboxPublic.of(r, now=now) for r in rows],
    )


@router.get("/outbox/{ref}", response_model=OutboxPublic)
def get_outbox(ref: str, session: SessionDep) -> OutboxPublic:
    """One row with every attempt (request summary, response, duration, error)."""
    return _detail(session, ref)


@router.post("/outbox/{ref}/retry", response_model=OutboxPublic)
def retry_outbox(ref: str, session: WriteSessionDep) -> OutboxPublic:
    """Send a dead row again now."""
    outbox.retry(session, ref)
    session.commit()
    return _detail(session, ref)


@router.post("/outbox/{ref}/redeliver", response_model=OutboxPublic)
def redeliver_outbox(ref: str, session: WriteSessionDep) -> OutboxPublic:
    """Deliver a row again (the repository is checked first, so no duplicate)."""
    outbox.redeliver(session, ref)
    session.commit()
    return _detail(session, ref)


@router.post("/outbox/{ref}/cancel", response_model=OutboxPublic)
def cancel_outbox(ref: str, session: WriteSessionDep) -> OutboxPublic:
    """Stop a row that has not been delivered."""
    outbox.cancel(session, ref)
    session.commit()
    return _detail(session, ref)


@router.get("/delivery/repositories", response_model=list[RepositoryPublic])
def list_repositories(session: SessionDep) -> list[RepositoryPublic]:
    """Configured repositories (secrets never shown), with token-expiry warnings."""
    warns = {w.repository_id: w.message for w in repositories.token_warnings(session)}
    pauses = repositories.scoped_pauses(session)
    return [
        RepositoryPublic.of(r, warning=warns.get(r.id or 0), pauses=pauses.get(r.id or 0, []))
        for r in repositories.list_all(session)
    ]


@router.post("/delivery/repositories", response_model=RepositoryPublic, status_code=201)
def create_repository(body: RepositoryCreate, session: WriteSessionDep) -> RepositoryPublic:
    """Add a repository (Credly, Badgr, webhook, gradebook)."""
    repo = repositories.create(session, **body.model_dump())
    session.commit()
    return RepositoryPublic.of(repo)


@router.get("/credentials/{credential_id}/consent")
def get_consent(credential_id: str, session: SessionDep) -> list[dict[str, Any]]:
    """Where this credential goes and the learner's consent per repository."""
    return [d.as_dict() for d in status.destinations(session, credential_id=credential_id)]


@router.post("/credentials/{credential_id}/consent")
def post_consent(
    credential_id: str, body: ConsentIn, session: WriteSessionDep
) -> list[dict[str, Any]]:
    """Grant or refuse delivery of this credential to one repository."""
    awards.set_consent(
        session,
        credential_id=credential_id,
        repository_id=body.repository_id,
        granted=body.granted,
    )
    session.commit()
    return [d.as_dict() for d in status.destinations(session, credential_id=credential_id)]


@router.get("/credentials/{credential_id}/destinations")
def get_destinations(credential_id: str, session: SessionDep) -> list[dict[str, Any]]:
    """Per repository: waiting for consent, queued, delivered, failed, revoked."""
    return [d.as_dict() for d in status.destinations(session, credential_id=credential_id)]


@router.get("/delivery/email-mismatches", response_model=list[MismatchPublic])
def list_email_mismatches(session: SessionDep, all: bool = False) -> list[MismatchPublic]:
    """Deliveries whose earner e-mail no longer matches the LMS e-mail."""
    return [MismatchPublic.of(m) for m in status.list_mismatches(session, open_only=not all)]


@router.post("/delivery/email-mismatches/{mismatch_id}/resend", response_model=OutboxPublic)
def resend_email_mismatch(mismatch_id: RowId, session: WriteSessionDep) -> OutboxPublic:
    """Issue the credential again to the current e-mail."""
    row = status.resend_mismatch(session, mismatch_id=mismatch_id)
    session.commit()
    return OutboxPublic.of(row, now=utcnow())


@router.post("/delivery/email-mismatches/{mismatch_id}/dismiss", response_model=MismatchPublic)
def dismiss_email_mismatch(mismatch_id: RowId, session: WriteSessionDep) -> MismatchPublic:
    """Mark a mismatch handled without re-sending."""
    m = status.dismiss_mismatch(session, mismatch_id=mismatch_id)
    session.commit()
    return MismatchPublic.of(m)
