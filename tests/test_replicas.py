"""Many processes, one database: two `microcred serve --no-worker` and two `microcred worker`
on one PostgreSQL, with every request of a learner's flow handed to the other web process
in turn (a round-robin balancer): launch (OIDC login on one, launch on the other), the
course's results pulled from the LMS, evaluation, award, delivery by whichever worker
claims it, then the credential page and POST /verify. Nothing a process keeps to itself is
needed by the next request (docs/operations.md "What each process keeps to itself")."""

from __future__ import annotations

import collections
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import select

from service.db import migrate
from service.db.engine import make_engine
from service.db.engine import session as db_session
from service.db.models import Credential, DeliveryAttempt, OutboxMessage, Person
from service.demo import bootstrap, seed, server
from service.settings import Settings
from tests.conftest import scratch_database
from tests.flows.conftest import Live, launch

pytestmark = [pytest.mark.postgres, pytest.mark.db]
DEADLINE = 120.0  # generous: only a flow that never completes fails it


class RoundRobin:
    """An ASGI reverse proxy that sends each request to the next backend in turn."""

    def __init__(self, backends: list[str]) -> None:
        self.backends = backends
        self.served: collections.Counter[str] = collections.Counter()
        self.sequence: list[tuple[str, str]] = []
        self._next = 0
        self._client: httpx.AsyncClient | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].rsplit(".", 1)[-1]
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    if self._client is not None:
                        await self._client.aclose()
                    return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        backend = self.backends[self._next % len(self.backends)]
        self._next += 1
        self.served[backend] += 1
        self.sequence.append((backend, scope["path"]))
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=DEADLINE)
        skip = {b"connection", b"content-length", b"transfer-encoding"}
        headers = [
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"] if k not in skip
        ]
        query = scope.get("query_string", b"").decode("latin-1")
        url = backend + scope["path"] + (f"?{query}" if query else "")
        answer = await self._client.request(scope["method"], url, headers=headers, content=body)
        drop = {"content-length", "transfer-encoding", "connection", "content-encoding"}
        out = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in answer.headers.multi_items()
            if k.lower() not in drop
        ]
        out.append((b"content-length", str(len(answer.content)).encode()))
        await send({"type": "http.response.start", "status": answer.status_code, "headers": out})
        await send({"type": "http.response.body", "body": answer.content})


@pytest.fixture
def database(tmp_path: Path, master_key: bytes) -> Iterator[str]:
    with scratch_database("microcred_replicas", tmp_path / "replicas.db") as url:
        migrate.upgrade(url)
        yield url


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _logs(folder: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(folder.glob("*.log")))


def _wait_healthy(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert proc.poll() is None, "a web process exited"
        assert time.monotonic() < deadline, "a web process did not start"
        time.sleep(0.2)


@dataclasses.dataclass
class Cluster:
    live: Live
    balancer: RoundRobin
    logs: Path


@pytest.fixture
def cluster(database: str, tmp_path: Path, master_key: bytes) -> Iterator[Cluster]:
    """Two web processes behind the balancer, two workers, the demo LMS, one PostgreSQL."""
    settings = Settings(
        environment="test",
        data_dir=tmp_path,
        database_url=database,
        secret_key=master_key.decode(),
        base_url="http://127.0.0.1:1",  # replaced by the balancer's URL below
    )
    engine = make_engine(database)
    balancer_socket = server.bind("127.0.0.1", 0)
    lms_socket = server.bind("127.0.0.1", 0)
    tool_url = f"http://127.0.0.1:{balancer_socket.getsockname()[1]}"
    lms_url = f"http://localhost:{lms_socket.getsockname()[1]}"
    apps = bootstrap.build(settings, tool_url=tool_url, lms_url=lms_url, engine=engine)
    course_id = seed.seed(engine, apps.config, platform_id=apps.platform_id)

    env = {k: v for k, v in os.environ.items() if not k.startswith("MICROCRED_")} | {
        "MICROCRED_ENVIRONMENT": "test",
        "MICROCRED_DATABASE_URL": database,
        "MICROCRED_DATA_DIR": str(tmp_path),
        "MICROCRED_SECRET_KEY": master_key.decode(),
        "MICROCRED_BASE_URL": tool_url,
        "MICROCRED_WORKER_POLL_SECONDS": "0.2",
    }
    cli = [sys.executable, "-c", "from service.cli import main; main()"]
    ports = [_port(), _port()]
    backends = [f"http://127.0.0.1:{p}" for p in ports]
    procs: list[subprocess.Popen[str]] = []
    files: list[Any] = []

    def _log(path: Path) -> Any:
        files.append(path.open("w"))
        return files[-1]

    try:
        for port, url in zip(ports, backends, strict=True):
            procs.append(
                subprocess.Popen(  # our own CLI
                    [*cli, "serve", "--no-worker", "--port", str(port)],
                    env=env,
                    stdout=_log(tmp_path / f"web-{port}.log"),
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
            _wait_healthy(url, procs[-1])
        for n in range(2):
            procs.append(
                subprocess.Popen(  # our own CLI
                    [*cli, "worker", "--threads", "2"],
                    env=env | {"HOSTNAME": f"worker-{n}"},
                    stdout=_log(tmp_path / f"worker-{n}.log"),
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
        balancer = RoundRobin(backends)
        with server.running(balancer, apps.lms, tool_socket=balancer_socket, lms_socket=lms_socket):  # type: ignore[arg-type]
            live = Live(apps, tool_url, lms_url, course_id, engine, settings, [])
            yield Cluster(live, balancer, tmp_path)
            for client in live.clients:
                client.close()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        lti_http = getattr(apps.tool.state, "lti_http", None)
        if lti_http is not None:
            lti_http.close()
        engine.dispose()
        for fh in files:
            fh.close()


def test_two_web_processes_and_two_workers_run_one_learners_flow(cluster: Cluster) -> None:
    live, balancer = cluster.live, cluster.balancer
    engine = live.engine
    launch(live, "u-learn-2")  # the OIDC login and the launch land on different processes
    with db_session(engine) as s:
        lucas = s.exec(select(Person).where(Person.sub == "u-learn-2")).one()
    deadline = time.monotonic() + DEADLINE
    while True:
        with db_session(engine) as s:
            rows = s.exec(select(OutboxMessage).where(OutboxMessage.person_id == lucas.id)).all()
        pending = [r for r in rows if r.status not in ("delivered", "dead", "cancelled")]
        if rows and not pending:
            break
        assert time.monotonic() < deadline, [(r.kind, r.status, r.last_error) for r in rows]
        time.sleep(0.3)
    # the launch queued a pull; the workers pulled, evaluated, awarded and delivered
    assert {r.status for r in rows if r.kind.startswith("webhook.")} == {"delivered"}
    with db_session(engine) as s:
        cred = s.exec(select(Credential).where(Credential.person_id == lucas.id)).first()
        workers = set(s.exec(select(DeliveryAttempt.worker)).all())
    assert cred is not None and workers
    public = httpx.Client(base_url=live.tool_url, timeout=DEADLINE)
    for _ in range(2):  # once on each process
        assert public.get(f"/credentials/{cred.uuid}").status_code == 200
        verified = public.post("/verify", json=cred.document)
        assert verified.json()["valid"], verified.text
    public.close()
    login = next(b for b, p in balancer.sequence if p == "/lti/login")
    landed = next(b for b, p in balancer.sequence if p == "/lti/launch")
    assert login != landed
    assert all(balancer.served[b] >= 3 for b in balancer.backends), balancer.served


def test_the_learners_page_after_a_launch_on_the_other_process(cluster: Cluster) -> None:
    tab = launch(cluster.live, "u-learn-2")
    for _ in range(2):  # once on each process
        page = tab.get("/app/me")
        assert page.status_code == 200, _logs(cluster.logs)
