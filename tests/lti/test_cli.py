"""``microcred platform add|list|activate`` and ``microcred keys rotate`` as an admin runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
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
    missing = _run(tmp_path, "platform", "activate", "999")
    assert missing.returncode == 2 and "no platform with id 999" in missing.stderr
    act = _run(tmp_path, "platform", "activate", pid, "--deployment", "11:bb")
    assert act.returncode == 0 and "11:bb" in _run(tmp_path, "platform", "list").stdout
    rotated = _run(tmp_path, "keys", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    assert "new signing key" in rotated.stdout and "stays published for 14 days" in rotated.stdout
