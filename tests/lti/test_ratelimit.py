"""Per-IP rate limit on OIDC login and launch (reference/security.md W9): a token bucket
per client address; an empty bucket answers 429 with Retry-After and a page that says so."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from service.app import create_app
from service.ratelimit import Buckets
from service.settings import Settings
from tests.lti.platform import FakePlatform


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_a_burst_then_one_request_per_refill() -> None:
    clock = Clock()
    buckets = Buckets(6, clock=clock)  # 6 per minute: one token every 10 s
    assert [buckets.take("10.0.0.1") for _ in range(6)] == [0] * 6
    assert buckets.take("10.0.0.1") == 10
    assert buckets.take("10.0.0.2") == 0  # another address has its own bucket
    clock.now += 9.5
    assert buckets.take("10.0.0.1") == 1  # 0.95 of a token: wait the rest
    clock.now += 0.5
    assert buckets.take("10.0.0.1") == 0
    clock.now += 3600
    assert [buckets.take("10.0.0.1") for _ in range(7)] == [0] * 6 + [10]  # full, not more


def test_many_addresses_are_forgotten_once_their_buckets_refill() -> None:
    clock = Clock()
    buckets = Buckets(60, clock=clock)
    for i in range(10_001):
        buckets.take(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")
    clock.now += 60
    buckets.take("192.0.2.1")  # over the bound: refilled buckets are dropped
    assert len(buckets._buckets) == 1


@pytest.mark.usefixtures("registered")
def test_logins_over_the_limit_get_429_with_retry_after(
    settings: Settings, engine: Engine, app: FastAPI, moodle: FakePlatform
) -> None:
    limited = create_app(
        settings.model_copy(update={"lti_rate_limit_per_minute": 2}), engine=engine
    )
    limited.state.lti_http = app.state.lti_http
    # A stopped clock: on a slow host the bucket would refill a little between the requests
    # (Retry-After 29, not 30).
    limited.state.lti_buckets = Buckets(2, clock=lambda: 1000.0)
    with TestClient(limited, base_url="https://tool.test") as client:
        state, nonce, first = moodle.login(client)
        assert first.status_code == 302
        launched = moodle.launch(client, moodle.token(moodle.claims(nonce)), state)
        assert launched.status_code == 303  # login + launch: the two allowed
        _, _, refused = moodle.login(client)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "30"
        assert "Too many sign-ins from your network" in refused.text
        assert "MICROCRED_LTI_RATE_LIMIT_PER_MINUTE" in refused.text
        assert client.get("/healthz").status_code == 200  # other routes are not limited
        landing = client.get(launched.headers["location"])
        assert landing.status_code == 200  # nor the pages of a session


@pytest.mark.usefixtures("registered")
def test_zero_turns_the_limit_off(
    settings: Settings, engine: Engine, app: FastAPI, moodle: FakePlatform
) -> None:
    unlimited = create_app(
        settings.model_copy(update={"lti_rate_limit_per_minute": 0}), engine=engine
    )
    unlimited.state.lti_http = app.state.lti_http
    with TestClient(unlimited, base_url="https://tool.test") as client:
        assert all(moodle.login(client)[2].status_code == 302 for _ in range(400))
