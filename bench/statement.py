"""What one small statement costs the web process, by the way it is run: SQLAlchemy's
``Session.execute`` of a select built per call; ``service.db.prepared``'s way (one select
built per process, run on the session's connection: how ``service/lti/store.py`` runs the
launch's statements); ``Connection.exec_driver_sql``; the driver's own cursor. And what a
route's short read adds around its statements: a ``Session`` with its transaction per
statement, against a pooled DBAPI connection per statement (checkout, statement, commit).
A primary-key select of one short row, the size of most of a launch's statements, on the
engine ``service.db.engine.make_engine`` builds.

Prints the CPU of this process per statement (``time.process_time``: on PostgreSQL the
server's own work runs in its backend, not here), the median of ``--rounds`` rounds, ways
interleaved (and their order reversed every other round) so that a change in the host's
speed falls on all of them.

    .venv/bin/python bench/statement.py [--count 20000] [--rounds 5] [--only sqlite,postgres]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    Table,
    Text,
    bindparam,
    create_engine,
    select,
    text,
)
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session

from service.db import prepared
from service.db.engine import make_engine

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
ROWS = 1000
meta = MetaData()
row = Table("bench_row", meta, Column("id", Integer, primary_key=True), Column("v", Text))


@contextlib.contextmanager
def _database(kind: str) -> Iterator[Engine]:
    if kind == "sqlite":
        engine = make_engine(f"sqlite:///{tempfile.mkdtemp()}/statement.db")
        yield engine
        engine.dispose()
        return
    name = "bench_statement"
    admin = create_engine(make_url(PG_ADMIN), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(make_url(PG_ADMIN).set(database=name).render_as_string(False))
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _built_select() -> Any:
    return select(row.c.v).where(row.c.id == bindparam("id"))


def _ways(engine: Engine, count: int) -> dict[str, Callable[[], None]]:
    built = select(row.c.v).where(row.c.id == bindparam("id"))
    pg = engine.dialect.name == "postgresql"
    raw = "SELECT v FROM bench_row WHERE id = %s" if pg else "SELECT v FROM bench_row WHERE id = ?"

    def orm() -> None:
        with Session(engine) as s:
            for i in range(count):
                s.execute(select(row.c.v).where(row.c.id == i % ROWS + 1)).first()

    def core() -> None:  # the launch's way to 7 Dec: flush, then Core on the session's connection
        with Session(engine) as s:
            for i in range(count):
                s.flush()
                s.connection().execute(built, {"id": i % ROWS + 1}).first()

    def prepared_one() -> None:  # service.db.prepared.one: the driver's cursor in the session
        with Session(engine) as s:
            for i in range(count):
                prepared.one(s, _built_select, id=i % ROWS + 1)

    def driver_sql() -> None:
        with engine.connect() as conn:
            for i in range(count):
                conn.exec_driver_sql(raw, (i % ROWS + 1,)).first()

    def cursor() -> None:
        with engine.connect() as conn:
            cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            for i in range(count):
                cur.execute(raw, (i % ROWS + 1,))
                cur.fetchone()
            cur.close()

    def session_each() -> None:  # a route's read: a session, its transaction, one statement
        for i in range(count):
            with Session(engine) as s:
                s.connection().execute(built, {"id": i % ROWS + 1}).first()
                s.commit()

    def pooled_each() -> None:  # the same on the pool's DBAPI connection
        for i in range(count):
            conn = engine.raw_connection()
            cur = conn.cursor()
            cur.execute(raw, (i % ROWS + 1,))
            cur.fetchone()
            cur.close()
            conn.commit()
            conn.close()

    return {
        "a Session and its transaction per statement": session_each,
        "a pooled DBAPI connection per statement": pooled_each,
        "Session.execute, a select built per call": orm,
        "Core on the session's connection (one built select)": core,
        "service.db.prepared.one (the launch's way)": prepared_one,
        "Connection.exec_driver_sql": driver_sql,
        "the driver's cursor": cursor,
    }


def _measure(kind: str, count: int, rounds: int) -> None:
    with _database(kind) as engine:
        meta.create_all(engine)
        with engine.begin() as conn:
            conn.execute(row.insert(), [{"id": i, "v": f"value {i}"} for i in range(1, ROWS + 1)])
        ways = _ways(engine, count)
        for run in ways.values():  # warm the caches, the pool and the driver
            run()
        got: dict[str, list[float]] = {name: [] for name in ways}
        for r in range(rounds):
            order = list(ways) if r % 2 == 0 else list(reversed(ways))
            for name in order:
                start = time.process_time()
                ways[name]()
                got[name].append((time.process_time() - start) / count * 1e6)
        print(f"== {kind} ({count} statements a round, median of {rounds} rounds)")
        base = statistics.median(got["the driver's cursor"])
        for name, values in got.items():
            mid = statistics.median(values)
            print(f"   {name:<46} {mid:7.1f} µs CPU  ({mid / base:.2f}x the cursor)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", default="sqlite,postgres")
    args = ap.parse_args()
    for kind in args.only.split(","):
        _measure(kind, args.count, args.rounds)


if __name__ == "__main__":
    main()
