"""SIGTERM: a worker finishes the delivery in hand before it exits; a web process answers
the request in flight before it exits (docs/operations.md "Upgrades": rolling restarts)."""

from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import select

from service.db.engine import session as db_session
from service.db.models import DeliveryAttempt, OutboxMessage
from service.delivery import awards, repositories
from service.settings import Settings
from tests.delivery.conftest import snapshot

pytestmark = pytest.mark.db
DEADLINE = 60.0  # generous: only an unbounded wait fails it


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MICROCRED_")}
    return env | {
        "MICROCRED_ENVIRONMENT": "test",
        "MICROCRED_DATABASE_URL": settings.database_url,
        "MICROCRED_DATA_DIR": str(settings.data_dir),
        "MICROCRED_SECRET_KEY": settings.secret_key.get_secret_value(),  # type: ignore[union-attr]
        "MICROCRED_BASE_URL": "https://tool.test",
        "MICROCRED_WORKER_POLL_SECONDS": "0.2",
    }


def _microcred(*args: str) -> list[str]:
    return [sys.executable, "-c", "from service.cli import main; main()", *args]


class _SlowReceiver:
    """A webhook receiver on loopback that holds each request until released."""

    def __init__(self) -> None:
        self.received = threading.Event()
        self.release = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.received.set()
                outer.release.wait(DEADLINE)
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[_SlowReceiver]:
    r = _SlowReceiver()
    yield r
    r.close()


def test_sigterm_lets_a_worker_finish_the_delivery_in_hand(
    engine: Engine, settings: Settings, receiver: _SlowReceiver
) -> None:
    with db_session(engine, write=True) as s:
        repositories.create(s, kind="webhook", name="HR", secret="s", config={"url": receiver.url})
        awards.enqueue_issue(s, snapshot=snapshot(1))
        s.commit()
    proc = subprocess.Popen(
        _microcred("worker", "--threads", "1"),
        env=_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert receiver.received.wait(DEADLINE), "the worker never sent the delivery"
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)  # the worker has seen the signal; the receiver still holds the request
        assert proc.poll() is None, "the worker exited with a delivery in hand"
        receiver.release.set()
        out, _ = proc.communicate(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    with db_session(engine) as s:
        row = s.exec(select(OutboxMessage)).one()
        attempts = s.exec(select(DeliveryAttempt.outcome)).all()
    assert row.status == "delivered" and row.lease_token is None
    assert attempts == ["delivered"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_sigterm_lets_a_web_process_answer_the_request_in_flight(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        _microcred("serve", "--no-worker", "--port", str(port)),
        env=_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + DEADLINE
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "serve did not start"
            time.sleep(0.2)
        body = b'{"not": "a credential"}'
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as conn:
            # The request is in flight: its head sent and read (the server asks for the body
            # with 100 Continue once the app waits for it), its body not yet sent. A fixed
            # sleep instead could let SIGTERM overtake the head on a slow host, and uvicorn
            # closes a connection whose request it has not begun.
            conn.sendall(
                b"POST /verify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n".encode()
            )
            interim = b""
            while b"\r\n\r\n" not in interim and (chunk := conn.recv(1)):
                interim += chunk
            assert interim.startswith(b"HTTP/1.1 100 "), interim
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            conn.sendall(body)
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                answer += chunk
        out, _ = proc.communicate(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert b'"valid":false' in answer.replace(b" ", b"")
    # uvicorn finishes, then exits by the signal it caught (as a process manager expects)
    assert proc.returncode in (0, -signal.SIGTERM), out
    assert "Finished server process" in out
    # no new connection is accepted once it stopped
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/healthz")
