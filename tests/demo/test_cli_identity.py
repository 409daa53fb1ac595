"""`microcred demo` and the CLI beside it agree on the issuer without extra variables (#13).

The real commands as subprocesses, in a fresh working directory whose ``var`` is the demo's
data directory, with no ``MICROCRED_*`` variable set.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.issuer import samples
from tests.timing import HANG


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MICROCRED_")}
    return env | {"MICROCRED_LOG_LEVEL": "WARNING", **extra}


def _cli(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=cwd,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@dataclasses.dataclass
class Demo:
    cwd: Path
    tool_url: str
    port: int


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """One demo for the module: starting one costs seconds."""
    tmp_path = tmp_path_factory.mktemp("demo-cwd")
    port, lms_port = _free_port(), _free_port()
    log = (tmp_path / "demo.log").open("wb")
    args = ["demo", "--port", str(port), "--lms-port", str(lms_port)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", *args],
        cwd=tmp_path,
        env=_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    tool_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # generous: only a demo that never starts fails
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{tool_url}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            pytest.fail("microcred demo did not start: " + (tmp_path / "demo.log").read_text())
        yield Demo(tmp_path, tool_url, port)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=HANG)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _issue(demo: Demo) -> str:
    created = _cli(demo.cwd, "token", "create", "--name", "t", "--scope", "credentials:write")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    body = {
        "learner": {"lti_user_id": "lti-user-42", "email": "ada@example.org", "name": "Ada"},
        "template": dataclasses.asdict(samples.template()),
        "level_key": "intermediate",
    }
    resp = httpx.post(
        f"{demo.tool_url}/api/credentials",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=HANG,
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def test_the_cli_beside_the_demo_verifies_its_credentials_and_refuses_another_url(
    demo: Demo,
) -> None:
    uuid = _issue(demo)
    got = httpx.get(
        f"{demo.tool_url}/credentials/{uuid}",
        headers={"Accept": "application/vc+ld+json"},
        timeout=HANG,
    )
    assert got.status_code == 200
    status_url = got.json()["credentialStatus"]["statusListCredential"]
    assert status_url.startswith(demo.tool_url + "/status/")
    (demo.cwd / "cred.json").write_bytes(got.content)
    verified = _cli(demo.cwd, "verify", "cred.json")
    assert verified.returncode == 0, verified.stderr
    status_before = httpx.get(status_url, timeout=HANG).content

    refused = _cli(
        demo.cwd,
        "credential",
        "revoke",
        uuid,
        "--reason",
        "awarded in error",
        MICROCRED_BASE_URL="http://localhost:8000",
    )
    assert refused.returncode == 2, refused.stderr
    assert f"this database belongs to the issuer at {demo.tool_url}" in refused.stderr
    assert f"MICROCRED_BASE_URL={demo.tool_url}" in refused.stderr
    assert httpx.get(status_url, timeout=HANG).content == status_before
    assert _cli(demo.cwd, "verify", "cred.json").returncode == 0


def test_the_demo_refuses_another_port_for_its_data_directory(demo: Demo) -> None:
    moved = _cli(demo.cwd, "demo", "--port", str(_free_port()), "--lms-port", str(_free_port()))
    assert moved.returncode == 2
    assert f"this database's demo issues as {demo.tool_url}" in moved.stderr
    assert f"microcred demo --port {demo.port}" in moved.stderr
