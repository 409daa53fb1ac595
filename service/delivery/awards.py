"""Use cases the award path calls, all inside the caller's transaction (add/flush only):
enqueue a new credential's deliveries, propagate a revocation or an upgrade to every
repository the credential reached, and apply a learner's consent answer.

"Reached" is judged conservatively: a delivered row, a row being delivered right now, and
any row whose attempts may have had an effect (uncertain, or dead) count as reached; the
revoke connectors check the repository first, so revoking something that never arrived is
a harmless no-op, while missing something that did arrive would leave a stale badge.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy import or_, update
from sqlmodel import Session, select

from service.db import engine as db_engine
from service.db.models import DeliveryConsent, DeliveryRepository, OutboxMessage
from service.db.types import utcnow
from service.delivery import outbox, providers, repositories
from service.delivery.types import CredentialSnapshot
from service.errors import BadInput, NotFound

__all__ = [
    "CredentialSnapshot",
    "enqueue_issue",
    "issue_kinds",
    "propagate_revocation",
    "propagate_upgrade",
    "set_consent",
]

C = outbox.C


def issue_kinds() -> frozenset[str]:
    """Every row kind that puts a credential in a repository."""
    return frozenset().union(*(p.issue_kinds for p in providers.registered()))


def enqueue_issue(
    session: Session,
    *,
    snapshot: CredentialSnapshot,
    repository_ids: Iterable[int] | None = None,
    now: dt.datetime | None = None,
    new_credential: bool = False,
) -> list[OutboxMessage]:
    """Queue a new credential for every enabled repository (or those of a policy naming its
    targets); the caller commits the credential and these rows together. Returns the rows
    (held ones wait for the learner's consent); ``new_credential``: created in this
    transaction (``outbox.enqueue(new_key=True)``: none returned in a worker's batch)."""
    now = now or utcnow()
    wanted = set(repository_ids) if repository_ids is not None else None
    rows = []
    for repo in repositories.enabled(session):
        if wanted is not None and repo.id not in wanted:
            continue
        provider = providers.get(repo.kind)
        payload = provider.payload(snapshot)
        if payload is None:
            continue
        kind = provider.issue_kind
        row: dict[str, Any] = {
            "credential_id": snapshot.credential_id,
            "kind": kind,
            "idempotency_key": f"{kind}:{repo.id}:{snapshot.credential_id}:{snapshot.level}",
            "payload": payload,
            "repository_id": repo.id,
            "person_id": snapshot.person_id,
            "personal": provider.by_email,
            "pause_scope": provider.pause_scope(payload),
            "now": now,
        }
        queued = outbox.enqueue(session, **row, new_key=new_credential)
        if queued is not None:  # None: written with a worker batch's rows
            rows.append(queued)
    return rows


@dataclasses.dataclass
class _Reach:
    """What one repository may hold for a credential."""

    repo: DeliveryRepository
    reached: list[OutboxMessage] = dataclasses.field(default_factory=list)
    in_flight: OutboxMessage | None = None
    cancelled: list[OutboxMessage] = dataclasses.field(default_factory=list)


def _withdraw(
    session: Session,
    credential_id: str,
    now: dt.datetime,
    repository_id: int | None = None,
    keep_level: str | None = None,
) -> list[_Reach]:
    """Cancel undelivered issue rows and report, per repository, what may have arrived.

    Rows for ``keep_level`` are left alone (an upgrade to that level was already queued).
    """
    q = select(OutboxMessage).where(
        C.credential_id == credential_id,
        C.kind.in_(issue_kinds()),
        C.repository_id.is_not(None),
    )
    if repository_id is not None:
        q = q.where(C.repository_id == repository_id)
    by_repo: dict[int, _Reach] = {}
    for row in session.exec(q.order_by(C.id)).all():
        assert row.repository_id is not None
        reach = by_repo.get(row.repository_id)
        if reach is None:
            repo = session.get(DeliveryRepository, row.repository_id)
            assert repo is not None
            reach = by_repo[row.repository_id] = _Reach(repo)
        if keep_level is not None and row.payload.get("level") == keep_level:
            continue
        leased = row.lease_expires_at is not None and row.lease_expires_at > now
        if row.status in ("pending", "held") and not leased:
            changed = session.execute(
                update(outbox.OUT)
                .where(
                    C.id == row.id,
                    C.status.in_(("pending", "held")),
                    or_(C.lease_expires_at.is_(None), C.lease_expires_at <= now),
                )
                .values(status="cancelled", updated_at=now)
            ).rowcount  # type: ignore[attr-defined]
            session.refresh(row)
            if changed:
                reach.cancelled.append(row)
                if row.uncertain:
                    reach.reached.append(row)
                continue
            leased = True
        if leased:
            reach.in_flight = row
            reach.reached.append(row)
        elif row.status in ("delivered", "dead") or row.uncertain:
            reach.reached.append(row)
    session.flush()
    return list(by_repo.values())


def _targets(rows: Iterable[OutboxMessage]) -> list[dict[str, Any]]:
    """What to revoke: every badge a reached row may have created (replaces included).

    Each target names the row that created it (``outbox_id``) and, once that row was
    delivered, the repository's own id for it (``badge_id``, Credly; ``entity_id``,
    Badgr): the revoke acts on that id. A row still in flight gets its id when the revoke is claimed
    (``outbox.claim``), since the revoke runs after it.
    """
    out: dict[str, dict[str, Any]] = {}
    keep = ("issuer_earner_id", "competency", "level", "recipient_email")
    remote = ("badge_id", "entity_id")
    keep_ids = (*remote, "outbox_id")
    for row in rows:
        p = row.payload
        own = {"outbox_id": row.id} | {
            k: str(row.result[k]) for k in remote if (row.result or {}).get(k)
        }
        for item in [p | own, *p.get("replaces", [])]:
            t = {k: item[k] for k in (*keep, *keep_ids) if k in item}
            if not t:
                continue
            key = str(t.get("issuer_earner_id") or sorted(t.items()))
            # The same badge reached through several rows: keep what knows its id.
            known = any(k in t for k in remote)
            if key not in out or (known and not any(k in out[key] for k in remote)):
                out[key] = t
    return list(out.values())


def propagate_revocation(
    session: Session, credential_id: str, reason: str, *, now: dt.datetime | None = None
) -> list[OutboxMessage]:
    """Revoke the credential everywhere it went; cancel what has not gone yet. Returns the
    revoke rows queued (one per repository that may hold it). Credly and Badgr show the
    earner the ``reason``, and both require one."""
    if not reason.strip():
        raise BadInput("a revocation needs a reason (Credly and Badgr show it to the earner)")
    now = now or utcnow()
    rows = []
    for reach in _withdraw(session, credential_id, now):
        row = _revoke_row(session, reach, credential_id, reason, now, suffix="")
        if row is not None:
            rows.append(row)
    return rows


def _revoke_row(
    session: Session,
    reach: _Reach,
    credential_id: str,
    reason: str,
    now: dt.datetime,
    *,
    suffix: str,
) -> OutboxMessage | None:
    provider = providers.get(reach.repo.kind)
    kind = provider.revoke_kind
    if not reach.reached or kind is None:  # e.g. the gradebook keeps its score
        return None
    last = reach.reached[-1]
    payload = provider.revoke_payload(
        reason=reason, credential_id=credential_id, targets=_targets(reach.reached)
    )
    return outbox.enqueue(
        session,
        credential_id=credential_id,
        kind=kind,
        idempotency_key=f"{kind}:{reach.repo.id}:{credential_id}{suffix}",
        payload=payload,
        repository_id=reach.repo.id,
        person_id=last.person_id,
        depends_on_id=reach.in_flight.id if reach.in_flight else None,
        now=now,
    )


def propagate_upgrade(
    session: Session,
    *,
    snapshot: CredentialSnapshot,
    now: dt.datetime | None = None,
) -> list[OutboxMessage]:
    """Move every repository the credential went to onto the new level.

    Credly gets one ``credly.replace_badge`` row (issue the new level's badge, then revoke
    the old); Badgr a revoke and an issue; webhooks a ``credential.upgraded`` event; the
    gradebook the new score. Rows not yet sent for the old level are cancelled and replaced
    by rows for the new one. Returns the rows queued.
    """
    reason = "Replaced by a higher level"  # the revocation reason shown for the old badge
    now = now or utcnow()
    cid, level = snapshot.credential_id, snapshot.level
    rows: list[OutboxMessage] = []
    for reach in _withdraw(session, cid, now, keep_level=level):
        repo, provider = reach.repo, providers.get(reach.repo.kind)
        base = provider.payload(snapshot)
        if base is None:
            continue
        reached = [r for r in reach.reached if r.payload.get("level") != level]
        kind = provider.issue_kind
        if reached and provider.replace_kind:
            kind = provider.replace_kind
            base |= {"replaces": _targets(reached), "reason": reason}
        elif reached and provider.upgrade_kind:
            kind = provider.upgrade_kind
        elif reached:
            rev = _revoke_row(session, reach, cid, reason, now, suffix=f":upgrade:{level}")
            if rev is not None:
                rows.append(rev)
        row = outbox.enqueue(
            session,
            credential_id=cid,
            kind=kind,
            idempotency_key=f"{kind}:{repo.id}:{cid}:{level}",
            payload=base,
            repository_id=repo.id,
            person_id=snapshot.person_id,
            depends_on_id=reach.in_flight.id if reach.in_flight else None,
            personal=provider.by_email,
            pause_scope=provider.pause_scope(base),
            now=now,
        )
        assert row is not None  # only a new credential's rows are held as values
        rows.append(row)
    return rows


def set_consent(
    session: Session,
    *,
    credential_id: str,
    repository_id: int,
    granted: bool,
    now: dt.datetime | None = None,
) -> list[OutboxMessage]:
    """Record the learner's answer for one repository and act on it.

    Granting releases the held rows; refusing cancels them, and withdrawing consent after
    delivery revokes the credential in that repository.

    Returns:
        The rows released or queued (revocations).
    """
    now = now or utcnow()
    repo = session.get(DeliveryRepository, repository_id)
    if repo is None:
        raise NotFound(f"no delivery repository {repository_id}")
    cc = db_engine.table(DeliveryConsent).c
    consent = session.exec(
        select(DeliveryConsent).where(
            cc.credential_id == credential_id, cc.repository_id == repository_id
        )
    ).first()
    if consent is None:
        consent = DeliveryConsent(
            credential_id=credential_id,
            repository_id=repository_id,
            granted=granted,
            decided_at=now,
        )
        session.add(consent)
    else:
        consent.granted, consent.decided_at = granted, now
    held = session.exec(
        select(OutboxMessage).where(
            C.credential_id == credential_id,
            C.repository_id == repository_id,
            C.status == "held",
        )
    ).all()
    touched: list[OutboxMessage] = []
    for row in held:
        row.status = "pending" if granted else "cancelled"
        row.due_at, row.updated_at = now, now
        touched.append(row)
    session.flush()
    if not granted:
        for reach in _withdraw(session, credential_id, now, repository_id=repository_id):
            rev = _revoke_row(
                session, reach, credential_id, "The earner withdrew consent", now, suffix=":consent"
            )
            if rev is not None:
                touched.append(rev)
    return touched
