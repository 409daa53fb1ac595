"""Connection tests of repositories: asked for in a request, run by a worker.

``request`` queues a test (the administrator's *Test connection* button); a worker's
``run_due`` claims it, calls the repository with no transaction open, and stores what it
found; the page shows ``latest`` until it is done. ``check`` is the test itself, also run
directly by ``microcred repository test``. A test changes nothing at the repository.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Literal

from sqlalchemy import Engine, update
from sqlmodel import Session, col, select

from service.db.engine import session as db_session
from service.db.models import RepositoryCheck
from service.db.types import utcnow
from service.delivery import providers, repositories
from service.delivery.errors import ConnectorError
from service.delivery.types import Clock, RepositoryConfig

__all__ = ["STALE_SECONDS", "Result", "check", "latest", "request", "run_due"]

# A test still running after this long was dropped by its worker: it is claimed again.
STALE_SECONDS = 120


@dataclasses.dataclass(frozen=True)
class Result:
    """What a test found. ``outcome``: ``connected`` (the repository answered and accepted
    the token), ``failed`` (it did not: ``summary`` says why) or ``untestable`` (no test
    for this kind of repository). ``problems``: one line per template-map entry that names
    no active template."""

    outcome: Literal["connected", "failed", "untestable"]
    summary: str
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.outcome == "connected" and not self.problems


def check(snapshot: RepositoryConfig, *, clock: Clock = utcnow) -> Result:
    """Test one repository now through its provider (blocking HTTP: never inside a request
    or a transaction)."""
    try:
        tested = providers.get(snapshot.kind).test_connection(snapshot, clock)
    except ConnectorError as exc:
        return Result("failed", exc.detail)
    if tested is None:
        return Result("untestable", f"no connection test for {snapshot.kind} repositories yet")
    summary, problems = tested
    return Result("connected", summary, tuple(problems))


def request(
    session: Session, *, repository_id: int, actor: str, now: dt.datetime
) -> RepositoryCheck:
    """Queue a test of the repository (one waiting test at a time: asking again while one
    waits returns it). The caller commits."""
    waiting = session.exec(
        select(RepositoryCheck).where(
            RepositoryCheck.repository_id == repository_id,
            col(RepositoryCheck.status).in_(("queued", "running")),
        )
    ).first()
    if waiting is not None:
        return waiting
    row = RepositoryCheck(repository_id=repository_id, requested_by=actor, requested_at=now)
    session.add(row)
    session.flush()
    return row


def latest(session: Session, repository_ids: list[int]) -> dict[int, RepositoryCheck]:
    """The newest test of each repository that has one."""
    if not repository_ids:
        return {}
    rows = session.exec(
        select(RepositoryCheck)
        .where(col(RepositoryCheck.repository_id).in_(repository_ids))
        .order_by(col(RepositoryCheck.id).desc())
    ).all()
    out: dict[int, RepositoryCheck] = {}
    for row in rows:
        out.setdefault(row.repository_id, row)
    return out


def _claim(engine: Engine, *, now: dt.datetime, worker: str) -> tuple[int, int] | None:
    stale = now - dt.timedelta(seconds=STALE_SECONDS)
    with db_session(engine, write=True) as s:
        found = s.exec(
            select(RepositoryCheck.id, RepositoryCheck.repository_id)
            .where(
                (col(RepositoryCheck.status) == "queued")
                | (
                    (col(RepositoryCheck.status) == "running")
                    & (col(RepositoryCheck.started_at) < stale)
                )
            )
            .order_by(col(RepositoryCheck.id))
        ).first()
        if found is None:
            return None
        check_id, repository_id = found
        # Only one worker wins the row: the update names the state it was read in.
        taken = s.execute(
            update(RepositoryCheck)
            .where(
                col(RepositoryCheck.id) == check_id,
                (col(RepositoryCheck.status) == "queued")
                | (col(RepositoryCheck.started_at) < stale),
            )
            .values(status="running", started_at=now, worker=worker)
        )
        s.commit()
    return (check_id or 0, repository_id) if taken.rowcount == 1 else None  # type: ignore[attr-defined]


def run_due(engine: Engine, *, worker: str, clock: Clock = utcnow) -> int:
    """Run the oldest waiting test, if any; returns how many ran (0 or 1)."""
    claimed = _claim(engine, now=clock(), worker=worker)
    if claimed is None:
        return 0
    check_id, repository_id = claimed
    with db_session(engine) as s:
        snapshot = repositories.snapshots(s, [repository_id]).get(repository_id)
    # no transaction is open from here to the end of the test
    if snapshot is None:
        result = Result("failed", "the repository no longer exists")
    else:
        result = check(snapshot, clock=clock)
    with db_session(engine, write=True) as s:
        s.execute(
            update(RepositoryCheck)
            .where(col(RepositoryCheck.id) == check_id)
            .values(
                status="done",
                finished_at=clock(),
                ok=result.ok,
                summary=result.summary,
                problems=list(result.problems),
            )
        )
        s.commit()
    return 1
