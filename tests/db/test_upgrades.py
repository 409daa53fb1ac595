"""Upgrades: from every earlier revision to head with data in every table, and every
migration additive, so processes of the previous release keep working on the migrated
schema while web and workers roll (docs/operations.md "Upgrades").

The revisions come from Alembic's script directory, so a new migration is tested here
without being named.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    JSON,
    Boolean,
    Connection,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    Table,
    create_engine,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.pool import NullPool

from service.db import migrate
from service.db.base import metadata
from tests.conftest import scratch_database

pytestmark = pytest.mark.db


def _revisions() -> list[str]:
    """Every revision, oldest first (the history is one line; a branch fails here)."""
    script = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    heads = script.get_heads()
    assert len(heads) == 1, f"migrations have several heads {heads}: merge them"
    return [r.revision for r in reversed(list(script.walk_revisions()))]


REVISIONS = _revisions()
HEAD = REVISIONS[-1]


@dataclass
class Chain:
    """The chain migrated once, one revision at a time from an empty database."""

    columns: dict[str, dict[str, dict[str, dict[str, Any]]]]  # revision: table: column: ...
    copies: dict[str, str]  # revision: a copy of the database at it, for one test to use up


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory, master_key: bytes) -> Iterator[Chain]:
    """Each test below starts from a copy of the database at its revision (a file on SQLite,
    a database on PostgreSQL) instead of migrating from nothing again, so the chain runs
    once per test process instead of once per test."""
    folder = tmp_path_factory.mktemp("revisions")
    found = Chain(columns={}, copies={})
    with contextlib.ExitStack() as kept:
        url = kept.enter_context(scratch_database("microcred_chain", folder / "chain.db"))
        engine = create_engine(url, poolclass=NullPool)  # nothing left connected to copy from
        for revision in REVISIONS:
            migrate.upgrade(url, revision)
            with engine.connect() as conn:
                found.columns[revision] = _columns(conn)
            if revision != HEAD:
                found.copies[revision] = kept.enter_context(
                    scratch_database("microcred_up", folder / f"{revision}.db", copy_of=url)
                )
        yield found


_WHEN = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)


def _value(table: Table, column: Any, n: int) -> Any:
    """A plausible value of ``column`` for the n-th row (unique where a column must be)."""
    kind = column.type
    if column.foreign_keys:
        return 1  # every table's first row has id 1
    if isinstance(kind, Boolean):
        return False
    if isinstance(kind, Integer):
        return n
    if isinstance(kind, Float | Numeric):
        return 0.5
    if isinstance(kind, DateTime):
        return _WHEN + dt.timedelta(days=n)
    if isinstance(kind, LargeBinary):
        return b"\0" * 16
    if isinstance(kind, JSON):
        if table.name == "credential" and column.name == "document":
            # as issued: what the issuer identity migration reads
            return {
                "id": f"http://127.0.0.1:8000/credentials/{n}",
                "issuer": {"id": "did:web:127.0.0.1%3A8000"},
            }
        return {}
    length = getattr(kind, "length", None) or 40
    return f"{table.name[:8]}-{column.name[:8]}-{n}"[:length]


def _fill(conn: Connection, n: int) -> dict[str, int]:
    """One row (id ``n``) in every table of the schema as it is now; the row counts."""
    schema = MetaData()
    schema.reflect(conn)
    counts = {}
    for table in schema.sorted_tables:
        if table.name == "alembic_version":
            continue
        row = {c.name: _value(table, c, n) for c in table.columns}
        conn.execute(table.insert().values(row))
        counts[table.name] = conn.execute(select(func.count()).select_from(table)).scalar_one()
    return counts


@pytest.mark.parametrize("start", REVISIONS[:-1])
def test_upgrade_to_head_from_each_revision_keeps_the_data(chain: Chain, start: str) -> None:
    new_database = chain.copies.pop(start)  # used up here: no other test sees its rows
    engine = create_engine(new_database)
    with engine.connect() as conn:
        at = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    assert at == start
    with engine.begin() as conn:
        before = _fill(conn, 1)
    migrate.upgrade(new_database)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
        schema = MetaData()
        schema.reflect(conn)
        after = {
            name: conn.execute(select(func.count()).select_from(schema.tables[name])).scalar_one()
            for name in before
        }
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    engine.dispose()
    assert revision == HEAD
    assert diff == [], f"from {start}: the migrated schema differs from the models: {diff}"
    assert after == before, f"from {start}: rows lost or made by the upgrade"


def _columns(conn: Connection) -> dict[str, dict[str, Any]]:
    found = inspect(conn)
    return {
        t: {c["name"]: c for c in found.get_columns(t)}
        for t in found.get_table_names()
        if t != "alembic_version"
    }


def test_every_migration_is_additive_so_the_previous_release_keeps_working(
    chain: Chain,
) -> None:
    """During a roll, web processes and workers of the previous release run against the
    migrated schema: every table and column they know must still be there, and a column
    they do not know must not be required of their INSERTs (nullable or a server default).
    The schemas are those of the chain migrated one revision at a time (``chain``)."""
    previous = chain.columns[REVISIONS[0]]
    problems = []
    for revision in REVISIONS[1:]:
        current = chain.columns[revision]
        for table, columns in previous.items():
            if table not in current:
                problems.append(f"{revision} drops table {table}")
                continue
            for name in columns:
                if name not in current[table]:
                    problems.append(f"{revision} drops {table}.{name}")
            for name, column in current[table].items():
                if name in columns:
                    if columns[name]["nullable"] and not column["nullable"]:
                        problems.append(f"{revision} makes {table}.{name} NOT NULL")
                elif not column["nullable"] and column.get("default") is None:
                    problems.append(
                        f"{revision} adds {table}.{name} NOT NULL without a server default"
                    )
        previous = current
    assert problems == [], (
        "a migration the previous release cannot run against; document the stop-the-world "
        f"upgrade in docs/operations.md and the release notes: {problems}"
    )
