"""The demo LMS side of a launch: login initiation, OIDC auth endpoint, signed id_token."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from service import jws
from service.demo import keys
from service.demo.platform import AGS_CLAIM, DL, LTI, NRPS_CLAIM
from tests.demo.conftest import LMS, TOOL, Lms, form_action, form_fields


def platform_keys(lms: Lms) -> list[jws.PublicKey]:
    return [jws.public_key_from_jwk(k) for k in lms.client.get("/jwks").json()["keys"]]


def test_key_is_made_once_kept_private_and_published(tmp_path: Path) -> None:
    path = tmp_path / "demo" / "platform-key.pem"
    first = keys.load_or_create(path)
    second = keys.load_or_create(path)
    assert first.kid == second.kid and len(first.kid) == 43  # RFC 7638 SHA-256 thumbprint
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert "d" not in first.public.jwk and first.public.jwk["kid"] == first.kid


def test_jwks_serves_the_signing_key(lms: Lms) -> None:
    resp = lms.client.get("/jwks")
    assert resp.status_code == 200
    (key,) = resp.json()["keys"]
    assert key["kid"] == lms.platform.key.kid and key["alg"] == "RS256" and key["kty"] == "RSA"
    assert "d" not in key


def test_login_initiation_names_the_tool_and_advertises_platform_storage(lms: Lms) -> None:
    page = lms.client.get("/launch", params={"as": "u-learn-2"})
    assert form_action(page.text) == f"{TOOL}/lti/login"
    fields = form_fields(page.text)
    assert fields["iss"] == LMS
    assert fields["login_hint"] == "u-learn-2"
    assert fields["target_link_uri"] == f"{TOOL}/lti/launch"
    assert fields["client_id"] == "microcred-demo" and fields["lti_deployment_id"] == "1"
    assert fields["lti_storage_target"] == "post_message_forwarding"
    assert len(fields["lti_message_hint"]) >= 32


def test_auth_answers_with_a_signed_id_token_for_the_launching_learner(lms: Lms) -> None:
    fields = lms.launch_fields("u-learn-3")
    page = lms.client.post("/auth", data=lms.auth_params(fields))
    assert page.status_code == 200
    assert form_action(page.text) == f"{TOOL}/lti/launch"
    answer = form_fields(page.text)
    assert answer["state"] == "state-123"
    assert answer["lti_storage_target"] == "post_message_forwarding"
    header = jws.unverified_header(answer["id_token"])
    assert header["alg"] == "RS256" and header["kid"] == lms.platform.key.kid
    claims = jws.verify(
        answer["id_token"],
        platform_keys(lms),
        algorithms=["RS256"],
        audience="microcred-demo",
        issuer=LMS,
    )
    assert claims["sub"] == "u-learn-3" and claims["nonce"] == "nonce-456"
    assert claims["azp"] == "microcred-demo"
    assert claims["name"] == "Sofia Rossi" and claims["email"].startswith("sofia.rossi@")
    assert claims[LTI + "message_type"] == "LtiResourceLinkRequest"
    assert claims[LTI + "version"] == "1.3.0"
    assert claims[LTI + "deployment_id"] == "1"
    assert claims[LTI + "target_link_uri"] == f"{TOOL}/lti/launch"
    assert claims[LTI + "roles"] == ["http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"]
    assert claims[LTI + "resource_link"]["id"] == "rl-microcred-1"
    assert claims[LTI + "context"]["title"] == "Data Literacy 101"
    assert (
        claims[AGS_CLAIM]["lineitems"] == f"{LMS}/api/lti/courses/ctx-data-literacy-101/line_items"
    )
    assert "https://purl.imsglobal.org/spec/lti-ags/scope/score" in claims[AGS_CLAIM]["scope"]
    assert claims[NRPS_CLAIM]["context_memberships_url"].endswith("/names_and_roles")
    assert 0 < claims["exp"] - claims["iat"] <= 300


def test_the_course_page_can_show_the_last_claims_sent(lms: Lms) -> None:
    assert lms.client.get("/launches/last", params={"as": "u-learn-4"}).status_code == 404
    fields = lms.launch_fields("u-learn-4")
    lms.client.post("/auth", data=lms.auth_params(fields))
    shown = lms.client.get("/launches/last", params={"as": "u-learn-4"}).json()
    assert shown["kid"] == lms.platform.key.kid
    assert shown["claims"]["sub"] == "u-learn-4" and shown["claims"]["nonce"] == "nonce-456"


def test_auth_by_get_works_like_post(lms: Lms) -> None:
    fields = lms.launch_fields("u-instr-1")
    page = lms.client.get("/auth", params=lms.auth_params(fields))
    claims = jws.verify(
        form_fields(page.text)["id_token"], platform_keys(lms), algorithms=["RS256"]
    )
    assert claims[LTI + "roles"] == ["http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"]


def test_deep_linking_launch_carries_settings_for_instructors_only(lms: Lms) -> None:
    fields = lms.launch_fields("u-instr-1", message="deeplink")
    page = lms.client.post("/auth", data=lms.auth_params(fields))
    claims = jws.verify(
        form_fields(page.text)["id_token"], platform_keys(lms), algorithms=["RS256"]
    )
    assert claims[LTI + "message_type"] == "LtiDeepLinkingRequest"
    settings = claims[DL + "deep_linking_settings"]
    assert settings["deep_link_return_url"] == f"{LMS}/deep_linking/return"
    assert settings["accept_types"] == ["ltiResourceLink"] and settings["data"]
    assert LTI + "resource_link" not in claims
    refused = lms.client.get("/launch", params={"as": "u-learn-1", "message": "deeplink"})
    assert refused.status_code == 400 and "only instructors" in refused.text


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"client_id": "someone-else"}, "unknown client_id"),
        ({"redirect_uri": "https://evil.test/steal"}, "redirect_uri is not registered"),
        ({"redirect_uri": f"{TOOL}/lti/launch/"}, "redirect_uri is not registered"),
    ],
)
def test_auth_never_redirects_to_an_unverified_client(
    lms: Lms, override: dict[str, str], reason: str
) -> None:
    page = lms.client.post("/auth", data=lms.auth_params(lms.launch_fields(), **override))
    assert page.status_code == 400
    assert reason in page.text
    assert "autopost" not in page.text and "id_token" not in page.text


@pytest.mark.parametrize(
    ("override", "error"),
    [
        ({"scope": "openid profile"}, "invalid_scope"),
        ({"response_type": "code"}, "unsupported_response_type"),
        ({"response_mode": "query"}, "invalid_request"),
        ({"prompt": "login"}, "invalid_request"),
        ({"nonce": ""}, "invalid_request"),
        ({"lti_message_hint": "forged"}, "invalid_request"),
        ({"login_hint": "u-learn-2"}, "login_required"),
    ],
)
def test_auth_errors_are_posted_back_with_the_state_and_no_token(
    lms: Lms, override: dict[str, str], error: str
) -> None:
    page = lms.client.post("/auth", data=lms.auth_params(lms.launch_fields(), **override))
    assert page.status_code == 200
    assert form_action(page.text) == f"{TOOL}/lti/launch"
    answer = form_fields(page.text)
    assert answer["error"] == error and answer["state"] == "state-123"
    assert "id_token" not in answer


def test_auth_without_state_is_refused_without_a_token(lms: Lms) -> None:
    page = lms.client.post("/auth", data=lms.auth_params(lms.launch_fields(), state=""))
    answer = form_fields(page.text)
    assert answer == {"error": "invalid_request", "error_description": "state is required"}


def test_expired_message_hint_is_refused(lms: Lms) -> None:
    fields = lms.platform.login_initiation(
        user_id="u-learn-1", message_type="LtiResourceLinkRequest", now=time.time() - 3600
    )
    answer = lms.platform.authorize(lms.auth_params(fields), now=time.time())
    assert answer.fields["error"] == "invalid_request" and "id_token" not in answer.fields


def test_form_values_are_escaped_in_the_auto_post_page(lms: Lms) -> None:
    page = lms.client.post(
        "/auth", data=lms.auth_params(lms.launch_fields(), state='"><script>alert(1)</script>')
    )
    assert "<script>alert(1)" not in page.text
    assert form_fields(page.text)["state"] == '"><script>alert(1)</script>'


def test_unknown_member_page_is_a_clean_404(lms: Lms) -> None:
    page = lms.client.get("/course/tool", params={"as": "<img src=x onerror=alert(1)>"})
    assert page.status_code == 404
    assert "<img src=x" not in page.text and "Traceback" not in page.text


def test_home_page_offers_a_launch_per_member(lms: Lms) -> None:
    page = lms.client.get("/")
    assert page.status_code == 200
    assert "Launch as instructor" in page.text
    for member in lms.platform.course.learners:
        assert f"Launch as learner ({member.given_name})" in page.text
    tool_page = lms.client.get("/course/tool", params={"as": "u-learn-1"})
    assert 'name="post_message_forwarding"' in tool_page.text
    assert 'src="/launch?as=u-learn-1&amp;message=resource"' in tool_page.text


def test_openid_configuration_names_the_endpoints(lms: Lms) -> None:
    conf = lms.client.get("/.well-known/openid-configuration").json()
    assert conf["issuer"] == LMS
    assert conf["authorization_endpoint"] == f"{LMS}/auth"
    assert conf["token_endpoint"] == f"{LMS}/token" and conf["jwks_uri"] == f"{LMS}/jwks"
    assert conf["id_token_signing_alg_values_supported"] == ["RS256"]
