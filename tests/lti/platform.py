"""A small LTI 1.3 platform for tests: real RSA keys, real RS256 signatures, full control
over header and claims (for the certification's bad payloads), served to the tool through
an ``httpx.MockTransport`` that counts JWKS fetches."""

from __future__ import annotations

import base64
import functools
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from fastapi.testclient import TestClient
from sqlmodel import Session

from service import jws
from service.db.models import Platform
from service.lti import platforms

C = "https://purl.imsglobal.org/spec/lti/claim/"
MEMBERSHIP = "http://purl.imsglobal.org/vocab/lis/v2/membership#"
TOOL = "https://tool.test"
LAUNCH = TOOL + "/lti/launch"


@functools.cache
def rsa_key(n: int) -> rsa.RSAPrivateKey:
    """Keys are slow to make; tests share a few by index."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_raw(header: dict[str, Any], claims: dict[str, Any], key: rsa.RSAPrivateKey) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    sig = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64(sig)}"


def public_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return jws.load_private_key(pem, kid=kid, alg="RS256").public.jwk


@dataclass
class FakePlatform:
    issuer: str = "https://moodle.test"
    client_id: str = "moodle-client-1"
    deployment_id: str = "1"
    key_index: int = 0
    kid: str = "moodle-key-1"
    family: str = "moodle"
    token_lifetime: int = 60  # Moodle: exp = iat + 60
    aud_as_list: bool = False
    published: list[tuple[str, int]] = field(default_factory=list)  # (kid, key index)
    jwks_fetches: int = 0
    row: Platform | None = None

    def __post_init__(self) -> None:
        if not self.published:
            self.published = [(self.kid, self.key_index)]

    @property
    def key(self) -> rsa.RSAPrivateKey:
        return rsa_key(self.key_index)

    @property
    def jwks_url(self) -> str:
        return self.issuer + "/jwks"

    def jwks(self) -> dict[str, Any]:
        return {"keys": [public_jwk(rsa_key(i), kid) for kid, i in self.published]}

    def rotate(self, kid: str, key_index: int) -> None:
        """Publish a new key and sign with it from now on (the old stays published)."""
        self.published.append((kid, key_index))
        self.kid, self.key_index = kid, key_index

    def register(self, session: Session, *, active: bool = True) -> Platform:
        self.row = platforms.add_platform(
            session,
            issuer=self.issuer,
            client_id=self.client_id,
            auth_login_url=self.issuer + "/auth",
            auth_token_url=self.issuer + "/token",
            key_set_url=self.jwks_url,
            deployment_ids=[self.deployment_id],
            name=self.family,
            active=active,
        )
        return self.row

    # --- messages -----------------------------------------------------------------------

    def claims(self, nonce: str, *, roles: list[str] | None = None, **extra: Any) -> dict[str, Any]:
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": self.issuer,
            "aud": [self.client_id] if self.aud_as_list else self.client_id,
            "sub": "user-42",
            "iat": now,
            "exp": now + self.token_lifetime,
            "nonce": nonce,
            "name": "Ada Lovelace",
            "given_name": "Ada",
            "family_name": "Lovelace",
            "email": "ada@example.edu",
            C + "message_type": "LtiResourceLinkRequest",
            C + "version": "1.3.0",
            C + "deployment_id": self.deployment_id,
            C + "target_link_uri": LAUNCH,
            C + "resource_link": {"id": "rl-1", "title": "Badges"},
            C + "roles": [MEMBERSHIP + "Learner"] if roles is None else roles,
            C + "context": {
                "id": "course-7",
                "label": "BIO101",
                "title": "Biology",
                "type": ["CourseSection"],
            },
            C + "tool_platform": {"family_code": "moodle", "guid": "m1", "version": "2024"},
            C + "launch_presentation": {"document_target": "iframe", "return_url": self.issuer},
        }
        body.update(extra)
        return body

    def token(self, claims: dict[str, Any], **header: Any) -> str:
        hdr = {"alg": "RS256", "typ": "JWT", "kid": self.kid} | header
        hdr = {k: v for k, v in hdr.items() if v is not None}
        return sign_raw(hdr, claims, self.key)

    def login(self, client: TestClient, **params: str) -> tuple[str, str, httpx.Response]:
        """Third-party initiated login; returns (state, nonce, response)."""
        data = {
            "iss": self.issuer,
            "login_hint": "42",
            "target_link_uri": LAUNCH,
            "lti_message_hint": "hint-1",
            "client_id": self.client_id,
            "lti_deployment_id": self.deployment_id,
        } | params
        resp = client.post("/lti/login", data=data, follow_redirects=False)
        if resp.status_code != 302:
            return "", "", resp
        query = parse_qs(urlsplit(resp.headers["location"]).query)
        return query["state"][0], query["nonce"][0], resp

    def launch(self, client: TestClient, token: str, state: str, **extra: str) -> httpx.Response:
        return client.post(
            "/lti/launch", data={"id_token": token, "state": state} | extra, follow_redirects=False
        )

    def full_launch(self, client: TestClient, **claim_overrides: Any) -> httpx.Response:
        state, nonce, resp = self.login(client)
        assert resp.status_code == 302, resp.text
        return self.launch(client, self.token(self.claims(nonce, **claim_overrides)), state)


class Network:
    """The platforms' HTTP side as the tool sees it (JWKS only; services elsewhere)."""

    def __init__(self, *plats: FakePlatform) -> None:
        self.platforms = list(plats)
        self.down = False

    def handler(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("platform down", request=request)
        for p in self.platforms:
            if str(request.url) == p.jwks_url:
                p.jwks_fetches += 1
                return httpx.Response(200, json=p.jwks())
        return httpx.Response(404)

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handler))


def new_state() -> str:
    return uuid.uuid4().hex
