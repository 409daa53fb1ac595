"""Dynamic registration is public: in production it needs its key, it calls no private
address, each address may register only a few times a minute, the platforms waiting for
activation are capped, and nothing is stored unless the platform accepted."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, text
from sqlmodel import select

from service.app import create_app
from service.db.engine import session as db_session
from service.db.models import AuditEvent, Platform
from service.lti import registration
from service.lti.errors import RegistrationFailed
from service.settings import Settings
from tests.lti.test_registration import _moodle
from tests.timing import HANG

CONF = "https://moodle.example.edu/mod/lti/openid-configuration.php"
KEY = "reg-key-0123456789"


def _production(settings: Settings, **changes: object) -> Settings:
    return settings.model_copy(
        update={
            "environment": "production",
            "dynamic_registration_key": SecretStr(KEY),
            "outbound_allow_private": None,
        }
        | changes
    )


@pytest.fixture
def production_client(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    app = create_app(_production(settings), engine=engine)
    with TestClient(app, base_url="https://tool.test") as c:
        yield c


def test_production_does_not_start_without_the_registration_key(
    settings: Settings, engine: Engine
) -> None:
    unkeyed = _production(settings, dynamic_registration_key=None)
    with pytest.raises(RegistrationFailed, match="MICROCRED_DYNAMIC_REGISTRATION_KEY"):
        create_app(unkeyed, engine=engine)


def test_a_loopback_registration_is_refused_in_production_without_contacting_it(
    production_client: TestClient, engine: Engine
) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        resp = production_client.get(
            "/lti/register",
            params={
                "key": KEY,
                "openid_configuration": f"http://127.0.0.1:{port}/conf",
                "registration_token": "t",
            },
        )
        assert resp.status_code == 400
        assert "private, loopback or link-local" in resp.text
        with pytest.raises(BlockingIOError):  # no connection ever reached the port
            listener.accept()
    finally:
        listener.close()
    with db_session(engine) as s:
        assert s.exec(select(Platform)).all() == []


def _silent_and_closed() -> tuple[socket.socket, int, int]:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    return silent, silent.getsockname()[1], closed_port


def test_a_closed_and_a_silent_port_give_the_same_page(settings: Settings, engine: Engine) -> None:
    app = create_app(settings.model_copy(update={"outbound_deadline_seconds": 1.0}), engine=engine)
    silent, silent_port, closed_port = _silent_and_closed()
    texts = []
    try:
        with TestClient(app, base_url="https://tool.test") as client:
            for port in (closed_port, silent_port):
                resp = client.get(
                    "/lti/register",
                    params={"openid_configuration": f"http://127.0.0.1:{port}/conf"},
                )
                assert resp.status_code == 400
                texts.append(resp.text.replace(str(port), "PORT"))
    finally:
        silent.close()
    assert "could not be reached or did not answer in time" in texts[0]
    assert texts[0] == texts[1]


def _use(app: FastAPI, handler: Callable[[httpx.Request], httpx.Response]) -> None:
    app.state.lti_http_async = httpx.AsyncClient(transport=httpx.MockTransport(handler))


def test_pending_registrations_are_capped(app: FastAPI, client: TestClient, engine: Engine) -> None:
    app.state.settings.dynamic_registration_max_pending = 1
    seen: list[httpx.Request] = []
    _use(app, _moodle(seen))
    params = {"openid_configuration": CONF, "registration_token": "moodle-reg-token"}
    assert client.get("/lti/register", params=params).status_code == 200
    calls = len(seen)
    refused = client.get("/lti/register", params=params)
    assert refused.status_code == 400
    assert "waiting for activation" in refused.text
    assert "MICROCRED_DYNAMIC_REGISTRATION_MAX_PENDING" in refused.text
    assert len(seen) == calls  # the platform was not contacted again
    with db_session(engine) as s:
        assert len(s.exec(select(Platform)).all()) == 1


def test_registrations_are_rate_limited_per_address(app: FastAPI, client: TestClient) -> None:
    app.state.settings.dynamic_registration_rate_limit_per_minute = 2
    seen: list[httpx.Request] = []
    _use(app, _moodle(seen))
    params = {"openid_configuration": "https://moodle.example.edu/nothing"}
    assert [client.get("/lti/register", params=params).status_code for _ in range(2)] == [
        400,
        400,
    ]
    third = client.get("/lti/register", params=params)
    assert third.status_code == 429 and int(third.headers["retry-after"]) >= 1
    assert len(seen) == 2  # the limited request called nobody


def test_nothing_is_stored_when_the_platform_refuses(
    app: FastAPI, client: TestClient, engine: Engine
) -> None:
    _use(app, _moodle([]))

    def refuse(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(403, json={"error": "no"})
        return _moodle([])(request)

    _use(app, refuse)
    resp = client.get("/lti/register", params={"openid_configuration": CONF})
    assert resp.status_code == 400 and "HTTP 403" in resp.text
    with db_session(engine) as s:
        assert s.exec(select(Platform)).all() == []


def test_the_pending_platform_records_where_the_registration_came_from(
    app: FastAPI, client: TestClient, engine: Engine
) -> None:
    _use(app, _moodle([]))
    resp = client.get(
        "/lti/register",
        params={"openid_configuration": CONF, "registration_token": "moodle-reg-token"},
    )
    assert resp.status_code == 200, resp.text
    with db_session(engine) as s:
        row = s.exec(select(Platform)).one()
        event = s.exec(
            select(AuditEvent).where(
                AuditEvent.action == "platform.registered",
                AuditEvent.subject == f"platform:{row.id}",
            )
        ).one()
    assert event.detail["openid_configuration"] == CONF
    assert event.detail["source_ip"] == "testclient"


def test_registration_does_not_hold_a_worker_thread(app: FastAPI, client: TestClient) -> None:
    # The route is async and awaits the platform: while the platform answers, no thread of
    # the pool is taken (a sync route would hold one for the whole exchange).
    import anyio.to_thread

    busy: list[float] = []
    moodle = _moodle([])

    async def platform(request: httpx.Request) -> httpx.Response:
        busy.append(anyio.to_thread.current_default_thread_limiter().borrowed_tokens)
        return moodle(request)

    app.state.lti_http_async = httpx.AsyncClient(transport=httpx.MockTransport(platform))
    resp = client.get(
        "/lti/register",
        params={"openid_configuration": CONF, "registration_token": "moodle-reg-token"},
    )
    assert resp.status_code == 200, resp.text
    assert busy == [0, 0]  # the configuration GET and the registration POST


@pytest.mark.postgres
def test_two_registrations_at_once_cannot_pass_the_pending_cap(
    engine: Engine, settings: Settings
) -> None:
    # Each counts the pending platforms before adding its own: without taking turns, both
    # would see room for one more.
    settings = settings.model_copy(update={"dynamic_registration_max_pending": 1})

    def negotiated(n: int) -> registration.Negotiated:
        conf = {
            "issuer": f"https://moodle{n}.example.edu",
            "authorization_endpoint": f"https://moodle{n}.example.edu/auth",
            "token_endpoint": f"https://moodle{n}.example.edu/token",
            "jwks_uri": f"https://moodle{n}.example.edu/certs",
        }
        return registration.Negotiated(
            conf=conf, family="moodle", client_id=f"c{n}", deployment_id="1", name=f"M{n}"
        )

    outcome: list[object] = []

    def second() -> None:
        with db_session(engine, write=True) as s:
            try:
                registration.store(s, negotiated(2), settings=settings)
                s.commit()
                outcome.append("stored")
            except RegistrationFailed as exc:
                outcome.append(exc)

    with db_session(engine, write=True) as first:
        registration.store(first, negotiated(1), settings=settings)
        thread = threading.Thread(target=second)
        thread.start()
        # the second waits for the first's turn to end (or, unguarded, finishes at once)
        with engine.connect() as probe:
            deadline = time.monotonic() + HANG  # a hang guard, not a number of polls
            while time.monotonic() < deadline:
                waiting = probe.execute(
                    text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    )
                ).scalar_one()
                if waiting or not thread.is_alive():
                    break
                time.sleep(0.01)
        first.commit()
    thread.join(timeout=HANG)
    assert len(outcome) == 1 and isinstance(outcome[0], RegistrationFailed), outcome
    with db_session(engine) as s:
        assert [p.client_id for p in s.exec(select(Platform)).all()] == ["c1"]
