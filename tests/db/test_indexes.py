"""The schema's indexes follow the rule in service/db/models/__init__.py: no single-column
index that a unique constraint, primary key or wider index starts with.

Such an index is not just extra write work: with a young table's statistics PostgreSQL's
generic plan for a prepared lookup by (platform_id, sub) chose ``ix_person_platform_id``
and filtered every person of the platform, and the launch's take of its login state
scanned every state of the platform (bench/README.md, fifth session)."""

from __future__ import annotations

from sqlalchemy import PrimaryKeyConstraint, UniqueConstraint
from sqlmodel import SQLModel

import service.db.models  # noqa: F401  (every table on the metadata)


def _keys(table: object) -> list[tuple[str, tuple[str, ...]]]:
    keys: list[tuple[str, tuple[str, ...]]] = []
    for c in table.constraints:  # type: ignore[attr-defined]
        if isinstance(c, (UniqueConstraint, PrimaryKeyConstraint)):
            keys.append((str(c.name), tuple(col.name for col in c.columns)))
    for i in table.indexes:  # type: ignore[attr-defined]
        keys.append((str(i.name), tuple(col.name for col in i.columns)))
    return keys


def test_no_index_is_a_prefix_of_another_key() -> None:
    redundant = []
    for table in SQLModel.metadata.sorted_tables:
        keys = _keys(table)
        for index in table.indexes:
            cols = tuple(col.name for col in index.columns)
            for name, wider in keys:
                if name != index.name and len(wider) > len(cols) and wider[: len(cols)] == cols:
                    redundant.append(f"{table.name}.{index.name} (covered by {name})")
    assert redundant == []


def test_the_launch_tables_keep_only_the_indexes_their_queries_use() -> None:
    tables = SQLModel.metadata.tables
    # the login state is found by its key; expired ones are purged by expires_at
    assert {i.name for i in tables["launch_state"].indexes} == {"ix_launch_state_expires_at"}
    assert {i.name for i in tables["web_session"].indexes} == {"ix_web_session_expires_at"}
    assert not any(
        tuple(c.name for c in i.columns) == ("platform_id",) for i in tables["person"].indexes
    )
