"""Statement helpers for the launch's SQL (``service.lti.store``, the only module that may
import this one: an import-linter contract holds it).

Each statement is built once per process by a module-level builder (its identity is the
key) and compiled once per database with SQLAlchemy's public compiler API (the SQL, its
parameters' order, its bound parameters' types and defaults). It then runs on the driver's
cursor of the session's (or connection's) connection, in its transaction: the launch's
~8 statements skip Core's per-statement execution machinery (bench/README.md, "Launch,
7 Dec 20:00"). Values convert through the columns' types (their bind and result
processors) as through the ORM; the driver's errors come out as SQLAlchemy's, and a lost
connection renews the pool as through Core. These statements fire no statement events
(``before_cursor_execute``). Pending ORM changes are flushed first, as the session's
autoflush would.

Rows come back as tuples, or as detached, read-only model instances (``model_construct``)
for code that reads models: change rows with an UPDATE statement, never with
``session.add`` on such an instance (which would INSERT it again).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, Dialect, bindparam, exc, insert
from sqlalchemy import update as sa_update
from sqlalchemy.orm import configure_mappers
from sqlalchemy.sql import Executable
from sqlmodel import Session, SQLModel

from service.db.engine import table, with_defaults

__all__ = [
    "execute",
    "insert_row",
    "model",
    "models",
    "one",
    "rows",
    "table",
    "update",
    "values",
    "width",
]

_M = TypeVar("_M", bound=SQLModel)
_Convert = Callable[[Any], Any]


class _Plan:
    """A statement compiled for one database: its SQL, how parameters go in (each bound
    parameter's default and its type's bind processor) and how the result's values come
    out (each column type's result processor, set at the first execution: it may depend
    on the driver's type code)."""

    def __init__(self, statement: Any, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.dialect = dialect
        self.sql = compiled.string
        self.order = tuple(compiled.positiontup) if dialect.positional else None
        self.defaults = {n: b.effective_value for n, b in compiled.binds.items() if not b.required}
        self.binds = [
            (name, process)
            for name, bind in compiled.binds.items()
            if (process := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        ]
        self.types = [c.type for c in statement.exported_columns]  # none: DML, no RETURNING
        self.results: list[_Convert | None] | None = None

    def parameters(self, given: Mapping[str, Any]) -> Any:
        params = self.defaults | dict(given)
        for name, process in self.binds:  # None too, as Core does (JSON's None is 'null')
            if name in params:
                params[name] = process(params[name])
        return params if self.order is None else tuple(params[n] for n in self.order)

    def row(self, cursor: Any, found: Sequence[Any]) -> tuple[Any, ...]:
        if self.results is None:
            # the driver's description once per plan: psycopg builds it per column per read
            description = cursor.description
            if len(description) != len(self.types):
                raise RuntimeError(f"{len(description)} columns, {len(self.types)} expected")
            self.results = [
                t.dialect_impl(self.dialect).result_processor(self.dialect, d[1])
                for t, d in zip(self.types, description, strict=True)
            ]
        return tuple(v if p is None else p(v) for p, v in zip(self.results, found, strict=True))


_CURSOR = "microcred.prepared.cursor"
_plans: weakref.WeakKeyDictionary[Dialect, dict[Hashable, _Plan]] = weakref.WeakKeyDictionary()


def _plan(dialect: Dialect, key: Hashable, build: Callable[[], Executable]) -> _Plan:
    by_key = _plans.setdefault(dialect, {})
    found = by_key.get(key)
    if found is None:
        found = by_key[key] = _Plan(build(), dialect)
    return found


def _connection(db: Session | Connection) -> Connection:
    """The connection in its transaction (begun: on SQLite, with its write lock when the
    caller asked for one), with a session's pending ORM changes flushed (a statement run
    here must see them, as through ``Session.execute``)."""
    if isinstance(db, Session):
        db.flush()
        return db.connection()
    if not db.in_transaction():
        db.begin()
    return db


def _run(
    db: Session | Connection,
    key: Hashable,
    build: Callable[[], Executable],
    params: Mapping[str, Any],
) -> tuple[list[tuple[Any, ...]], int]:
    """Run the statement on the driver's cursor: its rows, read to the end (SQLite then
    finishes the statement: none stays open on a kept cursor), and the row count."""
    conn = _connection(db)
    plan = _plan(conn.dialect, key, build)
    cursor = _cursor(conn)
    try:
        cursor.execute(plan.sql, plan.parameters(params))
        if not plan.types:
            return [], cursor.rowcount
        return [plan.row(cursor, r) for r in cursor.fetchall()], cursor.rowcount
    except conn.dialect.loaded_dbapi.Error as error:
        raise _error(conn, plan, error, cursor) from error


def _cursor(conn: Connection) -> Any:
    """A cursor kept with the driver's connection (psycopg builds one in ~20 us): one thread
    uses a checked-out connection at a time, and every statement here reads its rows at
    once."""
    pooled = conn.connection
    held = pooled.info.get(_CURSOR)
    if held is None or held[0] is not pooled.dbapi_connection:
        driver = pooled.dbapi_connection
        assert driver is not None
        held = pooled.info[_CURSOR] = (driver, driver.cursor())
    return held[1]


def _error(conn: Connection, plan: _Plan, error: Any, cursor: Any) -> BaseException:
    """The driver's ``error`` as SQLAlchemy's (the 503 page knows those), parameters
    hidden. A lost connection is left to Core: a statement of its own on the connection
    fails there too, and Core invalidates the connection and renews the pool."""
    if conn.dialect.is_disconnect(error, conn.connection, cursor):
        try:
            conn.exec_driver_sql("SELECT 1")
        except exc.DBAPIError as core:
            return core
    wrapped: BaseException = exc.DBAPIError.instance(
        plan.sql,
        None,
        error,
        conn.dialect.loaded_dbapi.Error,
        hide_parameters=True,
        dialect=conn.dialect,
    )
    return wrapped


def one(
    session: Session | Connection, build: Callable[[], Executable], **params: Any
) -> tuple[Any, ...] | None:
    """The first row of the statement ``build()`` returns (``build`` is called once per
    process and database: pass a module-level function)."""
    found, _ = _run(session, build, build, params)
    return found[0] if found else None


def rows(
    session: Session | Connection, build: Callable[[], Executable], **params: Any
) -> list[tuple[Any, ...]]:
    """Every row of the statement ``build()`` returns (built once per process)."""
    return _run(session, build, build, params)[0]


def execute(session: Session | Connection, statement: Executable) -> None:
    """Run ``statement`` (built by the caller, run by Core) in the session's transaction."""
    _connection(session).execute(statement)


def update(
    session: Session | Connection,
    model_type: type[SQLModel],
    row_id: int,
    changes: Mapping[str, Any],
) -> int:
    """UPDATE the columns in ``changes`` of ``model_type``'s row ``row_id`` (rows touched)."""
    names = tuple(sorted(changes))
    target = table(model_type)

    def build() -> Executable:
        return (
            sa_update(target)
            .where(target.c.id == bindparam("b_id"))
            .values({name: bindparam(f"b_{name}") for name in names})
        )

    params = {f"b_{name}": value for name, value in changes.items()} | {"b_id": row_id}
    return _run(session, ("update", model_type, names), build, params)[1]


def insert_row(db: Session | Connection, model_type: type[SQLModel], **given: Any) -> None:
    """INSERT one row in the session's (or connection's) transaction: about a twentieth of
    the cost of ``session.add`` + ``flush`` (and of building the model instance). Fields not
    given take the model's defaults; the row does not enter the session's identity map. For
    rows nothing reads back in the same transaction (login state, launch data, web
    sessions)."""
    row = with_defaults(model_type, given)
    names = tuple(sorted(row))
    target = table(model_type)

    def build() -> Executable:
        return insert(target).values({name: bindparam(f"b_{name}") for name in names})

    params = {f"b_{name}": value for name, value in row.items()}
    _run(db, ("insert", model_type, names), build, params)


@functools.cache
def _columns(model_type: type[SQLModel]) -> tuple[str, ...]:
    # A model's attributes work only once the ORM's mappers are configured, which the
    # first ORM query does; a fresh process may build models here before any.
    configure_mappers()
    return tuple(c.key for c in table(model_type).columns)


def values(
    model_type: type[SQLModel], row: Sequence[Any] | None, start: int = 0
) -> dict[str, Any] | None:
    """The columns of ``model_type`` in ``row[start:]`` (as selected with
    ``select(table(Model))``) by name; None for no row, or a NULL primary key (outer join)."""
    if row is None:
        return None
    names = _columns(model_type)
    chunk = row[start : start + len(names)]
    if chunk[0] is None:
        return None
    return dict(zip(names, chunk, strict=True))


def model(model_type: type[_M], row: Sequence[Any] | None, start: int = 0) -> _M | None:
    """``values`` as a detached, read-only model (``model_construct``: no validation, no
    ORM state)."""
    found = values(model_type, row, start)
    return None if found is None else cast(_M, model_type.model_construct(**found))


def models(row: Sequence[Any], *model_types: type[SQLModel]) -> list[Any]:
    """A joined row (``select(table(A), table(B), ...)``) as one model (or None) per table."""
    out, start = [], 0
    for model_type in model_types:
        out.append(model(model_type, row, start))
        start += width(model_type)
    return out


def width(model_type: type[SQLModel]) -> int:
    """How many columns ``model`` reads for ``model_type``."""
    return len(_columns(model_type))
