"""The issuer's HTTP surface, driven through the app on the real database."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import select

from service.db.engine import session
from service.db.models import AuditEvent
from service.issuer import multibase
from tests.issuer import samples


@pytest.fixture
def api(settings: Any, engine: Engine, api_headers: Callable[..., dict[str, str]]) -> TestClient:
    from service.app import create_app

    app = create_app(settings, engine=engine)
    return TestClient(app, base_url="https://tool.test", headers=api_headers("credentials:write"))


def _body(**kw: Any) -> dict[str, Any]:
    t = samples.template()
    template = dataclasses.asdict(t)
    body: dict[str, Any] = {
        "learner": {"lti_user_id": "lti-user-42", "email": "ada@example.org", "name": "Ada"},
        "template": template,
        "level_key": "intermediate",
        "evidence": [{"name": "Rubric: final project", "description": "17/20"}],
        "supervision": "supervised-onsite-verified",
        "criterion_levels": {"cleaning": "advanced"},
    }
    body.update(kw)
    return body


def _issue(api: TestClient, **kw: Any) -> dict[str, Any]:
    resp = api.post("/api/credentials", json=_body(**kw))
    assert resp.status_code == 201, resp.text
    out: dict[str, Any] = resp.json()
    return out


def test_api_requires_a_token_with_the_credentials_scope(
    api: TestClient, api_headers: Callable[..., dict[str, str]]
) -> None:
    anonymous = TestClient(api.app, base_url="https://tool.test")
    assert anonymous.post("/api/credentials", json=_body()).status_code == 401
    bad = {"Authorization": "Bearer wrong"}
    resp = anonymous.post("/api/credentials", json=_body(), headers=bad)
    assert resp.status_code == 401 and resp.json()["error"] == "unauthenticated"
    other_scope = api_headers("evidence:write")
    resp = anonymous.post("/api/credentials", json=_body(), headers=other_scope)
    assert resp.status_code == 403 and "credentials:write" in resp.json()["detail"]


def test_issue_then_content_negotiation(api: TestClient) -> None:
    issued = _issue(api)
    url = "/credentials/" + issued["id"]
    ld = api.get(url, headers={"Accept": "application/vc+ld+json"})
    assert ld.status_code == 200 and ld.headers["content-type"].startswith("application/vc+ld+json")
    assert ld.json() == issued["document"]
    plain = api.get(url, headers={"Accept": "application/json"})
    assert plain.json()["proof"][0]["cryptosuite"] == "eddsa-rdfc-2022"
    jwt = api.get(url, headers={"Accept": "application/vc+jwt"})
    assert jwt.headers["content-type"].startswith("application/vc+jwt")
    assert jwt.text == issued["jwt"] and jwt.text.count(".") == 2
    page = api.get(url, headers={"Accept": "text/html,application/xhtml+xml"})
    assert page.headers["content-type"].startswith("text/html")
    assert "Verified" in page.text and issued["document"]["name"] in page.text
    assert api.get("/credentials/nope", headers={"Accept": "application/json"}).status_code == 404


def test_post_verify_reports_each_check(api: TestClient) -> None:
    issued = _issue(api)
    ok = api.post("/verify", content=json.dumps(issued["document"]))
    assert ok.status_code == 200 and ok.json()["valid"] is True
    ok_jwt = api.post("/verify", content=issued["jwt"], headers={"Content-Type": "text/plain"})
    assert ok_jwt.json()["valid"] is True and ok_jwt.json()["format"] == "jwt"
    garbage = api.post("/verify", content="hello")
    assert garbage.json()["valid"] is False
    assert "unknown format" in garbage.json()["checks"][0]["detail"]


def test_revoke_via_api_shows_in_status_list_and_verify(api: TestClient, engine: Engine) -> None:
    issued = _issue(api)
    status_url = issued["document"]["credentialStatus"]["statusListCredential"]
    path = status_url.removeprefix("https://tool.test")
    first = api.get(path)
    assert first.status_code == 200
    assert "max-age" in first.headers["cache-control"]
    etag = first.headers["etag"]
    assert api.get(path, headers={"If-None-Match": etag}).status_code == 304
    resp = api.post(f"/api/credentials/{issued['id']}/revoke", json={"reason": "plagiarism"})
    assert resp.status_code == 200 and resp.json()["revoked"] is True
    second = api.get(path, headers={"If-None-Match": etag})
    assert second.status_code == 200 and second.headers["etag"] != etag
    report = api.post("/verify", content=json.dumps(issued["document"])).json()
    assert report["valid"] is False
    assert any("revoked" in c["detail"] for c in report["checks"] if not c["ok"])
    again = api.post(f"/api/credentials/{issued['id']}/revoke", json={"reason": "x"})
    assert again.status_code == 409
    back = api.post(f"/api/credentials/{issued['id']}/unrevoke", json={"reason": "appeal"})
    assert back.json()["revoked"] is False
    assert api.post("/verify", content=json.dumps(issued["document"])).json()["valid"] is True
    with session(engine) as s:
        events = s.exec(select(AuditEvent).where(AuditEvent.action == "credential.revoked")).all()
    assert events[0].actor.startswith("api-token:") and events[0].detail["reason"] == "plagiarism"


def test_identity_documents(api: TestClient) -> None:
    issued = _issue(api)
    did = api.get("/.well-known/did.json").json()
    assert did["id"] == "did:web:tool.test"
    vm = issued["document"]["proof"][0]["verificationMethod"]
    assert vm in did["assertionMethod"]
    method = next(m for m in did["verificationMethod"] if m["id"] == vm)
    assert method["controller"] == did["id"]
    multibase.decode_multikey_ed25519(method["publicKeyMultibase"])
    jwks = api.get("/.well-known/jwks.json")
    assert jwks.headers["content-type"].startswith("application/jwk-set+json")
    header = json.loads(multibase.decode_base64url("u" + issued["jwt"].split(".")[0]))
    assert header["alg"] == "ES256" and header["typ"] == "JWT"
    assert header["kid"] in [k["kid"] for k in jwks.json()["keys"]]
    single = api.get(header["kid"].removeprefix("https://tool.test")).json()
    assert single["kty"] == "EC" and single["kid"] == header["kid"] and "keys" not in single
    assert "d" not in single
    profile = api.get("/issuer").json()
    assert profile["id"] == did["id"] and profile["type"] == ["Profile"]
    ctx = api.get("/contexts/microcred-eu-v1.jsonld")
    assert ctx.json()["@context"]["eqfLevel"]["@id"].startswith("urn:microcred:eu:v1#")
    assert ctx.headers["access-control-allow-origin"] == "*"


def test_bad_input_is_a_clear_422(api: TestClient) -> None:
    resp = api.post("/api/credentials", json=_body(level_key="expert"))
    assert resp.status_code == 422 and "expert" in resp.json()["detail"]
    body = _body()
    body["template"] = copy.deepcopy(body["template"])
    body["template"]["eu"]["learning_outcomes"] = []
    assert api.post("/api/credentials", json=body).status_code == 422


def test_stacked_credential_references_parts(api: TestClient) -> None:
    a = _issue(api)
    b = _issue(api, level_key="advanced")
    program = dataclasses.asdict(
        samples.template(key="data-science-program", competency_name="Data science programme")
    )
    stacked = _issue(api, template=program, level_key="intermediate", parts=[a["id"], b["id"]])
    subject = stacked["document"]["credentialSubject"]
    assert subject["hasPart"] == [a["document"]["id"], b["document"]["id"]]
    assert {e.get("id") for e in stacked["document"]["evidence"]} >= set(subject["hasPart"])
    assert api.post("/verify", content=json.dumps(stacked["document"])).json()["valid"] is True
    other = _issue(api, learner={"lti_user_id": "someone-else"})
    resp = api.post("/api/credentials", json=_body(template=program, parts=[other["id"], a["id"]]))
    assert resp.status_code == 422 and "another learner" in resp.json()["detail"]
