"""Statements compiled once and run on the session's DBAPI cursor (the launch path).

Through the ORM, running a prebuilt SELECT of one row costs ~80-130 µs of Python around a
SQLite call of ~5 µs; Core's execution still ~40 µs (bench/README.md, Launch). A launch
runs about twenty statements, so the login, launch and landing run theirs here: a Core
statement is compiled once per dialect, with the bind and result processors of its
columns' types (aware UTC datetimes, JSON, booleans convert exactly as through the ORM),
and each call is the driver's ``execute`` in the session's own transaction (SQLite's
``BEGIN IMMEDIATE`` included: the session begins it on first use).

Rows come back as tuples, or as detached model instances (``model_construct``) for code
that reads models. A model built here is not in the session: change rows with an UPDATE
statement, never with ``session.add`` (which would INSERT it again).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from sqlalchemy import Table, bindparam
from sqlalchemy import insert as sa_insert
from sqlalchemy import update as sa_update
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import configure_mappers
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlmodel import Session, SQLModel

__all__ = [
    "Prepared",
    "execute",
    "insert",
    "model",
    "models",
    "one",
    "prepare",
    "rows",
    "table",
    "update",
    "values",
    "width",
]

_M = TypeVar("_M", bound=SQLModel)
Processor = Callable[[Any], Any] | None


@dataclass
class Prepared:
    sql: str
    names: tuple[str, ...] | None  # parameter order for positional paramstyles
    defaults: Mapping[str, Any]  # literal values compiled into the statement
    binds: Mapping[str, Processor]
    types: tuple[Any, ...]  # the selected columns' types (for this dialect)
    dialect: Dialect
    asyncpg: bool  # runs on asyncpg itself in autocommit (``_run_asyncpg``)
    # Some drivers' result processors depend on the type the server reports (psycopg's
    # numerics): they are made from the first cursor's description, then kept (threads
    # that race here compute the same tuple).
    results: tuple[Processor, ...] | None = None

    def processors(self, cursor: Any) -> tuple[Processor, ...]:
        if self.results is None:
            self.results = tuple(
                t.result_processor(self.dialect, d[1])
                for t, d in zip(self.types, cursor.description, strict=True)
            )
        return self.results


def prepare(
    dialect: Dialect, statement: ClauseElement, *, column_keys: Sequence[str] | None = None
) -> Prepared:
    """Compile ``statement`` for ``dialect`` with its type processors (cache the result).

    ``column_keys``: for a bare ``insert(table)``, the columns given (parameters named so).
    """
    compiled = statement.compile(
        dialect=dialect, column_keys=list(column_keys) if column_keys is not None else None
    )
    assert isinstance(compiled, SQLCompiler)
    binds = compiled.binds
    if any(b.expanding for b in binds.values()):
        raise ValueError("IN lists with expanding parameters cannot be prepared")
    # what a SELECT, or an INSERT/UPDATE/DELETE ... RETURNING, gives back
    columns = getattr(statement, "exported_columns", ())
    types = tuple(c.type.dialect_impl(dialect) for c in columns)
    return Prepared(
        sql=compiled.string,
        names=tuple(compiled.positiontup) if compiled.positiontup is not None else None,
        defaults={n: b.effective_value for n, b in binds.items() if b.value is not None},
        binds={n: b.type.dialect_impl(dialect).bind_processor(dialect) for n, b in binds.items()},
        types=types,
        dialect=dialect,
        asyncpg=dialect.driver == "asyncpg",
    )


_cache: dict[tuple[str, str, Hashable], Prepared] = {}


def _prepared(
    session: Session, key: Hashable, build: Callable[[], ClauseElement], keys: Any = None
) -> Prepared:
    dialect = session.get_bind().dialect
    cache_key = (dialect.name, dialect.driver, key)
    found = _cache.get(cache_key)
    if found is None:
        found = _cache[cache_key] = prepare(dialect, build(), column_keys=keys)
    return found


def _run(session: Session, prepared: Prepared, params: Mapping[str, Any]) -> Any:
    values = {**prepared.defaults, **params} if prepared.defaults else params
    processed = {
        name: (proc(values[name]) if proc is not None else values[name])
        for name, proc in prepared.binds.items()
    }
    args: Any = processed if prepared.names is None else tuple(processed[n] for n in prepared.names)
    connection = session.connection()
    dbapi: Any = connection.connection.dbapi_connection
    if prepared.results is not None and prepared.asyncpg and dbapi.autocommit:
        return _run_asyncpg(connection, dbapi, prepared, args)
    cursor = dbapi.cursor()
    try:
        cursor.execute(prepared.sql, args)
    except Exception as error:
        # What SQLAlchemy's own execution does with a driver error: wrap it (IntegrityError,
        # OperationalError, ...) and, when the connection is lost, invalidate the pool, whose
        # other connections died with it (a server restart), so none is handed out again.
        connection._handle_dbapi_exception(error, prepared.sql, args, cursor, None)
    if prepared.results is None and cursor.description is not None:
        prepared.processors(cursor)
    elif prepared.results is None:
        prepared.results = ()
    return cursor


class _Fetched:
    """An autocommit statement's rows or row count from asyncpg, read as from a cursor."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows, self.rowcount = rows, rowcount

    def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[Any]:
        return self._rows

    def close(self) -> None:
        pass


_STATUS_COUNT = re.compile(r"(?:SELECT|UPDATE|DELETE|INSERT \d+) (\d+)")


def _run_asyncpg(connection: Any, dbapi: Any, prepared: Prepared, args: tuple[Any, ...]) -> Any:
    """The statement on the asyncpg connection itself (``run_async``): where SQLAlchemy's
    cursor adapter costs about as much CPU again as asyncpg's own work (~25 µs a
    statement: a lock, its own statement cache, the description, a row deque). Only in
    autocommit, where no BEGIN is due first, and once the statement ran through the
    adapter (its result processors are known). asyncpg keeps the prepared statement
    (its statement cache, which re-prepares one the schema made stale)."""
    sql = prepared.sql
    try:
        if prepared.types:
            rows = dbapi.run_async(lambda conn: conn.fetch(sql, *args))
            return _Fetched(rows, len(rows))
        status = dbapi.run_async(lambda conn: conn.execute(sql, *args))
    except Exception as error:
        try:
            dbapi._handle_exception(error)  # the adapter's own translation to DBAPI errors
        except Exception as translated:
            connection._handle_dbapi_exception(translated, sql, args, None, None)
        raise
    found = _STATUS_COUNT.match(status or "")
    return _Fetched([], int(found.group(1)) if found else -1)


def _row(processors: tuple[Processor, ...], raw: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(p(v) if p is not None else v for p, v in zip(processors, raw, strict=True))


def one(
    session: Session,
    build: Callable[[], ClauseElement],
    *,
    convert: bool | int = True,
    cache_key: Hashable | None = None,
    **params: Any,
) -> tuple[Any, ...] | None:
    """The first row of the SELECT ``build()`` returns (``build`` is called once per
    dialect: pass a module-level function, its identity is the cache key, or pass ``cache_key``).

    ``convert=False``: the values as the driver returns them (SQLite: datetimes as text),
    for a caller that only compares or hashes them; ``convert=n``: the first n values
    converted, the rest as the driver returns them.
    """
    prepared = _prepared(session, build if cache_key is None else cache_key, build)
    cursor = _run(session, prepared, params)
    try:
        raw = cursor.fetchone()
        if raw is None or convert is False:
            return None if raw is None else tuple(raw)
        if convert is True:
            return _row(prepared.processors(cursor), raw)
        head = _row(prepared.processors(cursor)[:convert], raw[:convert])
        return head + tuple(raw[convert:])
    finally:
        cursor.close()


def rows(
    session: Session, build: Callable[[], ClauseElement], **params: Any
) -> list[tuple[Any, ...]]:
    """Every row of the SELECT ``build()`` returns."""
    prepared = _prepared(session, build, build)
    cursor = _run(session, prepared, params)
    try:
        processors = prepared.processors(cursor)
        return [_row(processors, raw) for raw in cursor.fetchall()]
    finally:
        cursor.close()


def execute(session: Session, build: Callable[[], ClauseElement], **params: Any) -> int:
    """Run the INSERT, UPDATE or DELETE ``build()`` returns; the number of rows it touched."""
    cursor = _run(session, _prepared(session, build, build), params)
    try:
        return int(cursor.rowcount)
    finally:
        cursor.close()


def update(
    session: Session, model_type: type[SQLModel], row_id: int, values: Mapping[str, Any]
) -> int:
    """UPDATE the columns in ``values`` of ``model_type``'s row ``row_id`` (rows touched)."""
    names = tuple(sorted(values))
    target = table(model_type)

    def build() -> ClauseElement:
        return (
            sa_update(target)
            .where(target.c.id == bindparam("b_id"))
            .values({name: bindparam(f"b_{name}") for name in names})
        )

    params = {f"b_{name}": value for name, value in values.items()} | {"b_id": row_id}
    cursor = _run(session, _prepared(session, ("update", model_type, names), build), params)
    try:
        return int(cursor.rowcount)
    finally:
        cursor.close()


def insert(session: Session, model_type: type[SQLModel], values: Mapping[str, Any]) -> None:
    """INSERT one row of ``model_type``'s table with exactly the columns in ``values``."""
    names = tuple(sorted(values))
    target = table(model_type)
    prepared = _prepared(session, (model_type, names), lambda: sa_insert(target), names)
    _run(session, prepared, values).close()


def table(model_type: type[SQLModel]) -> Table:
    """The model's table, for statements over its columns (``select(table(Model))``)."""
    found: Table = model_type.__table__  # type: ignore[attr-defined]
    return found


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
    ORM state; setting an attribute on it fails)."""
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
