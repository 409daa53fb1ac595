from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from service.db.engine import session as db_session
from service.lti import jwks, platforms
from tests.lti.peer import ISSUER, Peer
from tests.lti.platform import FakePlatform, Network


@pytest.fixture(autouse=True)
def _fresh_key_cache() -> Iterator[None]:
    jwks.forget_memory_cache()
    yield
    jwks.forget_memory_cache()


@pytest.fixture
def peer(app: FastAPI, engine: Engine, client: TestClient) -> Iterator[Peer]:
    """The independent platform (tests/lti/peer.py), registered, trusting the tool's keys."""
    peer = Peer()
    http = TestClient(peer.app, base_url=ISSUER)
    app.state.lti_http = http
    with db_session(engine, write=True) as s:
        platforms.add_platform(
            s,
            issuer=ISSUER,
            client_id=peer.client_id,
            auth_login_url=ISSUER + "/auth",
            auth_token_url=ISSUER + "/token",
            key_set_url=ISSUER + "/jwks",
            deployment_ids=[peer.deployment_id],
            name="Peer LMS",
        )
        s.commit()
    peer.trust_tool_keys(client.get("/lti/jwks").json())
    yield peer
    http.close()


@pytest.fixture
def moodle() -> FakePlatform:
    return FakePlatform()


@pytest.fixture
def canvas() -> FakePlatform:
    return FakePlatform(
        issuer="https://canvas.instructure.com",
        client_id="10000000000001",
        deployment_id="9:d89e331c0f6e4f0a8b7c",
        key_index=1,
        kid="canvas-2026-11",
        family="canvas",
        token_lifetime=3600,
    )


@pytest.fixture
def network(app: FastAPI, moodle: FakePlatform, canvas: FakePlatform) -> Iterator[Network]:
    net = Network(moodle, canvas)
    app.state.lti_http = net.client()
    yield net
    app.state.lti_http.close()


@pytest.fixture
def registered(
    engine: Engine, moodle: FakePlatform, canvas: FakePlatform, network: Network
) -> None:
    with db_session(engine, write=True) as s:
        moodle.register(s)
        canvas.register(s)
        s.commit()
