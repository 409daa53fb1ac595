from __future__ import annotations

import contextlib
import datetime as dt
import threading
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, literal_column, text
from sqlalchemy import select as sa_select
from sqlalchemy.pool import NullPool
from sqlmodel import select

from service import secretbox
from service.db.engine import insert_ids, session
from service.db.models import AuditEvent, Platform
from tests import factories
from tests.timing import HANG


def test_datetimes_come_back_aware_utc(engine: Engine) -> None:
    with session(engine, write=True) as s:
        s.add(AuditEvent(actor="test", action="x.y"))
        s.commit()
    with session(engine) as s:
        ev = s.exec(select(AuditEvent)).one()
    assert ev.at.tzinfo is not None
    assert ev.at.utcoffset() == dt.timedelta(0)


def test_naive_datetime_is_refused(engine: Engine) -> None:
    with session(engine, write=True) as s:
        s.add(AuditEvent(actor="t", action="x", at=dt.datetime(2026, 1, 1)))
        with pytest.raises(Exception, match="naive datetime"):
            s.flush()


def test_sqlite_uses_wal(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite only")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_concurrent_read_then_write_transactions_do_not_deadlock(engine: Engine) -> None:
    """Twenty threads each read the count and insert: all succeed, none is lost."""
    with session(engine, write=True) as s:
        factories.platform(s)
        s.commit()
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            with session(engine, write=True) as s:
                n = len(s.exec(select(Platform)).all())
                s.add(
                    Platform(
                        issuer=f"https://lms{i}.test",
                        client_id=str(n),
                        auth_login_url="a",
                        auth_token_url="t",
                        key_set_url="k",
                    )
                )
                s.commit()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with session(engine) as s:
        written = {f"https://lms{i}.test" for i in range(20)}
        # the threads' rows, whatever order the database returns them in
        rows = s.exec(select(Platform)).all()
        clients = sorted(int(p.client_id) for p in rows if p.issuer in written)
    # Each writer saw every committed row before it: counts are 1..20 with no repeats.
    assert clients == list(range(1, 21)) or engine.dialect.name == "postgresql"


def test_secrets_are_encrypted_at_rest(engine: Engine) -> None:
    token = secretbox.encrypt("s3cret-token", context="repository.token")
    assert "s3cret" not in token
    assert secretbox.decrypt(token, context="repository.token") == "s3cret-token"
    with pytest.raises(secretbox.SecretBoxError):
        secretbox.decrypt(token, context="other.column")


def test_call_runs_database_work_in_the_thread_pool(engine: Engine) -> None:
    import anyio

    from service.db.engine import call, in_process

    def where(tag: str, *, n: int) -> tuple[str, int, int, bool]:
        with session(engine) as s:
            one = s.execute(text("SELECT 1")).scalar_one()
            is_async = s.get_bind().dialect.is_async
        return tag, n + one, threading.get_ident(), is_async

    async def main() -> tuple[tuple[str, int, int, bool], int]:
        return await call(engine, where, "x", n=1), threading.get_ident()

    (tag, n, worker, is_async), loop_thread = anyio.run(main)
    assert (tag, n) == ("x", 2)
    assert worker != loop_thread  # one execution model: sync work in the thread pool
    assert in_process(engine) is (engine.dialect.name == "sqlite")
    assert is_async is False  # one driver per database (psycopg on PostgreSQL)


@pytest.mark.postgres
def test_a_request_waiting_for_postgresql_lets_other_requests_run(engine: Engine) -> None:
    """While one request waits on the server (for a lock the test holds), another runs to
    the end. Ordered by events, not by sleeps: on a slow host a 0.5 s query did not
    outlast a quick one started 0.1 s after it."""
    import time

    import anyio

    from service.db.engine import call

    finished: list[str] = []
    holder = engine.connect()  # holds the lock slow waits for, until quick has finished
    holder.execute(text("SELECT pg_advisory_lock(7321)"))
    released = threading.Lock()

    def release() -> None:
        with released:
            if not holder.closed:
                holder.execute(text("SELECT pg_advisory_unlock(7321)"))
                holder.close()

    # a hang guard: were slow to block the event loop, nothing else would release it
    guard = threading.Timer(HANG, release)
    guard.start()

    def slow() -> None:
        with session(engine) as s:
            s.execute(text("SELECT pg_advisory_xact_lock(7321)"))
        finished.append("slow")

    def quick() -> None:
        with session(engine) as s:
            s.execute(text("SELECT 1"))
        finished.append("quick")

    def slow_is_waiting() -> bool:
        with engine.connect() as c:
            return bool(
                c.execute(
                    text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    )
                ).scalar_one()
            )

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(call, engine, slow)
            deadline = time.monotonic() + HANG
            while not finished and not slow_is_waiting() and time.monotonic() < deadline:
                await anyio.sleep(0.05)
            await call(engine, quick)
            release()

    try:
        anyio.run(main)
    finally:
        guard.cancel()
        release()
    assert finished == ["quick", "slow"]


@pytest.mark.postgres
def test_an_autocommit_session_runs_each_statement_in_its_own_transaction(engine: Engine) -> None:
    def xids(autocommit: bool) -> set[int]:
        with session(engine, autocommit=autocommit) as s:
            return {s.execute(text("SELECT txid_current()")).scalar_one() for _ in range(2)}

    assert len(xids(autocommit=False)) == 1
    assert len(xids(autocommit=True)) == 2  # no BEGIN: no transaction around the two


@pytest.mark.postgres
def test_an_idle_connection_killed_by_the_server_is_replaced_before_use(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.db import engine as db_engine

    with session(engine) as s:
        victim = s.execute(text("SELECT pg_backend_pid()")).scalar_one()
    # the pooled connection sits idle; the server (a restart, a firewall) drops it
    admin = create_engine(engine.url, poolclass=NullPool)
    with admin.begin() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": victim}).scalar()
    admin.dispose()
    monkeypatch.setattr(db_engine, "IDLE_PING_SECONDS", 0.0)
    with contextlib.ExitStack() as stack:  # check out every pooled connection at once
        pids = [
            stack.enter_context(session(engine)).execute(text("SELECT pg_backend_pid()"))
            for _ in range(engine.pool.checkedin())
        ]
        assert victim not in [p.scalar_one() for p in pids]  # found dead and replaced


@pytest.mark.postgres
def test_an_autocommit_session_works_on_a_connection_that_was_pinged_after_idling(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.db import engine as db_engine

    with session(engine) as s:
        s.execute(text("SELECT 1"))
    monkeypatch.setattr(db_engine, "IDLE_PING_SECONDS", 0.0)  # every checkout pings
    for _ in range(2):
        with session(engine, autocommit=True) as s:
            assert s.execute(text("SELECT 1")).scalar_one() == 1
        with session(engine) as s:
            assert s.execute(text("SELECT 2")).scalar_one() == 2


def _kill_backends(engine: Engine) -> int:
    """The server drops every connection of this database but ours (a restart, a failover)."""
    admin = create_engine(engine.url, poolclass=NullPool)
    with admin.begin() as conn:
        killed = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
    admin.dispose()
    return int(killed)


def _one(engine: Engine, autocommit: bool = False) -> int:
    from service.db import prepared

    with session(engine, autocommit=autocommit) as s:
        row = prepared.one(s, _select_one)
    assert row is not None
    return int(row[0])


def _select_one() -> Any:
    return sa_select(literal_column("1"))


@pytest.mark.postgres
def test_a_lost_connection_on_the_driver_cursor_is_reported_and_the_pool_renewed(
    engine: Engine,
) -> None:
    """A lost connection comes out as SQLAlchemy's error (a 503 page) and retires the
    pool's connections."""
    from sqlalchemy import exc as sa_exc

    with contextlib.ExitStack() as stack:  # several pooled connections, all used just now
        for _ in range(3):
            stack.enter_context(session(engine)).execute(text("SELECT 1"))
    assert _kill_backends(engine) >= 3
    with pytest.raises(sa_exc.DBAPIError) as caught:
        _one(engine)
    assert caught.value.connection_invalidated
    assert [_one(engine) for _ in range(3)] == [1, 1, 1]  # no dead connection handed out again


def _autocommit_round(engine: Engine, key: str) -> tuple[Any, ...]:
    """Insert, update and read one row in autocommit sessions; then a duplicate insert."""
    from sqlalchemy import exc as sa_exc

    from service.db import prepared
    from service.db.models import LtiCache

    when = dt.datetime(2026, 11, 29, 7, 30, tzinfo=dt.UTC)
    with session(engine, write=True, autocommit=True) as s:
        prepared.insert_row(
            s, LtiCache, key=key, value={"roles": ["Zoë"], "ok": True}, expires_at=when
        )
        touched = s.execute(
            _expire_statement(), {"b_key": key, "b_when": when + dt.timedelta(hours=1)}
        ).rowcount
        row = prepared.one(s, _cache_row, b_key=key)
        with pytest.raises(sa_exc.IntegrityError):
            prepared.insert_row(s, LtiCache, key=key, value=None, expires_at=when)
    assert row is not None
    return touched, row


def _expire_statement() -> Any:
    from sqlalchemy import bindparam, update

    from service.db import prepared
    from service.db.models import LtiCache

    t = prepared.table(LtiCache)
    return update(t).where(t.c.key == bindparam("b_key")).values(expires_at=bindparam("b_when"))


def _cache_row() -> Any:
    from sqlalchemy import bindparam

    from service.db import prepared
    from service.db.models import LtiCache

    t = prepared.table(LtiCache)
    return sa_select(t.c.key, t.c.value, t.c.expires_at).where(t.c.key == bindparam("b_key"))


@pytest.mark.postgres
def test_autocommit_sessions_keep_values_row_counts_and_errors(engine: Engine) -> None:
    first, second = (_autocommit_round(engine, k) for k in ("a", "b"))
    later = dt.datetime(2026, 11, 29, 8, 30, tzinfo=dt.UTC)
    assert first == (1, ("a", {"roles": ["Zoë"], "ok": True}, later))
    assert second == (1, ("b", {"roles": ["Zoë"], "ok": True}, later))
    assert second[1][2].tzinfo is not None


@pytest.mark.db
def test_insert_ids_returns_each_rows_id_in_the_order_given(engine: Engine) -> None:
    """A batch's decisions are written as plain values and their awards refer to them by
    these ids: each id must be its own row's, on SQLite and PostgreSQL."""
    rows: list[dict[str, Any]] = [
        {"actor": "system", "action": f"test.row{i}", "detail": {"n": i}} for i in range(40)
    ]
    rows.reverse()
    with session(engine) as s:
        s.add(AuditEvent(actor="system", action="test.before"))  # pending: flushed first
        ids = insert_ids(s, AuditEvent, rows)
        stored = {
            r.id: (r.action, r.detail)
            for r in s.exec(select(AuditEvent).where(AuditEvent.action != "test.before"))
        }
        s.commit()
    assert len(set(ids)) == 40
    assert [stored[i] for i in ids] == [(r["action"], r["detail"]) for r in rows]
    assert all(r["at"].tzinfo is not None for r in rows)  # the defaults written, given back
