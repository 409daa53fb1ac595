"""The deployment's issuer identity is recorded once; processes adopt it or refuse to sign.

Issue #13: a ``credential revoke`` run with another ``MICROCRED_BASE_URL`` re-signed the
status list under another did:web, and every credential on it failed verification.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import select
from typer.testing import CliRunner

from service import cli
from service.app import create_app
from service.db.engine import session
from service.db.models import AuditEvent, Credential, IssuerIdentity, IssuerKey, StatusList
from service.db.types import utcnow
from service.issuer import identity, service
from service.settings import Settings, get_settings
from tests.issuer import samples

OTHER = "http://localhost:8000"


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The CLI pointed at the test database, MICROCRED_BASE_URL unset."""
    monkeypatch.setenv("MICROCRED_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("MICROCRED_DATA_DIR", str(settings.data_dir))
    monkeypatch.delenv("MICROCRED_BASE_URL", raising=False)
    assert settings.secret_key is not None
    monkeypatch.setenv("MICROCRED_SECRET_KEY", settings.secret_key.get_secret_value())
    monkeypatch.setenv("MICROCRED_ENVIRONMENT", "test")
    # a .env file in the working directory must not set a base URL either
    monkeypatch.chdir(settings.data_dir)
    get_settings.cache_clear()
    yield settings
    get_settings.cache_clear()


def _issue(engine: Engine, settings: Settings) -> Credential:
    with session(engine, write=True) as s:
        row = service.issue(
            s, settings=settings, award=samples.award(awarded_at=utcnow()), now=utcnow(), actor="t"
        )
        s.commit()
    return row


def _status_list(engine: Engine, list_id: int) -> tuple[bytes, int, str]:
    with session(engine) as s:
        row = s.get(StatusList, list_id)
        assert row is not None
        return row.bits, row.version, json.dumps(row.document, sort_keys=True)


def _verify(tmp_path: Path, document: dict[str, Any]) -> Any:
    path = tmp_path / "credential.json"
    path.write_text(json.dumps(document))
    return CliRunner().invoke(cli.app, ["verify", str(path)])


def test_first_issuance_records_the_base_url_and_did(engine: Engine, settings: Settings) -> None:
    _issue(engine, settings)
    with session(engine) as s:
        (row,) = s.exec(select(IssuerIdentity)).all()
    assert (row.base_url, row.did) == ("https://tool.test", "did:web:tool.test")


def test_revoke_under_another_base_url_exits_2_and_changes_nothing(
    cli_env: Settings, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cred = _issue(engine, cli_env)
    before = _status_list(engine, cred.status_list_id)
    monkeypatch.setenv("MICROCRED_BASE_URL", OTHER)
    result = CliRunner().invoke(
        cli.app, ["credential", "revoke", cred.uuid, "--reason", "awarded in error"]
    )
    assert result.exit_code == 2, result.output
    assert "this database belongs to the issuer at https://tool.test" in result.stderr
    assert f"MICROCRED_BASE_URL is {OTHER}" in result.stderr
    assert "MICROCRED_BASE_URL=https://tool.test" in result.stderr
    assert _status_list(engine, cred.status_list_id) == before
    with session(engine) as s:
        stored = s.get(Credential, cred.id)
        assert stored is not None and not stored.revoked
        actions = [e.action for e in s.exec(select(AuditEvent)).all()]
    assert "credential.revoked" not in actions
    # the list still verifies: the credential is valid, not "status list untrustworthy"
    monkeypatch.delenv("MICROCRED_BASE_URL")
    report = _verify(tmp_path, cred.document)
    assert report.exit_code == 0, report.output
    assert json.loads(report.stdout)["valid"] is True


def test_rotate_keys_under_another_base_url_exits_2_and_keeps_the_keys(
    cli_env: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _issue(engine, cli_env)
    with session(engine) as s:
        keys_before = [(k.kid, k.active) for k in s.exec(select(IssuerKey)).all()]
    monkeypatch.setenv("MICROCRED_BASE_URL", OTHER)
    result = CliRunner().invoke(cli.app, ["issuer", "rotate-keys"])
    assert result.exit_code == 2 and "belongs to the issuer at https://tool.test" in result.stderr
    with session(engine) as s:
        assert [(k.kid, k.active) for k in s.exec(select(IssuerKey)).all()] == keys_before


def test_revoke_without_base_url_adopts_the_recorded_identity(
    cli_env: Settings, engine: Engine, tmp_path: Path
) -> None:
    cred = _issue(engine, cli_env)
    result = CliRunner().invoke(cli.app, ["credential", "revoke", cred.uuid, "--reason", "error"])
    assert result.exit_code == 0, result.output
    _, _, document = _status_list(engine, cred.status_list_id)
    assert json.loads(document)["issuer"] == "did:web:tool.test"
    assert json.loads(document)["id"].startswith("https://tool.test/status/")
    report = _verify(tmp_path, cred.document)
    assert report.exit_code == 1 and "invalid because it has been revoked" in report.stderr


def test_verify_of_this_databases_credential_needs_no_settings(
    cli_env: Settings, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cred = _issue(engine, cli_env)
    report = _verify(tmp_path, cred.document)
    assert report.exit_code == 0, report.output
    checks = {c["name"]: c["detail"] for c in json.loads(report.stdout)["checks"]}
    assert checks["issuer_key"].endswith("is an assertion key of did:web:tool.test")
    jwt = tmp_path / "credential.jwt"
    assert cred.jwt is not None
    jwt.write_text(cred.jwt)
    assert CliRunner().invoke(cli.app, ["verify", str(jwt)]).exit_code == 0
    # verifying signs nothing: another MICROCRED_BASE_URL does not stop it
    monkeypatch.setenv("MICROCRED_BASE_URL", OTHER)
    assert _verify(tmp_path, cred.document).exit_code == 0


def test_signing_under_another_url_is_refused_and_writes_nothing(
    engine: Engine, settings: Settings
) -> None:
    cred = _issue(engine, settings)
    before = _status_list(engine, cred.status_list_id)
    other = settings.model_copy(update={"base_url": OTHER})
    with session(engine, write=True) as s, pytest.raises(identity.IdentityMismatch) as err:
        service.revoke(s, settings=other, uuid=cred.uuid, reason="x", actor="t", now=utcnow())
    assert "belongs to the issuer at https://tool.test" in err.value.detail
    with session(engine, write=True) as s, pytest.raises(identity.IdentityMismatch):
        service.issue(
            s, settings=other, award=samples.award(awarded_at=utcnow()), now=utcnow(), actor="t"
        )
    assert _status_list(engine, cred.status_list_id) == before
    with session(engine) as s:
        assert len(s.exec(select(Credential)).all()) == 1


def test_the_web_app_refuses_to_start_under_another_url(engine: Engine, settings: Settings) -> None:
    _issue(engine, settings)
    with pytest.raises(identity.IdentityMismatch) as err:
        create_app(settings.model_copy(update={"base_url": OTHER}), engine=engine)
    assert "MICROCRED_BASE_URL=https://tool.test" in (err.value.hint or "")


def test_the_web_app_adopts_the_recorded_url_when_none_is_set(
    engine: Engine, settings: Settings
) -> None:
    _issue(engine, settings)
    unset = Settings.model_construct(**settings.model_dump(exclude={"base_url"}))
    assert not identity.explicit(unset) and unset.public_base_url == "http://localhost:8000"
    app = create_app(unset, engine=engine)
    assert app.state.settings.public_base_url == "https://tool.test"
    with TestClient(app, base_url="https://tool.test") as client:
        assert client.get("/.well-known/did.json").json()["id"] == "did:web:tool.test"


def test_the_web_app_refuses_to_sign_when_another_process_recorded_first(
    engine: Engine, settings: Settings, api_headers: Any
) -> None:
    app = create_app(settings.model_copy(update={"base_url": OTHER}), engine=engine)
    # another process sets up issuance first, as https://tool.test
    cred = _issue(engine, settings)
    before = _status_list(engine, cred.status_list_id)
    with TestClient(app, base_url=OTHER, headers=api_headers("credentials:write")) as client:
        body = {
            "learner": {"lti_user_id": "lti-user-42", "email": "ada@example.org", "name": "Ada"},
            "template": dataclasses.asdict(samples.template()),
            "level_key": "intermediate",
        }
        resp = client.post("/api/credentials", json=body)
        assert resp.status_code == 409, resp.text
        assert resp.json()["error"] == "issuer_identity_mismatch"
        assert "belongs to the issuer at https://tool.test" in resp.json()["detail"]
    with session(engine) as s:
        assert len(s.exec(select(Credential)).all()) == 1
    assert _status_list(engine, cred.status_list_id) == before


def test_repair_re_signs_a_list_signed_under_another_url(
    cli_env: Settings, engine: Engine, tmp_path: Path
) -> None:
    """The damage of issue #13, as a database from before the identity was recorded has
    it: a revoke run as http://localhost:8000 re-signed the list of https://tool.test."""
    kept = _issue(engine, cli_env)
    revoked = _issue(engine, cli_env)
    assert kept.status_list_id == revoked.status_list_id
    other = cli_env.model_copy(update={"base_url": OTHER})
    with session(engine, write=True) as s:
        s.delete(s.get(IssuerIdentity, 1))
        s.flush()
        service.revoke(s, settings=other, uuid=revoked.uuid, reason="x", actor="t", now=utcnow())
        row = s.get(IssuerIdentity, 1)
        assert row is not None
        # what migration issuer_0002 records: the oldest credential's URL
        row.base_url, row.did = "https://tool.test", "did:web:tool.test"
        s.add(row)
        s.commit()
    broken = _verify(tmp_path, kept.document)
    assert broken.exit_code == 1 and "the status list is not trustworthy" in broken.stderr
    bits, version, _ = _status_list(engine, kept.status_list_id)

    result = CliRunner().invoke(cli.app, ["issuer", "repair-status-lists"])
    assert result.exit_code == 0, result.output
    assert f"re-signed status list(s) {kept.status_list_id} as https://tool.test" in result.stdout
    repaired_bits, repaired_version, document = _status_list(engine, kept.status_list_id)
    assert repaired_bits == bits and repaired_version == version + 1
    assert json.loads(document)["issuer"] == "did:web:tool.test"
    assert _verify(tmp_path, kept.document).exit_code == 0
    gone = _verify(tmp_path, revoked.document)
    assert gone.exit_code == 1 and "invalid because it has been revoked" in gone.stderr
    again = CliRunner().invoke(cli.app, ["issuer", "repair-status-lists"])
    assert again.exit_code == 0 and "nothing to do" in again.stdout
