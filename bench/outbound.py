"""Dynamic registration against hostile platforms (issue #14, H2), one process:

    python bench/outbound.py

Runs the app under uvicorn on 127.0.0.1 (test environment, so loopback is allowed, and the
registration rate limit off), a server that answers 200 MB, and a server that drips a byte
every 5 s. Prints: a registration pointed at the 200 MB answer (time, RSS of the process),
then GET /issuer while 45 registrations wait on the dripping server, and how long those 45
took (the outbound deadline, 30 s, cuts them).
"""

from __future__ import annotations

import asyncio
import resource
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import uvicorn

from service.app import create_app
from service.db import migrate
from service.db.engine import make_engine
from service.settings import Settings


def _serve(sock: socket.socket, answer: object) -> None:
    def loop() -> None:
        while True:
            conn, _ = sock.accept()
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()


def _drip(conn: socket.socket) -> None:
    try:
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n")
        for _ in range(20):
            conn.sendall(b"x")
            time.sleep(5)
    except OSError:
        pass
    finally:
        conn.close()


def _big(conn: socket.socket) -> None:
    try:
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 209715200\r\n\r\n")
        for _ in range(3200):
            conn.sendall(b"x" * 65536)
    except OSError:
        pass
    finally:
        conn.close()


def _rss_mb() -> int:
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) // 1024


def _listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(100)
    return sock


async def _run(base: str, big_url: str, drip_url: str) -> None:
    async with httpx.AsyncClient(timeout=120) as c:
        await c.get(base + "/issuer")  # warm up
        print("RSS before:", _rss_mb(), "MB")
        t = time.monotonic()
        r = await c.get(base + "/lti/register", params={"openid_configuration": big_url})
        took = time.monotonic() - t
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        print(
            f"200 MB answer: HTTP {r.status_code} in {took:.2f} s; "
            f"RSS {_rss_mb()} MB, peak {peak} MB"
        )
        t = time.monotonic()
        regs = [
            asyncio.create_task(
                c.get(base + "/lti/register", params={"openid_configuration": drip_url})
            )
            for _ in range(45)
        ]
        for at in (1.0, 10.0):
            await asyncio.sleep(at - (time.monotonic() - t))
            t1 = time.monotonic()
            r = await c.get(base + "/issuer")
            print(
                f"GET /issuer {at:.0f} s into 45 dripping registrations: HTTP {r.status_code} "
                f"in {(time.monotonic() - t1) * 1000:.0f} ms"
            )
        done = await asyncio.gather(*regs)
        print(
            f"45 registrations ended after {time.monotonic() - t:.1f} s, statuses "
            f"{sorted({x.status_code for x in done})}"
        )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            environment="test",
            data_dir=Path(tmp),
            base_url="https://tool.test",
            secret_key="x" * 48,
            dynamic_registration_rate_limit_per_minute=0,
            dynamic_registration_max_pending=100,
        )
        migrate.upgrade(settings.resolved_database_url)
        engine = make_engine(settings.resolved_database_url)
        big, drip = _listener(), _listener()
        _serve(big, _big)
        _serve(drip, _drip)
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings, engine=engine), port=0, log_level="warning")
        )
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        asyncio.run(
            _run(
                f"http://127.0.0.1:{port}",
                f"http://127.0.0.1:{big.getsockname()[1]}/c",
                f"http://127.0.0.1:{drip.getsockname()[1]}/c",
            )
        )
        server.should_exit = True


if __name__ == "__main__":
    main()
