"""Deliveries per second: drain N outbox rows into the fake Credly (50 ms per request).

    python bench/deliver.py --db sqlite --workers 1
    python bench/deliver.py --db postgresql --workers 4

Each worker is a separate process running the real `Worker` (claim batch → thread pool of
Credly calls → one short transaction per row). Rows are enqueued first with a due time a
few seconds ahead, so worker start-up is not timed; the clock runs from that due time until
no row is pending. Prints the figures and checks that each row made exactly one badge.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from service import secretbox
from service.db import migrate
from service.db.engine import make_engine
from service.db.engine import session as db_session
from service.db.types import utcnow
from service.delivery import awards, repositories
from tests import factories
from tests.delivery.conftest import TEMPLATES, snapshot, statuses, unfinished
from tests.delivery.fakes import FakeCredly

KEY = b"bench-master-key-" + b"0" * 32
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), to see where the time goes."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_main(url: str, threads: int, batch: int) -> None:
    import httpx

    from service.delivery.providers.credly import CredlyConnector
    from service.delivery.worker import Worker

    secretbox.configure(KEY)
    engine = make_engine(url)
    Worker(
        engine,
        [CredlyConnector(httpx.Client(timeout=10), clock=utcnow)],
        threads=threads,
        batch=batch,
        poll_seconds=0.05,
    ).run(threading.Event())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--latency-ms", type=int, default=50)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    secretbox.configure(KEY)

    tmp = tempfile.TemporaryDirectory()
    admin = None
    if args.db == "sqlite":
        url = f"sqlite:///{tmp.name}/bench.db"
    else:
        name = f"microcred_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)
    fake = FakeCredly()
    procs = []
    try:
        migrate.upgrade(url)
        engine = make_engine(url)
        fake.configure(
            token="test-org-token",
            templates={t: {"allow_duplicates": True} for t in TEMPLATES.values()},
            latency_ms=args.latency_ms,
        )
        t_enqueue = time.monotonic()
        with db_session(engine, write=True) as s:
            factories.competency(s, "py")  # template-map keys name catalogue competencies
            repositories.create(
                s,
                kind="credly",
                name="bench",
                secret="test-org-token",
                config={
                    "organization_id": "org",
                    "base_url": fake.base_url,
                    "templates": TEMPLATES,
                },
            )
            s.commit()
        due = utcnow() + dt.timedelta(seconds=3600)  # set below, once enqueued
        with db_session(engine, write=True) as s:
            for i in range(args.rows):
                awards.enqueue_issue(s, snapshot=snapshot(i), now=due)
            s.commit()
        enqueue_s = time.monotonic() - t_enqueue
        ctx = multiprocessing.get_context("spawn")
        for _ in range(args.workers):
            p = ctx.Process(target=worker_main, args=(url, args.threads, args.batch))
            p.start()
            procs.append(p)
        start_at = utcnow() + dt.timedelta(seconds=4)
        with engine.begin() as c:
            c.execute(
                text("UPDATE outbox_message SET due_at = :d"),
                {"d": start_at.replace(tzinfo=None) if args.db == "sqlite" else start_at},
            )
        while utcnow() < start_at:
            time.sleep(0.01)
        pids = [fake.proc.pid] + [p.pid for p in procs]
        cpu0 = [cpu_seconds(pid) for pid in pids]
        t0 = time.monotonic()
        while unfinished(engine):
            time.sleep(0.05)
        seconds = time.monotonic() - t0
        cpu = [cpu_seconds(pid) - c for pid, c in zip(pids, cpu0, strict=True)]
        load = os.getloadavg()[0]
        st = fake.state()
        live = Counter(b["issuer_earner_id"] for b in st["badges"])
        print(
            f"db={args.db} workers={args.workers} threads/worker={args.threads} "
            f"rows={args.rows} latency={args.latency_ms}ms"
        )
        print(f"  enqueue: {args.rows / enqueue_s:,.0f} rows/s (one transaction)")
        print(f"  drain:   {seconds:.1f} s -> {args.rows / seconds:,.0f} deliveries/s")
        print(
            f"  cpu:     fake Credly {cpu[0] / args.rows * 1000:.2f} ms/delivery, workers "
            f"{sum(cpu[1:]) / args.rows * 1000:.2f} ms/delivery; load average {load:.1f} "
            f"on {os.cpu_count()} cores"
        )
        print(
            f"  outcome: {statuses(engine)}; badges={len(live)}; "
            f"duplicates={sum(c - 1 for c in live.values())}"
        )
        engine.dispose()
    finally:
        for p in procs:
            p.kill()
            p.join()
        fake.stop()
        if admin is not None:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        tmp.cleanup()


if __name__ == "__main__":
    main()
