"""Statement helpers for the launch's SQL (``service.lti.store``, the only module that may
import this one: an import-linter contract holds it).

Each statement is built once per process by a module-level builder (its identity is the
cache key) and run on the session's connection (``Session.connection().execute``: Core's
public execution, in the session's transaction, without the ORM's per-statement work),
whose compiled cache then skips the compilation; pending ORM changes are flushed first, as
the session's autoflush would; values convert through the columns' types as through the
ORM. Rows come back as tuples, or as detached, read-only model instances
(``model_construct``) for code that reads models: change rows with an UPDATE statement,
never with ``session.add`` on such an instance (which would INSERT it again).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, bindparam
from sqlalchemy import update as sa_update
from sqlalchemy.orm import configure_mappers
from sqlalchemy.sql import Executable
from sqlmodel import Session, SQLModel

from service.db.engine import table

__all__ = ["execute", "model", "models", "one", "rows", "table", "update", "values", "width"]

_M = TypeVar("_M", bound=SQLModel)

_built: dict[Hashable, Executable] = {}


def _statement(key: Hashable, build: Callable[[], Executable]) -> Executable:
    found = _built.get(key)
    if found is None:
        found = _built[key] = build()
    return found


def _connection(db: Session | Connection) -> Connection:
    """The session's connection in its transaction, with pending ORM changes flushed (a
    statement run here must see them, as through ``Session.execute``); a connection as
    it is."""
    if isinstance(db, Connection):
        return db
    db.flush()
    return db.connection()


def one(
    session: Session | Connection, build: Callable[[], Executable], **params: Any
) -> tuple[Any, ...] | None:
    """The first row of the statement ``build()`` returns (``build`` is called once per
    process: pass a module-level function)."""
    found = _connection(session).execute(_statement(build, build), params).first()
    return None if found is None else tuple(found)


def rows(
    session: Session | Connection, build: Callable[[], Executable], **params: Any
) -> list[tuple[Any, ...]]:
    """Every row of the statement ``build()`` returns (built once per process)."""
    statement = _statement(build, build)
    return [tuple(row) for row in _connection(session).execute(statement, params)]


def execute(session: Session | Connection, statement: Executable) -> None:
    """Run ``statement`` (built by the caller) in the session's transaction."""
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
    result = _connection(session).execute(_statement(("update", model_type, names), build), params)
    return int(getattr(result, "rowcount", -1))


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
