"""The delivery worker: a thin loop around ``outbox.claim`` → connector →
``outbox.finish_many``.

One worker process keeps a small thread pool busy (the HTTP calls are I/O bound;
bench/README.md, Deliver). As threads free up it claims more rows (one transaction per
group of claims) and records finished attempts in groups (one transaction per group), so
the database work per delivery stays small. A crash loses at most the leases it holds;
they expire, the rows are claimed again and, being uncertain, checked before anything is
resent.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, update

from service import httpretry, requestlog
from service.db.engine import session as db_session
from service.db.models import DeliveryRepository
from service.db.types import utcnow
from service.delivery import outbox, providers, repositories
from service.delivery.errors import ConnectorError, RateLimited, RetryableError
from service.delivery.types import (
    Clock,
    Connector,
    ConnectorDeps,
    RepositoryConfig,
    ScorePoster,
    TokenSet,
)

__all__ = ["Job", "Worker", "build_connectors"]

log = logging.getLogger(__name__)
REPO_TTL_SECONDS = 5.0


@dataclass(frozen=True)
class Job:
    """A second kind of work for the worker: ``run()`` does what is due and returns how
    much it did (0: nothing due, wait ``poll_seconds`` before asking again)."""

    name: str
    run: Callable[[], int]
    poll_seconds: float = 1.0
    close: Callable[[], None] | None = None  # called by ``Worker.close``


def build_connectors(
    engine: Engine, *, clock: Clock = utcnow, ags_poster: ScorePoster | None = None
) -> list[Connector]:
    """Every provider's connector; AGS only when the LTI poster is wired in (service.flows)."""

    def save_tokens(repository_id: int, tok: TokenSet) -> None:
        with db_session(engine, write=True) as s:
            s.execute(
                update(DeliveryRepository)
                .where(repositories.COL.id == repository_id)
                .values(
                    access_token=tok.access,
                    refresh_token=tok.refresh,
                    access_token_expires_at=tok.expires_at,
                )
            )
            s.commit()

    deps = ConnectorDeps(clock=clock, save_tokens=save_tokens, ags_poster=ags_poster)
    built = (p.connector(deps) for p in providers.registered())
    return [c for c in built if c is not None]


class Worker:
    """Claims and delivers outbox rows until stopped."""

    def __init__(
        self,
        engine: Engine,
        connectors: Sequence[Connector],
        *,
        name: str | None = None,
        clock: Clock = utcnow,
        lease_seconds: float = 60.0,
        lease_margin: float | None = None,
        batch: int = 16,
        threads: int = 8,
        poll_seconds: float = 1.0,
        jobs: Sequence[Job] = (),
    ) -> None:
        self.engine = engine
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.clock = clock
        self.lease_seconds = lease_seconds
        # A request must start early enough to finish (timeout) before the lease ends.
        self.lease_margin = lease_margin if lease_margin is not None else lease_seconds / 2
        self.batch = batch
        self.poll_seconds = poll_seconds
        self._connectors = list(connectors)
        # Other kinds of work (the scheduled LMS sync, the evaluation queue), each looping in
        # a thread of its own so a slow LMS or a large course never holds up deliveries;
        # wired by the layer above (service.cli).
        self.jobs = list(jobs)
        self._by_kind: dict[str, Connector] = {}
        for c in connectors:
            for k in c.kinds:
                self._by_kind[k] = c
        self.threads = max(1, threads)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, threads), thread_name_prefix="delivery"
        )
        self._last_warning = 0.0
        self._repos: dict[int, RepositoryConfig] = {}
        self._repos_at = 0.0
        # Rate-limit pauses seen by this worker's threads, effective at once (the database
        # copy, written with the attempt, stops other workers' claims).
        self._pauses: dict[tuple[int, str], dt.datetime] = {}  # (repository, scope)
        self._pause_lock = threading.Lock()
        # SQLite checkpoints and deletes the WAL when its last connection closes (the engine
        # opens one per session), costing an fsync per transaction; one idle connection held
        # for the worker's lifetime avoids that. It holds no lock.
        self._keeper = engine.connect() if engine.dialect.name == "sqlite" else None

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(self._by_kind)

    def close(self) -> None:
        """Stop the thread pool and close the connectors' HTTP clients."""
        self._pool.shutdown(wait=True)
        if self._keeper is not None:
            self._keeper.close()
            self._keeper = None
        for c in self._connectors:
            closer = getattr(c, "close", None)
            if closer is not None:
                closer()
        for job in self.jobs:
            if job.close is not None:
                job.close()

    def run_once(self) -> int:
        """Claim one batch and deliver it; returns how many rows were worked on."""
        jobs = self._claim(self.batch)
        if not jobs:
            return 0
        repos = self._repositories(jobs)
        futures = [self._pool.submit(self._deliver, j, repos) for j in jobs]
        self._record([f.result() for f in futures])
        return len(jobs)

    def _deliver(self, job: outbox.Claimed, repos: dict[int, Any]) -> outbox.Outcome:
        # logged under the id of the request that caused the row
        with requestlog.bound(job.request_id):
            return self._deliver_row(job, repos)

    def _deliver_row(self, job: outbox.Claimed, repos: dict[int, Any]) -> outbox.Outcome:
        record = outbox.AttemptRecord(
            started_at=self.clock(),
            send_deadline=job.lease_expires_at - dt.timedelta(seconds=self.lease_margin),
        )
        repo = repos.get(job.repository_id) if job.repository_id is not None else None
        result: dict[str, Any] | None = None
        error: ConnectorError | None = self._paused(job, record)
        try:
            if error is None:
                result = self._by_kind[job.kind].deliver(job, repo, record)
        except ConnectorError as exc:
            error = exc
        except Exception as exc:  # a bug or an unexpected answer: retry, assume it went out
            log.exception("delivery of %s (%s) failed unexpectedly", job.uuid, job.kind)
            error = RetryableError(f"unexpected error: {type(exc).__name__}: {exc}", uncertain=True)
        if isinstance(error, RateLimited) and job.repository_id is not None:
            wait = error.retry_after if error.retry_after is not None else httpretry.BASE_SECONDS
            until = self.clock() + dt.timedelta(seconds=wait)
            key = (job.repository_id, job.pause_scope)
            with self._pause_lock:
                current = self._pauses.get(key)
                if current is None or until > current:
                    self._pauses[key] = until
        if error is not None and job.uncertain and not record.checked:
            # The check before sending did not complete: what happened before is still unknown.
            error.uncertain = True
        return outbox.Outcome(job, record, self.clock(), result, error)

    def _paused(self, job: outbox.Claimed, record: outbox.AttemptRecord) -> RateLimited | None:
        """A rate limit this worker met on the row's repository, if it still holds."""
        if job.repository_id is None:
            return None
        now = self.clock()
        with self._pause_lock:
            # A pause of the whole repository, or of the part the row goes to.
            found = [
                t
                for key in {(job.repository_id, ""), (job.repository_id, job.pause_scope)}
                if (t := self._pauses.get(key)) is not None
            ]
        until = max(found) if found else None
        if until is None or until <= now:
            return None
        record.note(f"not sent: the repository is paused by a rate limit until {until:%H:%M:%S}")
        return RateLimited(
            f"not sent: another delivery to this repository was rate limited; deliveries "
            f"to it are paused until {until:%Y-%m-%d %H:%M:%S} UTC",
            retry_after=(until - now).total_seconds(),
        )

    def _record(self, outcomes: list[outbox.Outcome]) -> None:
        if not outcomes:
            return
        results = outbox.finish_many(self.engine, outcomes, worker=self.name)
        for o, outcome in zip(outcomes, results, strict=True):
            if o.error is not None:
                with requestlog.bound(o.job.request_id):
                    log.warning(
                        "delivery %s %s (%s): %s", o.job.uuid, outcome, o.job.kind, o.error.detail
                    )

    def _warn_tokens(self) -> None:
        if time.monotonic() - self._last_warning < 3600 and self._last_warning:
            return
        self._last_warning = time.monotonic()
        with db_session(self.engine) as s:
            for w in repositories.token_warnings(s, now=self.clock()):
                log.warning("%s", w.message)

    def run(self, stop: threading.Event, *, idle_exit: bool = False) -> None:
        """Loop until ``stop`` is set (or, with ``idle_exit``, until nothing is due).

        The thread pool is kept full: as soon as one delivery finishes, more rows are
        claimed, so one slow repository answer never holds up a whole batch.
        """
        log.info("delivery worker %s started (kinds: %s)", self.name, ", ".join(sorted(self.kinds)))
        if idle_exit:  # each job until nothing is due (a pull queues evaluations: in order)
            for job in self.jobs:
                while self._job_once(job):
                    pass
        threads = [
            threading.Thread(
                target=self._job_loop, args=(job, stop), name=f"job-{job.name}", daemon=True
            )
            for job in ([] if idle_exit else self.jobs)
        ]
        for t in threads:
            t.start()
        try:
            self._deliver_loop(stop, idle_exit=idle_exit)
        finally:
            for t in threads:
                t.join(timeout=60)

    def _job_once(self, job: Job) -> int:
        try:
            return job.run()
        except Exception:  # the database or the job failed for a moment: wait, go on
            log.exception("worker job %s failed", job.name)
            return 0

    def _job_loop(self, job: Job, stop: threading.Event) -> None:
        while not stop.is_set():
            if self._job_once(job) == 0:
                stop.wait(job.poll_seconds)

    def _deliver_loop(self, stop: threading.Event, *, idle_exit: bool) -> None:
        inflight: set[concurrent.futures.Future[outbox.Outcome]] = set()
        try:
            while not stop.is_set():
                claimed = 0
                free = self.threads - len(inflight)
                # Claim in groups (a quarter of the pool at least) rather than one row per
                # finished delivery: each claim is a transaction.
                if free >= max(1, self.threads // 4) or not inflight:
                    try:
                        self._warn_tokens()
                        jobs = self._claim(min(free, self.batch))
                        repos = self._repositories(jobs) if jobs else {}
                    except Exception:  # the database went away for a moment: wait, go on
                        # (rows claimed just now wait for their lease to expire)
                        log.exception("delivery worker could not claim rows")
                        jobs = []
                    claimed = len(jobs)
                    inflight |= {self._pool.submit(self._deliver, j, repos) for j in jobs}
                if not inflight:
                    if idle_exit:
                        return
                    stop.wait(self.poll_seconds)
                    continue
                if claimed and len(inflight) < self.threads:
                    continue  # more may be due right away
                done, inflight = concurrent.futures.wait(
                    inflight,
                    timeout=self.poll_seconds,
                    return_when=concurrent.futures.FIRST_COMPLETED,
                )
                try:
                    self._record([f.result() for f in done])
                except Exception:  # leases expire; the rows are retried (and checked first)
                    log.exception("delivery worker could not record outcomes")
        finally:
            done, _ = concurrent.futures.wait(inflight)
            self._record([f.result() for f in done])

    def _repositories(self, jobs: list[outbox.Claimed]) -> dict[int, RepositoryConfig]:
        """Repository snapshots, re-read at most every few seconds (configuration and
        tokens change rarely; a changed token is picked up within ``REPO_TTL_SECONDS``)."""
        wanted = {j.repository_id for j in jobs if j.repository_id is not None}
        now = time.monotonic()
        if now - self._repos_at > REPO_TTL_SECONDS or not wanted <= self._repos.keys():
            with db_session(self.engine) as s:
                self._repos = repositories.snapshots(s, wanted | self._repos.keys())
            self._repos_at = now
        return self._repos

    def _claim(self, limit: int) -> list[outbox.Claimed]:
        return outbox.claim(
            self.engine,
            kinds=self._by_kind,
            now=self.clock(),
            limit=limit,
            lease_seconds=self.lease_seconds,
            worker=self.name,
        )
