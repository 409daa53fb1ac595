"""Dynamic registration against fake platform endpoints shaped like Moodle's and Canvas's
(lti.md §2.6, §3.6), the Canvas developer key JSON, and activation."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import select

from service.db.engine import session as db_session
from service.db.models import Deployment, Platform
from service.lti import platforms

TOOL_CONF = "https://purl.imsglobal.org/spec/lti-tool-configuration"


def _moodle(seen: list[httpx.Request]) -> Callable[[httpx.Request], httpx.Response]:
    base = "https://moodle.example.edu"

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/mod/lti/openid-configuration.php":
            return httpx.Response(
                200,
                json={
                    "issuer": base,
                    "token_endpoint": base + "/mod/lti/token.php",
                    "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                    "jwks_uri": base + "/mod/lti/certs.php",
                    "authorization_endpoint": base + "/mod/lti/auth.php",
                    "registration_endpoint": base + "/mod/lti/openid-registration.php",
                    "scopes_supported": ["openid"],
                    "claims_supported": [
                        "sub",
                        "iss",
                        "name",
                        "given_name",
                        "family_name",
                        "email",
                    ],
                    "https://purl.imsglobal.org/spec/lti-platform-configuration": {
                        "product_family_code": "moodle",
                        "version": "4.5",
                        "messages_supported": ["LtiResourceLinkRequest", "LtiDeepLinkingRequest"],
                    },
                },
            )
        if request.url.path == "/mod/lti/openid-registration.php":
            if request.headers.get("authorization") != "Bearer moodle-reg-token":
                return httpx.Response(401, json={"error": "token"})
            body = json.loads(request.content)
            return httpx.Response(
                200,
                json=body
                | {
                    "client_id": "Xq3kR9mWp2ZtL0a",
                    "application_type": ["web"],  # Moodle quirk: an array
                    TOOL_CONF: body[TOOL_CONF] | {"deployment_id": "7"},
                },
            )
        return httpx.Response(404)

    return handler


def _canvas(seen: list[httpx.Request]) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.headers.get("authorization") != "Bearer canvas-jwt":
            return httpx.Response(401, json={"errors": [{"message": "Invalid token"}]})
        if request.url.path == "/api/lti/security/openid-configuration":
            return httpx.Response(
                200,
                json={
                    "issuer": "https://canvas.instructure.com",
                    "authorization_endpoint": "https://sso.canvaslms.com/api/lti/authorize_redirect",
                    "registration_endpoint": "https://school.instructure.com/api/lti/registrations",
                    "jwks_uri": "https://sso.canvaslms.com/api/lti/security/jwks",
                    "token_endpoint": "https://sso.canvaslms.com/login/oauth2/token",
                    "scopes_supported": ["openid"],
                    "https://purl.imsglobal.org/spec/lti-platform-configuration": {
                        "product_family_code": "canvas",
                        "version": "OpenSource",
                        "messages_supported": [
                            {"type": "LtiResourceLinkRequest", "placements": ["course_navigation"]},
                            {"type": "LtiDeepLinkingRequest", "placements": ["link_selection"]},
                        ],
                        "https://canvas.instructure.com/lti/account_name": "School of Tests",
                    },
                },
            )
        if request.url.path == "/api/lti/registrations":
            body = json.loads(request.content)
            return httpx.Response(200, json=body | {"client_id": "10000000000077"})
        return httpx.Response(404)

    return handler


def _use(app: FastAPI, handler: Callable[[httpx.Request], httpx.Response]) -> None:
    app.state.lti_http_async = httpx.AsyncClient(transport=httpx.MockTransport(handler))


def test_moodle_dynamic_registration(client: TestClient, app: FastAPI, engine: Engine) -> None:
    seen: list[httpx.Request] = []
    _use(app, _moodle(seen))
    resp = client.get(
        "/lti/register",
        params={
            "openid_configuration": "https://moodle.example.edu/mod/lti/openid-configuration.php",
            "registration_token": "moodle-reg-token",
        },
    )
    assert resp.status_code == 200, resp.text
    # Moodle shows the page in its frame: it may, and nobody else; the close message is in
    # a static script (no inline script under the CSP).
    csp = resp.headers["content-security-policy"]
    assert csp.endswith("frame-ancestors https://moodle.example.edu"), csp
    assert "<script src='/static/lti-close.js'>" in resp.text
    script = client.get("/static/lti-close.js").text
    assert "org.imsglobal.lti.close" in script
    # closed by the administrator's click only: the activation command stays readable
    assert "setTimeout" not in script and 'addEventListener("click"' in script
    assert "microcred platform activate" in resp.text
    body = json.loads(seen[-1].content)
    assert body["token_endpoint_auth_method"] == "private_key_jwt"
    assert body["initiate_login_uri"] == "https://tool.test/lti/login"
    assert body["redirect_uris"] == ["https://tool.test/lti/launch"]
    assert body["jwks_uri"] == "https://tool.test/lti/jwks"
    for scope in (
        "lti-ags/scope/lineitem",
        "lti-ags/scope/score",
        "lti-ags/scope/result.readonly",
        "lti-nrps/scope/contextmembership.readonly",
    ):
        assert f"https://purl.imsglobal.org/spec/{scope}" in body["scope"].split()
    conf = body[TOOL_CONF]
    assert {"name", "email", "given_name", "family_name"} <= set(conf["claims"])
    assert {m["type"] for m in conf["messages"]} == {
        "LtiResourceLinkRequest",
        "LtiDeepLinkingRequest",
    }
    with db_session(engine) as s:
        row = s.exec(select(Platform)).one()
        dep = s.exec(select(Deployment)).one()
    assert (row.issuer, row.client_id, row.active) == (
        "https://moodle.example.edu",
        "Xq3kR9mWp2ZtL0a",
        False,
    )
    assert row.auth_login_url.endswith("/mod/lti/auth.php") and dep.deployment_id == "7"
    # where it came from, for the institution administrator who activates it (CLI)
    with db_session(engine) as s:
        found = platforms.provenance(s, row.id or 0)
    assert found.registered_by == "dynamic-registration"
    assert found.openid_configuration == (
        "https://moodle.example.edu/mod/lti/openid-configuration.php"
    )
    assert found.source_ip == "testclient"  # the address Starlette's test client reports


def test_canvas_dynamic_registration(client: TestClient, app: FastAPI, engine: Engine) -> None:
    seen: list[httpx.Request] = []
    _use(app, _canvas(seen))
    resp = client.get(
        "/lti/register",
        params={
            "openid_configuration": "https://school.instructure.com/api/lti/security/openid-configuration",
            "registration_token": "canvas-jwt",
        },
    )
    assert resp.status_code == 200, resp.text
    assert all(r.headers["authorization"] == "Bearer canvas-jwt" for r in seen)
    conf = json.loads(seen[-1].content)[TOOL_CONF]
    assert conf["https://canvas.instructure.com/lti/privacy_level"] == "public"
    assert any("link_selection" in m.get("placements", []) for m in conf["messages"])
    assert "--deployment" in resp.text  # Canvas makes deployments at install time
    with db_session(engine, write=True) as s:
        row = s.exec(select(Platform)).one()
        assert (row.client_id, row.active, row.product_family) == (
            "10000000000077",
            False,
            "canvas",
        )
        platforms.activate(s, row.id or 0, deployment_id="3:abc")
        s.commit()
        assert s.exec(select(Deployment)).one().deployment_id == "3:abc"


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({}, 400),
        ({"openid_configuration": "http://evil.example/conf"}, 400),
        ({"openid_configuration": "https://moodle.example.edu/nothing"}, 400),
    ],
)
def test_registration_failures_are_clean(
    client: TestClient, app: FastAPI, params: dict[str, str], status: int
) -> None:
    _use(app, _moodle([]))
    resp = client.get("/lti/register", params=params)
    assert resp.status_code == status
    assert "What to do" in resp.text


def test_registration_token_refused_by_platform(client: TestClient, app: FastAPI) -> None:
    _use(app, _canvas([]))
    resp = client.get(
        "/lti/register",
        params={
            "openid_configuration": "https://school.instructure.com/api/lti/security/openid-configuration",
            "registration_token": "wrong",
        },
    )
    assert resp.status_code == 400 and "HTTP 401" in resp.text


def test_canvas_developer_key_json(client: TestClient) -> None:
    conf = client.get("/lti/config/canvas.json").json()
    assert conf["oidc_initiation_url"] == "https://tool.test/lti/login"
    assert conf["public_jwk_url"] == "https://tool.test/lti/jwks"
    assert conf["target_link_uri"] in conf["redirect_uris"]
    ext = conf["extensions"][0]
    assert ext["privacy_level"] == "public"
    kinds = {p["message_type"] for p in ext["settings"]["placements"]}
    assert kinds == {"LtiResourceLinkRequest", "LtiDeepLinkingRequest"}


def test_manual_registration_refuses_plain_http(engine: Engine) -> None:
    from service.errors import BadInput

    with db_session(engine, write=True) as s, pytest.raises(BadInput):
        platforms.add_platform(
            s,
            issuer="http://lms.example.edu",
            client_id="c",
            auth_login_url="https://a",
            auth_token_url="https://b",
            key_set_url="https://c",
            deployment_ids=["1"],
        )


def test_registration_key_is_required_when_configured(
    app: FastAPI, client: TestClient, engine: Engine
) -> None:
    from pydantic import SecretStr

    app.state.settings.dynamic_registration_key = SecretStr("s3cret-key")
    seen: list[httpx.Request] = []
    _use(app, _moodle(seen))
    params = {
        "openid_configuration": "https://moodle.example.edu/mod/lti/openid-configuration.php",
        "registration_token": "moodle-reg-token",
    }
    refused = client.get("/lti/register", params=params | {"key": "guess"})
    assert refused.status_code == 400 and seen == []  # nothing fetched
    ok = client.get("/lti/register", params=params | {"key": "s3cret-key"})
    assert ok.status_code == 200
