"""The real HTTP path: ``microcred platform add`` then ``microcred serve`` on a free port,
driven by a platform script over HTTP (login -> signed id_token -> launch -> landing page),
with its JWKS served from a second local server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.lti.platform import FakePlatform
from tests.timing import HANG

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, FakePlatform]]:
    port = _free_port()
    plat = FakePlatform(
        issuer=f"http://127.0.0.1:{port}",
        client_id="e2e-client",
        deployment_id="dep-e2e",
        key_index=4,
        kid="e2e-key",
    )

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(plat.jwks()).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield plat.issuer, plat
    server.shutdown()
    server.server_close()


def _cli(env: dict[str, str], *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def wait_until_serving(base: str, proc: subprocess.Popen[bytes]) -> None:
    """Until ``microcred serve`` at ``base`` answers /healthz; fails when it exits or has not
    answered in HANG seconds (a hang guard: on a loaded CI host it starts slowly)."""
    deadline = time.monotonic() + HANG
    while True:
        try:
            if httpx.get(base + "/healthz", timeout=HANG).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            pytest.fail(f"microcred serve exited with {proc.returncode}")
        if time.monotonic() > deadline:
            pytest.fail(f"microcred serve did not answer in {HANG:.0f} s")
        time.sleep(0.1)


def test_platform_add_then_serve_then_launch_over_http(
    tmp_path: Path, jwks_server: tuple[str, FakePlatform]
) -> None:
    issuer, plat = jwks_server
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = os.environ | {
        "MICROCRED_DATA_DIR": str(tmp_path),
        "MICROCRED_DATABASE_URL": f"sqlite:///{tmp_path / 'e2e.db'}",
        "MICROCRED_LOG_LEVEL": "INFO",  # the access log too: no secret may reach it
    }
    env.pop("MICROCRED_BASE_URL", None)  # serve then uses where it listens as its public URL
    pid = _cli(
        env,
        "platform",
        "add",
        "--issuer",
        issuer,
        "--client-id",
        plat.client_id,
        "--auth-url",
        issuer + "/auth",
        "--token-url",
        issuer + "/token",
        "--jwks-url",
        issuer + "/jwks",
        "--deployment",
        plat.deployment_id,
        "--name",
        "E2E LMS",
    )
    assert pid.isdigit()
    assert "E2E LMS" in _cli(env, "platform", "list")
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--no-worker"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_serving(base, proc)
        with httpx.Client(base_url=base, timeout=HANG) as http:
            assert http.get("/lti/jwks").json()["keys"][0]["kty"] == "RSA"
            target = base + "/lti/launch"
            resp = http.post(
                "/lti/login",
                data={
                    "iss": issuer,
                    "login_hint": "u1",
                    "target_link_uri": target,
                    "client_id": plat.client_id,
                    "lti_deployment_id": plat.deployment_id,
                },
            )
            assert resp.status_code == 302, resp.text
            q = parse_qs(urlsplit(resp.headers["location"]).query)
            assert q["redirect_uri"] == [target]
            claims = plat.claims(q["nonce"][0])
            claims["https://purl.imsglobal.org/spec/lti/claim/target_link_uri"] = target
            token = plat.token(claims)
            launched = http.post("/lti/launch", data={"id_token": token, "state": q["state"][0]})
            assert launched.status_code == 303, launched.text
            assert launched.headers["location"] == "/app"  # the cookie carries the session
            page = http.get(launched.headers["location"])
            assert page.status_code == 200 and "Your micro-credentials" in page.text
            replay = http.post("/lti/launch", data={"id_token": token, "state": q["state"][0]})
            assert replay.status_code == 400
            session = http.cookies["__Host-microcred_session_legacy"]
            # A URL that still carries the token (a launch whose state came back through
            # platform storage) is sent on to the same page without it.
            carried = http.get("/app", params={"mc_session": session})
            assert (carried.status_code, carried.headers["location"]) == (303, "/app")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
    text = (tmp_path / "serve.log").read_text()
    assert "Traceback" not in text
    # A request with the session token in its query string is in the access log with the
    # value redacted (reference/security.md W7).
    assert "GET /app?mc_session=[redacted]" in text, text[-2000:]
    assert session not in text and token not in text
