"""The evaluation queue: which learners of which course need evaluating, leased to workers.

One ``evaluation_job`` row per (course, learner). ``enqueue`` marks rows due when
something an evaluation reads changed (results, verification events, the course's rules
or mapping, award rules); ``claim`` leases due rows to a worker (``SELECT … FOR UPDATE
SKIP LOCKED`` on PostgreSQL, any number of workers; SQLite serialises claimers with
``BEGIN IMMEDIATE``), the same pattern as the delivery outbox. The worker then evaluates
and awards a few learners per transaction (``service.flows.run_evaluation_jobs``): that
transaction locks the rows it works on (``lock_claimed``), so a lease that expired while
its holder was still working is never worked on twice at once, and clears ``due_at``
(``finish``) in the same commit as the decisions, credentials and outbox rows. A worker
killed mid-batch loses its transaction; its leases expire and another worker takes the
rows. An instructor's action on a learner's award locks the same rows (``lock_learner``).
The award ledger's unique indexes (one issued award per line) make a second issue fail
even if these locks were bypassed.

Services here only execute and flush; the caller commits (``claim`` and ``fail`` are
worker steps with their own short transactions).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Engine, Select, Table, bindparam, func, or_, update
from sqlalchemy import select as sa_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from service.db import engine as db_engine
from service.db.engine import session as db_session
from service.db.models import Award, Enrolment, EvaluationJob, Evidence, VerificationEvent
from service.db.types import as_text, as_time, utcnow

__all__ = [
    "Claimed",
    "claim",
    "due",
    "due_query",
    "enqueue",
    "fail",
    "finish",
    "inputs",
    "last_inputs",
    "lock_claimed",
    "lock_learner",
]

JOB: Table = db_engine.table(EvaluationJob)
C = JOB.c
ENROLMENT: Table = db_engine.table(Enrolment)
AWARD: Table = db_engine.table(Award)
EVIDENCE: Table = db_engine.table(Evidence)
EVENT: Table = db_engine.table(VerificationEvent)
_CHUNK = 500  # rows per INSERT (SQLite allows 32,766 parameters; 7 a row)
MAX_BACKOFF_SECONDS = 3600.0


def _insert(session: Session) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(JOB)


def course_learner_ids(
    session: Session, *, course_id: int, person_ids: Iterable[int] | None = None
) -> list[int]:
    """The course's learners (of ``person_ids`` only, when given), whom ``flows`` evaluates
    and the course page lists: those enrolled and anyone with results in the course.

    A learner the roster removed (NRPS Deleted, or gone: unenrolled, and Canvas drops a
    concluded enrolment too) stays while they have results, which still earn credentials,
    or holds a credential of the course (their evaluation of no results flags or revokes it
    as the course says, as anyone's whose results went); else they are no one's learner.
    An Inactive (suspended, ended) enrolment stays a learner: grades come after a term ends.
    """
    e, ev, aw = ENROLMENT.c, EVIDENCE.c, AWARD.c
    holding = sa_select(aw.person_id).where(aw.course_id == course_id, aw.state == "issued")
    enrolled = sa_select(e.person_id).where(
        e.course_id == course_id,
        e.role == "learner",
        or_(e.status != "removed", e.person_id.in_(holding)),
    )
    with_results = sa_select(ev.person_id).where(ev.course_id == course_id)
    if person_ids is not None:
        ids = list(person_ids)
        enrolled = enrolled.where(e.person_id.in_(ids))
        with_results = with_results.where(ev.person_id.in_(ids))
    rows = session.execute(enrolled.union(with_results)).scalars().all()
    return sorted(int(p) for p in rows)


def enqueue(
    session: Session,
    *,
    course_id: int,
    person_ids: Iterable[int] | None = None,
    reason: str,
    now: dt.datetime | None = None,
) -> int:
    """Mark the evaluation of these learners of a course due (every learner of the course
    when ``person_ids`` is None); returns how many learners that is.

    Call it in the transaction that changed what the evaluation reads, so the change and
    the job commit together. A row already due stays due (at its earlier time) and is not
    written again (a burst of launches or saves costs one write per learner); a row that
    failed and waits for a retry becomes due now. Never more than one row per learner.
    """
    now = now or utcnow()
    ids = (
        course_learner_ids(session, course_id=course_id)
        if person_ids is None
        else sorted(set(person_ids))  # one lock order for every writer: no deadlock
    )
    stmt = _insert(session)
    excluded = stmt.excluded
    upsert = stmt.on_conflict_do_update(
        index_elements=[C.course_id, C.person_id],
        set_={
            "due_at": excluded.due_at,
            "reason": excluded.reason,
            "updated_at": excluded.updated_at,
        },
        where=or_(C.due_at.is_(None), C.due_at > excluded.due_at),
    )
    for start in range(0, len(ids), _CHUNK):
        session.execute(
            upsert,
            [_fresh(course_id, p, now, reason) for p in ids[start : start + _CHUNK]],
        )
    return len(ids)


def _fresh(course_id: int, person_id: int, due_at: dt.datetime | None, reason: str) -> Any:
    # the other columns take the model's defaults (``updated_at``: now)
    return {
        "course_id": course_id,
        "person_id": person_id,
        "due_at": due_at,
        "reason": reason[:200],
    }


def due(session: Session, *, course_id: int, person_id: int | None = None) -> int:
    """How many learners of the course (or: is this learner) wait for their evaluation."""
    params = {"course_id": course_id} | ({} if person_id is None else {"person_id": person_id})
    session.flush()  # as the session's autoflush would
    found = session.connection().execute(due_query(per_person=person_id is not None), params)
    return int(found.scalar_one())


@functools.cache
def due_query(*, per_person: bool) -> Select[Any]:
    """``due``'s count for the course ``:course_id`` (``per_person``: and the learner
    ``:person_id``), built once; a page adds it to a statement of its own as a scalar
    subquery."""
    query = (
        sa_select(func.count())
        .select_from(JOB)
        .where(C.course_id == bindparam("course_id"), C.due_at.is_not(None))
    )
    return query.where(C.person_id == bindparam("person_id")) if per_person else query


@dataclasses.dataclass(frozen=True)
class Claimed:
    """A job leased to one worker."""

    id: int
    course_id: int
    person_id: int
    token: str
    attempts: int


def claim(
    engine: Engine,
    *,
    now: dt.datetime,
    limit: int,
    lease_seconds: float,
    course_id: int | None = None,
) -> list[Claimed]:
    """Lease up to ``limit`` due jobs (one short transaction), oldest first, a course's
    jobs together. ``course_id``: that course's jobs only (the CLI working on one course)."""
    if limit < 1:
        return []
    token = str(uuid.uuid4())
    query = (
        sa_select(C.id, C.course_id, C.person_id, C.attempts)
        .where(
            C.due_at <= now,
            or_(C.lease_expires_at.is_(None), C.lease_expires_at <= now),
        )
        .order_by(C.due_at, C.course_id, C.person_id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=JOB)
    )
    if course_id is not None:
        query = query.where(C.course_id == course_id)
    with db_session(engine, write=True) as s:
        picked = s.execute(query).all()
        if not picked:
            return []
        s.execute(
            update(JOB)
            .where(C.id.in_([r[0] for r in picked]))
            .values(
                lease_token=token,
                lease_expires_at=now + dt.timedelta(seconds=lease_seconds),
                attempts=C.attempts + 1,
                updated_at=now,
            )
        )
        s.commit()
    return sorted(
        (Claimed(int(i), int(c), int(p), token, int(a) + 1) for i, c, p, a in picked),
        key=lambda j: (j.course_id, j.person_id),
    )


def lock_claimed(session: Session, jobs: Sequence[Claimed]) -> list[Claimed]:
    """Lock the claimed jobs this worker still holds (its lease may have expired and gone
    to another worker meanwhile: those are left out), in the caller's transaction."""
    if not jobs:
        return []
    held = set(
        session.execute(
            sa_select(C.id)
            .where(C.id.in_([j.id for j in jobs]), C.lease_token == jobs[0].token)
            .order_by(C.course_id, C.person_id)
            .with_for_update()
        )
        .scalars()
        .all()
    )
    return [j for j in jobs if j.id in held]


def lock_learner(session: Session, *, course_id: int, person_id: int) -> None:
    """Lock the learner's row (created, not due, when missing) until the caller's
    transaction ends: an instructor's action on a learner's award (``flows.setup_store``)
    never runs beside a worker's evaluation of the same learner."""
    stmt = _insert(session).on_conflict_do_nothing(index_elements=[C.course_id, C.person_id])
    session.execute(stmt, [_fresh(course_id, person_id, None, "")])
    session.execute(
        sa_select(C.id).where(C.course_id == course_id, C.person_id == person_id).with_for_update()
    ).all()


def finish(
    session: Session,
    *,
    course_id: int,
    person_ids: Sequence[int],
    now: dt.datetime,
    seen: Mapping[int, str],
) -> None:
    """These learners were evaluated in the caller's transaction: nothing is due for them
    (a change committed after it marks them due again). ``seen``: the digest of what each
    evaluation read (``inputs``, taken before reading), kept for the next one."""
    ids = sorted(set(person_ids))
    session.execute(
        update(JOB)
        .where(C.course_id == course_id, C.person_id == bindparam("person"))
        .values(
            due_at=None,
            lease_token="",
            lease_expires_at=None,
            attempts=0,
            last_error="",
            evaluated_at=now,
            evaluated_inputs=bindparam("seen"),
            updated_at=now,
        ),
        [{"person": p, "seen": seen.get(p, "")} for p in ids],
    )


@dataclasses.dataclass(frozen=True)
class Inputs:
    """What an evaluation of a learner reads, as a digest, and the latest result date."""

    digest: str
    latest: dt.datetime | None  # a result dated later than an evaluation did not count in it


def inputs(
    session: Session, *, course_id: int, person_ids: Sequence[int], salt: str
) -> dict[int, Inputs]:
    """The digest of each learner's results and verification events in the course (their
    count, newest id, versions, last change and last import; ``salt``: the rules engine's
    own), in two queries. Equal digests: nothing the engine reads of the learner changed."""
    ids = list(person_ids)
    parts: dict[int, list[str]] = {p: [salt] for p in ids}
    latest: dict[int, Any] = {}
    ev = EVIDENCE.c
    for table, extra in (
        (EVIDENCE, [func.sum(ev.version), func.max(func.coalesce(ev.graded_at, ev.submitted_at))]),
        (EVENT, []),
    ):
        c = table.c
        marks = [
            func.count(c.id),
            func.max(c.id),
            func.max(c.updated_at),
            func.max(c.import_run_id),
        ]
        query = (
            sa_select(c.person_id, *marks, *extra)
            .where(c.course_id == course_id, c.person_id.in_(ids))
            .group_by(c.person_id)
        )
        for person, *values in session.execute(query):
            parts[int(person)].append(",".join(as_text(v) for v in values))
            if extra:
                latest[int(person)] = values[-1]
        for values in parts.values():
            values.append("|")  # a learner without rows of one table differs from one with
    return {
        p: Inputs(hashlib.sha256(";".join(v).encode()).hexdigest(), as_time(latest.get(p)))
        for p, v in parts.items()
    }


def last_inputs(
    session: Session, *, course_id: int, person_ids: Sequence[int]
) -> dict[int, tuple[str, dt.datetime | None]]:
    """What each learner's last evaluation read (``finish``'s ``seen``), and when it ran."""
    rows = session.execute(
        sa_select(C.person_id, C.evaluated_inputs, C.evaluated_at).where(
            C.course_id == course_id, C.person_id.in_(list(person_ids))
        )
    )
    return {int(p): (str(seen), as_time(at)) for p, seen, at in rows}


def fail(engine: Engine, jobs: Sequence[Claimed], *, error: str, now: dt.datetime) -> None:
    """Give the jobs back after a failure: due again after a backoff that grows with their
    attempts, with the error for the operator (one short transaction)."""
    with db_session(engine, write=True) as s:
        for job in jobs:
            wait = min(MAX_BACKOFF_SECONDS, 2.0 ** min(job.attempts, 12))
            s.execute(
                update(JOB)
                .where(C.id == job.id, C.lease_token == job.token)
                .values(
                    due_at=now + dt.timedelta(seconds=wait),
                    lease_token="",
                    lease_expires_at=None,
                    last_error=error[:1000],
                    updated_at=now,
                )
            )
        s.commit()
