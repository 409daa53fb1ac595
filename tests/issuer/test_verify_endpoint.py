"""``POST /verify`` under hostile input: bounded, isolated, rate-limited, never a 500."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from service.app import create_app
from service.db.engine import session
from service.errors import Busy
from service.issuer import service
from service.issuer.pool import VerifierPool
from service.settings import Settings
from tests.issuer import hostile, samples
from tests.timing import HANG


def _app(settings: Settings, engine: Engine, **changes: Any) -> FastAPI:
    return create_app(settings.model_copy(update=changes), engine=engine)


@pytest.fixture
def issued_jwt(engine: Engine, settings: Settings) -> str:
    from service.db.types import utcnow

    with session(engine, write=True) as s:
        row = service.issue(
            s, settings=settings, award=samples.award(awarded_at=utcnow()), now=utcnow(), actor="t"
        )
        s.commit()
    assert row.jwt is not None
    return row.jwt


def _with_header(token: str, header: dict[str, Any]) -> str:
    _, payload, signature = token.split(".")
    encoded = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    return f"{encoded}.{payload}.{signature}"


def test_a_header_alg_list_is_an_invalid_report_not_a_500(
    settings: Settings, engine: Engine, issued_jwt: str, caplog: pytest.LogCaptureFixture
) -> None:
    """L1: ``"alg": ["ES256"]`` with a key the service holds gave a 500 and a traceback."""
    header = json.loads(base64.urlsafe_b64decode(issued_jwt.split(".")[0] + "=="))
    client = TestClient(_app(settings, engine), base_url="https://tool.test")
    with caplog.at_level(logging.INFO):
        resp = client.post(
            "/verify",
            content=_with_header(issued_jwt, {**header, "alg": ["ES256"]}),
            headers={"Content-Type": "text/plain"},
        )
    assert resp.status_code == 200
    report = resp.json()
    assert report["valid"] is False and report["format"] == "jwt"
    proof = next(c for c in report["checks"] if c["name"] == "proof")
    assert proof["detail"] == "the JWS header alg is ['ES256'], not ES256 or RS256"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_the_poison_graph_gets_an_invalid_report(settings: Settings, engine: Engine) -> None:
    client = TestClient(_app(settings, engine), base_url="https://tool.test")
    resp = client.post("/verify", content=json.dumps(hostile.poison_graph(8)))
    assert resp.status_code == 200 and resp.json()["valid"] is False
    proof = next(c for c in resp.json()["checks"] if c["name"] == "proof")
    assert "too alike" in proof["detail"]


def test_verify_is_rate_limited_per_client(settings: Settings, engine: Engine) -> None:
    client = TestClient(
        _app(settings, engine, verify_rate_limit_per_minute=3), base_url="https://tool.test"
    )
    for _ in range(3):
        assert client.post("/verify", content="hello").status_code == 200
    refused = client.post("/verify", content="hello")
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"] == "rate_limited"
    assert "try again in" in refused.json()["detail"]
    # the limit is /verify's own: credential pages and the LTI login are not counted
    assert client.get("/healthz").status_code == 200


@pytest.fixture
def held_pool() -> Iterator[tuple[VerifierPool, threading.Event]]:
    """A one-thread verifier pool whose thread is busy until the event is set."""
    pool = VerifierPool(1)
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        # held until the test releases it (HANG only ends a test that never does): with 10 s
        # here, a slow host let the slot free itself before the test asked for it
        release.wait(HANG)

    runner = threading.Thread(target=lambda: asyncio.run(pool.run(hold)))
    runner.start()
    assert started.wait(HANG)
    yield pool, release
    release.set()
    runner.join(HANG)
    pool.shutdown()


def test_a_full_verifier_answers_503_at_once(
    settings: Settings, engine: Engine, held_pool: tuple[VerifierPool, threading.Event]
) -> None:
    pool, release = held_pool
    app = _app(settings, engine, verify_concurrency=1)
    app.state.verifier_pool = pool
    client = TestClient(app, base_url="https://tool.test")
    busy = client.post("/verify", content="hello")
    assert busy.status_code == 503 and busy.headers["retry-after"] == "2"
    assert busy.json()["error"] == "busy" and "try again" in busy.json()["detail"]
    # pages are served by other threads meanwhile
    assert client.get("/healthz").status_code == 200
    release.set()
    deadline = time.monotonic() + HANG
    while True:  # the slot frees when the held work ends
        resp = client.post("/verify", content="hello")
        if resp.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert resp.status_code == 200 and resp.json()["valid"] is False


def test_the_pool_refuses_beyond_its_size_and_frees_slots_when_work_ends() -> None:
    pool = VerifierPool(2)
    names: list[str] = []
    gate = threading.Event()

    def work() -> str:
        names.append(threading.current_thread().name)
        gate.wait(HANG)
        return "done"

    async def scenario() -> list[str]:
        first = asyncio.ensure_future(pool.run(work))
        second = asyncio.ensure_future(pool.run(work))
        await asyncio.sleep(0)
        with pytest.raises(Busy):
            await pool.run(work)
        gate.set()
        results = [await first, await second]
        results.append(await pool.run(lambda: "again"))
        return results

    try:
        assert asyncio.run(scenario()) == ["done", "done", "again"]
    finally:
        gate.set()
        pool.shutdown()
    assert pool.refused == 1
    assert names and all(n.startswith("verify") for n in names)


def test_refusals_from_the_worker_processes_reach_the_report(
    settings: Settings, engine: Engine
) -> None:
    """Canonicalisation runs in worker processes; its refusals come back as checks."""
    client = TestClient(_app(settings, engine), base_url="https://tool.test")
    undefined = hostile.poison_graph(2)
    undefined["credentialSubject"]["unsignedClaim"] = "x"
    deep = hostile.many_statements(4000)
    for doc, reason in (
        (undefined, "'unsignedClaim' is not defined by any context"),
        (deep, "1000 values for one property"),
    ):
        resp = client.post("/verify", content=json.dumps(doc))
        assert resp.status_code == 200 and resp.json()["valid"] is False
        proof = next(c for c in resp.json()["checks"] if c["name"] == "proof")
        assert reason in proof["detail"]
