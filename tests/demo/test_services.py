"""The demo LMS's OAuth2 token endpoint, NRPS and AGS, driven as a tool would drive them."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import time
import uuid
from typing import Any

import pytest

from service import jws
from service.demo.config import Scope
from service.demo.platform import DL, LTI
from service.demo.services import MediaType
from tests.demo.conftest import LMS, Lms, form_fields, new_key

CTX = "/api/lti/courses/ctx-data-literacy-101"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def links(resp: Any) -> str | None:
    header = resp.headers.get("link")
    if not header:
        return None
    assert header.endswith('>; rel="next"')
    return str(header[1 : header.index(">")])


# --- token endpoint ---


def test_token_grants_only_requested_and_allowed_scopes(lms: Lms) -> None:
    resp = lms.token([Scope.NRPS, Scope.SCORE, "https://example.test/scope/admin"])
    assert resp.status_code == 200
    body = resp.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["scope"].split() == sorted([Scope.NRPS, Scope.SCORE])
    assert resp.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"aud": "http://localhost:8001"}, "audience"),
        ({"aud": ["http://localhost:8001/token", "https://other.test/token"]}, "untrusted"),
        ({"iss": "someone-else"}, "issuer"),
        ({"sub": "someone-else"}, "sub must be the client_id"),
        ({"exp": int(time.time()) - 600}, "expired"),
        ({"exp": int(time.time()) + 7200}, "too far in the future"),
        ({"jti": None}, "jti"),
    ],
)
def test_bad_assertions_are_refused_as_invalid_client(
    lms: Lms, claims: dict[str, Any], reason: str
) -> None:
    resp = lms.token([Scope.NRPS], **claims)
    assert resp.status_code == 401
    assert resp.json()["error"] == "invalid_client"
    assert reason in resp.json()["error_description"]


def test_assertion_signed_by_a_key_the_tool_does_not_publish_is_refused(lms: Lms) -> None:
    stranger = new_key(lms.tool.keys[0].kid)  # same kid, different key
    resp = lms.client.post(
        "/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": lms.assertion(key=stranger),
            "scope": Scope.NRPS,
        },
    )
    assert resp.status_code == 401 and "signature" in resp.json()["error_description"]


def test_a_new_tool_key_is_fetched_once_on_an_unknown_kid(lms: Lms) -> None:
    assert lms.token([Scope.NRPS]).status_code == 200
    fetched = lms.tool.fetches
    assert lms.token([Scope.NRPS]).status_code == 200
    assert lms.tool.fetches == fetched  # cached
    rotated = new_key("tool-key-2")
    lms.tool.keys.append(rotated)
    lms.platform._tool_keys._min_refetch = 0  # the rate limit is checked separately below
    resp = lms.client.post(
        "/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": lms.assertion(key=rotated),
            "scope": Scope.NRPS,
        },
    )
    assert resp.status_code == 200
    assert lms.tool.fetches == fetched + 1


def test_unknown_kids_do_not_hammer_the_tool(lms: Lms) -> None:
    stranger = new_key("nobody")
    for _ in range(5):
        resp = lms.client.post(
            "/token",
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": lms.assertion(key=stranger),
                "scope": Scope.NRPS,
            },
        )
        assert resp.status_code == 401
    assert lms.tool.fetches == 1


@pytest.mark.parametrize(
    ("form", "error", "status"),
    [
        ({"grant_type": "password"}, "unsupported_grant_type", 400),
        ({"client_assertion_type": "urn:other"}, "invalid_request", 400),
        ({"client_assertion": ""}, "invalid_request", 400),
        ({"client_assertion": "not.a.jwt"}, "invalid_client", 401),
        ({"scope": "openid"}, "invalid_scope", 400),
    ],
)
def test_token_request_errors_follow_rfc6749(
    lms: Lms, form: dict[str, str], error: str, status: int
) -> None:
    data = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": lms.assertion(),
        "scope": Scope.NRPS,
    } | form
    resp = lms.client.post("/token", data=data)
    assert resp.status_code == status
    assert resp.json()["error"] == error and resp.json()["error_description"]


def test_an_assertion_is_accepted_once_even_under_concurrency(lms: Lms) -> None:
    assertion = lms.assertion()
    data = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
        "scope": Scope.NRPS,
    }
    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        codes = list(
            pool.map(lambda _: lms.client.post("/token", data=data).status_code, range(20))
        )
    assert sorted(codes) == [200] + [401] * 19


# --- NRPS ---


def test_memberships_need_a_token_with_the_nrps_scope(lms: Lms) -> None:
    url = f"{CTX}/names_and_roles"
    missing = lms.client.get(url)
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    bogus = lms.client.get(url, headers={"Authorization": "Bearer nope"})
    assert bogus.status_code == 401 and bogus.json()["error"] == "invalid_token"
    wrong = lms.client.get(url, headers=lms.bearer([Scope.SCORE]))
    assert wrong.status_code == 403 and wrong.json()["error"] == "insufficient_scope"


def test_memberships_page_through_the_whole_course(lms: Lms) -> None:
    headers = lms.bearer([Scope.NRPS])
    url: str | None = f"{LMS}{CTX}/names_and_roles?limit=2"
    seen: list[dict[str, Any]] = []
    for _ in range(10):
        assert url is not None
        resp = lms.client.get(url, headers=headers)
        assert resp.status_code == 200
        assert resp.headers["content-type"] == MediaType.MEMBERSHIPS
        body = resp.json()
        assert body["context"]["id"] == "ctx-data-literacy-101"
        assert len(body["members"]) <= 2
        seen.extend(body["members"])
        url = links(resp)
        if url is None:
            break
    assert [m["user_id"] for m in seen] == [m.user_id for m in lms.platform.course.members]
    grace = seen[0]
    assert grace["name"] == "Grace Hopper" and grace["status"] == "Active"
    assert grace["roles"] == ["http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"]


def test_memberships_filter_by_role(lms: Lms) -> None:
    headers = lms.bearer([Scope.NRPS])
    short = lms.client.get(f"{CTX}/names_and_roles", params={"role": "Learner"}, headers=headers)
    full = lms.client.get(
        f"{CTX}/names_and_roles",
        params={"role": "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"},
        headers=headers,
    )
    assert len(short.json()["members"]) == 5 and short.json() == full.json()
    assert links(short) is None


def test_unknown_course_is_404(lms: Lms) -> None:
    resp = lms.client.get(
        "/api/lti/courses/other/names_and_roles", headers=lms.bearer([Scope.NRPS])
    )
    assert resp.status_code == 404 and resp.json()["error"] == "not_found"


# --- AGS ---


def create_item(lms: Lms, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    resp = lms.client.post(
        f"{CTX}/line_items",
        json={"label": "Data literacy: advanced", "scoreMaximum": 100} | body,
        headers=headers | {"Content-Type": MediaType.LINEITEM},
    )
    assert resp.status_code == 201, resp.text
    assert resp.headers["content-type"] == MediaType.LINEITEM
    return dict(resp.json())


def score(
    user: str, given: float | None, *, at: dt.datetime, grading: str = "FullyGraded"
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "userId": user,
        "activityProgress": "Completed",
        "gradingProgress": grading,
        "timestamp": at.isoformat(),
    }
    if given is not None:
        body |= {"scoreGiven": given, "scoreMaximum": 20}
    return body


def test_line_items_are_created_listed_filtered_updated_and_deleted(lms: Lms) -> None:
    headers = lms.bearer([Scope.LINEITEM])
    a = create_item(
        lms, headers, tag="competency", resourceId="c-1", resourceLinkId="rl-microcred-1"
    )
    b = create_item(lms, headers, label="Second", tag="other")
    assert a["id"].startswith(f"{LMS}{CTX}/line_items/") and a["resourceLinkId"] == "rl-microcred-1"
    listed = lms.client.get(f"{CTX}/line_items", headers=headers)
    assert listed.headers["content-type"] == MediaType.LINEITEMS
    assert [i["id"] for i in listed.json()] == [a["id"], b["id"]]
    tagged = lms.client.get(f"{CTX}/line_items", params={"tag": "competency"}, headers=headers)
    assert [i["id"] for i in tagged.json()] == [a["id"]]
    first = lms.client.get(f"{CTX}/line_items", params={"limit": 1}, headers=headers)
    assert len(first.json()) == 1 and links(first) is not None
    nxt = lms.client.get(links(first) or "", headers=headers)
    assert [i["id"] for i in nxt.json()] == [b["id"]] and links(nxt) is None
    put = lms.client.put(
        b["id"],
        json={"label": "Renamed", "scoreMaximum": 10},
        headers=headers | {"Content-Type": MediaType.LINEITEM},
    )
    assert put.status_code == 200 and put.json()["label"] == "Renamed"
    assert lms.client.get(b["id"], headers=headers).json()["scoreMaximum"] == 10
    assert lms.client.delete(b["id"], headers=headers).status_code == 204
    assert lms.client.get(b["id"], headers=headers).status_code == 404


def test_line_item_writes_need_the_lineitem_scope_and_media_type(lms: Lms) -> None:
    readonly = lms.bearer([Scope.LINEITEM_READONLY])
    assert lms.client.get(f"{CTX}/line_items", headers=readonly).status_code == 200
    denied = lms.client.post(
        f"{CTX}/line_items",
        json={"label": "x", "scoreMaximum": 1},
        headers=readonly | {"Content-Type": MediaType.LINEITEM},
    )
    assert denied.status_code == 403
    full = lms.bearer([Scope.LINEITEM])
    wrong_type = lms.client.post(
        f"{CTX}/line_items", json={"label": "x", "scoreMaximum": 1}, headers=full
    )
    assert wrong_type.status_code == 415 and MediaType.LINEITEM in wrong_type.json()["detail"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"scoreMaximum": 10}, "label"),
        ({"label": "x"}, "scoreMaximum"),
        ({"label": "x", "scoreMaximum": 0}, "scoreMaximum"),
        ({"label": "x", "scoreMaximum": True}, "scoreMaximum"),
        ({"label": "x", "scoreMaximum": 5, "resourceLinkId": "rl-other"}, "resourceLinkId"),
        ({"label": "x", "scoreMaximum": 5, "startDateTime": "yesterday"}, "startDateTime"),
    ],
)
def test_invalid_line_items_are_refused_with_the_field(
    lms: Lms, body: dict[str, Any], reason: str
) -> None:
    resp = lms.client.post(
        f"{CTX}/line_items",
        json=body,
        headers=lms.bearer([Scope.LINEITEM]) | {"Content-Type": MediaType.LINEITEM},
    )
    assert resp.status_code == 422 and reason in resp.json()["detail"]


def test_scores_become_results_on_the_line_item_scale(lms: Lms) -> None:
    headers = lms.bearer([Scope.LINEITEM, Scope.SCORE, Scope.RESULT_READONLY])
    item = create_item(lms, headers)
    t0 = dt.datetime(2026, 11, 1, 12, tzinfo=dt.UTC)
    post = lms.client.post(
        f"{item['id']}/scores",
        json=score("u-learn-1", 15, at=t0) | {"comment": "well done"},
        headers=headers | {"Content-Type": MediaType.SCORE},
    )
    assert post.status_code == 204
    lms.client.post(
        f"{item['id']}/scores",
        json=score("u-learn-2", None, at=t0, grading="Pending"),
        headers=headers | {"Content-Type": MediaType.SCORE},
    )
    res = lms.client.get(f"{item['id']}/results", headers=headers)
    assert res.headers["content-type"] == MediaType.RESULTS
    by_user = {r["userId"]: r for r in res.json()}
    assert (
        by_user["u-learn-1"]["resultScore"] == 75 and by_user["u-learn-1"]["resultMaximum"] == 100
    )
    assert (
        by_user["u-learn-1"]["scoreOf"] == item["id"]
        and by_user["u-learn-1"]["comment"] == "well done"
    )
    assert "resultScore" not in by_user["u-learn-2"]
    one = lms.client.get(f"{item['id']}/results", params={"user_id": "u-learn-2"}, headers=headers)
    assert [r["userId"] for r in one.json()] == ["u-learn-2"]
    grades = lms.client.get("/grades")
    assert "Data literacy: advanced" in grades.text and "15.0 / 20.0" in grades.text


def test_an_older_score_never_replaces_a_newer_one(lms: Lms) -> None:
    headers = lms.bearer([Scope.LINEITEM, Scope.SCORE, Scope.RESULT_READONLY])
    item = create_item(lms, headers)
    t1 = dt.datetime(2026, 11, 2, 12, tzinfo=dt.UTC)
    h = headers | {"Content-Type": MediaType.SCORE}
    assert (
        lms.client.post(
            f"{item['id']}/scores", json=score("u-learn-1", 18, at=t1), headers=h
        ).status_code
        == 204
    )
    stale = lms.client.post(
        f"{item['id']}/scores", json=score("u-learn-1", 2, at=t1 - dt.timedelta(hours=1)), headers=h
    )
    assert stale.status_code == 409
    (result,) = lms.client.get(f"{item['id']}/results", headers=headers).json()
    assert result["resultScore"] == 90


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (score("u-nobody", 5, at=dt.datetime(2026, 11, 1, tzinfo=dt.UTC)), "not a member"),
        (
            score("u-learn-1", 5, at=dt.datetime(2026, 11, 1, tzinfo=dt.UTC))
            | {"scoreMaximum": None},
            "scoreMaximum is required",
        ),
        (
            score("u-learn-1", 5, at=dt.datetime(2026, 11, 1, tzinfo=dt.UTC))
            | {"gradingProgress": "Done"},
            "gradingProgress",
        ),
        (
            score("u-learn-1", 5, at=dt.datetime(2026, 11, 1, tzinfo=dt.UTC))
            | {"timestamp": "2026-11-01T10:00:00"},
            "time zone",
        ),
        (score("u-learn-1", -1, at=dt.datetime(2026, 11, 1, tzinfo=dt.UTC)), "negative"),
    ],
)
def test_invalid_scores_are_refused(lms: Lms, body: dict[str, Any], reason: str) -> None:
    headers = lms.bearer([Scope.LINEITEM, Scope.SCORE])
    item = create_item(lms, headers)
    resp = lms.client.post(
        f"{item['id']}/scores", json=body, headers=headers | {"Content-Type": MediaType.SCORE}
    )
    assert resp.status_code == 422 and reason in resp.json()["detail"]


def test_scores_need_the_score_scope(lms: Lms) -> None:
    item = create_item(lms, lms.bearer([Scope.LINEITEM]))
    resp = lms.client.post(
        f"{item['id']}/scores",
        json=score("u-learn-1", 5, at=dt.datetime(2026, 11, 1, tzinfo=dt.UTC)),
        headers=lms.bearer([Scope.RESULT_READONLY]) | {"Content-Type": MediaType.SCORE},
    )
    assert resp.status_code == 403


def test_concurrent_scores_keep_the_latest(lms: Lms) -> None:
    headers = lms.bearer([Scope.LINEITEM, Scope.SCORE, Scope.RESULT_READONLY])
    item = create_item(lms, headers)
    base = dt.datetime(2026, 11, 3, tzinfo=dt.UTC)
    h = headers | {"Content-Type": MediaType.SCORE}

    def post(i: int) -> int:
        body = score("u-learn-4", i, at=base + dt.timedelta(minutes=i))
        return lms.client.post(f"{item['id']}/scores", json=body, headers=h).status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(post, range(1, 21)))
    assert set(codes) <= {204, 409} and 204 in codes
    (result,) = lms.client.get(f"{item['id']}/results", headers=headers).json()
    assert result["resultScore"] == 100  # 20/20, the latest timestamp, whatever the order


# --- Deep Linking ---


def dl_response(lms: Lms, settings: dict[str, Any], **over: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": "microcred-demo",
        "aud": LMS,
        "iat": now,
        "exp": now + 300,
        "nonce": uuid.uuid4().hex,
        LTI + "message_type": "LtiDeepLinkingResponse",
        LTI + "version": "1.3.0",
        LTI + "deployment_id": "1",
        DL + "data": settings["data"],
        DL + "content_items": [
            {"type": "ltiResourceLink", "title": "Competency credentials", "text": "Your levels"}
        ],
    } | over
    return jws.sign(claims, lms.tool.keys[0])


def dl_settings(lms: Lms) -> dict[str, Any]:
    fields = lms.launch_fields("u-instr-1", message="deeplink")
    page = lms.client.post("/auth", data=lms.auth_params(fields))
    token = form_fields(page.text)["id_token"]
    claims = jws.verify(token, [lms.platform.key.public], algorithms=["RS256"])
    return dict(claims[DL + "deep_linking_settings"])


def test_deep_linking_response_places_the_link_once(lms: Lms) -> None:
    settings = dl_settings(lms)
    jwt = dl_response(lms, settings)
    done = lms.client.post("/deep_linking/return", data={"JWT": jwt})
    assert done.status_code == 200 and "Competency credentials" in done.text
    assert [link.title for link in lms.platform.state.links()] == ["Competency credentials"]
    again = lms.client.post("/deep_linking/return", data={"JWT": jwt})
    assert again.status_code == 400 and "already used" in again.text
    assert len(lms.platform.state.links()) == 1


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"aud": "https://other-lms.test"}, "audience"),
        ({LTI + "message_type": "LtiResourceLinkRequest"}, "message_type"),
        ({LTI + "deployment_id": "2"}, "deployment_id"),
        ({DL + "data": "forged"}, "data"),
        (
            {DL + "content_items": [{"type": "file", "url": "https://x.test/a.pdf"}]},
            "ltiResourceLink",
        ),
    ],
)
def test_bad_deep_linking_responses_are_refused(
    lms: Lms, over: dict[str, Any], reason: str
) -> None:
    resp = lms.client.post(
        "/deep_linking/return", data={"JWT": dl_response(lms, dl_settings(lms), **over)}
    )
    assert resp.status_code == 400 and reason in resp.text
    assert lms.platform.state.links() == []


def test_a_placed_link_is_listed_and_launches_with_its_id_and_custom_values(lms: Lms) -> None:
    settings = dl_settings(lms)
    item = {
        "type": "ltiResourceLink",
        "title": "Data literacy credentials",
        "url": "http://127.0.0.1:8000/lti/launch?view=home",
        "custom": {"microcred_view": "home"},
    }
    jwt = dl_response(lms, settings, **{DL + "content_items": [item]})
    assert lms.client.post("/deep_linking/return", data={"JWT": jwt}).status_code == 200
    (link,) = lms.platform.state.links()
    home = lms.client.get("/")
    assert "Data literacy credentials" in home.text and f"link={link.id}" in home.text
    page = lms.client.get("/launch", params={"as": "u-learn-2", "link": link.id})
    fields = form_fields(page.text)
    assert fields["target_link_uri"] == "http://127.0.0.1:8000/lti/launch?view=home"
    answer = lms.client.post(
        "/auth",
        data=lms.auth_params(fields, redirect_uri="http://127.0.0.1:8000/lti/launch"),
    )
    claims = jws.verify(
        form_fields(answer.text)["id_token"], [lms.platform.key.public], algorithms=["RS256"]
    )
    assert claims[LTI + "resource_link"] == {"id": link.id, "title": "Data literacy credentials"}
    assert claims[LTI + "target_link_uri"] == "http://127.0.0.1:8000/lti/launch?view=home"
    assert claims[LTI + "custom"]["microcred_view"] == "home"
    missing = lms.client.get("/launch", params={"as": "u-learn-2", "link": "rl-nope"})
    assert missing.status_code == 400
    # The placed link can carry its own grade column.
    item_for_link = create_item(lms, lms.bearer([Scope.LINEITEM]), resourceLinkId=link.id)
    assert item_for_link["resourceLinkId"] == link.id


def test_a_placed_link_must_point_at_the_tool(lms: Lms) -> None:
    item = {"type": "ltiResourceLink", "title": "Elsewhere", "url": "https://evil.test/launch"}
    jwt = dl_response(lms, dl_settings(lms), **{DL + "content_items": [item]})
    resp = lms.client.post("/deep_linking/return", data={"JWT": jwt})
    assert resp.status_code == 400 and "tool&#39;s site" in resp.text
    assert lms.platform.state.links() == []


def test_memberships_of_a_resource_link(lms: Lms) -> None:
    headers = lms.bearer([Scope.NRPS])
    url = f"{CTX}/names_and_roles"
    ok = lms.client.get(url, params={"rlid": "rl-microcred-1"}, headers=headers)
    assert ok.status_code == 200 and len(ok.json()["members"]) == 6
    unknown = lms.client.get(url, params={"rlid": "rl-elsewhere"}, headers=headers)
    assert unknown.status_code == 422 and "rlid" in unknown.json()["detail"]


def test_the_demo_lms_refuses_bodies_over_its_limit_before_reading_them(lms: Lms) -> None:
    from tests.test_bodylimit import HUGE, Body, call

    app: Any = lms.client.app
    token = call(
        app,
        "POST",
        "/token",
        headers={"content-type": "application/x-www-form-urlencoded"},
        body=Body(HUGE, fill=b"a"),
    )
    assert token.status == 413
    assert token.json()["error"] == "body_too_large"  # RFC 6749 §5.2 shape, as its errors
    assert "larger than 1 MiB" in token.json()["error_description"]
    score = call(
        app,
        "POST",
        "/api/lti/courses/c1/line_items/1/scores",
        headers={"content-type": "application/json", "content-length": str(HUGE)},
    )
    assert score.status == 413 and score.receives == 0
    assert score.json()["error"] == "body_too_large"
