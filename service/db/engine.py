"""Engine and sessions for SQLite (default) and PostgreSQL.

SQLite runs in WAL mode with a busy timeout; transactions that read then write use
``BEGIN IMMEDIATE`` (``session(engine, write=True)``) so two writers never deadlock on a
lock upgrade. PostgreSQL uses the driver's normal transactions.

Async routes run their (sync) database work on the event loop through ``call``: inline on
SQLite; on PostgreSQL in a greenlet over the engine's async twin (asyncpg, through
SQLAlchemy's greenlet bridge, as ``AsyncSession.run_sync`` does), so a request waiting on
the server lets the others run without a thread-pool hand-off. Everything else (sync
routes, the worker, the CLI) uses the engine itself (psycopg).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import json
import logging
import sqlite3
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import anyio.to_thread
import asyncpg
import orjson
from pydantic_core import PydanticUndefined
from sqlalchemy import Engine, event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import QueuePool
from sqlalchemy.util import greenlet_spawn
from sqlmodel import Session, SQLModel, create_engine

from service.db import prepared

__all__ = [
    "UNAVAILABLE",
    "WouldBlock",
    "autocommits",
    "call",
    "dml_ctes",
    "in_process",
    "inline",
    "insert_row",
    "json_text",
    "make_engine",
    "on_loop",
    "session",
]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_P = ParamSpec("_P")


def make_engine(url: str, *, echo: bool = False) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            echo=echo,
            json_serializer=json_text,
            connect_args={"check_same_thread": False, "timeout": 30},
            # Keep connections open: closing the last connection to a WAL database
            # checkpoints the log, which cost 10-15 ms per request with NullPool.
            poolclass=QueuePool,
            pool_size=5,
            max_overflow=15,
        )
        _configure_sqlite(engine)
        return engine
    # 20 kept open: the thread pool runs up to 40 requests at once, and an overflow
    # connection is opened and closed around each checkout (a backend fork each time).
    engine = create_engine(url, echo=echo, json_serializer=json_text, pool_size=20, max_overflow=20)
    _ping_when_idle(engine)
    return engine


IDLE_PING_SECONDS = 5.0


def _ping_when_idle(engine: Engine) -> None:
    """Check a pooled connection before use when it sat idle for a while (a server restart,
    a firewall dropping idle connections); a dead one is replaced and the request goes on.

    ``pool_pre_ping`` pings on every checkout: 5 round trips per launch, ~0.1 ms of server
    CPU each. A connection back in the pool within seconds is used again unchecked; if the
    server dropped it meanwhile, its first statement fails and SQLAlchemy invalidates the
    whole pool (``db.prepared``'s statements too); work on the event loop then runs again on
    a new connection (``on_loop``), a thread-pool request answers 503 (web/errors.py).
    """

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        if record is not None:
            record.info["microcred_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("microcred_idle_since")
        if since is None or time.monotonic() - since < IDLE_PING_SECONDS:
            return
        try:
            cursor = dbapi_conn.cursor()
            try:
                cursor.execute("SELECT 1")
            finally:
                cursor.close()
            if not getattr(dbapi_conn, "autocommit", True):
                # psycopg began a transaction for the ping: end it, or the checkout that
                # follows cannot switch the connection to autocommit (a 500 on the first
                # autocommit session after 5 s idle: tests/test_replicas.py)
                dbapi_conn.rollback()
        except Exception as error:  # the driver's own errors differ by driver
            # The pool discards this connection and checks out another (up to 3 tries).
            raise exc.DisconnectionError(f"idle connection is dead: {error}") from error


def json_text(value: Any) -> str:
    """JSON columns' serialiser: orjson (an 8 KB credential in ~3 us where the standard
    library takes ~50 us), which also writes an ``orjson.Fragment`` (JSON serialised
    once already, e.g. a credential that is also a VC-JWT's payload) as it is. Values
    orjson refuses (integers beyond 64 bits) go through the standard library."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value)


# The database did not answer: a lost or refused connection, a pool with no free connection
# in time (asyncpg's refusal at connect time arrives as the OS's ConnectionError).
UNAVAILABLE: tuple[type[Exception], ...] = (
    exc.OperationalError,
    exc.InterfaceError,
    exc.DisconnectionError,
    exc.TimeoutError,
    ConnectionError,
)

_BEGIN = {"DEFERRED": "BEGIN DEFERRED", "IMMEDIATE": "BEGIN IMMEDIATE"}
BUSY_TIMEOUT_MS = 30_000


class WouldBlock(Exception):
    """SQLite's write lock is held elsewhere and the work runs on the event loop: it has
    written nothing yet, so ``call`` runs it again in the thread pool, where it may wait."""


@dataclass
class _Inline:
    wrote: bool = False  # a write transaction began: from here on, wait for locks


_inline: contextvars.ContextVar[_Inline | None] = contextvars.ContextVar(
    "microcred_inline", default=None
)
# (engine, its async twin's sync facade) while work runs in a greenlet on the event loop
_on_twin: contextvars.ContextVar[tuple[Engine, Engine] | None] = contextvars.ContextVar(
    "microcred_on_twin", default=None
)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, issue BEGIN (pysqlite's implicit BEGIN is DEFERRED).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # On the DBAPI connection: through exec_driver_sql the BEGIN alone cost ~15 us of
        # SQLAlchemy's execution machinery, on every transaction.
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        dbapi = conn.connection.dbapi_connection
        inline = _inline.get()
        if mode != "IMMEDIATE" or inline is None or inline.wrote:
            dbapi.execute(_BEGIN[mode])
            return
        # The first write transaction of work on the event loop: take the lock now or
        # hand the work to the thread pool (call), rather than stall every request.
        dbapi.execute("PRAGMA busy_timeout=0")
        try:
            dbapi.execute(_BEGIN[mode])
        except sqlite3.OperationalError as exc:
            raise WouldBlock(str(exc)) from exc
        finally:
            dbapi.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        inline.wrote = True


def _variant(engine: Engine, name: str, **options: Any) -> Engine:
    # One option engine per engine and variant, kept on it: making one per transaction
    # costs a logger lookup under logging's global lock, on every request.
    variants: dict[str, Engine] | None = getattr(engine, "_microcred_variants", None)
    if variants is None:
        variants = engine._microcred_variants = {}  # type: ignore[attr-defined]
    found = variants.get(name)
    if found is None:
        found = variants[name] = engine.execution_options(**options)
    return found


def in_process(engine: Engine) -> bool:
    """True for SQLite: statements run inside this process and never wait on a network."""
    return engine.dialect.name == "sqlite"


def inline(fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Run SQLite work on the event loop. Raises ``WouldBlock`` (nothing written) when its
    first write transaction finds the write lock taken; once it has begun writing, a later
    transaction waits for the lock as usual."""
    token = _inline.set(_Inline())
    try:
        return fn(*args, **kwargs)
    finally:
        _inline.reset(token)


def _twin(engine: Engine) -> AsyncEngine:
    """The async engine beside a PostgreSQL engine (same URL, asyncpg), one per event loop
    (asyncpg's connections belong to the loop that opened them), made on first use."""
    loop = asyncio.get_running_loop()
    twins: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncEngine] | None = getattr(
        engine, "_microcred_twins", None
    )
    if twins is None:
        twins = engine._microcred_twins = weakref.WeakKeyDictionary()  # type: ignore[attr-defined]
    twin = twins.get(loop)
    if twin is None:
        # asyncpg reads a libpq URL itself (sslmode, sslrootcert, application_name, ...),
        # where SQLAlchemy would pass the query's parameters on as keyword arguments.
        dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        twin = twins[loop] = create_async_engine(
            "postgresql+asyncpg://",
            async_creator=functools.partial(asyncpg.connect, dsn),
            echo=engine.echo,
            json_serializer=json_text,
            # A request holds a connection only while its statements run: 20 serve
            # hundreds of launches a second. Past them a request waits for one, where an
            # overflow connection would be opened and closed per request (a backend fork
            # each: 262 launches/s with 32 browsers, 357 without).
            pool_size=20,
            max_overflow=0,
            # Born in autocommit, as the event loop's work mostly runs (``session``): an
            # isolation level given per checkout is set on the connection and reset on its
            # return, ~20 us each time; a transaction now pays that instead.
            isolation_level="AUTOCOMMIT",
        )
        twin.sync_engine._microcred_born_autocommit = True  # type: ignore[attr-defined]
        _ping_when_idle(twin.sync_engine)
    return twin


async def dispose_twin(engine: Engine) -> None:
    """Close the connections of this event loop's async twin (application shutdown)."""
    twins = getattr(engine, "_microcred_twins", None)
    twin = twins.pop(asyncio.get_running_loop(), None) if twins is not None else None
    if twin is not None:
        await twin.dispose()


async def on_loop(
    engine: Engine, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs
) -> _T:
    """Run ``fn`` (sync code whose only I/O is ``engine``) on the event loop, without a
    thread-pool hand-off.

    SQLite: inline (``inline``; may raise ``WouldBlock``, having written nothing).
    PostgreSQL: in a greenlet, with every ``session(engine)`` inside bound to the async
    twin; each statement awaits the server, and other requests run meanwhile. When the
    connection turns out to be lost, ``fn`` runs once more on a new one: it must be safe to
    run again after its open transaction was rolled back (a lost COMMIT may have committed:
    the launch then reports its state as used).
    """
    if in_process(engine):
        return inline(fn, *args, **kwargs)
    facade = _twin(engine).sync_engine

    def run() -> _T:
        token = _on_twin.set((engine, facade))
        try:
            return fn(*args, **kwargs)
        finally:
            _on_twin.reset(token)

    try:
        result: _T = await greenlet_spawn(run)
    except exc.DBAPIError as error:
        if not error.connection_invalidated:
            raise
        # The connection was lost (a restart, a failover): the server rolled back what the
        # work had not committed, and the pool is invalidated. Once more, on a new one.
        log.warning(
            "database connection lost (%s); running the request again", type(error).__name__
        )
        result = await greenlet_spawn(run)
    return result


async def call(engine: Engine, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Run ``fn`` (sync code whose only I/O is ``engine``) for an async route.

    It runs on the event loop (``on_loop``): on SQLite its statements take tens of
    microseconds, and on PostgreSQL it waits for the server in a greenlet; handing the work
    to the thread pool and back (a GIL hand-off each way) cost more than the work, about
    0.7 ms per request on SQLite and 2 ms per launch on PostgreSQL (bench/README.md,
    Launch). When another connection holds SQLite's write lock (the worker, an import),
    ``fn`` stops at its first write transaction, having written nothing, and runs again in
    the thread pool, where waiting for the lock stalls no other request. ``fn`` must not
    call out to other services (it would stall the event loop), and must be safe to run
    again when it stops before writing (reads only before its first write transaction).
    """
    with contextlib.suppress(WouldBlock):
        return await on_loop(engine, fn, *args, **kwargs)
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


@contextlib.contextmanager
def session(engine: Engine, *, write: bool = False, autocommit: bool = False) -> Iterator[Session]:
    """A session whose transaction the caller commits exactly once.

    ``write=True`` takes SQLite's write lock at BEGIN (read-then-write transactions).
    ``autocommit=True`` is for work that only reads, or writes with a single statement: on
    PostgreSQL each statement then commits by itself, without the BEGIN and COMMIT (or
    ROLLBACK) round trips, ~60 us of server CPU each; a read sees the same data as in a
    READ COMMITTED transaction, where every statement takes its own snapshot anyway.
    SQLite keeps its transaction (it costs nothing there). Uncommitted work is discarded on
    exit (closing rolls back without expiring what was loaded, so objects stay readable
    after the block).
    """
    twin = _on_twin.get()
    if twin is not None and twin[0] is engine:
        engine = twin[1]
    if in_process(engine):
        bind = _variant(engine, "write", sqlite_begin="IMMEDIATE") if write else engine
    elif getattr(engine, "_microcred_born_autocommit", False):  # the async twin's facade
        if autocommit:
            bind = _variant(engine, "autocommit", microcred_autocommit=True)
        else:
            bind = _variant(engine, "transaction", isolation_level="READ COMMITTED")
    elif autocommit:
        bind = _variant(engine, "autocommit", isolation_level="AUTOCOMMIT")
    else:
        bind = engine
    with Session(bind, expire_on_commit=False) as s:
        yield s


def autocommits(session: Session) -> bool:
    """True when each statement of ``session`` commits by itself (``session(autocommit=True)``
    on PostgreSQL): no savepoint can be had, and nothing written is rolled back."""
    options = session.get_bind().get_execution_options()
    return options.get("isolation_level") == "AUTOCOMMIT" or "microcred_autocommit" in options


def dml_ctes(session: Session) -> bool:
    """True where a statement may carry an INSERT or UPDATE in a WITH clause (PostgreSQL):
    two round trips folded into one. SQLite has no data-modifying CTEs."""
    return session.get_bind().dialect.name == "postgresql"


def insert_row(session: Session, model: type[SQLModel], **values: Any) -> None:
    """INSERT one row in the session's transaction: about a twentieth of the cost of
    ``session.add`` + ``flush`` (and of building the model instance). Fields not given take
    the model's defaults; the row does not enter the session's identity map. For rows
    nothing reads back in the same transaction (login state, launch data, web sessions).
    Run on the DBAPI cursor (``db.prepared``): ~8 µs on SQLite where Core took ~45 µs.
    """
    row = dict(values)
    for name, info in model.model_fields.items():
        if name in row:
            continue
        if info.default_factory is not None:
            row[name] = info.default_factory()  # type: ignore[call-arg]
        elif info.default is not PydanticUndefined and info.default is not None:
            row[name] = info.default
    prepared.insert(session, model, row)


def transaction_cache(session: Session, name: str) -> dict[Any, Any]:
    """A dict that lives as long as the session's current transaction: what an issuer
    or a worker batch reads once and uses for every credential of the transaction (the
    keyring, the repositories). Empty outside a transaction; writers of what it holds drop
    it (``forget``)."""
    txn = session.get_transaction()
    if txn is None:
        return {}
    key = f"microcred.cache.{name}"
    held = session.info.get(key)
    if held is None or held[0] is not txn:
        held = (txn, {})
        session.info[key] = held
    cache: dict[Any, Any] = held[1]
    return cache


def forget(session: Session, name: str) -> None:
    """Drop ``transaction_cache(session, name)`` (its rows changed)."""
    session.info.pop(f"microcred.cache.{name}", None)
