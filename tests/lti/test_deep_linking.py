"""Deep linking from a Moodle-shaped platform: the request is accepted without a resource link,
the picker is instructor-only, and the signed response echoes ``data``."""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import select

from service import jws
from service.db.engine import session as db_session
from service.db.models import LtiCache, WebSession
from tests.lti.platform import MEMBERSHIP, C, FakePlatform, b64

pytestmark = pytest.mark.usefixtures("registered")

DL = "https://purl.imsglobal.org/spec/lti-dl/claim/"
SETTINGS = {
    "deep_link_return_url": "https://moodle.test/mod/lti/contentitem_return.php?course=7",
    "accept_types": ["ltiResourceLink"],
    "accept_presentation_document_targets": ["frame", "iframe", "window"],
    "accept_multiple": True,
    "auto_create": False,
    "data": "opaque-7<&>",
}


def _dl_launch(client: TestClient, moodle: FakePlatform, roles: list[str]) -> str:
    state, nonce, _ = moodle.login(client)
    claims = moodle.claims(
        nonce,
        roles=roles,
        **{C + "message_type": "LtiDeepLinkingRequest", DL + "deep_linking_settings": SETTINGS},
    )
    del claims[C + "resource_link"]  # deep-linking requests carry none
    resp = moodle.launch(client, moodle.token(claims), state)
    assert resp.status_code == 303, resp.text
    return resp.headers["location"]


def test_only_a_deep_linking_launch_keeps_its_request(
    client: TestClient, moodle: FakePlatform, engine: Engine
) -> None:
    """The picker and the signed response read the deep-linking request back; a resource
    link launch keeps nothing beyond its person, course and enrolment rows."""
    assert moodle.full_launch(client).status_code == 303
    with db_session(engine) as s:
        assert s.exec(select(LtiCache)).all() == []
    _dl_launch(client, moodle, [MEMBERSHIP + "Instructor"])
    with db_session(engine) as s:
        kept = s.exec(select(LtiCache)).all()
        session = s.exec(select(WebSession).where(WebSession.role == "instructor")).one()
    assert [row.key for row in kept] == [f"ctx-{session.launch_id}"]
    assert kept[0].value["message_type"] == "LtiDeepLinkingRequest"


def test_instructor_places_a_link_and_the_response_is_signed(
    client: TestClient, moodle: FakePlatform
) -> None:
    location = _dl_launch(client, moodle, [MEMBERSHIP + "Instructor"])
    assert location == "/app/deep-link"  # the state cookie came back: the cookie carries it
    token = client.cookies["__Host-microcred_session"]
    client.cookies.clear()  # cookies lost from here on: the token travels in link and form
    picker = client.get(location, params={"mc_session": token})
    assert picker.status_code == 200
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]+)">', picker.text))
    assert set(fields) == {"csrf", "mc_session"}
    resp = client.post("/app/deep-link", data=fields | {"choice": "home", "title": "Badges"})
    assert resp.status_code == 200
    assert "action='https://moodle.test/mod/lti/contentitem_return.php?course=7'" in resp.text
    token = re.search(r"name='JWT' value='([^']+)'", resp.text).group(1)  # type: ignore[union-attr]
    published = [jws.public_key_from_jwk(k) for k in client.get("/lti/jwks").json()["keys"]]
    claims = jws.verify(
        token, published, algorithms=["RS256"], audience=moodle.issuer, issuer=moodle.client_id
    )
    assert claims[C + "message_type"] == "LtiDeepLinkingResponse"
    assert claims[C + "version"] == "1.3.0"
    assert claims[C + "deployment_id"] == moodle.deployment_id
    assert claims[DL + "data"] == "opaque-7<&>"
    (item,) = claims[DL + "content_items"]
    assert item["type"] == "ltiResourceLink" and item["url"] == "https://tool.test/lti/launch"
    assert item["title"] == "Badges"


def test_learner_gets_no_picker(client: TestClient, moodle: FakePlatform) -> None:
    location = _dl_launch(client, moodle, [MEMBERSHIP + "Learner"])
    resp = client.get(location)
    assert resp.status_code == 403 and "instructors" in resp.text


def test_deep_linking_request_without_settings_is_refused(
    client: TestClient, moodle: FakePlatform
) -> None:
    state, nonce, _ = moodle.login(client)
    claims = moodle.claims(nonce, **{C + "message_type": "LtiDeepLinkingRequest"})
    assert moodle.launch(client, moodle.token(claims), state).status_code == 400


def test_resource_link_session_cannot_post_a_deep_link(
    client: TestClient, moodle: FakePlatform
) -> None:
    resp = moodle.full_launch(client, roles=[MEMBERSHIP + "Instructor"])
    page = client.get(resp.headers["location"])
    assert page.status_code == 200
    csrf = json.dumps(b64(b"x"))  # any value: the session has no deep-linking request anyway
    out = client.post("/app/deep-link", data={"choice": "home", "csrf": csrf})
    assert out.status_code in (400, 403)
