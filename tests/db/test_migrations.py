"""Migrations produce exactly the schema the models describe, on each lane."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine
from sqlmodel import select

from service.db import migrate
from service.db.base import metadata
from service.db.engine import make_engine
from service.db.engine import session as db_session
from service.db.models import IssuerIdentity
from service.issuer import keys
from tests.conftest import scratch_database


def test_migrations_match_models(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == [], f"models and migrations differ; add a migration: {diff}"


@pytest.fixture
def empty_database_url(tmp_path: Path, master_key: bytes) -> Iterator[str]:
    """A database with no tables, on the lane's engine."""
    with scratch_database("microcred_mig", tmp_path / "empty.db") as url:
        yield url


def _issued_before_the_identity_table(url: str, base_url: str) -> dt.datetime:
    """A credential as a deployment at ``base_url`` issued it before issuer_0002."""
    migrate.upgrade(url, "core_0002")
    issued = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)
    tables = metadata.tables
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            tables["issuer_key"].insert(),
            [
                {
                    "id": 1,
                    "kid": "ed25519-1",
                    "algorithm": "Ed25519",
                    "private_pem": "-",
                    "public_jwk": {},
                    "active": True,
                    "created_at": issued,
                }
            ],
        )
        conn.execute(
            tables["status_list"].insert(),
            [
                {
                    "id": 1,
                    "purpose": "revocation",
                    "size": 131072,
                    "bits": b"\0",
                    "allocated": 2,
                    "version": 3,
                    "created_at": issued,
                    "updated_at": issued,
                }
            ],
        )
        conn.execute(
            tables["credential"].insert(),
            [
                {
                    "id": n,
                    "uuid": f"00000000-0000-0000-0000-00000000000{n}",
                    "lti_user_id": "",
                    "template_key": "t",
                    "level_key": "l",
                    "achievement_id": "a",
                    "kind": "single",
                    "document": {
                        "id": f"{base}/credentials/{n}",
                        "issuer": {"id": keys.did_web(base)},
                    },
                    "signing_key_id": 1,
                    "status_list_id": 1,
                    "status_index": n,
                    "issued_at": issued + dt.timedelta(days=n),
                    "valid_from": issued,
                    "revoked": False,
                }
                # the oldest names the deployment; a later one was not issued under it
                for n, base in ((1, base_url), (2, "http://localhost:8000"))
            ],
        )
    engine.dispose()
    return issued + dt.timedelta(days=1)


@pytest.mark.db
def test_issuer_identity_is_taken_from_the_oldest_credential(empty_database_url: str) -> None:
    issued = _issued_before_the_identity_table(empty_database_url, "http://127.0.0.1:8000")
    migrate.upgrade(empty_database_url)
    engine = make_engine(empty_database_url)
    with db_session(engine) as s:
        (row,) = s.exec(select(IssuerIdentity)).all()
    engine.dispose()
    assert (row.id, row.base_url, row.did) == (
        1,
        "http://127.0.0.1:8000",
        "did:web:127.0.0.1%3A8000",
    )
    assert row.created_at == issued


@pytest.mark.db
def test_a_database_without_credentials_gets_no_identity_until_it_issues(
    empty_database_url: str,
) -> None:
    migrate.upgrade(empty_database_url)
    engine = make_engine(empty_database_url)
    with db_session(engine) as s:
        assert s.exec(select(IssuerIdentity)).all() == []
    engine.dispose()


@pytest.mark.db
def test_open_lists_get_their_credentials_counted_in_allocated(empty_database_url: str) -> None:
    """issuer_0004: ``allocated`` was written only for a full list; the issuer now reads it
    for the open ones too, so the upgrade counts their credentials (a larger count, a list
    marked full, stays)."""
    url = empty_database_url
    migrate.upgrade(url, "issuer_0003")
    now = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
    tables = metadata.tables
    engine = make_engine(url)
    lists = [
        {"id": n, "purpose": "revocation", "size": 131072, "bits": b"\0", "allocated": taken}
        | {"version": 1, "created_at": now, "updated_at": now}
        for n, taken in ((1, 65536), (2, 0))
    ]
    creds = [
        {"id": n, "uuid": f"00000000-0000-0000-0000-00000000000{n}", "lti_user_id": ""}
        | {"template_key": "t", "level_key": "l", "achievement_id": "a", "kind": "single"}
        | {"document": {"id": f"urn:{n}"}, "signing_key_id": 1, "status_list_id": on}
        | {"status_index": n, "issued_at": now, "valid_from": now, "revoked": False}
        for n, on in ((1, 1), (2, 2), (3, 2))
    ]
    key = {"id": 1, "kid": "k", "algorithm": "Ed25519", "private_pem": "-", "public_jwk": {}}
    with engine.begin() as conn:
        conn.execute(tables["issuer_key"].insert(), [key | {"active": True, "created_at": now}])
        conn.execute(tables["status_list"].insert(), lists)
        conn.execute(tables["credential"].insert(), creds)
    migrate.upgrade(url)
    with engine.connect() as conn:
        rows = conn.execute(tables["status_list"].select().order_by("id")).all()
    engine.dispose()
    assert [r.allocated for r in rows] == [65536, 2]
