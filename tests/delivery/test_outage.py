"""A 30-minute Credly outage, time compressed 100 times (one clock shared by worker and fake):
429 with Retry-After, 500s with and without the effect applied, timeouts with and without
the effect, and a badge listing that fails half the time (R2 of reference/security.md §6)."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import select

from service.db.engine import session as db_session
from service.db.models import DeliveryAttempt, OutboxMessage
from service.delivery import awards
from service.delivery.providers.credly import CredlyConnector
from service.delivery.worker import Worker
from tests.conftest import LANE
from tests.delivery.conftest import ScaledClock, credly_repo, snapshot, statuses, unfinished
from tests.delivery.fakes import FakeCredly

JOBS = 150
OUTAGE = 1800.0  # virtual seconds
MIX = {"429": 0.40, "500": 0.20, "500_applied": 0.15, "timeout_applied": 0.15, "timeout": 0.10}


@pytest.mark.slow
@pytest.mark.skipif(LANE != "sqlite", reason="time-compressed run kept to one lane for CI time")
def test_thirty_minute_outage(engine: Engine, fake: FakeCredly) -> None:
    clock = ScaledClock(factor=100)
    start = clock().timestamp() + 30
    fake.configure(
        clock=clock.as_config(),
        mix=MIX,
        list_fail=0.5,
        outage=[start, start + OUTAGE],
        hang_seconds=0.6,
        seed=11,
        ra_max=60,
    )
    credly_repo(engine, fake)
    t0 = clock()
    with db_session(engine, write=True) as s:
        for i in range(JOBS):
            # Jobs arrive over the first 35 minutes, before, during and after the outage.
            due = t0 + dt.timedelta(seconds=i * 2100 / JOBS)
            awards.enqueue_issue(s, snapshot=snapshot(i), now=due)
        s.commit()
    worker = Worker(
        engine,
        [CredlyConnector(httpx.Client(timeout=0.25), clock=clock)],
        clock=clock,
        lease_seconds=600,
        threads=8,
        batch=16,
        poll_seconds=0.01,
    )
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    try:
        deadline = t0 + dt.timedelta(seconds=2100 + OUTAGE + 3600)
        while unfinished(engine) and clock() < deadline:
            stop.wait(0.2)
    finally:
        stop.set()
        thread.join()
        worker.close()

    assert statuses(engine) == {"delivered": JOBS}  # 0 lost, 0 dead-lettered
    st = fake.state()
    live = Counter(b["issuer_earner_id"] for b in st["badges"] if b["state"] != "revoked")
    assert len(live) == JOBS and set(live.values()) == {1}  # 0 duplicates
    assert st["violations"] == []  # 0 requests before their Retry-After
    outcomes = Counter(r["outcome"] for r in st["requests"])
    assert outcomes["429"] and outcomes["500_applied"] and outcomes["timeout_applied"]

    with db_session(engine) as s:
        rows = s.exec(select(OutboxMessage)).all()
        tries = s.exec(select(DeliveryAttempt)).all()
    assert max(r.attempts for r in rows) <= 25
    failed = [a for a in tries if a.outcome != "delivered"]
    assert failed, "the outage caused no failure at all"
    for a in failed:  # every failure visible with its reason
        assert a.error_code and a.error_detail and a.request_summary
        assert a.next_due_at is not None
        # The wait never exceeds the backoff cap, except to honour Retry-After: so the
        # backlog drains within 300 s (virtual) of recovery.
        wait = (a.next_due_at - a.finished_at).total_seconds()
        assert wait <= max(300.0, a.retry_after_seconds or 0) + 1e-6
