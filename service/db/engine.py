"""Engine and sessions for SQLite (default) and PostgreSQL.

SQLite runs in WAL mode with a busy timeout; transactions that read then write use
``BEGIN IMMEDIATE`` (``session(engine, write=True)``) so two writers never deadlock on a
lock upgrade. PostgreSQL uses psycopg and the driver's normal transactions.

One execution model (docs/architecture.md): database work is synchronous and runs in the
thread that asked for it: a sync route in FastAPI's thread pool, the worker's threads, the
CLI. An ``async`` route hands its database work to the thread pool (``call``). Pool sizes
come from ``Settings`` (``db_pool_size``, ``db_max_overflow``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, cast

import anyio.to_thread
import orjson
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from sqlalchemy import Connection, Engine, Table, event, exc, insert, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.pool import QueuePool
from sqlmodel import Session, SQLModel, create_engine

__all__ = [
    "UNAVAILABLE",
    "add",
    "add_values",
    "batched_adds",
    "call",
    "connection",
    "holding",
    "in_process",
    "insert_ids",
    "json_text",
    "make_engine",
    "session",
    "table",
    "with_defaults",
    "write_held",
]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_P = ParamSpec("_P")

# Connections kept open per process, unless the caller says otherwise (Settings'
# db_pool_size and db_max_overflow, documented in docs/architecture.md).
POOL_SIZE = 15
MAX_OVERFLOW = 0
SQLITE_MAX_OVERFLOW = 64  # past any thread pool's threads (Settings.web_threads; make_engine)


def make_engine(
    url: str,
    *,
    pool_size: int = POOL_SIZE,
    max_overflow: int = MAX_OVERFLOW,
) -> Engine:
    """The engine of ``url``: at most ``pool_size + max_overflow`` connections open (an
    overflow connection is opened and closed around each use)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            json_serializer=json_text,
            connect_args={"check_same_thread": False, "timeout": 30},
            # Keep connections open: closing the last connection to a WAL database
            # checkpoints the log (bench/README.md, Deliver).
            poolclass=QueuePool,
            pool_size=pool_size,
            # A thread waiting for SQLite's write lock (BEGIN IMMEDIATE, busy_timeout) holds
            # its connection, and the holder of the lock may open a second session (a key
            # set read): more connections than the thread pool has threads, or the holder
            # waits for one that none will give back. SQLite connections cost no server.
            max_overflow=max(max_overflow, SQLITE_MAX_OVERFLOW),
        )
        _configure_sqlite(engine)
        return engine
    # A thread past the pool's connections waits for one (pool_timeout): an overflow
    # connection would cost a backend fork per checkout, and PostgreSQL's max_connections
    # bounds the sum over every process (docs/architecture.md).
    engine = create_engine(
        url,
        json_serializer=json_text,
        pool_size=pool_size,
        max_overflow=max_overflow,
    )
    _ping_when_idle(engine)
    return engine


IDLE_PING_SECONDS = 5.0


def _ping_when_idle(engine: Engine) -> None:
    """Check a pooled connection before use when it sat idle for a while (a server restart,
    a firewall dropping idle connections); a dead one is replaced and the request goes on.

    ``pool_pre_ping`` pings on every checkout: a round trip per transaction (bench/README.md,
    Launch). A connection back in the pool within seconds is used again unchecked;
    if the server dropped it meanwhile, its first statement fails, SQLAlchemy invalidates
    the whole pool, and the request answers 503 (web/errors.py).
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
    """JSON columns' serialiser: orjson (bench/README.md, Sign), which also writes an
    ``orjson.Fragment`` (JSON serialised once already, e.g. a credential that is also a
    VC-JWT's payload) as it is. Values orjson refuses (integers beyond 64 bits) go through
    the standard library."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value)


# The database did not answer: a lost or refused connection, a pool with no free connection
# in time (a refusal at connect time may arrive as the OS's ConnectionError).
UNAVAILABLE: tuple[type[Exception], ...] = (
    exc.OperationalError,
    exc.InterfaceError,
    exc.DisconnectionError,
    exc.TimeoutError,
    ConnectionError,
)

_BEGIN = {"DEFERRED": "BEGIN DEFERRED", "IMMEDIATE": "BEGIN IMMEDIATE"}
BUSY_TIMEOUT_MS = 30_000


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
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        # On the driver's connection (public: Connection.connection.driver_connection):
        # SQLAlchemy's statement machinery around a BEGIN cost more than SQLite's work.
        conn.connection.driver_connection.execute(_BEGIN[mode])


# One option engine per engine and variant: making one per transaction costs a logger
# lookup under logging's global lock, on every request.
_variants: weakref.WeakKeyDictionary[Engine, dict[str, Engine]] = weakref.WeakKeyDictionary()


def _variant(engine: Engine, name: str, **options: Any) -> Engine:
    variants = _variants.setdefault(engine, {})
    found = variants.get(name)
    if found is None:
        found = variants[name] = engine.execution_options(**options)
    return found


def in_process(engine: Engine) -> bool:
    """True for SQLite: statements run inside this process and never wait on a network."""
    return engine.dialect.name == "sqlite"


async def call(engine: Engine, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Run ``fn`` (sync code whose I/O is ``engine``) for an ``async`` route, in the thread
    pool, as FastAPI runs a sync route. ``engine`` names what ``fn`` works on."""
    del engine
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


@contextlib.contextmanager
def session(engine: Engine, *, write: bool = False, autocommit: bool = False) -> Iterator[Session]:
    """A session whose transaction the caller commits exactly once.

    ``write=True`` takes SQLite's write lock at BEGIN (read-then-write transactions).
    ``autocommit=True`` is for work that only reads, or writes with a single statement: on
    PostgreSQL each statement then commits by itself, without the BEGIN and COMMIT (or
    ROLLBACK) round trips (bench/README.md, Launch); a read sees the same data as in a
    READ COMMITTED transaction, where every statement takes its own snapshot anyway.
    SQLite keeps its transaction (it costs nothing there). Uncommitted work is discarded on
    exit (closing rolls back without expiring what was loaded, so objects stay readable
    after the block).
    """
    with Session(_bind(engine, write=write, autocommit=autocommit), expire_on_commit=False) as s:
        yield s


def _bind(engine: Engine, *, write: bool, autocommit: bool) -> Engine:
    if in_process(engine):
        return _variant(engine, "write", sqlite_begin="IMMEDIATE") if write else engine
    if autocommit:
        return _variant(engine, "autocommit", isolation_level="AUTOCOMMIT")
    return engine


@contextlib.contextmanager
def connection(
    engine: Engine, *, write: bool = False, autocommit: bool = False
) -> Iterator[Connection]:
    """A Core connection whose transaction (begun by its first statement) the caller
    commits exactly once, as ``session``'s, with the same ``write`` and ``autocommit``.
    For work with no ORM in it (the OIDC login): a session's own begin, commit and close
    cost ~60 us more than the connection's."""
    with _bind(engine, write=write, autocommit=autocommit).connect() as conn:
        yield conn


def table(model: type[SQLModel]) -> Table:
    """The table of a table model, for Core statements over its columns."""
    return cast(Table, inspect(model).local_table)


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


_HELD = "microcred.held"  # (model instances, plain rows by table) of a batched_adds


@contextlib.contextmanager
def batched_adds(session: Session) -> Iterator[None]:
    """Rows given to ``add`` (model instances) or ``add_values`` (plain dicts) inside are
    written together at the end: one INSERT per table for a worker's batch, instead of
    one per row (its issuer would flush once per credential, and carry every row added
    before along). Nothing inside reads them back (``write_held`` first); on an error they
    are dropped with the transaction."""
    outer = session.info.get(_HELD)
    held: tuple[list[SQLModel], dict[Table, list[dict[str, Any]]]] = ([], {})
    session.info[_HELD] = held
    try:
        yield
    finally:
        session.info[_HELD] = outer
    _write(session, *held)


def holding(session: Session) -> bool:
    """Whether rows added now are held to the end of a ``batched_adds``."""
    return session.info.get(_HELD) is not None


def add(session: Session, row: SQLModel) -> None:
    """``session.add``, or held until the end of ``batched_adds``."""
    held = session.info.get(_HELD)
    if held is None:
        session.add(row)
    else:
        held[0].append(row)


def add_values(session: Session, model: type[SQLModel], values: dict[str, Any]) -> None:
    """A row as a plain dict, held to the end of ``batched_adds`` (call it only there:
    ``holding``) and written by one executemany INSERT per table with the others: no model
    instance is built and the ORM's flush never sees it. Every row of a table must give the
    same columns (the call site's); the rest take their defaults."""
    session.info[_HELD][1].setdefault(table(model), []).append(with_defaults(model, values))


def insert_ids(session: Session, model: type[SQLModel], rows: list[dict[str, Any]]) -> list[int]:
    """INSERT ``rows`` (plain dicts with the same columns; the model's defaults are set in
    them) and return their new ids in order: rows that other rows refer to (a worker
    batch's decisions, which its awards reference), without a model and a flush each."""
    if not rows:
        return []
    for values in rows:
        values.update(with_defaults(model, values))
    session.flush()  # as the session's autoflush would, before a statement of its own
    tbl = table(model)
    stmt = insert(tbl).returning(tbl.c.id, sort_by_parameter_order=True)
    return [int(i) for i in session.connection().execute(stmt, rows).scalars()]


def with_defaults(model: type[SQLModel], values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with the model's defaults for the fields not given (all but ``id``)."""
    row = dict(values)
    for name, info, takes_data in _fields(model):
        if name in row:
            continue
        factory = info.default_factory
        if factory is None:
            default = info.get_default()
        elif takes_data:
            default = info.get_default(call_default_factory=True, validated_data=row)
        else:
            default = factory()  # type: ignore[call-arg]
        if default is not PydanticUndefined:
            row[name] = default
    return row


@functools.cache
def _fields(model: type[SQLModel]) -> tuple[tuple[str, FieldInfo, bool], ...]:
    """A model's fields but ``id``, and whether each default factory takes the row: asked
    once (pydantic inspects the factory's signature on every ``get_default``)."""
    return tuple(
        (name, info, bool(info.default_factory_takes_validated_data))
        for name, info in model.model_fields.items()
        if name != "id"
    )


def write_held(session: Session) -> None:
    """Add and flush what ``batched_adds`` holds so far (before a read of those rows)."""
    held = session.info.get(_HELD)
    if held is not None:
        _write(session, *held)
        held[0].clear()
        held[1].clear()


def _write(
    session: Session, held: list[SQLModel], values: dict[Table, list[dict[str, Any]]]
) -> None:
    session.add_all(held)
    session.flush()  # rows the held values refer to (a new status list) are written first
    for tbl in sorted(values, key=lambda t: t.name):  # one order: no deadlock between workers
        rows = values[tbl]
        if rows:
            session.execute(insert(tbl), rows)
