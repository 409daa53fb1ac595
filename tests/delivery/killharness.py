"""Harness C of reference/security.md §3.7: worker processes SIGKILLed at random points.

The parent spawns W worker processes (forkserver, so a respawn costs milliseconds), and
after every U(0, 2k) finished rows SIGKILLs a random one and starts another, until no row
is unfinished. Afterwards the fake Credly is asked what it holds: per job,
no live badge means lost, more than one means duplicate.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import random
import threading
import time
from collections import Counter
from typing import Any

from sqlalchemy import Engine, func, select

from service.db.engine import session as db_session
from service.db.models import DeliveryAttempt

_CTX: Any = None


def _context() -> Any:
    global _CTX
    if _CTX is None:
        _CTX = multiprocessing.get_context("forkserver")
        _CTX.set_forkserver_preload(["service.delivery.worker", "tests.delivery.killharness"])
    return _CTX


def worker_main(
    database_url: str,
    master_key: bytes,
    name: str,
    lease_seconds: float,
    threads: int,
    batch: int,
    timeout: float,
) -> None:
    """A worker process: what `microcred worker` runs, with a short lease."""
    import httpx

    from service import secretbox
    from service.db.engine import make_engine
    from service.delivery.providers.credly import CredlyConnector
    from service.delivery.worker import Worker

    secretbox.configure(master_key)
    engine = make_engine(database_url)
    clock_connector = CredlyConnector(httpx.Client(timeout=timeout), clock=_utcnow)
    Worker(
        engine,
        [clock_connector],
        name=name,
        lease_seconds=lease_seconds,
        threads=threads,
        batch=batch,
        poll_seconds=0.02,
    ).run(threading.Event())


def _utcnow() -> Any:
    from service.db.types import utcnow

    return utcnow()


@dataclasses.dataclass
class Report:
    jobs: int
    kills: int
    lost_leases: int
    lost: int
    duplicates: int
    violations: int
    seconds: float
    statuses: dict[str, int]


def run(
    engine: Engine,
    database_url: str,
    master_key: bytes,
    fake: Any,
    *,
    jobs: int,
    workers: int,
    kill_every_rows: float,
    min_kills: int = 100,
    seed: int = 1,
    lease_seconds: float = 3.0,
    threads: int = 4,
    batch: int = 8,
    stall_s: float = 120.0,
    unfinished: Any,
    statuses: Any,
) -> Report:
    ctx = _context()
    rng = random.Random(seed)
    n = 0

    def spawn() -> Any:
        nonlocal n
        n += 1
        p = ctx.Process(
            target=worker_main,
            args=(database_url, master_key, f"w{n}", lease_seconds, threads, batch, 0.5),
            daemon=True,
        )
        p.start()
        return p

    t0 = time.monotonic()
    procs = [spawn() for _ in range(workers)]
    kills = 0

    # Kills are paced by progress, not by the clock, so fast and slow machines see similar
    # numbers: after every U(0, 2k) finished rows (k shrinks while fewer than ``min_kills``
    # have happened, so they spread over the whole run), plus a random delay so the kill
    # lands anywhere in a worker's claim / send / record cycle. While short of ``min_kills``
    # a worker is also killed every U(0, 0.2) s without progress.
    def interval(left: int) -> float:
        k = kill_every_rows
        if kills < min_kills:
            k = min(k, left / (1.5 * (min_kills - kills)))
        return rng.uniform(0, 2 * k)

    next_kill = interval(jobs)
    last_kill = time.monotonic()
    # The hang guard is on progress, not on the whole run: a loaded host drains slowly
    # (1,727 of 2,000 in 300 s at load 15) but a stuck queue finishes nothing at all.
    last_left, progressed = jobs, time.monotonic()
    try:
        while (left := unfinished(engine)) > 0:
            if left < last_left:
                last_left, progressed = left, time.monotonic()
            elif time.monotonic() - progressed > stall_s:
                raise AssertionError(f"no row finished in {stall_s}s: {statuses(engine)}")
            stalled = kills < min_kills and time.monotonic() - last_kill > rng.uniform(0, 0.2)
            if jobs - left < next_kill and not stalled:
                time.sleep(0.01)
                continue
            time.sleep(rng.uniform(0, 0.02))
            i = rng.randrange(len(procs))
            procs[i].kill()  # SIGKILL
            procs[i].join()
            kills += 1
            last_kill = time.monotonic()
            procs[i] = spawn()
            next_kill = (jobs - left) + interval(left)
    finally:
        for p in procs:
            p.kill()
            p.join()
    seconds = time.monotonic() - t0
    st = fake.state()
    live = Counter(b["issuer_earner_id"] for b in st["badges"] if b["state"] != "revoked")
    with db_session(engine) as s:
        lost_leases = int(
            s.execute(
                select(func.count())
                .select_from(DeliveryAttempt)
                .where(DeliveryAttempt.__table__.c.error_code == "lease_expired")  # type: ignore[attr-defined]
            ).scalar_one()
        )
    expected = {f"00000000-0000-4000-8000-{i:012d}:beginning" for i in range(jobs)}
    return Report(
        jobs=jobs,
        kills=kills,
        lost_leases=lost_leases,
        lost=sum(1 for e in expected if live[e] == 0),
        duplicates=sum(c - 1 for c in live.values() if c > 1),
        violations=len(st["violations"]),
        seconds=round(seconds, 1),
        statuses=statuses(engine),
    )
