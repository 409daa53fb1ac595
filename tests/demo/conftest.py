"""A demo LMS in process, with a stand-in tool key set served at the HTTP boundary."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from service import jws
from service.demo.app import create_demo_app
from service.demo.config import DemoConfig, ToolEndpoints
from service.demo.platform import DemoPlatform

LMS = "http://localhost:8001"
TOOL = "http://127.0.0.1:8000"


def new_key(kid: str) -> jws.PrivateKey:
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return jws.load_private_key(pem, kid=kid, alg="RS256")


@dataclass
class ToolKeys:
    """The tool's published key set, as its /lti/jwks would serve it."""

    keys: list[jws.PrivateKey]
    fetches: int = 0
    requests: list[str] = field(default_factory=list)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.fetches += 1
        self.requests.append(str(request.url))
        if str(request.url) != f"{TOOL}/lti/jwks":
            return httpx.Response(404)
        body = {"keys": [k.public.jwk for k in self.keys]}
        return httpx.Response(
            200, content=json.dumps(body), headers={"content-type": "application/json"}
        )


@dataclass
class Lms:
    client: TestClient
    platform: DemoPlatform
    tool: ToolKeys
    config: DemoConfig

    def launch_fields(
        self, user_id: str = "u-learn-1", message: str = "resource"
    ) -> dict[str, str]:
        page = self.client.get("/launch", params={"as": user_id, "message": message})
        assert page.status_code == 200
        return form_fields(page.text)

    def auth_params(self, fields: dict[str, str], **override: str) -> dict[str, str]:
        params = {
            "scope": "openid",
            "response_type": "id_token",
            "response_mode": "form_post",
            "prompt": "none",
            "client_id": fields["client_id"],
            "redirect_uri": fields["target_link_uri"],
            "login_hint": fields["login_hint"],
            "lti_message_hint": fields["lti_message_hint"],
            "state": "state-123",
            "nonce": "nonce-456",
        }
        return params | override

    def assertion(self, key: jws.PrivateKey | None = None, **claims: Any) -> str:
        import time
        import uuid

        now = int(time.time())
        body = {
            "iss": self.config.tool.client_id,
            "sub": self.config.tool.client_id,
            "aud": self.config.token_url,
            "iat": now,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
        } | claims
        return jws.sign({k: v for k, v in body.items() if v is not None}, key or self.tool.keys[0])

    def token(self, scopes: list[str], **claims: Any) -> httpx.Response:
        return self.client.post(
            "/token",
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": self.assertion(**claims),
                "scope": " ".join(scopes),
            },
        )

    def bearer(self, scopes: list[str]) -> dict[str, str]:
        resp = self.token(scopes)
        assert resp.status_code == 200, resp.text
        return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def form_fields(html: str) -> dict[str, str]:
    """The hidden inputs of an auto-post page (values are HTML-escaped by Jinja)."""
    import html as htmlmod
    import re

    pairs = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html)
    return {htmlmod.unescape(k): htmlmod.unescape(v) for k, v in pairs}


def form_action(html: str) -> str:
    import html as htmlmod
    import re

    match = re.search(r'<form id="autopost" method="post" action="([^"]+)">', html)
    assert match, html
    return htmlmod.unescape(match.group(1))


@pytest.fixture(scope="session")
def tool_key() -> jws.PrivateKey:
    return new_key("tool-key-1")


@pytest.fixture(scope="session")
def platform_pem(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    from service.demo import keys

    path = tmp_path_factory.mktemp("platform") / "platform-key.pem"
    keys.load_or_create(path)
    return path.read_bytes()


@pytest.fixture
def lms(tmp_path: Path, tool_key: jws.PrivateKey, platform_pem: bytes) -> Iterator[Lms]:
    # Reuse one platform key (RSA generation is slow); load_or_create's own path is tested.
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "platform-key.pem").write_bytes(platform_pem)
    tool = ToolKeys(keys=[tool_key])
    config = DemoConfig(issuer=LMS, tool=ToolEndpoints(base_url=TOOL), data_dir=tmp_path)
    http = httpx.Client(transport=httpx.MockTransport(tool.handler))
    app = create_demo_app(config, http=http)
    with TestClient(app, base_url=LMS) as client:
        yield Lms(client=client, platform=app.state.platform, tool=tool, config=config)
