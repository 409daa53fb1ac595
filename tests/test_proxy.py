"""The deploy files' proxy: deploy/Caddyfile run in front of a server the way
deploy/compose.yaml runs it (heads bounded before httptools sees them, requests forwarded
with the client's address), and uvicorn trusting X-Forwarded-* from the addresses the deploy
files give it (FORWARDED_ALLOW_IPS), not only from 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from service.serving import server_options
from tests.threaded_server import serving

DEPLOY = Path(__file__).parents[1] / "deploy"
CADDY = shutil.which("caddy")
needs_caddy = pytest.mark.skipif(
    CADDY is None, reason="no caddy binary (scripts/suite.sh installs Debian's caddy)"
)


async def whoami(request: Request) -> JSONResponse:
    client = request.client.host if request.client else None
    return JSONResponse({"client": client, "scheme": request.url.scheme})


app = Starlette(routes=[Route("/whoami", whoami)])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serving() -> contextlib.AbstractContextManager[int]:
    """The app on httptools with forwarded headers on, as ``microcred serve`` runs behind
    the proxy (no ``forwarded_allow_ips`` given: uvicorn reads FORWARDED_ALLOW_IPS)."""
    return serving(app, lifespan="off", proxy_headers=True, **server_options("httptools"))


def _from(address: str, port: int, headers: dict[str, str]) -> dict[str, str]:
    """GET /whoami from a client bound to ``address`` (any 127.x.y.z is loopback)."""
    transport = httpx.HTTPTransport(local_address=address)
    with httpx.Client(transport=transport, timeout=10) as client:
        reply = client.get(f"http://127.0.0.1:{port}/whoami", headers=headers)
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def test_the_deploy_files_trust_their_proxy_and_publish_web_only_through_it() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    web, proxy = compose["web"], compose["proxy"]
    assert web["environment"]["FORWARDED_ALLOW_IPS"] == "*"
    # two replicas cannot publish one host port; the proxy is the way in
    assert "ports" not in web and web["deploy"]["replicas"] == 2
    assert proxy["image"].startswith("caddy:")
    assert "./Caddyfile:/etc/caddy/Caddyfile:ro" in proxy["volumes"]
    assert {"80:80", "443:443"} <= set(proxy["ports"])
    docs = yaml.safe_load_all((DEPLOY / "kubernetes" / "microcred.yaml").read_text())
    web_pod = next(d for d in docs if d["metadata"]["name"] == "microcred-web")
    env = {
        e["name"]: e.get("value")
        for e in web_pod["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["FORWARDED_ALLOW_IPS"] == "*"


@pytest.mark.parametrize(("allowed", "seen"), [(None, "127.0.0.5"), ("*", "203.0.113.9")])
def test_forwarded_headers_count_only_from_the_allowed_addresses(
    monkeypatch: pytest.MonkeyPatch, allowed: str | None, seen: str
) -> None:
    """From a proxy at another address than 127.0.0.1, the client's address and scheme
    reach the app only when FORWARDED_ALLOW_IPS allows it (the per-IP rate limits and the
    Secure-only cookies depend on both)."""
    if allowed is None:
        monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    else:
        monkeypatch.setenv("FORWARDED_ALLOW_IPS", allowed)
    forwarded = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    with _serving() as port:
        got = _from("127.0.0.5", port, forwarded)
    assert got == {"client": seen, "scheme": "https" if allowed else "http"}


@contextlib.contextmanager
def _caddy(tmp_path: Path, upstream: int) -> Iterator[int]:
    """deploy/Caddyfile with plain http on a free port, its upstream on this host."""
    listen = _free_port()
    text = (DEPLOY / "Caddyfile").read_text()
    assert "dynamic a web 8000" in text
    text = text.replace("dynamic a web 8000", f"dynamic a 127.0.0.1 {upstream}")
    text = text.replace("\t}\n}\n", "\t}\n\tadmin off\n}\n", 1)  # no admin port in tests
    config = tmp_path / "Caddyfile"
    config.write_text(text)
    env = {**os.environ, "MICROCRED_BASE_URL": f"http://127.0.0.1:{listen}", "HOME": str(tmp_path)}
    assert CADDY is not None
    log = tmp_path / "caddy.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [CADDY, "run", "--config", str(config), "--adapter", "caddyfile"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", listen), 1):
                break
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "caddy did not start"
            time.sleep(0.05)
        yield listen
    finally:
        proc.terminate()
        proc.wait(10)


@needs_caddy
def test_the_proxy_forwards_the_client_and_refuses_large_heads(tmp_path: Path) -> None:
    with _serving() as port, _caddy(tmp_path, port) as listen:
        got = _from("127.0.0.7", listen, {})
        # the app sees the client's address from the proxy's X-Forwarded-For
        assert got == {"client": "127.0.0.7", "scheme": "http"}
        with httpx.Client(timeout=10) as client:
            big = client.get(f"http://127.0.0.1:{listen}/whoami", headers={"X-Big": "a" * 100_000})
            small = client.get(f"http://127.0.0.1:{listen}/whoami", headers={"X-Big": "a" * 8_000})
    assert big.status_code == 431  # bounded by the proxy; httptools never sees it
    assert small.status_code == 200
