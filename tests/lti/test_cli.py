"""``microcred platform add|list|activate`` and ``microcred keys rotate`` as an admin runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from service.db import migrate
from service.db.engine import make_engine
from service.db.engine import session as db_session
from service.db.models import Platform
from service.lti import platforms

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = os.environ | {
        "MICROCRED_DATA_DIR": str(tmp_path),
        "MICROCRED_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "MICROCRED_BASE_URL": "https://tool.example.edu",
        "MICROCRED_LOG_LEVEL": "WARNING",
    }
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        input=stdin,
        text=True,
        timeout=120,
        check=False,
    )


def test_platform_and_key_commands(tmp_path: Path) -> None:
    add = [
        "platform",
        "add",
        "--issuer",
        "https://canvas.instructure.com",
        "--client-id",
        "10000000000001",
        "--auth-url",
        "https://sso.canvaslms.com/api/lti/authorize_redirect",
        "--token-url",
        "https://sso.canvaslms.com/login/oauth2/token",
        "--jwks-url",
        "https://sso.canvaslms.com/api/lti/security/jwks",
        "--deployment",
        "9:d89e331c",
        "--deployment",
        "10:aa",
        "--name",
        "Canvas",
    ]
    first = _run(tmp_path, *add)
    assert first.returncode == 0, first.stderr
    pid = first.stdout.strip()
    assert pid.isdigit()
    dup = _run(tmp_path, *add)
    assert dup.returncode == 2 and "already" in dup.stderr
    insecure = _run(
        tmp_path,
        *[("http://lms.example.edu" if a == "https://canvas.instructure.com" else a) for a in add],
    )
    assert insecure.returncode == 2 and "https://" in insecure.stderr
    listed = _run(tmp_path, "platform", "list").stdout
    assert f"{pid}\tactive\tCanvas" in listed and "9:d89e331c, 10:aa" in listed
    missing = _run(tmp_path, "platform", "activate", "999", "--yes")
    assert missing.returncode == 2 and "no platform with id 999" in missing.stderr
    act = _run(tmp_path, "platform", "activate", pid, "--deployment", "11:bb", "--yes")
    assert act.returncode == 0 and "11:bb" in _run(tmp_path, "platform", "list").stdout
    rotated = _run(tmp_path, "keys", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    assert "new signing key" in rotated.stdout and "stays published for 14 days" in rotated.stdout


def test_activate_shows_where_a_registration_came_from_and_asks(
    tmp_path: Path, master_key: bytes
) -> None:
    # A platform that registered itself: what /lti/register stores (registration.store).
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    with db_session(engine, write=True) as s:
        row = platforms.add_platform(
            s,
            issuer="https://lms.attacker.example",
            client_id="evil-1",
            auth_login_url="https://lms.attacker.example/auth",
            auth_token_url="https://lms.attacker.example/token",
            key_set_url="https://lms.attacker.example/jwks",
            deployment_ids=["1"],
            active=False,
            actor="dynamic-registration",
            origin={
                "openid_configuration": "https://lms.attacker.example/.well-known/openid-configuration",
                "source_ip": "203.0.113.9",
            },
        )
        s.commit()
        pid = str(row.id)

    def active() -> bool:
        with db_session(engine) as s:
            found = s.get(Platform, int(pid))
            assert found is not None
            return found.active

    refused = _run(tmp_path, "platform", "activate", pid, stdin="n\n")
    assert refused.returncode == 1 and "not activated" in refused.stderr
    shown = refused.stdout
    for fact in (
        f"platform {pid}: ",
        "INACTIVE",
        "registered by:        dynamic-registration",
        "openid-configuration: https://lms.attacker.example/.well-known/openid-configuration",
        "from address:         203.0.113.9",
        "issuer:               https://lms.attacker.example",
        "client id:            evil-1",
        "key set (JWKS) URL:   https://lms.attacker.example/jwks",
        "Activate platform",
    ):
        assert fact in shown, (fact, shown)
    assert not active()
    # No terminal and no answer: nothing is activated either.
    assert _run(tmp_path, "platform", "activate", pid).returncode == 1 and not active()
    confirmed = _run(tmp_path, "platform", "activate", pid, stdin="y\n")
    assert confirmed.returncode == 0, confirmed.stderr
    assert f"platform {pid} is active" in confirmed.stdout and active()
    engine.dispose()


def test_activate_says_what_was_not_recorded(tmp_path: Path, master_key: bytes) -> None:
    add = ["platform", "add", "--issuer", "https://moodle.example.edu", "--client-id", "c1"]
    add += ["--auth-url", "https://moodle.example.edu/auth", "--token-url"]
    add += ["https://moodle.example.edu/token", "--jwks-url", "https://moodle.example.edu/jwks"]
    pid = _run(tmp_path, *add, "--deployment", "1").stdout.strip()
    shown = _run(tmp_path, "platform", "activate", pid, "--yes").stdout
    assert "registered by:        cli" in shown
    assert "openid-configuration: not recorded" in shown
    assert "from address:         not recorded" in shown
