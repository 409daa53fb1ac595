"""Fixtures for delivery tests: the fake Credly process, a Credly repository pointing at
it, a scaled clock shared by worker and fake, and a drain loop with a deadline."""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from service.db.engine import session as db_session
from service.db.models import OutboxMessage
from service.delivery import awards, providers, repositories
from service.delivery.worker import Worker
from tests import factories
from tests.delivery.fakes import FakeCredly
from tests.timing import HANG

TOKEN = "test-org-token"
TEMPLATES = {"py:beginning": "tmpl-b", "py:intermediate": "tmpl-i", "py:advanced": "tmpl-a"}


class ScaledClock:
    """Virtual UTC time running ``factor`` times faster than the wall clock; with factor 0 a
    clock that moves only when ``advance`` moves it (tell the fake: ``as_config`` again)."""

    def __init__(self, factor: float = 1.0) -> None:
        self.rt0 = time.time()
        self.vt0 = self.rt0
        self.factor = factor

    def __call__(self) -> dt.datetime:
        v = self.vt0 + (time.time() - self.rt0) * self.factor
        return dt.datetime.fromtimestamp(v, dt.UTC)

    def advance(self, seconds: float) -> None:
        self.vt0 += seconds

    def as_config(self) -> list[float]:
        return [self.vt0, self.rt0, self.factor]


@pytest.fixture(scope="session")
def _fake_process() -> Iterator[FakeCredly]:
    fake = FakeCredly()
    yield fake
    fake.stop()


@pytest.fixture
def fake(_fake_process: FakeCredly) -> FakeCredly:
    _fake_process.reset()
    _fake_process.configure(
        token=TOKEN,
        templates={t: {"allow_duplicates": True} for t in TEMPLATES.values()},
        # a request that "times out" hangs past any client timeout: with 1 s here and 0.5 s
        # in the client, a loaded host's late timer saw the answer instead of the timeout
        hang_seconds=HANG,
    )
    return _fake_process


def credly_repo(engine: Engine, fake: FakeCredly, **kw: Any) -> int:
    with db_session(engine, write=True) as s:
        factories.competency(s, "py")  # the template map names catalogue competencies
        repo = repositories.create(
            s,
            kind="credly",
            name=kw.pop("name", "Credly sandbox"),
            config={"organization_id": "org-1", "base_url": fake.base_url, "templates": TEMPLATES}
            | kw.pop("config", {}),
            secret=kw.pop("secret", TOKEN),
            **kw,
        )
        s.commit()
        assert repo.id is not None
        return repo.id


def snapshot(
    i: int, *, level: str = "beginning", person_id: int | None = None, **kw: Any
) -> awards.CredentialSnapshot:
    return awards.CredentialSnapshot(
        credential_id=kw.pop("credential_id", f"00000000-0000-4000-8000-{i:012d}"),
        person_id=person_id,
        recipient_email=kw.pop("recipient_email", f"learner{i}@example.edu"),
        given_name="Ada",
        family_name=f"Learner{i}",
        competency="py",
        level=level,
        issued_at=dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC),
        credential_url=f"https://tool.test/credentials/{i}",
        **kw,
    )


def enqueue_many(engine: Engine, n: int, *, start: int = 0) -> None:
    with db_session(engine, write=True) as s:
        for i in range(start, start + n):
            awards.enqueue_issue(s, snapshot=snapshot(i))
        s.commit()


def unfinished(engine: Engine) -> int:
    with db_session(engine) as s:
        return int(
            s.execute(
                select(func.count())
                .select_from(OutboxMessage)
                .where(
                    OutboxMessage.__table__.c.status.in_(("pending", "held"))  # type: ignore[attr-defined]
                )
            ).scalar_one()
        )


def drain(worker: Worker, engine: Engine, *, timeout: float = HANG) -> None:
    """Run the worker until no row is pending (bounded by a real-time deadline: a hang
    guard)."""
    deadline = time.monotonic() + timeout
    while unfinished(engine):
        if time.monotonic() > deadline:
            raise AssertionError(f"{unfinished(engine)} rows still unfinished after {timeout}s")
        if worker.run_once() == 0:
            time.sleep(0.01)


def statuses(engine: Engine) -> dict[str, int]:
    with db_session(engine) as s:
        c = OutboxMessage.__table__.c  # type: ignore[attr-defined]
        return {
            k: int(v) for k, v in s.execute(select(c.status, func.count()).group_by(c.status)).all()
        }


@contextlib.contextmanager
def provider_module(folder: Path, name: str, source: str) -> Iterator[None]:
    """A provider added the documented way, one module of ``service.delivery.providers``
    (written in ``folder``), for the duration of the block."""
    (folder / f"{name}.py").write_text(textwrap.dedent(source))
    providers.__path__.append(str(folder))
    providers.registered.cache_clear()
    try:
        yield
    finally:
        providers.__path__.remove(str(folder))
        providers.registered.cache_clear()
        sys.modules.pop(f"service.delivery.providers.{name}", None)
