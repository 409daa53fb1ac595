"""What the learner and the administrator see: where each credential went, and e-mail
addresses that changed after delivery."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Sequence
from typing import Any

from sqlmodel import Session, select

from service.db.engine import table
from service.db.models import DeliveryConsent, DeliveryRepository, EmailMismatch, OutboxMessage
from service.db.types import utcnow
from service.delivery import outbox, providers
from service.delivery.awards import issue_kinds
from service.errors import Conflict, NotFound

__all__ = [
    "Destination",
    "destinations",
    "destinations_of",
    "detect_email_change",
    "dismiss_mismatch",
    "list_mismatches",
    "resend_mismatch",
]

C = outbox.C


@dataclasses.dataclass(frozen=True)
class Destination:
    """One repository as the learner sees it for one credential."""

    repository_id: int
    repository_uuid: str
    name: str
    kind: str
    state: str  # waiting_for_consent | queued | retrying | delivered | failed | cancelled | revoked
    label: str
    consent: str  # not_needed | asked | granted | refused
    delivered_at: dt.datetime | None
    detail: str | None

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["delivered_at"] = self.delivered_at.isoformat() if self.delivered_at else None
        return d


LABELS = {
    "waiting_for_consent": "Waiting for your consent",
    "queued": "Queued",
    "retrying": "Delivery delayed, retrying",
    "delivered": "Delivered",
    "failed": "Delivery failed, the administrator has been told",
    "cancelled": "Not sent",
    "revoked": "Revoked",
}


def destinations(session: Session, *, credential_id: str) -> list[Destination]:
    """Per repository, the state of the credential there (for the learner's page)."""
    return destinations_of(session, [credential_id]).get(credential_id, [])


def destinations_of(
    session: Session, credential_ids: Sequence[str]
) -> dict[str, list[Destination]]:
    """``destinations`` of several credentials (by credential id; none: absent) in three
    statements, however many credentials and repositories."""
    if not credential_ids:
        return {}
    ids = list(dict.fromkeys(credential_ids))
    rows = session.exec(
        select(OutboxMessage)
        .where(C.credential_id.in_(ids), C.repository_id.is_not(None))
        .order_by(C.id)
    ).all()
    if not rows:
        return {}
    cc = table(DeliveryConsent).c
    consents = {
        (c.credential_id, c.repository_id): c.granted
        for c in session.exec(select(DeliveryConsent).where(cc.credential_id.in_(ids))).all()
    }
    rc = table(DeliveryRepository).c
    repos = {
        r.id: r
        for r in session.exec(
            select(DeliveryRepository).where(rc.id.in_({r.repository_id for r in rows}))
        ).all()
    }
    by_repo: dict[str, dict[int, list[OutboxMessage]]] = {}
    for r in rows:
        assert r.repository_id is not None
        by_repo.setdefault(r.credential_id, {}).setdefault(r.repository_id, []).append(r)
    issuing = issue_kinds()
    return {
        credential_id: [
            _destination(repos[rid], items, consents.get((credential_id, rid)), issuing)
            for rid, items in found.items()
        ]
        for credential_id, found in by_repo.items()
    }


def _destination(
    repo: DeliveryRepository,
    items: list[OutboxMessage],
    granted: bool | None,
    issuing: frozenset[str],
) -> Destination:
    """One repository's destination of a credential from its outbox rows (oldest first)
    and the learner's consent there (None: not asked yet)."""
    assert repo.id is not None
    provider = providers.get(repo.kind)
    issues = [r for r in items if r.kind in issuing]
    revokes = [r for r in items if r.kind == provider.revoke_kind]
    latest = issues[-1] if issues else items[-1]
    state, detail = _state(latest)
    delivered_at = latest.delivered_at
    if revokes and revokes[-1].status == "delivered" and latest.id < revokes[-1].id:  # type: ignore[operator]
        state, detail, delivered_at = "revoked", revokes[-1].payload.get("reason"), None
    if repo.consent_policy != "ask" or not provider.by_email:
        consent = "not_needed"
    elif granted is not None:
        consent = "granted" if granted else "refused"
    else:
        consent = "asked"
    return Destination(
        repository_id=repo.id,
        repository_uuid=repo.uuid,
        name=repo.name,
        kind=repo.kind,
        state=state,
        label=LABELS[state],
        consent=consent,
        delivered_at=delivered_at,
        detail=detail,
    )


def _state(row: OutboxMessage) -> tuple[str, str | None]:
    if row.status == "held":
        return "waiting_for_consent", None
    if row.status == "pending":
        return ("retrying", row.last_error) if row.attempts else ("queued", None)
    if row.status == "dead":
        return "failed", row.last_error
    return row.status, None


# --- e-mail mismatches ----------------------------------------------------------------------


def detect_email_change(
    session: Session, *, person_id: int, new_email: str, now: dt.datetime | None = None
) -> list[EmailMismatch]:
    """Record deliveries whose earner e-mail differs from the person's new LMS e-mail.

    Call it when a launch or roster sync brings a changed e-mail. Credly and Badgr identify
    earners by e-mail, so those badges now sit under the old address.
    """
    now = now or utcnow()
    new_norm = new_email.strip().lower()
    by_email = [k for p in providers.registered() if p.by_email for k in p.issue_kinds]
    delivered = session.exec(
        select(OutboxMessage).where(
            C.person_id == person_id, C.kind.in_(by_email), C.status == "delivered"
        )
    ).all()
    found = []
    mc = table(EmailMismatch).c
    for row in delivered:
        old = str(row.payload.get("recipient_email", ""))
        if not old or old.strip().lower() == new_norm:
            continue
        exists = session.exec(
            select(EmailMismatch).where(
                mc.outbox_message_id == row.id, mc.current_email == new_email
            )
        ).first()
        if exists is not None:
            found.append(exists)
            continue
        assert row.id is not None
        m = EmailMismatch(
            person_id=person_id,
            credential_id=row.credential_id,
            repository_id=row.repository_id,
            outbox_message_id=row.id,
            delivered_email=old,
            current_email=new_email,
            detected_at=now,
        )
        session.add(m)
        found.append(m)
    session.flush()
    return found


def list_mismatches(session: Session, *, open_only: bool = True) -> Sequence[EmailMismatch]:
    mc = table(EmailMismatch).c
    q = select(EmailMismatch).order_by(mc.detected_at.desc())
    if open_only:
        q = q.where(mc.resolved_at.is_(None))
    return session.exec(q).all()


def _mismatch(session: Session, mismatch_id: int) -> EmailMismatch:
    m = session.get(EmailMismatch, mismatch_id)
    if m is None:
        raise NotFound(f"no e-mail mismatch {mismatch_id}")
    if m.resolved_at is not None:
        raise Conflict(f"e-mail mismatch {mismatch_id} was already {m.resolution}")
    return m


def resend_mismatch(
    session: Session, *, mismatch_id: int, now: dt.datetime | None = None
) -> OutboxMessage:
    """Issue the credential again to the current e-mail (a new earner id, so the repository
    sees a new earner rather than a duplicate)."""
    now = now or utcnow()
    m = _mismatch(session, mismatch_id)
    original = session.get(OutboxMessage, m.outbox_message_id)
    assert original is not None
    tag = hashlib.sha256(m.current_email.lower().encode()).hexdigest()[:10]
    provider = providers.of_row(original.kind)
    kind = provider.issue_kind
    payload = {k: v for k, v in original.payload.items() if k not in ("replaces", "reason")}
    payload["recipient_email"] = m.current_email
    payload["issuer_earner_id"] = f"{original.payload.get('issuer_earner_id', '')}:{tag}"
    row = outbox.enqueue(
        session,
        credential_id=original.credential_id,
        kind=kind,
        idempotency_key=f"{original.idempotency_key}:email:{tag}",
        payload=payload,
        repository_id=original.repository_id,
        person_id=original.person_id,
        personal=provider.by_email,
        now=now,
    )
    assert row is not None  # only a new credential's rows are held as values
    m.resolved_at, m.resolution = now, "resent"
    session.flush()
    return row


def dismiss_mismatch(session: Session, *, mismatch_id: int) -> EmailMismatch:
    """Mark a mismatch as handled without re-sending (e.g. the earner merged accounts)."""
    m = _mismatch(session, mismatch_id)
    m.resolved_at, m.resolution = utcnow(), "dismissed"
    session.flush()
    return m
