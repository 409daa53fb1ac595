from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.db.engine import make_engine
from service.settings import Settings


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_reports_migration(client: TestClient) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["status"] == "ready"
    assert r.json()["migration"]


def test_the_servers_address_says_what_it_is_and_where_to_register(client: TestClient) -> None:
    # The URL an admin pastes, or the demo prints, must not be a 404.
    r = client.get("/", headers={"accept": "text/html"})
    assert r.status_code == 200
    for path in ("/lti/register", "/lti/login", "/lti/launch", "/lti/jwks", "/issuer"):
        assert f"https://tool.test{path}" in r.text


def test_demo_reset_deletes_only_a_sqlite_demo_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import typer

    from service.cli import demo

    db = tmp_path / "microcred.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").write_text("old demo")
    settings = Settings(environment="test", data_dir=tmp_path, secret_key="x" * 44)
    demo._reset_demo_database(settings)
    assert not any(Path(f"{db}{s}").exists() for s in ("", "-wal", "-shm"))
    pg = Settings(
        environment="test", data_dir=tmp_path, database_url="postgresql+psycopg://u:secret@h/db"
    )
    with pytest.raises(typer.Exit) as caught:
        demo._reset_demo_database(pg)
    assert caught.value.exit_code == 2
    err = capsys.readouterr().err
    assert "--reset deletes the demo's SQLite file" in err and "secret" not in err


def test_unknown_page_is_a_friendly_404_without_reflection(client: TestClient) -> None:
    r = client.get("/nope<script>", headers={"accept": "text/html"})
    assert r.status_code == 404
    assert "<script>" not in r.text


def test_api_errors_are_json(client: TestClient) -> None:
    r = client.get("/api/nothing-here")
    assert r.status_code == 404
    assert r.json()["error"] == "http_404"


@pytest.mark.postgres
def test_a_database_that_does_not_answer_is_a_503_that_says_so(settings: Settings) -> None:
    """A refused connection (the login, the key set) is a clear 503 with Retry-After, not
    a 500."""
    down = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/microcred")
    app = create_app(settings, engine=down)
    with TestClient(app, base_url="https://tool.test") as client:
        login = client.post(
            "/lti/login",
            data={
                "iss": "https://moodle.test",
                "login_hint": "u",
                "target_link_uri": "https://tool.test/lti/launch",
            },
            headers={"accept": "text/html"},
        )
        jwks = client.get("/lti/jwks", headers={"accept": "application/json"})
    assert login.status_code == 503, login.text[:300]
    assert "cannot reach its database" in login.text and "/readyz" in login.text
    assert login.headers["retry-after"] == "30"
    assert jwks.status_code == 503 and jwks.json()["error"] == "database_unavailable"
    down.dispose()
