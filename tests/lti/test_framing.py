"""Who may frame which page (CSP frame-ancestors), and the CSP every response carries
(reference/security.md §4.1 and W3): a session's pages only by its platform and the host
its launch came from, public pages by nobody, never ``*``."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from service.app import create_app
from service.lti.origins import origin
from service.settings import Settings
from tests.lti.platform import FakePlatform

pytestmark = pytest.mark.usefixtures("registered")

CANVAS_HOST = "https://school.instructure.com"  # where Canvas serves the course from


def _policy(resp: httpx.Response) -> dict[str, str]:
    csp = resp.headers["content-security-policy"]
    out = {}
    for part in csp.split(";"):
        name, _, value = part.strip().partition(" ")
        out[name] = value
    return out


def _html_rules(resp: httpx.Response) -> dict[str, str]:
    assert resp.headers["content-type"].startswith("text/html")
    policy = _policy(resp)
    assert policy["object-src"] == "'none'" and policy["base-uri"] == "'none'"
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
    assert " style=" not in resp.text  # the CSP would drop inline styles
    assert "*" not in policy["frame-ancestors"].split()
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["strict-transport-security"].startswith("max-age=31536000")
    inline = re.findall(r"<script(?![^>]*\b(?:src|type=\"application/json\"))[^>]*>", resp.text)
    assert inline == [], inline  # the CSP would block them
    return policy


def _landing(client: TestClient, platform: FakePlatform, **claims: object) -> httpx.Response:
    launched = platform.full_launch(client, **claims)
    assert launched.status_code == 303, launched.text
    page = client.get(launched.headers["location"])
    assert page.status_code == 200, page.text
    return page


def test_a_canvas_session_is_framed_by_the_host_its_launch_came_from(
    client: TestClient, canvas: FakePlatform
) -> None:
    presentation = {"document_target": "iframe", "return_url": CANVAS_HOST + "/courses/1/x"}
    page = _landing(
        client,
        canvas,
        **{"https://purl.imsglobal.org/spec/lti/claim/launch_presentation": presentation},
    )
    policy = _html_rules(page)
    assert policy["frame-ancestors"].split() == ["https://canvas.instructure.com", CANVAS_HOST]


def test_a_moodle_session_is_framed_by_moodle_only(
    client: TestClient, moodle: FakePlatform
) -> None:
    policy = _html_rules(_landing(client, moodle))
    assert policy["frame-ancestors"] == "https://moodle.test"


def test_public_pages_and_json_are_not_framed(client: TestClient) -> None:
    missing = client.get("/nope", headers={"accept": "text/html"})
    assert _html_rules(missing)["frame-ancestors"] == "'none'"
    health = client.get("/healthz")
    assert health.headers["content-type"].startswith("application/json")
    policy = _policy(health)
    assert policy["default-src"] == "'none'" and policy["frame-ancestors"] == "'none'"


def test_an_error_in_the_frame_is_shown_to_the_registered_platforms(
    client: TestClient, moodle: FakePlatform
) -> None:
    state, nonce, _ = moodle.login(client)
    bad = moodle.launch(client, moodle.token(moodle.claims("wrong-" + nonce)), state)
    assert bad.status_code == 400 and "nonce" in bad.text
    ancestors = _html_rules(bad)["frame-ancestors"].split()
    assert set(ancestors) == {"https://moodle.test", "https://canvas.instructure.com"}
    unsigned = client.get("/app", headers={"accept": "text/html"})
    assert unsigned.status_code in (401, 403)
    assert set(_html_rules(unsigned)["frame-ancestors"].split()) == set(ancestors)


def test_extra_frame_ancestors_are_added_to_framed_pages_only(
    settings: Settings, engine: Engine, app: FastAPI, moodle: FakePlatform
) -> None:
    extra = settings.model_copy(
        update={"extra_frame_ancestors": "https://lms-proxy.example.edu not-a-url"}
    )
    other = create_app(extra, engine=engine)
    other.state.lti_http = app.state.lti_http
    with TestClient(other, base_url="https://tool.test") as client:
        policy = _html_rules(_landing(client, moodle))
        assert policy["frame-ancestors"].split() == [
            "https://moodle.test",
            "https://lms-proxy.example.edu",
        ]
        missing = client.get("/nope", headers={"accept": "text/html"})
        assert _policy(missing)["frame-ancestors"] == "'none'"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://School.Instructure.com/courses/1?x=1", "https://school.instructure.com"),
        ("http://localhost:8001/mod/lti", "http://localhost:8001"),
        ("javascript:alert(1)", None),
        ("https://a.example; script-src *", None),
        ("https://user@evil.example/", None),
        ("", None),
        ("//no-scheme.example/", None),
    ],
)
def test_only_plain_http_origins_reach_the_header(url: str, expected: str | None) -> None:
    assert origin(url) == expected


def test_a_deep_linking_picker_is_framed_by_the_host_the_answer_goes_back_to(
    client: TestClient, canvas: FakePlatform
) -> None:
    c = "https://purl.imsglobal.org/spec/lti/claim/"
    dl = "https://purl.imsglobal.org/spec/lti-dl/claim/"
    state, nonce, _ = canvas.login(client)
    claims = canvas.claims(
        nonce,
        roles=["http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"],
        **{
            c + "message_type": "LtiDeepLinkingRequest",
            dl + "deep_linking_settings": {
                "deep_link_return_url": CANVAS_HOST + "/courses/1/deep_linking_response",
                "accept_types": ["ltiResourceLink"],
                "accept_presentation_document_targets": ["iframe"],
            },
        },
    )
    del claims[c + "resource_link"], claims[c + "launch_presentation"]
    launched = canvas.launch(client, canvas.token(claims), state)
    assert launched.status_code == 303, launched.text
    picker = client.get(launched.headers["location"])
    assert picker.status_code == 200, picker.text
    policy = _html_rules(picker)
    assert policy["frame-ancestors"].split() == ["https://canvas.instructure.com", CANVAS_HOST]
