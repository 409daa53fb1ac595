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
from service.db.engine import session
from service.db.models import AuditEvent, Platform
from tests import factories


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


def test_call_runs_database_work_on_the_event_loop_thread(engine: Engine) -> None:
    import anyio

    from service.db.engine import call, dispose_twin, in_process

    def where(tag: str, *, n: int) -> tuple[str, int, int, bool]:
        with session(engine) as s:
            one = s.execute(text("SELECT 1")).scalar_one()
            is_async = s.get_bind().dialect.is_async
        return tag, n + one, threading.get_ident(), is_async

    async def main() -> tuple[tuple[str, int, int, bool], int]:
        try:
            return await call(engine, where, "x", n=1), threading.get_ident()
        finally:
            await dispose_twin(engine)

    (tag, n, worker, is_async), loop_thread = anyio.run(main)
    assert (tag, n) == ("x", 2)
    assert worker == loop_thread  # no thread-pool hand-off
    assert in_process(engine) is (engine.dialect.name == "sqlite")
    # PostgreSQL: the session inside was bound to the async twin (asyncpg, greenlet bridge)
    assert is_async is (engine.dialect.name == "postgresql")


@pytest.mark.postgres
def test_work_on_the_event_loop_lets_other_requests_run_while_it_waits_for_postgresql(
    engine: Engine,
) -> None:
    import anyio

    from service.db.engine import call, dispose_twin

    finished: list[str] = []

    def slow() -> None:
        with session(engine) as s:
            s.execute(text("SELECT pg_sleep(0.5)"))
        finished.append("slow")

    def quick() -> None:
        with session(engine) as s:
            s.execute(text("SELECT 1"))
        finished.append("quick")

    async def main() -> None:
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(call, engine, slow)
                await anyio.sleep(0.1)  # slow is waiting on the server now
                tg.start_soon(call, engine, quick)
        finally:
            await dispose_twin(engine)

    anyio.run(main)
    assert finished == ["quick", "slow"]


@pytest.mark.postgres
def test_an_autocommit_session_runs_each_statement_in_its_own_transaction(engine: Engine) -> None:
    def xids(autocommit: bool) -> set[int]:
        with session(engine, autocommit=autocommit) as s:
            return {s.execute(text("SELECT txid_current()")).scalar_one() for _ in range(2)}

    assert len(xids(autocommit=False)) == 1
    assert len(xids(autocommit=True)) == 2  # no BEGIN: no transaction around the two


@pytest.mark.postgres
def test_on_the_event_loop_a_session_is_one_transaction_and_an_autocommit_one_is_not(
    engine: Engine,
) -> None:
    """The async twin's connections are born in autocommit; a plain session still opens a
    transaction (and rolls back what it did not commit)."""
    import anyio

    from service.db.engine import autocommits, dispose_twin, on_loop

    def work() -> tuple[int, int, bool, bool, int]:
        with session(engine) as s:
            one = {s.execute(text("SELECT txid_current()")).scalar_one() for _ in range(2)}
            in_transaction = not autocommits(s)
        with session(engine, autocommit=True) as s:
            two = {s.execute(text("SELECT txid_current()")).scalar_one() for _ in range(2)}
            autocommit = autocommits(s)
        with session(engine) as s:
            s.execute(text("CREATE TABLE rolled_back_probe (n int)"))  # never committed
        with session(engine, autocommit=True) as s:
            left = s.execute(
                text("SELECT count(*) FROM pg_tables WHERE tablename = 'rolled_back_probe'")
            ).scalar_one()
        return len(one), len(two), in_transaction, autocommit, left

    async def main() -> tuple[int, int, bool, bool, int]:
        try:
            return await on_loop(engine, work)
        finally:
            await dispose_twin(engine)

    assert anyio.run(main) == (1, 2, True, True, 0)


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
            for _ in range(engine.pool.checkedin())  # type: ignore[attr-defined]
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


def _hold_write_lock(engine: Engine, locked: threading.Event, release: threading.Event) -> None:
    """Another connection (another process, in effect) holds SQLite's write lock."""
    with session(engine, write=True) as s:
        s.execute(text("SELECT 1"))  # BEGIN IMMEDIATE: the lock is ours
        locked.set()
        release.wait(30)
        s.commit()


def test_work_on_the_event_loop_moves_to_the_thread_pool_when_the_write_lock_is_taken(
    engine: Engine,
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite only: PostgreSQL has no database-wide write lock")
    import anyio

    from service.db.engine import call

    locked, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(engine, locked, release))
    holder.start()
    assert locked.wait(10)
    attempts: list[int] = []

    def write() -> int:
        attempts.append(threading.get_ident())
        if len(attempts) == 2:  # the retry, in the pool: let the other writer finish
            release.set()
        with session(engine, write=True) as s:
            s.add(AuditEvent(actor="t", action="x.y"))
            s.commit()
        return len(attempts)

    async def main() -> tuple[int, int]:
        return await call(engine, write), threading.get_ident()

    try:
        runs, loop_thread = anyio.run(main)
    finally:
        release.set()
        holder.join(10)
    # first on the loop, stopped before writing anything; then in the pool, waiting there
    assert runs == 2 and attempts[0] == loop_thread and attempts[1] != loop_thread
    with session(engine) as s:
        assert len(s.exec(select(AuditEvent)).all()) == 1


def test_once_it_has_written_work_on_the_loop_waits_for_the_lock_and_is_not_rerun(
    engine: Engine,
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite only")
    import anyio

    from service.db.engine import call

    locked, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(engine, locked, release))
    attempts: list[int] = []

    def two_writes() -> None:
        attempts.append(threading.get_ident())
        with session(engine, write=True) as s:
            s.add(AuditEvent(actor="t", action="first"))
            s.commit()
        holder.start()
        assert locked.wait(10)
        threading.Timer(0.2, release.set).start()  # the other writer finishes a bit later
        with session(engine, write=True) as s:  # waits here (busy timeout), on the loop
            s.add(AuditEvent(actor="t", action="second"))
            s.commit()

    async def main() -> int:
        await call(engine, two_writes)
        return threading.get_ident()

    try:
        loop_thread = anyio.run(main)
    finally:
        release.set()
        holder.join(10)
    assert attempts == [loop_thread]  # one run, never repeated
    with session(engine) as s:
        assert sorted(e.action for e in s.exec(select(AuditEvent)).all()) == ["first", "second"]


@pytest.mark.postgres
def test_the_async_twin_takes_the_libpq_parameters_of_the_database_url(engine: Engine) -> None:
    """A production URL carries libpq parameters (sslmode, application_name): the event
    loop's asyncpg connections honour them as the thread pool's psycopg ones do."""
    import anyio

    from service.db.engine import dispose_twin, make_engine, on_loop

    url = engine.url.update_query_dict({"sslmode": "disable", "application_name": "mc-test"})
    other = make_engine(url.render_as_string(hide_password=False))

    def name() -> str:
        with session(other) as s:
            return str(s.execute(text("SELECT current_setting('application_name')")).scalar())

    async def main() -> str:
        try:
            return await on_loop(other, name)
        finally:
            await dispose_twin(other)

    try:
        assert anyio.run(main) == "mc-test"
        assert name() == "mc-test"  # and the engine's own (psycopg) connection
    finally:
        other.dispose()


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
@pytest.mark.parametrize("autocommit", [False, True], ids=["transaction", "autocommit"])
def test_work_on_the_event_loop_survives_connections_the_server_dropped(
    engine: Engine, autocommit: bool
) -> None:
    """Connections used a moment ago (no idle check) that the server has since dropped: the
    request runs again on a new connection instead of failing (in autocommit, the statement
    ran once already, so it fails on asyncpg itself, past SQLAlchemy's cursor adapter)."""
    import anyio

    from service.db.engine import call, dispose_twin

    async def main() -> list[int]:
        try:
            first = await call(engine, _one, engine, autocommit)
            assert _kill_backends(engine) >= 1
            return [
                first,
                await call(engine, _one, engine, autocommit),
                await call(engine, _one, engine, autocommit),
            ]
        finally:
            await dispose_twin(engine)

    assert anyio.run(main) == [1, 1, 1]
    engine.dispose()  # the thread pool's connections died too: not this test's subject


@pytest.mark.postgres
def test_a_lost_connection_on_the_driver_cursor_is_reported_and_the_pool_renewed(
    engine: Engine,
) -> None:
    """db.prepared runs on the DBAPI cursor, past SQLAlchemy's execution: a lost connection
    must still come out as SQLAlchemy's error (a 503 page) and retire the pool's connections."""
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
    from service.db.engine import insert_row
    from service.db.models import LtiCache

    when = dt.datetime(2026, 11, 29, 7, 30, tzinfo=dt.UTC)
    with session(engine, write=True, autocommit=True) as s:
        insert_row(s, LtiCache, key=key, value={"roles": ["Zoë"], "ok": True}, expires_at=when)
        touched = prepared.execute(
            s,
            _expire_statement,
            b_key=key,
            b_when=when + dt.timedelta(hours=1),
        )
        row = prepared.one(s, _cache_row, b_key=key)
        with pytest.raises(sa_exc.IntegrityError):
            insert_row(s, LtiCache, key=key, value=None, expires_at=when)
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
def test_autocommit_statements_on_the_event_loop_run_on_asyncpg_itself(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past SQLAlchemy's cursor adapter: the same values, row counts and errors as through
    it (the first run of each statement goes through the adapter)."""
    import anyio

    from service.db import prepared
    from service.db.engine import dispose_twin, on_loop

    direct: list[str] = []
    original = prepared._run_asyncpg

    def spy(connection: Any, dbapi: Any, statement: Any, args: Any) -> Any:
        direct.append(statement.sql.split()[0])
        return original(connection, dbapi, statement, args)

    monkeypatch.setattr(prepared, "_run_asyncpg", spy)
    # statements compiled and run by earlier tests would skip the adapter at once
    monkeypatch.setattr(prepared, "_cache", {})

    async def main() -> list[tuple[Any, ...]]:
        try:
            return [await on_loop(engine, _autocommit_round, engine, k) for k in ("a", "b")]
        finally:
            await dispose_twin(engine)

    first, second = anyio.run(main)
    # each statement's first run goes through the adapter: the first round's duplicate
    # INSERT is the INSERT's second run; the second round runs every statement directly
    assert direct == ["INSERT", "INSERT", "UPDATE", "SELECT", "INSERT"]
    later = dt.datetime(2026, 11, 29, 8, 30, tzinfo=dt.UTC)
    assert first == (1, ("a", {"roles": ["Zoë"], "ok": True}, later))
    assert second == (1, ("b", {"roles": ["Zoë"], "ok": True}, later))
    assert second[1][2].tzinfo is not None
