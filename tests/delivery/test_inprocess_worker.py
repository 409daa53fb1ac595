"""`microcred serve` starts an in-process worker (unless --no-worker) that delivers."""

from __future__ import annotations

import datetime as dt
import logging
import time

import pytest
from sqlalchemy import Engine

from service.cli import workers
from service.db.engine import session as db_session
from service.delivery import repositories
from service.delivery.worker import Worker, build_connectors
from service.settings import Settings
from tests.delivery.conftest import credly_repo, enqueue_many, statuses, unfinished
from tests.delivery.fakes import FakeCredly
from tests.timing import HANG


def test_serve_worker_delivers_and_stops(
    settings: Settings, engine: Engine, fake: FakeCredly
) -> None:
    credly_repo(engine, fake)
    enqueue_many(engine, 3)
    stop, thread = workers._start_inprocess_worker(settings, enabled=True)
    try:
        deadline = time.monotonic() + HANG
        while unfinished(engine) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=HANG)
    assert not thread.is_alive()
    assert statuses(engine) == {"delivered": 3}
    assert len(fake.state()["badges"]) == 3


def test_no_worker_starts_nothing(settings: Settings) -> None:
    stop, thread = workers._start_inprocess_worker(settings, enabled=False)
    assert thread is None and not stop.is_set()


def test_worker_logs_token_expiry(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    with db_session(engine, write=True) as s:
        repositories.create(
            s,
            kind="credly",
            name="Credly prod",
            secret="tok",
            secret_expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=5),
            config={"organization_id": "o", "environment": "production"},
        )
        s.commit()
    worker = Worker(engine, build_connectors(engine))
    try:
        with caplog.at_level(logging.WARNING, logger="service.delivery.worker"):
            worker._warn_tokens()
    finally:
        worker.close()
    assert "the token of 'Credly prod' expires on" in caplog.text
