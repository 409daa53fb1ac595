"""LTI platform storage (Canvas's ``lti_storage_target``): the launch works when the browser
drops our cookies, because state and nonce are checked through platform storage."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.lti.platform import FakePlatform

pytestmark = pytest.mark.usefixtures("registered")


def _config(html: str) -> dict[str, str]:
    match = re.search(r'<script type="application/json" id="lti-cfg">(.*?)</script>', html)
    assert match, html[:500]
    return json.loads(match.group(1))  # type: ignore[no-any-return]


def _storage_login(client: TestClient, canvas: FakePlatform) -> tuple[str, str]:
    resp = client.post(
        "/lti/login",
        data={
            "iss": canvas.issuer,
            "login_hint": "x",
            "target_link_uri": "https://tool.test/lti/launch",
            "client_id": canvas.client_id,
            "deployment_id": canvas.deployment_id,
            "lti_storage_target": "post_message_forwarding",
            "lti_message_hint": "m",
        },
        follow_redirects=False,
    )
    assert resp.status_code == 200  # an HTML page that writes to platform storage first
    assert "Partitioned" in resp.headers["set-cookie"]  # the cookie path is kept as well
    cfg = _config(resp.text)
    assert cfg["target"] == "post_message_forwarding"
    assert cfg["origin"] == "https://canvas.instructure.com"  # the OIDC auth origin
    assert cfg["auth_url"].startswith(canvas.issuer + "/auth?")
    js = _scripts(client, resp)
    assert "lti.put_data" in js and "lti.capabilities" in js
    return cfg["state"], cfg["nonce"]


def _scripts(client: TestClient, resp: httpx.Response) -> str:
    """The page's scripts: static files only (its CSP refuses inline script), and the page
    may be framed by the platform (its issuer and auth origin), by nothing else."""
    csp = resp.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "object-src 'none'" in csp and "base-uri 'none'" in csp
    assert csp.endswith("frame-ancestors https://canvas.instructure.com"), csp
    inline = re.findall(r"<script(?![^>]*\b(?:src|type=\"application/json\"))[^>]*>", resp.text)
    assert inline == [], inline
    sources = re.findall(r"<script src='(/static/[a-z-]+\.js)'>", resp.text) or re.findall(
        r'<script src="(/static/[a-z-]+\.js)">', resp.text
    )
    assert sources
    return "".join(client.get(src).text for src in sources)


def _launch_without_cookies(client: TestClient, canvas: FakePlatform) -> tuple[str, str, str, str]:
    state, nonce = _storage_login(client, canvas)
    client.cookies.clear()  # third-party cookies blocked
    token = canvas.token(canvas.claims(nonce))
    resp = canvas.launch(client, token, state, lti_storage_target="post_message_forwarding")
    assert resp.status_code == 200, resp.text
    assert "lti.get_data" in _scripts(client, resp)
    cfg = _config(resp.text)
    assert cfg["state_key"] == f"lti_state_{state}" and cfg["nonce_key"] == f"lti_nonce_{nonce}"
    ticket = re.search(r'name="ticket" value="([^"]+)"', resp.text).group(1)  # type: ignore[union-attr]
    return state, nonce, ticket, token


def test_launch_completes_through_platform_storage(
    client: TestClient, canvas: FakePlatform
) -> None:
    state, nonce, ticket, _ = _launch_without_cookies(client, canvas)
    done = client.post(
        "/lti/launch/confirm",
        data={"ticket": ticket, "state": state, "nonce": nonce},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert "?mc_session=" in done.headers["location"]  # cookies are blocked: the URL carries it
    client.cookies.clear()
    page = client.get(done.headers["location"])  # token carried in the link
    assert page.status_code == 200 and "Your micro-credentials" in page.text


def test_wrong_storage_value_is_refused(client: TestClient, canvas: FakePlatform) -> None:
    state, nonce, ticket, _ = _launch_without_cookies(client, canvas)
    bad = client.post(
        "/lti/launch/confirm", data={"ticket": ticket, "state": "state-attacker", "nonce": nonce}
    )
    assert bad.status_code == 400
    again = client.post(
        "/lti/launch/confirm", data={"ticket": ticket, "state": state, "nonce": nonce}
    )
    assert again.status_code == 400  # the ticket worked once (and was burnt)


def test_ticket_and_token_are_single_use(client: TestClient, canvas: FakePlatform) -> None:
    state, nonce, ticket, token = _launch_without_cookies(client, canvas)
    ok = client.post(
        "/lti/launch/confirm",
        data={"ticket": ticket, "state": state, "nonce": nonce},
        follow_redirects=False,
    )
    assert ok.status_code == 303
    assert (
        client.post(
            "/lti/launch/confirm", data={"ticket": ticket, "state": state, "nonce": nonce}
        ).status_code
        == 400
    )
    assert canvas.launch(client, token, state).status_code == 400


def test_without_storage_and_without_cookie_the_launch_is_refused(
    client: TestClient, moodle: FakePlatform
) -> None:
    state, nonce, _ = moodle.login(client)
    client.cookies.clear()
    resp = moodle.launch(client, moodle.token(moodle.claims(nonce)), state)
    assert resp.status_code == 400
    assert "new window" in resp.text


def test_nul_in_a_ticket_is_a_clean_4xx(client: TestClient) -> None:
    resp = client.post("/lti/launch/confirm", data={"ticket": "a\x00b", "state": "s", "nonce": "n"})
    assert resp.status_code == 400
