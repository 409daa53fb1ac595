"""Look rows up key by key on PostgreSQL, whatever the planner's statistics say.

On a table PostgreSQL has not analysed yet (a new course's first burst; autovacuum late or
off) a query such as ``course_id = :c AND person_id IN (...)`` is planned from a guess of a
few rows for the course: one scan of the course's whole index range, the ``IN`` list as a
filter. A worker runs it once per batch, so its cost grows with the table (every result of
the course read per batch of learners). Joining the keys as a table, ``unnest`` of an
array, to a ``LATERAL`` subquery that the planner cannot flatten (it has a ``LIMIT`` or
``OFFSET``) makes one index probe per key, the same plan with or without statistics.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Integer, func
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.selectable import TableValuedAlias

__all__ = ["int_keys"]


def int_keys(values: Sequence[int], name: str) -> TableValuedAlias:
    """``values`` as a derived table ``name`` of one integer column ``i`` (PostgreSQL);
    join it to ``select(...).where(column == keys.c.i).offset(0).lateral()``."""
    keys = func.unnest(postgresql.array(list(values), type_=Integer)).table_valued("i")
    return keys.render_derived(name=name)
