"""Load on two web processes over one PostgreSQL: the public credential page and POST /verify.

    python -m bench.replicas [--seconds 15] [--concurrency 32] [--credentials 50]

Creates its own database on MICROCRED_BENCH_PG_URL (default the local server, user
postgres), issues credentials (one in ten revoked), starts two `microcred serve --no-worker`
on loopback, and sends requests alternately to each from one asyncio client (the client
shares the machine). Prints requests/s, p50, p99 and errors per scenario.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from service import secretbox
from service.db import migrate
from service.db.engine import make_engine
from service.db.engine import session as db_session
from service.issuer import service as issuer_service
from service.settings import Settings
from tests.issuer import samples

PG_URL = os.environ.get(
    "MICROCRED_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
BASE = "http://127.0.0.1:8000"
KEY = "bench-master-key-" + "0" * 32


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _issue(url: str, n: int) -> list[tuple[str, dict[str, Any]]]:
    settings = Settings(environment="development", database_url=url, base_url=BASE, secret_key=KEY)
    secretbox.configure(KEY.encode())
    engine = make_engine(url)
    out = []
    with db_session(engine, write=True) as s:
        for i in range(n):
            award = samples.award(learner=samples.learner(lti_user_id=f"u-{i}"))
            row = issuer_service.issue(
                s, settings=settings, award=award, now=samples.NOW, actor="bench"
            )
            if i % 10 == 9:
                issuer_service.revoke(
                    s, settings=settings, uuid=row.uuid, reason="bench", actor="b", now=samples.NOW
                )
            out.append((row.uuid, row.document))
        s.commit()
    engine.dispose()
    return out


async def _load(
    backends: list[str], make: Any, *, seconds: float, concurrency: int
) -> tuple[int, list[float], int]:
    latencies: list[float] = []
    errors = 0
    count = 0
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def one(k: int) -> None:
            nonlocal errors, count
            i = k
            while time.perf_counter() < stop:
                method, path, kw = make(i)
                started = time.perf_counter()
                try:
                    answer = await client.request(method, backends[i % 2] + path, **kw)
                    ok = answer.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - started)
                count += 1
                errors += not ok
                i += concurrency

        await asyncio.gather(*(one(k) for k in range(concurrency)))
    return count, latencies, errors


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--credentials", type=int, default=50)
    args = parser.parse_args()
    name = f"microcred_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        migrate.upgrade(url)
        creds = _issue(url, args.credentials)
        data_dir = Path(tempfile.mkdtemp(prefix="microcred-bench-"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("MICROCRED_")} | {
            "MICROCRED_ENVIRONMENT": "development",
            "MICROCRED_DATABASE_URL": url,
            "MICROCRED_DATA_DIR": str(data_dir),
            "MICROCRED_SECRET_KEY": KEY,
            "MICROCRED_BASE_URL": BASE,
            "MICROCRED_LOG_LEVEL": "WARNING",
        }
        ports = [_port(), _port()]
        backends = [f"http://127.0.0.1:{p}" for p in ports]
        for port in ports:
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        "from service.cli import main; main()",
                        "serve",
                        "--no-worker",
                        "--port",
                        str(port),
                    ],
                    env=env,
                    stdout=subprocess.DEVNULL,
                )
            )
        for b in backends:
            for _ in range(300):
                try:
                    if httpx.get(b + "/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
        scenarios = {
            "GET /credentials/{id} (HTML page)": lambda i: (
                "GET",
                f"/credentials/{creds[i % len(creds)][0]}",
                {},
            ),
            "POST /verify (signed JSON)": lambda i: (
                "POST",
                "/verify",
                {"json": creds[i % len(creds)][1]},
            ),
        }
        print(
            f"2 web processes, PostgreSQL, {args.concurrency} concurrent, "
            f"{args.seconds:.0f} s each, {len(creds)} credentials"
        )
        for label, make in scenarios.items():
            # warm each process (templates, keyring, connections)
            asyncio.run(_load(backends, make, seconds=2, concurrency=4))
            count, lat, errors = asyncio.run(
                _load(backends, make, seconds=args.seconds, concurrency=args.concurrency)
            )
            q = statistics.quantiles(lat, n=100)
            print(
                f"{label:<36} {count / args.seconds:8.1f} req/s   p50 {1000 * q[49]:7.1f} ms"
                f"   p99 {1000 * q[98]:7.1f} ms   errors {errors}/{count}"
            )
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
