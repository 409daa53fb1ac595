"""The transactional outbox: rows written with the award, claimed by workers under a lease.

Lifecycle of a row (``OutboxMessage.status``)::

    held ──consent──► pending ──claim (lease)──► delivered
                         ▲  │ retryable error: backoff, due_at moves on
                         │  ├─ final error or attempts exhausted ──► dead ──retry──┐
                         └──┴──────────────────────────────────────────────────────┘
    held / pending / dead ──cancel──► cancelled;  delivered ──redeliver──► pending

Claiming: ``SELECT … FOR UPDATE SKIP LOCKED`` then ``UPDATE`` in one transaction on
PostgreSQL (any number of workers); on SQLite the same statements run under
``BEGIN IMMEDIATE``, which serialises claimers (reference/security.md §3.2 point 7). A
lease that expires (the worker died) makes the row claimable again, and marks it
*uncertain*: the next attempt checks the repository before sending (§3.3 C).

Services here only ``add``/``flush`` (``enqueue`` and the admin actions); the functions
that take an engine are worker steps and commit their own short transactions. No
transaction stays open across an HTTP call.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Engine, Select, Table, and_, exists, insert, or_, update
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from service import httpretry, requestlog
from service.db import engine as db_engine
from service.db.engine import session as db_session
from service.db.models import (
    DeliveryAttempt,
    DeliveryConsent,
    DeliveryPause,
    DeliveryRepository,
    OutboxMessage,
)
from service.db.types import row_id, utcnow
from service.delivery.errors import ConnectorError, FinalError, RateLimited
from service.errors import Conflict, NotFound

__all__ = [
    "AttemptRecord",
    "Claimed",
    "Outcome",
    "cancel",
    "claim",
    "dead_ids",
    "enqueue",
    "finish_many",
    "get",
    "list_messages",
    "redeliver",
    "retry",
]

TERMINAL = ("delivered", "cancelled", "dead")
# Core columns of the outbox table: typed SQL expressions for the queries below.
OUT: Table = db_engine.table(OutboxMessage)
C = OUT.c
ATTEMPT: Table = db_engine.table(DeliveryAttempt)
REPO: Table = db_engine.table(DeliveryRepository)
PAUSE: Table = db_engine.table(DeliveryPause)
DEFAULT_MAX_ATTEMPTS = 25


def enqueue(
    session: Session,
    *,
    credential_id: str,
    kind: str,
    idempotency_key: str,
    payload: dict[str, Any],
    repository_id: int | None = None,
    person_id: int | None = None,
    depends_on_id: int | None = None,
    personal: bool = False,
    pause_scope: str = "",
    now: dt.datetime | None = None,
    new_key: bool = False,
) -> OutboxMessage | None:
    """Add one delivery row (``kind`` dotted: ``credly.issue_badge``) to the caller's
    transaction, which commits the award and its rows together; returns it flushed.

    The same ``idempotency_key`` twice returns the existing row, so a repeated award
    causes one delivery. A ``personal`` row (the learner's data to a third party) whose
    repository asks for consent is ``held`` until the learner agrees (``cancelled`` if
    they refused). ``depends_on_id``: a row that must finish first.

    ``new_key``: the key names a credential created in this transaction, so no row can hold
    it yet: the lookup is skipped (the unique key still refuses a second one) and the row is
    written by the caller's next flush. Inside a worker's batch (``db.engine.holding``) it
    is held as plain values instead, no model instance built, and written with the batch's
    other rows in one INSERT: then None is returned.
    """
    if "." not in kind:
        raise ValueError(f"outbox kinds are dotted (credly.issue_badge), not {kind!r}")
    if not new_key:
        existing = session.exec(
            select(OutboxMessage).where(C.idempotency_key == idempotency_key)
        ).first()
        if existing is not None:
            return existing
    now = now or utcnow()
    status = "pending"
    if repository_id is not None and personal:
        status = _consent_status(session, credential_id=credential_id, repository_id=repository_id)
    values: dict[str, Any] = {
        "credential_id": credential_id,
        "kind": kind,
        "idempotency_key": idempotency_key,
        "payload": payload,
        "repository_id": repository_id,
        "person_id": person_id,
        "depends_on_id": depends_on_id,
        "status": status,
        "due_at": now,
        "created_at": now,
        "updated_at": now,
        "request_id": requestlog.current(),
        "pause_scope": pause_scope,
    }
    if new_key and db_engine.holding(session):
        db_engine.add_values(session, OutboxMessage, values)
        return None
    row = OutboxMessage(**values)
    session.add(row)
    if not new_key:
        session.flush()
    return row


def _consent_status(session: Session, *, credential_id: str, repository_id: int) -> str:
    repo = session.get(DeliveryRepository, repository_id)
    if repo is None:
        raise NotFound(f"delivery repository {repository_id} does not exist")
    if repo.consent_policy != "ask":
        return "pending"
    consent = session.exec(
        select(DeliveryConsent).where(
            db_engine.table(DeliveryConsent).c.credential_id == credential_id,
            db_engine.table(DeliveryConsent).c.repository_id == repository_id,
        )
    ).first()
    if consent is None:
        return "held"
    return "pending" if consent.granted else "cancelled"


@dataclasses.dataclass(frozen=True)
class Claimed:
    """A row leased to one worker: a plain snapshot, safe to use outside the session."""

    id: int
    uuid: str
    credential_id: str
    kind: str
    repository_id: int | None
    idempotency_key: str
    payload: dict[str, Any]
    attempt: int
    max_attempts: int
    uncertain: bool
    lease_token: str
    lease_expires_at: dt.datetime
    request_id: str | None = None  # of the HTTP request that caused the row
    pause_scope: str = ""  # what a rate limit it meets pauses ("" the whole repository)


def claim(
    engine: Engine,
    *,
    kinds: Iterable[str],
    now: dt.datetime,
    limit: int = 1,
    lease_seconds: float = 60.0,
    worker: str = "",
) -> list[Claimed]:
    """Lease up to ``limit`` due rows of the given kinds, oldest due first (one short
    transaction). ``lease_seconds`` must exceed the worst HTTP timeout plus the check;
    ``worker`` is recorded on lost-lease attempts."""
    kinds = list(kinds)
    if not kinds or limit < 1:
        return []
    token = str(uuid.uuid4())
    expires = now + dt.timedelta(seconds=lease_seconds)
    with db_session(engine, write=True) as s:
        picked = s.execute(_due_rows(kinds, now=now, limit=limit)).all()
        if not picked:
            return []
        fresh = [row_id for row_id, old_lease, _ in picked if old_lease is None]
        base = {"lease_token": token, "lease_expires_at": expires, "updated_at": now}
        if fresh:
            s.execute(update(OUT).where(C.id.in_(fresh)).values(attempts=C.attempts + 1, **base))
        for row_id, old_lease, attempts in picked:
            if old_lease is None:
                continue
            _take_over_expired_lease(
                s, row_id, old_lease=old_lease, attempts=attempts, base=base, worker=worker, now=now
            )
        claimed = _leased_snapshots(
            s, [r[0] for r in picked], lease_token=token, lease_expires_at=expires
        )
        s.commit()
    return claimed


def _due_rows(kinds: list[str], *, now: dt.datetime, limit: int) -> Select[Any]:
    """``SELECT … FOR UPDATE SKIP LOCKED`` of (id, lease_expires_at, attempts) of due rows."""
    dep = OUT.alias("dep")
    return (
        sa_select(C.id, C.lease_expires_at, C.attempts)
        .where(
            C.status == "pending",
            C.due_at <= now,
            or_(C.lease_expires_at.is_(None), C.lease_expires_at <= now),
            C.kind.in_(kinds),
            or_(
                C.depends_on_id.is_(None),
                exists().where(and_(dep.c.id == C.depends_on_id, dep.c.status.in_(TERMINAL))),
            ),
            # A repository paused by a rate limit waits for every worker, not just the row
            # that got the 429.
            ~exists().where(and_(REPO.c.id == C.repository_id, REPO.c.paused_until > now)),
            # ... or the part of it the row goes to (one LMS platform's gradebook).
            ~exists().where(
                and_(
                    PAUSE.c.repository_id == C.repository_id,
                    PAUSE.c.scope == C.pause_scope,
                    PAUSE.c.paused_until > now,
                )
            ),
        )
        .order_by(C.due_at, C.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=OUT)
    )


def _take_over_expired_lease(
    s: Session,
    row_id: int,
    *,
    old_lease: dt.datetime,
    attempts: int,
    base: dict[str, Any],
    worker: str,
    now: dt.datetime,
) -> None:
    """Lease a row whose previous holder died mid-attempt: its request may have gone out."""
    s.execute(
        update(OUT)
        .where(C.id == row_id)
        .values(
            attempts=attempts + 1,
            uncertain=True,
            last_error="worker stopped during the attempt (lease expired)",
            **base,
        )
    )
    s.add(
        DeliveryAttempt(
            outbox_message_id=row_id,
            number=attempts,
            worker=worker,
            started_at=old_lease,
            finished_at=now,
            outcome="uncertain",
            error_code="lease_expired",
            error_detail="the worker holding this row stopped before recording "
            "an outcome; the next attempt checks the repository first",
        )
    )


def _leased_snapshots(
    s: Session, ids: list[int], *, lease_token: str, lease_expires_at: dt.datetime
) -> list[Claimed]:
    """The just-leased rows as ``Claimed`` snapshots, oldest due first."""
    rows = s.execute(
        sa_select(
            C.id,
            C.uuid,
            C.credential_id,
            C.kind,
            C.repository_id,
            C.idempotency_key,
            C.payload,
            C.attempts,
            C.max_attempts,
            C.uncertain,
            C.request_id,
            C.pause_scope,
        )
        .where(C.id.in_(ids))
        .order_by(C.due_at, C.id)
    ).all()
    payloads = _with_remote_ids(s, [dict(r.payload) for r in rows])
    return [
        Claimed(
            id=r.id,
            uuid=r.uuid,
            credential_id=r.credential_id,
            kind=r.kind,
            repository_id=r.repository_id,
            idempotency_key=r.idempotency_key,
            payload=payload,
            attempt=r.attempts,
            max_attempts=r.max_attempts,
            uncertain=bool(r.uncertain),
            lease_token=lease_token,
            lease_expires_at=lease_expires_at,
            request_id=r.request_id,
            pause_scope=r.pause_scope or "",
        )
        for r, payload in zip(rows, payloads, strict=True)
    ]


# Payload lists whose items name the row that created a remote object (``outbox_id``).
_REF_LISTS = ("targets", "replaces")
_REMOTE_IDS = ("badge_id", "entity_id")


def _with_remote_ids(s: Session, payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fill in the remote ids (Credly ``badge_id``, Badgr ``entity_id``) that the rows a
    revoke or replace names have learned since it was queued (a revoke waits for a row in
    flight)."""
    wanted = {
        int(item["outbox_id"])
        for p in payloads
        for name in _REF_LISTS
        for item in p.get(name) or []
        if isinstance(item, dict)
        and item.get("outbox_id")
        and not any(k in item for k in _REMOTE_IDS)
    }
    if not wanted:
        return payloads
    found = {
        row_id: result or {}
        for row_id, result in s.execute(sa_select(C.id, C.result).where(C.id.in_(wanted)))
    }
    out = []
    for p in payloads:
        p = dict(p)
        for name in _REF_LISTS:
            if isinstance(p.get(name), list):
                p[name] = [_filled(item, found) for item in p[name]]
        out.append(p)
    return out


def _filled(item: Any, found: dict[int, dict[str, Any]]) -> Any:
    if not isinstance(item, dict) or not item.get("outbox_id"):
        return item
    result = found.get(int(item["outbox_id"]), {})
    extra = {k: str(result[k]) for k in _REMOTE_IDS if result.get(k) and k not in item}
    return item | extra


@dataclasses.dataclass
class AttemptRecord:
    """What a connector did in one attempt, for the attempt row (never secrets)."""

    started_at: dt.datetime
    requests: list[str] = dataclasses.field(default_factory=list)
    response_status: int | None = None
    response_excerpt: str = ""
    # Set by a connector once it has checked the repository and found the effect absent,
    # which clears an earlier attempt's uncertainty.
    checked: bool = False
    # No request may start after this: past it the lease could expire mid-request and a
    # second worker send the same effect (the worker sets it from the lease).
    send_deadline: dt.datetime | None = None

    def note(self, line: str, *, status: int | None = None, excerpt: str = "") -> None:
        self.requests.append(line)
        if status is not None:
            self.response_status = status
        if excerpt:
            self.response_excerpt = excerpt[:500]


@dataclasses.dataclass
class Outcome:
    """One finished attempt, waiting to be recorded."""

    job: Claimed
    record: AttemptRecord
    finished_at: dt.datetime
    result: dict[str, Any] | None = None
    error: ConnectorError | None = None


def finish_many(
    engine: Engine,
    outcomes: Sequence[Outcome],
    *,
    worker: str = "",
) -> list[str]:
    """Record attempts in one transaction (a commit per worker group, not per delivery) and
    move each row on as the lifecycle above says (a retry never before Retry-After; a lost
    lease: the attempt row only); returns each attempt's outcome."""
    results: list[str] = []
    attempt_rows: list[dict[str, Any]] = []
    if not outcomes:
        return results
    with db_session(engine, write=True) as s:
        for o in outcomes:
            job, error, now, record = o.job, o.error, o.finished_at, o.record
            values: dict[str, Any] = {
                "lease_token": None,
                "lease_expires_at": None,
                "updated_at": now,
            }
            next_due: dt.datetime | None = None
            if error is None:
                outcome = "delivered"
                values |= {
                    "status": "delivered",
                    "uncertain": False,
                    "last_error": None,
                    "result": o.result or {},
                    "delivered_at": now,
                }
            else:
                reason = f"{error.code}: {error.detail}"
                values |= {"last_error": reason[:2000], "uncertain": error.uncertain}
                if isinstance(error, FinalError) or job.attempt >= job.max_attempts:
                    outcome = "dead"
                    values["status"] = "dead"
                else:
                    outcome = "uncertain" if error.uncertain else "retry"
                    delay = httpretry.next_delay(job.attempt, retry_after=error.retry_after)
                    next_due = now + dt.timedelta(seconds=delay)
                    values["due_at"] = next_due
            changed = s.execute(
                update(OUT).where(C.id == job.id, C.lease_token == job.lease_token).values(**values)
            ).rowcount  # type: ignore[attr-defined]
            if not changed:
                outcome = "lease_lost"
            if isinstance(error, RateLimited) and job.repository_id is not None:
                _pause(s, job.repository_id, job.pause_scope, error, now)
            results.append(outcome)
            status = record.response_status
            if error is not None and error.status is not None:
                status = error.status
            attempt_rows.append(
                {
                    "outbox_message_id": job.id,
                    "number": job.attempt,
                    "worker": worker[:100],
                    "started_at": record.started_at,
                    "finished_at": now,
                    "duration_ms": max(0, int((now - record.started_at).total_seconds() * 1000)),
                    "outcome": outcome,
                    "request_summary": "\n".join(record.requests)[:4000],
                    "response_status": status,
                    # Bodies only for failures: a success body repeats the learner's data.
                    "response_excerpt": ""
                    if error is None
                    else (error.excerpt or record.response_excerpt)[:500],
                    "error_code": None if error is None else error.code,
                    "error_detail": None if error is None else error.detail[:2000],
                    "retry_after_seconds": None if error is None else error.retry_after,
                    "next_due_at": next_due,
                }
            )
        s.execute(insert(ATTEMPT), attempt_rows)
        s.commit()
    return results


def _pause(
    s: Session, repository_id: int, scope: str, error: ConnectorError, now: dt.datetime
) -> None:
    """Pause the repository (or, with a ``scope``, that part of it) until the rate
    limit's Retry-After (the backoff's first step when it gave none); a later, shorter
    pause never shortens a longer one."""
    seconds = error.retry_after if error.retry_after is not None else httpretry.BASE_SECONDS
    until = now + dt.timedelta(seconds=max(seconds, 0.0))
    reason = f"{error.code}: {error.detail}"[:500]
    if scope:
        _pause_scope(s, repository_id, scope, until, reason)
        return
    s.execute(
        update(REPO)
        .where(
            REPO.c.id == repository_id,
            or_(REPO.c.paused_until.is_(None), REPO.c.paused_until < until),
        )
        .values(paused_until=until, paused_reason=reason)
    )


def _pause_scope(
    s: Session, repository_id: int, scope: str, until: dt.datetime, reason: str
) -> None:
    mine = and_(PAUSE.c.repository_id == repository_id, PAUSE.c.scope == scope)
    longer = update(PAUSE).where(mine, PAUSE.c.paused_until < until)
    if s.execute(sa_select(PAUSE.c.id).where(mine)).first() is None:
        try:
            with s.begin_nested():
                s.execute(
                    insert(PAUSE).values(
                        repository_id=repository_id,
                        scope=scope,
                        paused_until=until,
                        paused_reason=reason,
                    )
                )
            return
        except IntegrityError:
            pass  # another worker paused it meanwhile: lengthen theirs if ours is longer
    s.execute(longer.values(paused_until=until, paused_reason=reason))


# --- administrator actions (caller commits) ----------------------------------------------


def get(session: Session, ref: str | int) -> OutboxMessage:
    """A row by numeric id or uuid."""
    number = row_id(ref)
    cond = C.id == number if number is not None else C.uuid == str(ref)
    row = session.exec(select(OutboxMessage).where(cond)).first()
    if row is None:
        raise NotFound(f"no outbox row {ref!r}", hint="list rows with `microcred outbox list`")
    return row


def list_messages(
    session: Session,
    *,
    status: str | None = None,
    kind: str | None = None,
    credential_id: str | None = None,
    limit: int = 100,
) -> Sequence[OutboxMessage]:
    """Rows, most recently changed first, filtered as given."""
    q = select(OutboxMessage)
    if status:
        q = q.where(C.status == status)
    if kind:
        q = q.where(C.kind == kind)
    if credential_id:
        q = q.where(C.credential_id == credential_id)
    q = q.order_by(C.updated_at.desc(), C.id.desc()).limit(limit)
    return session.exec(q).all()


def dead_ids(session: Session, *, repository_id: int | None = None) -> list[int]:
    """The ids of dead rows, oldest first; only one repository's when given."""
    q = select(C.id).where(C.status == "dead")
    if repository_id is not None:
        q = q.where(C.repository_id == repository_id)
    return [int(i) for i in session.exec(q.order_by(C.id)).all()]


def _leased(row: OutboxMessage, now: dt.datetime) -> bool:
    return row.lease_expires_at is not None and row.lease_expires_at > now


def _guarded_update(
    session: Session,
    row: OutboxMessage,
    *,
    allowed: tuple[str, ...],
    now: dt.datetime,
    **values: Any,
) -> None:
    # One atomic UPDATE guarded on status and lease, so it cannot race a worker's claim.
    changed = session.execute(
        update(OUT)
        .where(
            C.id == row.id,
            C.status.in_(allowed),
            or_(C.lease_expires_at.is_(None), C.lease_expires_at <= now),
        )
        .values(updated_at=now, **values)
    ).rowcount  # type: ignore[attr-defined]
    if not changed:
        session.refresh(row)
        if _leased(row, now):
            raise Conflict(
                f"outbox row {row.uuid} is being delivered right now",
                hint="wait for the attempt to finish (see `microcred outbox list`), then try again",
            )
        raise Conflict(
            f"outbox row {row.uuid} is {row.status}; this action needs one of: "
            + ", ".join(allowed)
        )
    session.flush()
    session.refresh(row)


def retry(session: Session, ref: str | int, *, now: dt.datetime | None = None) -> OutboxMessage:
    """Send a dead (or waiting) row again now, with a fresh attempt budget."""
    now = now or utcnow()
    row = get(session, ref)
    _guarded_update(
        session,
        row,
        allowed=("dead", "pending"),
        now=now,
        status="pending",
        due_at=now,
        max_attempts=row.attempts + DEFAULT_MAX_ATTEMPTS,
    )
    return row


def redeliver(session: Session, ref: str | int, *, now: dt.datetime | None = None) -> OutboxMessage:
    """Deliver a delivered row again (connectors check first, so Credly gets no duplicate)."""
    now = now or utcnow()
    row = get(session, ref)
    _guarded_update(
        session,
        row,
        allowed=("delivered", "dead", "cancelled"),
        now=now,
        status="pending",
        due_at=now,
        uncertain=True,
        max_attempts=row.attempts + DEFAULT_MAX_ATTEMPTS,
    )
    return row


def cancel(session: Session, ref: str | int, *, now: dt.datetime | None = None) -> OutboxMessage:
    """Stop a row that has not been delivered."""
    now = now or utcnow()
    row = get(session, ref)
    _guarded_update(session, row, allowed=("pending", "held", "dead"), now=now, status="cancelled")
    return row
