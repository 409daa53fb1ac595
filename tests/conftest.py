"""Shared fixtures: settings in a temp folder, a real migrated database, the app.

Database lanes: SQLite by default. ``MICROCRED_TEST_DB=postgresql`` runs the same tests on
PostgreSQL (``MICROCRED_TEST_PG_URL``, default the local server with trust auth): a fresh
database is created for the session and dropped afterwards. Tests that need PostgreSQL
itself are marked ``postgres`` and are skipped, with a message, on the SQLite lane.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import hypothesis
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from service import apitoken, secretbox
from service.app import create_app
from service.db import migrate
from service.db.base import metadata
from service.db.engine import make_engine
from service.db.engine import session as db_session
from service.db.types import utcnow
from service.lti import jwks
from service.settings import Settings, get_settings
from tests.timing import HANG

# The whole check (scripts/test.sh, CI) runs the property and fuzz tests with a fixed seed,
# so main stays green for the same code; a plain `pytest` explores new random examples.
# Neither profile times examples: Hypothesis's 200 ms deadline per example and its too_slow
# health check are speed figures, and an example that takes 50 ms here takes longer than
# that on a loaded CI host five times slower. The properties are what the tests check.
UNTIMED = {
    "deadline": None,
    "suppress_health_check": [hypothesis.HealthCheck.too_slow],
}
hypothesis.settings.register_profile("ci", derandomize=True, print_blob=True, **UNTIMED)
hypothesis.settings.register_profile("explore", print_blob=True, **UNTIMED)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "explore"))

LANE = os.environ.get("MICROCRED_TEST_DB", "sqlite")
PG_URL = os.environ.get(
    "MICROCRED_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "engine" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.db)
        if item.get_closest_marker("postgres") and LANE != "postgresql":
            item.add_marker(
                pytest.mark.skip(
                    reason="PostgreSQL lane only: run with MICROCRED_TEST_DB=postgresql "
                    "(CI does; needs PostgreSQL on 127.0.0.1:5432)"
                )
            )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "db: uses the real database (runs on both lanes)")
    # Playwright's expect() gives up after 5 s by default: a page behind an LTI launch can
    # take longer on a loaded CI host. What a browser test checks is the page, not its speed.
    with contextlib.suppress(ImportError):
        from playwright.sync_api import expect

        expect.set_options(timeout=HANG * 1000)


@pytest.fixture(scope="session")
def master_key() -> bytes:
    key = b"test-master-key-" + b"0" * 32
    secretbox.configure(key)
    return key


@contextlib.contextmanager
def scratch_database(prefix: str, sqlite_file: Path, copy_of: str | None = None) -> Iterator[str]:
    """A database of its own on this test lane: ``sqlite_file`` on SQLite, or a new
    PostgreSQL database named ``prefix_<random>`` that is dropped afterwards. Empty, or with
    ``copy_of`` a copy of that database of the same lane (which nothing may be connected to).
    The name is random, so parallel test processes (pytest-xdist) never share one."""
    if LANE == "sqlite":
        if copy_of is not None:
            source = make_url(copy_of).database
            assert source, copy_of
            shutil.copyfile(source, sqlite_file)
        yield f"sqlite:///{sqlite_file}"
        return
    if LANE != "postgresql":
        raise pytest.UsageError(f"MICROCRED_TEST_DB must be sqlite or postgresql, not {LANE!r}")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    template = f' TEMPLATE "{make_url(copy_of).database}"' if copy_of is not None else ""
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        conn = admin.connect()
    except Exception as exc:
        pytest.exit(f"PostgreSQL lane requested but {PG_URL} is unreachable: {exc}", returncode=3)
    with conn:
        conn.execute(text(f'CREATE DATABASE "{name}"{template}'))
    yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with scratch_database("microcred_test", tmp_path_factory.mktemp("db") / "test.db") as url:
        yield url


@pytest.fixture(scope="session")
def _migrated_engine(database_url: str, master_key: bytes) -> Iterator[Engine]:
    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def engine(_migrated_engine: Engine) -> Iterator[Engine]:
    """The migrated database, emptied after each test, with the process's copy of the key
    sets it stores: the next test's platform may serve other keys at the same JWKS URL (the
    demo LMS on a port the system gave out again)."""
    jwks.forget_memory_cache()
    yield _migrated_engine
    with _migrated_engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())
    jwks.forget_memory_cache()


@pytest.fixture
def settings(tmp_path: Path, database_url: str, master_key: bytes) -> Settings:
    return Settings(
        environment="test",
        data_dir=tmp_path,
        database_url=database_url,
        base_url="https://tool.test",
        secret_key=master_key.decode(),
    )


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """``microcred`` commands pointed at the test database, data folder and master key."""
    monkeypatch.setenv("MICROCRED_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("MICROCRED_DATA_DIR", str(settings.data_dir))
    assert settings.secret_key is not None
    monkeypatch.setenv("MICROCRED_SECRET_KEY", settings.secret_key.get_secret_value())
    get_settings.cache_clear()
    yield settings
    get_settings.cache_clear()


@pytest.fixture
def runner(cli_env: Settings) -> CliRunner:
    """A Typer runner for ``service.cli.app`` under ``cli_env``."""
    return CliRunner()


@pytest.fixture
def app(settings: Settings, engine: Engine) -> FastAPI:
    return create_app(settings, engine=engine)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url="https://tool.test") as c:
        yield c


@pytest.fixture
def api_headers(engine: Engine) -> Callable[..., dict[str, str]]:
    """Make a real API token with the given scopes; returns the Authorization header."""

    def make(*scopes: str) -> dict[str, str]:
        with db_session(engine, write=True) as s:
            _, plain = apitoken.create(
                s,
                name=f"test-{uuid.uuid4().hex[:8]}",
                scopes=list(scopes),
                actor="test",
                now=utcnow(),
            )
            s.commit()
        return {"Authorization": f"Bearer {plain}"}

    return make
