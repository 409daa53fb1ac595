"""The delivery worker: a thin loop around ``outbox.claim`` → connector → ``outbox.finish``.

One worker process claims a batch of due rows and works on them with a small thread pool
(the HTTP calls are I/O bound: with 50 ms of repository latency one thread manages about
20 deliveries a second, so a few threads per worker keep the database, not the network,
the limit). Each row is finished in its own short transaction, so a crash loses at most the
leases of the batch, which expire and are claimed again (and checked first).
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Engine, update

from service.db.engine import session as db_session
from service.db.models import DeliveryRepository
from service.db.types import utcnow
from service.delivery import outbox, repositories
from service.delivery.ags import AgsConnector, ScorePoster
from service.delivery.badgr import BadgrConnector, TokenSet
from service.delivery.credly import CredlyConnector
from service.delivery.errors import ConnectorError, RetryableError
from service.delivery.types import Connector
from service.delivery.webhook import WebhookConnector

__all__ = ["Worker", "build_connectors"]

log = logging.getLogger(__name__)
Clock = Callable[[], dt.datetime]


def build_connectors(
    engine: Engine, *, clock: Clock = utcnow, ags_poster: ScorePoster | None = None
) -> list[Connector]:
    """The standard connectors; AGS only when the LTI poster is wired in (service.flows)."""

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

    connectors: list[Connector] = [
        CredlyConnector(clock=clock),
        BadgrConnector(clock=clock, save_tokens=save_tokens),
        WebhookConnector(clock=clock),
    ]
    if ags_poster is not None:
        connectors.append(AgsConnector(ags_poster))
    return connectors


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
        batch: int = 16,
        threads: int = 8,
        poll_seconds: float = 1.0,
        rng: random.Random | None = None,
    ) -> None:
        self.engine = engine
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.clock = clock
        self.lease_seconds = lease_seconds
        self.batch = batch
        self.poll_seconds = poll_seconds
        self.rng = rng or random.Random()
        self._connectors = list(connectors)
        self._by_kind: dict[str, Connector] = {}
        for c in connectors:
            for k in c.kinds:
                self._by_kind[k] = c
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, threads), thread_name_prefix="delivery"
        )
        self._last_warning = 0.0

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(self._by_kind)

    def close(self) -> None:
        """Stop the thread pool and close the connectors' HTTP clients."""
        self._pool.shutdown(wait=True)
        for c in self._connectors:
            closer = getattr(c, "close", None)
            if closer is not None:
                closer()

    def run_once(self) -> int:
        """Claim one batch and deliver it; returns how many rows were worked on."""
        jobs = outbox.claim(
            self.engine,
            kinds=self._by_kind,
            now=self.clock(),
            limit=self.batch,
            lease_seconds=self.lease_seconds,
            worker=self.name,
        )
        if not jobs:
            return 0
        with db_session(self.engine) as s:
            repos = repositories.snapshots(
                s, (j.repository_id for j in jobs if j.repository_id is not None)
            )
        futures = [self._pool.submit(self._deliver, j, repos) for j in jobs]
        for f in futures:
            f.result()
        return len(jobs)

    def _deliver(self, job: outbox.Claimed, repos: dict[int, Any]) -> None:
        record = outbox.AttemptRecord(started_at=self.clock())
        repo = repos.get(job.repository_id) if job.repository_id is not None else None
        result: dict[str, Any] | None = None
        error: ConnectorError | None = None
        try:
            result = self._by_kind[job.kind].deliver(job, repo, record)
        except ConnectorError as exc:
            error = exc
        except Exception as exc:  # a bug or an unexpected answer: retry, assume it went out
            log.exception("delivery of %s (%s) failed unexpectedly", job.uuid, job.kind)
            error = RetryableError(f"unexpected error: {type(exc).__name__}: {exc}", uncertain=True)
        if error is not None and job.uncertain and not record.checked:
            # The check before sending did not complete: what happened before is still unknown.
            error.uncertain = True
        outcome = outbox.finish(
            self.engine,
            job,
            record=record,
            now=self.clock(),
            result=result,
            error=error,
            worker=self.name,
            rng=self.rng,
        )
        if error is not None:
            log.warning("delivery %s %s (%s): %s", job.uuid, outcome, job.kind, error.detail)

    def _warn_tokens(self) -> None:
        if time.monotonic() - self._last_warning < 3600 and self._last_warning:
            return
        self._last_warning = time.monotonic()
        with db_session(self.engine) as s:
            for w in repositories.token_warnings(s, now=self.clock()):
                log.warning("%s", w.message)

    def run(self, stop: threading.Event, *, idle_exit: bool = False) -> None:
        """Loop until ``stop`` is set (or, with ``idle_exit``, until nothing is due)."""
        log.info("delivery worker %s started (kinds: %s)", self.name, ", ".join(sorted(self.kinds)))
        while not stop.is_set():
            try:
                self._warn_tokens()
                done = self.run_once()
            except Exception:  # the database went away for a moment: wait and go on
                log.exception("delivery worker iteration failed")
                done = 0
            if done == 0:
                if idle_exit:
                    return
                stop.wait(self.poll_seconds)
