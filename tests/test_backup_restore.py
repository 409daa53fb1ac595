"""scripts/backup_restore.py: back up, lose everything, restore, and every credential verifies
and every status list signs again (docs/operations.md "Backup and restore"), on each lane."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from service.db import migrate
from service.db.engine import make_engine
from service.db.engine import session as db_session
from service.issuer import service as issuer_service
from service.settings import Settings
from tests.conftest import LANE, PG_URL, scratch_database
from tests.issuer import samples

SCRIPT = Path(__file__).parents[1] / "scripts" / "backup_restore.py"

pytestmark = pytest.mark.db


@pytest.fixture
def scratch_url(tmp_path: Path) -> Iterator[str]:
    """A database of its own: the drill drops and recreates it."""
    with scratch_database("microcred_drill", tmp_path / "live" / "microcred.db") as url:
        yield url


def _deployment(url: str, data_dir: Path, master_key: bytes) -> list[str]:
    """A deployment in development mode (its master key in DATA_DIR/secret.key) that issued
    three credentials and revoked one."""
    data_dir.mkdir(parents=True, exist_ok=True)
    keyfile = data_dir / "secret.key"
    keyfile.write_bytes(master_key)
    keyfile.chmod(0o600)
    migrate.upgrade(url)
    settings = Settings(
        environment="development", data_dir=data_dir, database_url=url, base_url="https://tool.test"
    )
    engine = make_engine(url)
    uuids = []
    with db_session(engine, write=True) as s:
        for n in range(3):
            row = issuer_service.issue(
                s,
                settings=settings,
                award=samples.award(learner=samples.learner(lti_user_id=f"u-{n}")),
                now=samples.NOW,
                actor="test",
            )
            uuids.append(row.uuid)
        issuer_service.revoke(
            s,
            settings=settings,
            uuid=uuids[0],
            reason="awarded in error",
            actor="test",
            now=samples.NOW,
        )
        s.commit()
    engine.dispose()
    return uuids


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=300
    )


def _env(url: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MICROCRED_")}
    return env | {
        "MICROCRED_ENVIRONMENT": "development",
        "MICROCRED_DATABASE_URL": url,
        "MICROCRED_DATA_DIR": str(data_dir),
        "MICROCRED_BASE_URL": "https://tool.test",
    }


def test_drill_restores_a_deployment_whose_credentials_all_verify(
    scratch_url: str, tmp_path: Path, master_key: bytes
) -> None:
    data_dir = tmp_path / "live"
    _deployment(scratch_url, data_dir, master_key)
    backup = tmp_path / "backup"
    done = _run(_env(scratch_url, data_dir), "drill", str(backup))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["credentials"] == 3 and report["problems"] == []
    # two valid in both forms (document, VC-JWT), the revoked one failing on its status only
    assert report["verified"] == 4 and report["revoked_and_verified"] == 2
    assert report["status_lists_resigned"] == report["status_lists"] == 1
    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["master_key"] == "file" and "secret.key" in manifest["files"]
    assert oct((backup / "secret.key").stat().st_mode & 0o777) == "0o600"


def test_a_restore_without_its_master_key_is_reported_not_silently_broken(
    scratch_url: str, tmp_path: Path, master_key: bytes
) -> None:
    data_dir = tmp_path / "live"
    _deployment(scratch_url, data_dir, master_key)
    backup = tmp_path / "backup"
    env = _env(scratch_url, data_dir)
    assert _run(env, "backup", str(backup)).returncode == 0
    # A fresh machine, the database restored, the key file forgotten: another key is made.
    (backup / "secret.key").unlink()
    manifest = json.loads((backup / "manifest.json").read_text())
    del manifest["files"]["secret.key"]
    (backup / "manifest.json").write_text(json.dumps(manifest))
    fresh = tmp_path / "fresh"
    fresh_url = scratch_url if LANE != "sqlite" else f"sqlite:///{fresh / 'microcred.db'}"
    if LANE != "sqlite":
        dropped = create_engine(make_url(PG_URL), isolation_level="AUTOCOMMIT")
        with dropped.connect() as conn:
            name = make_url(scratch_url).database
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        dropped.dispose()
    env = _env(fresh_url, fresh)
    restored = _run(env, "restore", str(backup))
    assert restored.returncode == 0, restored.stderr
    checked = _run(env, "check")
    assert checked.returncode == 1 and "no master key" in checked.stderr, checked.stderr
    assert not (fresh / "secret.key").exists()  # the check made no key of its own
    wrong = _run(env | {"MICROCRED_SECRET_KEY": "another-key-" + "x" * 40}, "check")
    assert wrong.returncode == 1
    assert "could not be decrypted" in wrong.stderr, wrong.stderr


def test_restore_refuses_a_database_that_is_in_use(
    scratch_url: str, tmp_path: Path, master_key: bytes
) -> None:
    data_dir = tmp_path / "live"
    _deployment(scratch_url, data_dir, master_key)
    env = _env(scratch_url, data_dir)
    assert _run(env, "backup", str(tmp_path / "b")).returncode == 0
    again = _run(env, "restore", str(tmp_path / "b"))
    assert again.returncode == 1
    assert "exists" in again.stderr or "has tables" in again.stderr
