"""Login -> launch -> landing page, from platforms shaped like Moodle and Canvas."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import select

from service.db.engine import connection as db_connection
from service.db.engine import session as db_session
from service.db.models import (
    Course,
    Deployment,
    EmailMismatch,
    Enrolment,
    LaunchState,
    LtiCache,
    OutboxMessage,
    Person,
    Platform,
    WebSession,
)
from service.db.types import utcnow
from service.lti import store
from tests.lti.platform import LAUNCH, MEMBERSHIP, C, FakePlatform

pytestmark = pytest.mark.usefixtures("registered")

INST = "http://purl.imsglobal.org/vocab/lis/v2/institution/person#"
SYS = "http://purl.imsglobal.org/vocab/lis/v2/system/person#"


def test_login_redirects_to_the_platform_with_a_complete_auth_request(
    client: TestClient, moodle: FakePlatform
) -> None:
    state, _nonce, resp = moodle.login(client)
    assert resp.status_code == 302
    loc = urlsplit(resp.headers["location"])
    assert f"{loc.scheme}://{loc.netloc}{loc.path}" == moodle.issuer + "/auth"
    q = {k: v[0] for k, v in parse_qs(loc.query).items()}
    assert q["scope"] == "openid"
    assert q["response_type"] == "id_token"
    assert q["response_mode"] == "form_post"
    assert q["prompt"] == "none"
    assert q["client_id"] == moodle.client_id
    assert q["redirect_uri"] == LAUNCH
    assert q["login_hint"] == "42" and q["lti_message_hint"] == "hint-1"
    cookie = resp.headers["set-cookie"]
    assert f"lti1p3-{state}={state}" in cookie
    for attr in ("Secure", "HttpOnly", "SameSite=none", "Partitioned"):
        assert attr.lower() in cookie.lower()


def test_the_auth_request_carries_exactly_the_oidc_parameters_in_order(
    client: TestClient, moodle: FakePlatform, engine: Engine
) -> None:
    # An auth URL with a query of its own keeps it: the request's parameters follow "&".
    with db_session(engine, write=True) as s:
        row = s.exec(select(Platform).where(Platform.issuer == moodle.issuer)).one()
        row.auth_login_url = moodle.issuer + "/auth?tenant=a%20b"
        s.add(row)
        s.commit()
    state, nonce, resp = moodle.login(client)
    loc = urlsplit(resp.headers["location"])
    assert f"{loc.scheme}://{loc.netloc}{loc.path}" == moodle.issuer + "/auth"
    assert parse_qsl(loc.query) == [
        ("tenant", "a b"),
        ("scope", "openid"),
        ("response_type", "id_token"),
        ("response_mode", "form_post"),
        ("prompt", "none"),
        ("client_id", moodle.client_id),
        ("redirect_uri", LAUNCH),
        ("state", state),
        ("nonce", nonce),
        ("login_hint", "42"),
        ("lti_message_hint", "hint-1"),
    ]
    assert state.startswith("state-") and len(nonce) >= 43
    cookies = resp.headers.get_list("set-cookie")
    assert all("Max-Age=300" in c for c in cookies if c.startswith(f"lti1p3-{state}"))
    _, _, without_hint = moodle.login(client, lti_message_hint="")
    assert "lti_message_hint" not in without_hint.headers["location"]


def test_a_login_without_client_id_finds_the_issuers_only_registration(
    client: TestClient, moodle: FakePlatform
) -> None:
    state, nonce, resp = moodle.login(client, client_id="")
    assert resp.status_code == 302
    assert parse_qs(urlsplit(resp.headers["location"]).query)["client_id"] == [moodle.client_id]
    launched = moodle.launch(client, moodle.token(moodle.claims(nonce)), state)
    assert launched.status_code == 303


def test_login_also_works_with_get(client: TestClient, moodle: FakePlatform) -> None:
    resp = client.get(
        "/lti/login",
        params={
            "iss": moodle.issuer,
            "login_hint": "1",
            "target_link_uri": LAUNCH,
            "client_id": moodle.client_id,
        },
        follow_redirects=False,
    )
    assert resp.status_code == 302


def test_moodle_learner_lands_on_the_learner_page(
    client: TestClient, moodle: FakePlatform, engine: Engine
) -> None:
    resp = moodle.full_launch(client)
    assert resp.status_code == 303, resp.text
    # The state cookie came back, so the session cookie works too: no token in the URL.
    assert resp.headers["location"] == "/app"
    session_cookie = [c for c in resp.headers.get_list("set-cookie") if "microcred_session" in c]
    assert len(session_cookie) == 1  # https: no legacy copy
    assert session_cookie[0].startswith("__Host-microcred_session=")
    for attr in ("; Secure", "; HttpOnly", "; SameSite=None", "; Partitioned", "; Path=/"):
        assert attr in session_cookie[0]
    page = client.get("/app")  # the cookie alone carries the session
    assert page.status_code == 200
    assert "Your micro-credentials" in page.text
    assert "Ada Lovelace" in page.text and "Biology" in page.text
    with db_session(engine) as s:
        person = s.exec(select(Person)).one()
        assert (person.sub, person.email) == ("user-42", "ada@example.edu")
        course = s.exec(select(Course)).one()
        assert (course.context_id, course.label) == ("course-7", "BIO101")
        enrolment = s.exec(select(Enrolment)).one()
        assert enrolment.role == "learner"


def test_name_and_email_are_updated_on_each_launch(
    client: TestClient, moodle: FakePlatform, engine: Engine
) -> None:
    assert moodle.full_launch(client).status_code == 303
    assert moodle.full_launch(client, name="Ada King", email="ada@king.example").status_code == 303
    with db_session(engine) as s:
        people = s.exec(select(Person)).all()
    assert len(people) == 1
    assert (people[0].name, people[0].email) == ("Ada King", "ada@king.example")


def test_a_new_email_at_launch_records_the_badges_delivered_to_the_old_one(
    client: TestClient, moodle: FakePlatform, engine: Engine
) -> None:
    assert moodle.full_launch(client).status_code == 303
    with db_session(engine, write=True) as s:
        person = s.exec(select(Person)).one()
        s.add(
            OutboxMessage(
                credential_id="urn:uuid:c-1",
                person_id=person.id,
                kind="credly.issue_badge",
                idempotency_key="k-1",
                payload={"recipient_email": "ada@example.edu"},
                status="delivered",
            )
        )
        s.commit()
    assert moodle.full_launch(client, email="ADA@example.edu").status_code == 303  # same one
    with db_session(engine) as s:
        assert s.exec(select(EmailMismatch)).all() == []
    assert moodle.full_launch(client, email="ada@king.example").status_code == 303
    with db_session(engine) as s:
        [found] = s.exec(select(EmailMismatch)).all()
    assert (found.delivered_email, found.current_email) == ("ada@example.edu", "ada@king.example")


def test_canvas_instructor_with_institution_roles(
    client: TestClient, canvas: FakePlatform, engine: Engine
) -> None:
    roles = [MEMBERSHIP + "Instructor", INST + "Instructor", INST + "Student", SYS + "User"]
    resp = canvas.full_launch(
        client,
        roles=roles,
        **{
            C + "context": {
                "id": "4dde05e8ca1973bcca9bffc13e1548820eee93a3",
                "title": "Chemistry",
                "label": "CHEM",
                "type": ["http://purl.imsglobal.org/vocab/lis/v2/course#CourseOffering"],
            },
            C + "tool_platform": {"guid": "x", "product_family_code": "canvas"},
        },
    )
    assert resp.status_code == 303, resp.text
    page = client.get(resp.headers["location"])
    assert "Micro-credentials for Chemistry" in page.text


def test_canvas_institution_admin_gets_no_course_rights(
    client: TestClient, canvas: FakePlatform
) -> None:
    roles = [MEMBERSHIP + "Learner", INST + "Administrator", SYS + "SysAdmin", INST + "Instructor"]
    resp = canvas.full_launch(client, roles=roles)
    page = client.get(resp.headers["location"])
    assert "Your micro-credentials" in page.text  # learner page


def test_a_course_administrator_gets_the_instructor_pages_not_administration(
    client: TestClient, moodle: FakePlatform
) -> None:
    resp = moodle.full_launch(client, roles=[MEMBERSHIP + "Administrator"])
    landing = client.get(resp.headers["location"])
    assert "Micro-credentials for Biology" in landing.text  # the instructor's page
    assert "microcred administration" not in landing.text
    assert 'href="/app/admin' not in landing.text  # no Administration tab
    refused = client.get("/app/admin")
    assert refused.status_code == 403
    assert "Administrator or Instructor role is not enough" in refused.text


def test_a_site_administrator_without_a_course_lands_on_the_admin_page(
    client: TestClient, moodle: FakePlatform
) -> None:
    roles = [SYS + "Administrator", INST + "Administrator"]
    resp = moodle.full_launch(client, roles=roles, **{C + "context": None})
    landing = client.get(resp.headers["location"])
    assert "microcred administration" in landing.text
    assert "deployment <code>1</code>" in landing.text


def test_session_token_in_the_link_works_without_cookies(
    client: TestClient, moodle: FakePlatform
) -> None:
    moodle.full_launch(client)
    token = client.cookies["__Host-microcred_session"]
    client.cookies.clear()  # as if the browser blocked even partitioned cookies
    refused = client.get("/app", params={"mc_session": "not-a-session"})
    assert refused.status_code == 401  # its error page refers nobody to its URL either
    assert refused.headers["referrer-policy"] == "no-referrer"
    page = client.get("/app", params={"mc_session": token})
    assert page.status_code == 200 and "Your micro-credentials" in page.text
    assert page.headers["referrer-policy"] == "no-referrer"


def test_a_url_carrying_the_token_is_cleaned_once_the_cookie_arrives(
    client: TestClient, moodle: FakePlatform
) -> None:
    moodle.full_launch(client)
    token = client.cookies["__Host-microcred_session"]
    resp = client.get("/app", params={"done": "saved", "mc_session": token}, follow_redirects=False)
    assert resp.status_code == 303
    assert resp.headers["location"] == "/app?done=saved"  # the rest of the query stays
    assert resp.headers["referrer-policy"] == "no-referrer"
    assert resp.headers["cache-control"] == "no-store"
    page = client.get(resp.headers["location"])
    assert page.status_code == 200 and token not in page.text  # links carry no token


def test_session_ends_when_the_platform_is_deactivated(
    client: TestClient, moodle: FakePlatform, engine: Engine
) -> None:
    resp = moodle.full_launch(client)
    with db_session(engine, write=True) as s:
        row = s.get(type(moodle.row), moodle.row.id)  # type: ignore[union-attr,arg-type]
        row.active = False
        s.add(row)
        s.commit()
    assert client.get(resp.headers["location"]).status_code == 403


def test_session_ends_when_the_deployment_is_deactivated(
    client: TestClient, moodle: FakePlatform, engine: Engine
) -> None:
    resp = moodle.full_launch(client)
    with db_session(engine, write=True) as s:
        deployments = s.exec(
            select(Deployment).where(Deployment.platform_id == moodle.row.id)  # type: ignore[union-attr]
        ).all()
        for deployment in deployments:
            deployment.active = False
            s.add(deployment)
        s.commit()
    page = client.get(resp.headers["location"])
    assert page.status_code == 403 and "deactivated" in page.text


def test_moodle_error_post_without_id_token_is_a_clear_4xx(
    client: TestClient, moodle: FakePlatform
) -> None:
    state, _, _ = moodle.login(client)
    resp = client.post(
        "/lti/launch",
        data={
            "error": "invalid_request",
            "error_description": "<b>Bad redirect_uri</b>",
            "state": state,
        },
        headers={"accept": "text/html"},
    )
    assert resp.status_code == 400
    assert "&lt;b&gt;Bad redirect_uri&lt;/b&gt;" in resp.text
    assert "<b>Bad" not in resp.text
    assert "redirect URI" in resp.text


def test_replayed_id_token_is_rejected(client: TestClient, moodle: FakePlatform) -> None:
    state, nonce, _ = moodle.login(client)
    token = moodle.token(moodle.claims(nonce))
    assert moodle.launch(client, token, state).status_code == 303
    again = moodle.launch(client, token, state)
    assert again.status_code == 400
    assert "already used" in again.text


def test_replay_with_a_fresh_state_is_rejected(client: TestClient, moodle: FakePlatform) -> None:
    state, nonce, _ = moodle.login(client)
    token = moodle.token(moodle.claims(nonce))
    assert moodle.launch(client, token, state).status_code == 303
    state2, _, _ = moodle.login(client)
    assert moodle.launch(client, token, state2).status_code == 400  # nonce belongs to state 1


def test_state_without_its_cookie_is_rejected(client: TestClient, moodle: FakePlatform) -> None:
    state, nonce, _ = moodle.login(client)
    client.cookies.clear()
    resp = moodle.launch(client, moodle.token(moodle.claims(nonce)), state)
    assert resp.status_code == 400
    assert "cookie" in resp.text


@pytest.mark.parametrize("refusal", ["other nonce", "other target", "cookie withheld"])
def test_a_refused_launch_leaves_its_login_usable(
    client: TestClient, moodle: FakePlatform, refusal: str
) -> None:
    """The state is taken only by a launch that passes every check on it: where each
    statement commits by itself (PostgreSQL), a refused launch must not use it up."""
    assert moodle.full_launch(client).status_code == 303  # key set cached: on the event loop
    state, nonce, _ = moodle.login(client)
    claims = moodle.claims(nonce)
    if refusal == "other nonce":
        bad = moodle.claims("not-the-login-nonce")
    elif refusal == "other target":
        bad = moodle.claims(nonce, **{C + "target_link_uri": LAUNCH + "?other=1"})
    else:
        bad = claims
    cookies = httpx.Cookies(client.cookies)
    if refusal == "cookie withheld":
        client.cookies.clear()
    refused = moodle.launch(client, moodle.token(bad), state)
    assert refused.status_code == 400
    assert refused.headers.get("set-cookie") is None or "microcred_session" not in str(
        refused.headers.get("set-cookie")
    )
    client.cookies = cookies
    assert moodle.launch(client, moodle.token(claims), state).status_code == 303
    again = moodle.launch(client, moodle.token(claims), state)
    assert again.status_code == 400 and "already used" in again.text


def test_a_refused_login_records_no_state(
    client: TestClient, moodle: FakePlatform, engine: Engine
) -> None:
    with db_session(engine, write=True) as s:
        s.add(Deployment(platform_id=moodle.row.id, deployment_id="dep-off", active=False))  # type: ignore[union-attr]
        s.commit()
    _, _, resp = moodle.login(client, lti_deployment_id="dep-off")
    assert resp.status_code == 403
    # an unknown deployment is refused at launch, where its id is signed
    state, _, resp = moodle.login(client, lti_deployment_id="dep-unknown")
    assert resp.status_code == 302
    with db_session(engine, write=True) as s:
        assert [r.state for r in s.exec(select(LaunchState)).all()] == [state]
        platform = s.get(Platform, moodle.row.id)  # type: ignore[union-attr]
        assert platform is not None
        platform.active = False
        s.add(platform)
        s.commit()
    _, _, resp = moodle.login(client)
    assert resp.status_code == 403
    with db_session(engine) as s:
        assert len(s.exec(select(LaunchState)).all()) == 1


def test_moodle_sixty_second_token_tolerates_small_clock_skew(
    client: TestClient, moodle: FakePlatform
) -> None:
    state, nonce, _ = moodle.login(client)
    now = int(time.time())
    # A 60 s Moodle token whose exp passed 30 s ago (clocks apart) is inside the 60 s skew.
    claims = moodle.claims(nonce, iat=now - 90, exp=now - 30)
    assert moodle.launch(client, moodle.token(claims), state).status_code == 303


def test_expired_beyond_skew_is_rejected_with_a_clock_hint(
    client: TestClient, moodle: FakePlatform
) -> None:
    state, nonce, _ = moodle.login(client)
    now = int(time.time())
    resp = moodle.launch(
        client, moodle.token(moodle.claims(nonce, iat=now - 200, exp=now - 140)), state
    )
    assert resp.status_code == 400
    assert "clocks" in resp.text


def test_login_state_rows_are_single_use(
    client: TestClient, moodle: FakePlatform, engine: Engine
) -> None:
    state, nonce, _ = moodle.login(client)
    moodle.launch(client, moodle.token(moodle.claims(nonce)), state)
    with db_session(engine) as s:
        row = s.get(LaunchState, state)
        assert row is not None and row.used_at is not None
        assert s.exec(select(WebSession)).one().role == "learner"


def test_auth_url_with_its_own_query_is_extended_not_broken(
    client: TestClient, engine: Engine, network: object
) -> None:
    from service.lti import platforms

    with db_session(engine, write=True) as s:
        platforms.add_platform(
            s,
            issuer="https://d2l.example.edu",
            client_id="q1",
            auth_login_url="https://d2l.example.edu/d2l/lti/authenticate?tenant=7",
            auth_token_url="https://d2l.example.edu/token",
            key_set_url="https://d2l.example.edu/k",
            deployment_ids=["d"],
        )
        s.commit()
    resp = client.post(
        "/lti/login",
        data={
            "iss": "https://d2l.example.edu",
            "login_hint": "1",
            "target_link_uri": LAUNCH,
            "client_id": "q1",
        },
        follow_redirects=False,
    )
    q = parse_qs(urlsplit(resp.headers["location"]).query)
    assert q["tenant"] == ["7"] and q["client_id"] == ["q1"] and q["state"]


def test_error_page_shows_its_status(client: TestClient) -> None:
    resp = client.get("/lti/login", params={"iss": "https://nobody.test"})
    assert resp.status_code == 400 and "HTTP 400" in resp.text


@pytest.mark.postgres
@pytest.mark.parametrize("change", ["platform deactivated", "deployment deactivated", "renamed"])
def test_a_change_of_the_registration_between_login_and_launch_is_seen_by_that_launch(
    client: TestClient,
    moodle: FakePlatform,
    engine: Engine,
    change: str,
) -> None:
    """A returning platform's launch sees a change of its platform or deployment made
    between its login and its launch."""
    assert moodle.full_launch(client).status_code == 303  # key set cached
    state, nonce, _ = moodle.login(client)
    with db_session(engine, write=True) as s:
        platform = s.get(Platform, moodle.row.id)  # type: ignore[union-attr]
        assert platform is not None
        deployment = s.exec(select(Deployment).where(Deployment.platform_id == platform.id)).one()
        if change == "platform deactivated":
            platform.active = False
        elif change == "deployment deactivated":
            deployment.active = False
        else:
            platform.name = "Renamed Moodle"
        s.add(platform)
        s.add(deployment)
        s.commit()
    resp = moodle.launch(client, moodle.token(moodle.claims(nonce)), state)
    if change == "renamed":
        assert resp.status_code == 303, resp.text[:300]
    else:
        assert resp.status_code == 403, resp.text[:300]
        assert "not active" in resp.text or "deactivated" in resp.text


@pytest.mark.postgres
def test_a_returning_users_launch_opens_a_session_like_the_first(
    client: TestClient, moodle: FakePlatform, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A returning user's launch opens its own web session (auth.start_session), the same
    row as the first launch's, one per launch, and the landing page opens."""
    from service.web import auth

    started: list[str] = []
    original = auth.start_session

    def start_session(session: Any, **kwargs: Any) -> str:
        started.append(kwargs["launch"].sub)
        return original(session, **kwargs)

    monkeypatch.setattr(auth, "start_session", start_session)
    first = moodle.full_launch(client)  # a new user: rows created, then start_session
    assert first.status_code == 303 and len(started) == 1
    second = moodle.full_launch(client)
    assert second.status_code == 303, second.text[:300]
    assert len(started) == 2
    assert client.get(second.headers["location"]).status_code == 200
    with db_session(engine) as s:
        rows = s.exec(select(WebSession).order_by(WebSession.created_at)).all()  # type: ignore[arg-type]
    assert len(rows) == 2
    made, opened = rows
    same = ("person_id", "course_id", "platform_id", "deployment_id", "role", "roles")
    assert [getattr(opened, f) for f in same] == [getattr(made, f) for f in same]
    assert opened.course_id is not None and opened.frame_origin == made.frame_origin
    assert opened.expires_at - opened.created_at == made.expires_at - made.created_at
    assert opened.id != made.id and opened.launch_id != made.launch_id


@pytest.mark.postgres
@pytest.mark.parametrize("where", ["another course", "no course"])
def test_a_returning_user_elsewhere_gets_a_session_for_that_launch(
    client: TestClient, moodle: FakePlatform, engine: Engine, where: str
) -> None:
    """A known person in a course not seen yet gets a session for that course once it
    exists, and a launch without a course gets one without a course."""
    assert moodle.full_launch(client).status_code == 303
    assert moodle.full_launch(client).status_code == 303  # key set cached, user known
    context = (
        {"id": "course-8", "label": "CHEM1", "title": "Chemistry", "type": ["CourseSection"]}
        if where == "another course"
        else None
    )
    extra = {C + "context": context} if context else {}
    state, nonce, _ = moodle.login(client)
    claims = moodle.claims(nonce, **extra)
    if context is None:
        del claims[C + "context"]
    resp = moodle.launch(client, moodle.token(claims), state)
    assert resp.status_code == 303, resp.text[:300]
    assert client.get(resp.headers["location"]).status_code == 200
    with db_session(engine) as s:
        newest = s.exec(select(WebSession).order_by(WebSession.created_at.desc())).first()  # type: ignore[attr-defined,union-attr]
        course = s.exec(select(Course).where(Course.context_id == "course-8")).first()
    assert newest is not None
    if where == "another course":
        assert course is not None and newest.course_id == course.id
    else:
        assert newest.course_id is None


@pytest.mark.postgres
def test_a_launch_needs_one_pooled_connection_at_a_time(
    client: TestClient, moodle: FakePlatform, engine: Engine
) -> None:
    """A launch never asks the pool for a second connection while it holds one: with every
    thread of a busy server doing that at once (the key set's copy read when this process's
    copy expired), the pool ran dry and launches stalled for its 30 s timeout."""
    from fastapi import FastAPI

    from service.db.engine import make_engine
    from service.lti import jwks

    assert moodle.full_launch(client).status_code == 303  # the key set is in the database
    app = client.app
    assert isinstance(app, FastAPI)
    url = engine.url.render_as_string(hide_password=False)
    single = make_engine(url, pool_size=1, max_overflow=0)
    app.state.engine = single
    try:
        jwks.forget_memory_cache()  # this process's copy expired: the database's is read
        started = time.monotonic()
        resp = moodle.full_launch(client)
        assert resp.status_code == 303, resp.text[:300]
        assert time.monotonic() - started < 20  # no wait for the pool's timeout
    finally:
        app.state.engine = engine
        single.dispose()


def test_the_logins_purge_deletes_only_what_expired(
    client: TestClient, moodle: FakePlatform, engine: Engine
) -> None:
    kept, _, _ = moodle.login(client)
    gone, _, _ = moodle.login(client)
    now = utcnow()
    with db_session(engine, write=True) as s:
        row = s.get(LaunchState, gone)
        assert row is not None
        row.expires_at = now - dt.timedelta(seconds=1)
        s.add(row)
        s.add(LtiCache(key="old", value={}, expires_at=now - dt.timedelta(seconds=1)))
        s.add(LtiCache(key="new", value={}, expires_at=now + dt.timedelta(hours=1)))
        s.commit()
    with db_connection(engine, write=True) as conn:  # as the login runs it
        store.purge_expired(conn, now=now)
        conn.commit()
    with db_session(engine) as s:
        assert [r.state for r in s.exec(select(LaunchState)).all()] == [kept]
        assert [r.key for r in s.exec(select(LtiCache)).all()] == ["new"]
