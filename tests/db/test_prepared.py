"""db.prepared: the launch's statements convert values exactly as the ORM does."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, bindparam, select, update
from sqlmodel import col

from service.db import prepared
from service.db.engine import session as db_session
from service.db.models import Deployment, LtiCache, Platform
from tests import factories
from tests.timing import HANG

WHEN = dt.datetime(2026, 11, 29, 2, 30, 15, 123456, tzinfo=dt.UTC)


def _cache_by_key() -> Any:
    table = prepared.table(LtiCache)
    return select(table).where(table.c.key == bindparam("key"))


def _platform_with_deployment() -> Any:
    platform, deployment = prepared.table(Platform), prepared.table(Deployment)
    return (
        select(platform, deployment)
        .outerjoin(
            deployment,
            (deployment.c.platform_id == platform.c.id)
            & (deployment.c.deployment_id == bindparam("dep")),
        )
        .where(platform.c.id == bindparam("pid"))
    )


def _expire() -> Any:
    return (
        update(LtiCache)
        .where(col(LtiCache.expires_at) > bindparam("after"))
        .values(expires_at=bindparam("at"))
    )


def test_values_round_trip_as_through_the_orm(engine: Engine) -> None:
    value = {"roles": ["Learner", "Zoë"], "n": 2, "ok": True, "none": None}
    with db_session(engine, write=True) as s:
        prepared.insert_row(s, LtiCache, key="k1", value=value, expires_at=WHEN)
        s.commit()
    with db_session(engine) as s:
        row = prepared.one(s, _cache_by_key, key="k1")
        orm = s.get(LtiCache, "k1")
        assert prepared.one(s, _cache_by_key, key="missing") is None
    assert orm is not None and row is not None
    assert row == ("k1", value, WHEN) == (orm.key, orm.value, orm.expires_at)
    assert row[2].tzinfo is not None and row[2].utcoffset() == dt.timedelta(0)
    built = prepared.model(LtiCache, row)
    assert built is not None and (built.key, built.value, built.expires_at) == row


def test_an_outer_joined_row_that_is_missing_is_none(engine: Engine) -> None:
    with db_session(engine, write=True) as s:
        platform = factories.platform(s)
        factories.deployment(s, platform, deployment_id="1")
        s.commit()
    assert platform.id is not None
    with db_session(engine) as s:
        found = prepared.one(s, _platform_with_deployment, pid=platform.id, dep="1")
        missing = prepared.one(s, _platform_with_deployment, pid=platform.id, dep="nope")
    assert found is not None and missing is not None
    got = prepared.model(Platform, found)
    assert got is not None and got.issuer == platform.issuer and got.active is platform.active
    deployment = prepared.model(Deployment, found, prepared.width(Platform))
    assert deployment is not None and deployment.deployment_id == "1"
    assert isinstance(deployment.active, bool)
    assert prepared.model(Deployment, missing, prepared.width(Platform)) is None


def test_rowcount_and_the_session_transaction(engine: Engine) -> None:
    with db_session(engine, write=True) as s:
        for i in range(3):
            prepared.insert_row(
                s, LtiCache, key=f"r{i}", value=i, expires_at=WHEN + dt.timedelta(i)
            )
        s.commit()
    later = WHEN + dt.timedelta(days=9)
    with db_session(engine, write=True) as s:
        assert s.execute(_expire(), {"after": WHEN, "at": later}).rowcount == 2
        # not committed: closing the session rolls the UPDATE back
    with db_session(engine) as s:
        rows = s.execute(select(prepared.table(LtiCache))).all()
    assert sorted(r[2] for r in rows) == [WHEN + dt.timedelta(i) for i in range(3)]


def test_models_work_in_a_fresh_process_before_any_orm_query(tmp_path: Path) -> None:
    """The first request after a start may build a model here before the ORM configured
    its mappers (which the first ORM query does)."""
    script = """
import datetime as dt, sys
from sqlalchemy import select
from sqlmodel import SQLModel
from service.db import prepared
from service.db.engine import make_engine, session
from service.db.models import LtiCache
engine = make_engine(sys.argv[1])
SQLModel.metadata.create_all(engine)
with engine.begin() as conn:
    conn.execute(prepared.table(LtiCache).insert().values(
        key="k", value=[1], expires_at=dt.datetime(2030, 1, 1, tzinfo=dt.UTC)))
with session(engine) as s:
    row = prepared.one(s, lambda: select(prepared.table(LtiCache)))
built = prepared.model(LtiCache, row)
print(built.key, built.value)
"""
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    done = subprocess.run(
        [sys.executable, "-c", script, url], capture_output=True, text=True, timeout=HANG
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["k", "[1]"]


def _numbers() -> Any:
    from sqlalchemy import Float, Integer, cast

    return select(
        cast(bindparam("f", type_=Float), Float).label("f"),
        cast(bindparam("i", type_=Integer), Integer).label("i"),
    )


def test_numeric_results_convert_on_every_driver(engine: Engine) -> None:
    """psycopg's float processor needs the type the server reports (cursor.description)."""
    with db_session(engine) as s:
        assert prepared.one(s, _numbers, f=0.25, i=7) == (0.25, 7)
        assert prepared.one(s, _numbers, f=1.5, i=-1) == (1.5, -1)


def test_driver_errors_come_out_as_sqlalchemys_without_the_values(engine: Engine) -> None:
    """The 503 page and the callers know SQLAlchemy's errors; the statement's values (a
    launch's nonces, token hashes) stay out of the message, which may reach a log."""
    from sqlalchemy import exc

    with db_session(engine, write=True) as s:
        prepared.insert_row(s, LtiCache, key="k", value="first", expires_at=WHEN)
        with pytest.raises(exc.IntegrityError) as caught:
            prepared.insert_row(s, LtiCache, key="k", value="secret-value-9", expires_at=WHEN)
    assert "secret-value-9" not in str(caught.value)
    assert "INSERT INTO lti_cache" in str(caught.value)  # the statement, not its values


def test_a_core_connection_takes_sqlites_write_lock_at_its_first_statement(
    engine: Engine,
) -> None:
    """A login runs on a Core connection: its first statement begins the transaction (on
    SQLite ``BEGIN IMMEDIATE`` for a write connection), so its read and INSERT are one."""
    from service.db.engine import connection as db_connection

    with db_connection(engine, write=True) as conn:
        assert prepared.one(conn, _cache_by_key, key="none") is None
        assert conn.in_transaction()
        prepared.insert_row(conn, LtiCache, key="k", value=1, expires_at=WHEN)
    with db_session(engine) as s:  # not committed: the block rolled it back
        assert prepared.one(s, _cache_by_key, key="k") is None


def test_none_converts_as_through_core(engine: Engine) -> None:
    """A JSON column's None is JSON ``null`` through Core, not SQL NULL: the same here."""
    from sqlalchemy import text

    with db_session(engine, write=True) as s:
        prepared.insert_row(s, LtiCache, key="ours", value=None, expires_at=WHEN)
        s.execute(prepared.table(LtiCache).insert().values(key="core", value=None, expires_at=WHEN))
        stored = dict(s.execute(text("SELECT key, value IS NULL FROM lti_cache")).all())
        assert prepared.one(s, _cache_by_key, key="ours") == ("ours", None, WHEN)
    assert stored["ours"] == stored["core"]
