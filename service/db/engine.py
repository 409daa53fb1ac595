"""Engine and sessions for SQLite (default) and PostgreSQL.

SQLite runs in WAL mode with a busy timeout; transactions that read then write use
``BEGIN IMMEDIATE`` (``session(engine, write=True)``) so two writers never deadlock on a
lock upgrade. PostgreSQL uses the driver's normal transactions.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import anyio.to_thread
import orjson
from pydantic_core import PydanticUndefined
from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import QueuePool
from sqlmodel import Session, SQLModel, create_engine

from service.db import prepared

__all__ = [
    "WouldBlock",
    "call",
    "in_process",
    "inline",
    "insert_row",
    "json_text",
    "make_engine",
    "session",
]

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
    return create_engine(
        url,
        echo=echo,
        json_serializer=json_text,
        pool_pre_ping=True,
        pool_size=20,
        max_overflow=20,
    )


def json_text(value: Any) -> str:
    """JSON columns' serialiser: orjson (an 8 KB credential in ~3 us where the standard
    library takes ~50 us), which also writes an ``orjson.Fragment`` (JSON serialised
    once already, e.g. a credential that is also a VC-JWT's payload) as it is. Values
    orjson refuses (integers beyond 64 bits) go through the standard library."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value)


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


def _writer(engine: Engine) -> Engine:
    # One option engine per engine, kept on it: making one per transaction costs a logger
    # lookup under logging's global lock, on every write request.
    writer: Engine | None = getattr(engine, "_microcred_writer", None)
    if writer is None:
        writer = engine.execution_options(sqlite_begin="IMMEDIATE")
        engine._microcred_writer = writer  # type: ignore[attr-defined]
    return writer


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


async def call(engine: Engine, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Run ``fn`` (sync code whose only I/O is ``engine``) for an async route.

    On SQLite it runs right here on the event loop: its statements take tens of
    microseconds, and handing the work to the thread pool and back (a GIL hand-off each
    way) cost more than the work, about 0.7 ms per request (bench/README.md, Launch). When
    another connection holds the write lock (the worker, an import), ``fn`` stops at its
    first write transaction, having written nothing, and runs again in the thread pool,
    where waiting for the lock stalls no other request. On PostgreSQL it runs in the thread
    pool, so other requests proceed while a statement waits on the server. ``fn`` must not
    call out to other services, and must be safe to run again when it stops before
    writing (reads only before its first write transaction).
    """
    if in_process(engine):
        with contextlib.suppress(WouldBlock):
            return inline(fn, *args, **kwargs)
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


@contextlib.contextmanager
def session(engine: Engine, *, write: bool = False) -> Iterator[Session]:
    """A session whose transaction the caller commits exactly once.

    ``write=True`` takes SQLite's write lock at BEGIN (read-then-write transactions).
    Uncommitted work is discarded on exit (closing rolls back without expiring what was
    loaded, so objects stay readable after the block).
    """
    bind = _writer(engine) if write else engine
    with Session(bind, expire_on_commit=False) as s:
        yield s


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
