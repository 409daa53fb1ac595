"""The route session dependencies (service.deps): opened and closed around the route on the
event loop, every connection back in the pool after the request, uncommitted work rolled
back, and on PostgreSQL the closing round trip kept off the event loop."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, text
from sqlmodel import func, select

from service.db.engine import in_process
from service.db.models import AuditEvent
from service.deps import SessionDep, WriteSessionDep


class Boom(Exception):
    pass


@pytest.fixture
def served(app: FastAPI, engine: Engine) -> Iterator[tuple[TestClient, dict[str, Any]]]:
    """Routes over the two dependencies, and where the event loop and pool check-ins ran."""
    seen: dict[str, Any] = {"checkins": []}

    async def loop_thread() -> dict[str, bool]:
        seen["loop"] = threading.get_ident()
        return {"ok": True}

    def read(session: SessionDep) -> dict[str, int]:
        return {"one": session.exec(select(func.count()).select_from(AuditEvent)).one()}

    def read_then_fail(session: SessionDep) -> None:
        session.exec(select(AuditEvent)).all()
        raise Boom

    def write(session: WriteSessionDep, commit: bool = True) -> dict[str, bool]:
        session.add(AuditEvent(actor="test", action="session.dep"))
        session.flush()
        if not commit:
            raise Boom
        session.commit()
        return {"committed": True}

    def write_then_read(session: WriteSessionDep) -> dict[str, int]:
        session.add(AuditEvent(actor="test", action="session.dep"))
        session.commit()
        # a statement after the commit: a new transaction, whose connection the close gives back
        return {"n": session.exec(select(func.count()).select_from(AuditEvent)).one()}

    app.add_api_route("/t/loop", loop_thread)
    app.add_api_route("/t/read", read)
    app.add_api_route("/t/read-fail", read_then_fail)
    app.add_api_route("/t/write", write, methods=["POST"])
    app.add_api_route("/t/write-read", write_then_read, methods=["POST"])

    def on_checkin(_dbapi: Any, _record: Any) -> None:
        seen["checkins"].append(threading.get_ident())

    event.listen(engine, "checkin", on_checkin)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            assert client.get("/t/loop").status_code == 200
            yield client, seen
    finally:
        event.remove(engine, "checkin", on_checkin)


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM audit_event")).scalar_one())


def test_a_read_gives_its_connection_back(
    served: tuple[TestClient, dict[str, Any]], engine: Engine
) -> None:
    client, seen = served
    assert client.get("/t/read").json() == {"one": 0}
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert len(seen["checkins"]) == 1
    if not in_process(engine):
        # the rollback round trip of the close ran in the thread pool, not on the loop
        assert seen["loop"] not in seen["checkins"]


def test_a_failing_route_gives_its_connection_back(
    served: tuple[TestClient, dict[str, Any]], engine: Engine
) -> None:
    client, seen = served
    assert client.get("/t/read-fail").status_code == 500
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    if not in_process(engine):
        assert seen["loop"] not in seen["checkins"]


def test_uncommitted_writes_are_rolled_back_and_committed_ones_kept(
    served: tuple[TestClient, dict[str, Any]], engine: Engine
) -> None:
    client, _seen = served
    assert client.post("/t/write", params={"commit": False}).status_code == 500
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert _count(engine) == 0
    assert client.post("/t/write").json() == {"committed": True}
    assert _count(engine) == 1
    # a read after the commit opened another transaction: closed and given back too
    assert client.post("/t/write-read").json() == {"n": 2}
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
