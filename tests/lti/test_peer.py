"""Against an independent platform implementation (lti1p3platform): launch, deep linking,
service tokens, NRPS roster with paging, AGS line items, scores and results."""

from __future__ import annotations

import datetime as dt
import json
import re
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import select

from service.db.engine import session as db_session
from service.db.models import Platform, ServiceToken
from service.lti import services
from tests.lti.peer import ISSUER, LINEITEMS_URL, NRPS_URL, Peer, _unb64


def _launch(client: TestClient, peer: Peer, **kw: object) -> str:
    login = urlsplit(peer.login_url())
    resp = client.get(f"{login.path}?{login.query}", follow_redirects=False)
    assert resp.status_code == 302, resp.text
    form = peer.launch_form(resp.headers["location"], **kw)  # type: ignore[arg-type]
    assert form["launch_url"] == "https://tool.test/lti/launch"
    launched = client.post(
        "/lti/launch",
        data={"id_token": form["id_token"], "state": form["state"]},
        follow_redirects=False,
    )
    assert launched.status_code == 303, launched.text
    return launched.headers["location"]


def test_peer_platform_launch_lands_instructor(client: TestClient, peer: Peer) -> None:
    page = client.get(_launch(client, peer))
    assert page.status_code == 200
    assert "Micro-credentials for Compilers" in page.text
    assert "Grace Hopper" in page.text


def test_deep_linking_response_is_accepted_by_the_peer(client: TestClient, peer: Peer) -> None:
    location = _launch(client, peer, deep_link=True)
    assert location.startswith("/app/deep-link")
    picker = client.get(location)
    assert picker.status_code == 200 and "Add microcred" in picker.text
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]+)">', picker.text))
    assert "csrf" in fields
    forged = client.post("/app/deep-link", data={"choice": "home"})  # no CSRF token
    assert forged.status_code == 403
    resp = client.post("/app/deep-link", data=fields | {"choice": "home", "title": "Badges"})
    assert resp.status_code == 200
    assert f"action='{ISSUER}/deep-link-return'" in resp.text
    jwt = re.search(r"name='JWT' value='([^']+)'", resp.text).group(1)  # type: ignore[union-attr]
    items = peer.conf.validate_deeplinking_resp({"JWT": jwt})  # verified with our JWKS
    assert items == [
        {
            "type": "ltiResourceLink",
            "url": "https://tool.test/lti/launch",
            "title": "Badges",
            "text": items[0]["text"],
            "custom": {"microcred_view": "home"},
        }
    ]
    claims = json.loads(_unb64(jwt.split(".")[1]))
    assert claims["aud"] == ISSUER and claims["iss"] == peer.client_id
    assert claims["https://purl.imsglobal.org/spec/lti/claim/deployment_id"] == peer.deployment_id
    assert claims["exp"] - claims["iat"] <= 600 and claims["nonce"]


def test_learner_cannot_deep_link(client: TestClient, peer: Peer) -> None:
    learner = ["http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"]
    location = _launch(client, peer, deep_link=True, roles=learner)
    assert client.get(location).status_code == 403


def _service(engine: Engine, app: FastAPI) -> services.ServiceClient:
    with db_session(engine) as s:
        row = s.exec(select(Platform).where(Platform.issuer == ISSUER)).one()
    return services.ServiceClient(engine, app.state.lti_http, row)


def test_roster_follows_link_paging_and_tokens_are_cached(
    engine: Engine, app: FastAPI, peer: Peer
) -> None:
    svc = _service(engine, app)
    members = services.roster(svc, NRPS_URL)
    assert [m.user_id for m in members] == ["u0", "u1", "u2", "u3", "u4"]
    assert members[0].email == "u0@peer.test"
    assert peer.token_requests == 1
    # another process: a fresh client finds the token in the database
    services.roster(_service(engine, app), NRPS_URL)
    assert peer.token_requests == 1


def test_line_items_scores_and_results(engine: Engine, app: FastAPI, peer: Peer) -> None:
    svc = _service(engine, app)
    item = services.create_line_item(
        svc,
        LINEITEMS_URL,
        label="Competency: Data analysis",
        score_maximum=3,
        tag="microcred:c1",
        resource_id="comp-1",
    )
    assert item["id"] == LINEITEMS_URL + "/1"
    assert services.line_items(svc, LINEITEMS_URL, tag="microcred:c1") == [item]
    now = dt.datetime.now(dt.UTC)
    services.post_score(
        svc,
        item["id"],
        user_id="u1",
        score_given=2,
        score_maximum=3,
        timestamp=now,
        comment="intermediate",
    )
    assert peer.scores[0]["scoreGiven"] == 2 and peer.scores[0]["gradingProgress"] == "FullyGraded"


def test_client_assertions_have_one_audience_and_unique_jti(
    engine: Engine, app: FastAPI, client: TestClient, peer: Peer
) -> None:
    svc = _service(engine, app)
    for scope in (services.NRPS_READ, services.AGS_SCORE, services.AGS_LINEITEM):
        svc.access_token([scope])
    assert len(peer.assertions) == 3
    kids = {k["kid"] for k in client.get("/lti/jwks").json()["keys"]}
    jtis = set()
    for a in peer.assertions:
        assert a["aud"] == ISSUER + "/token"  # a single string, never a list
        assert a["iss"] == a["sub"] == peer.client_id
        assert 0 < a["exp"] - a["iat"] <= 300
        assert a["_header"]["kid"] in kids and a["_header"]["alg"] == "RS256"
        jtis.add(a["jti"])
    assert len(jtis) == 3
    assert all(svc.assertion().split(".")[1] != svc.assertion().split(".")[1] for _ in range(20))


def test_a_revoked_token_is_replaced_once(engine: Engine, app: FastAPI, peer: Peer) -> None:
    svc = _service(engine, app)
    services.roster(svc, NRPS_URL)
    with db_session(engine, write=True) as s:
        row = s.exec(select(ServiceToken)).one()
        row.access_token = "revoked"
        s.add(row)
        s.commit()
    assert len(services.roster(svc, NRPS_URL)) == 5
    assert peer.token_requests == 2


def test_token_endpoint_refusal_is_a_final_error(engine: Engine, app: FastAPI, peer: Peer) -> None:
    peer.trust_tool_keys({"keys": []})  # the platform no longer knows our key
    svc = _service(engine, app)
    with pytest.raises(services.PlatformCallFailed) as err:
        services.roster(svc, NRPS_URL)
    assert err.value.status == 400 and not services.is_retryable(err.value)


def test_access_tokens_are_encrypted_at_rest(engine: Engine, app: FastAPI, peer: Peer) -> None:
    svc = _service(engine, app)
    token = svc.access_token([services.NRPS_READ])
    with engine.connect() as conn:
        raw = conn.exec_driver_sql("SELECT access_token FROM service_token").scalar_one()
    assert token not in raw and raw.startswith("v1.")
