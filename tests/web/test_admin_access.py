"""Administration is scoped (security review M2; security.md §4.3, W4, W5): a role x context
matrix over every administration route and every route of the app that takes the id of a
platform, delivery, e-mail mismatch, award or audit row.

Sessions come from real launches (``tests.lti.platform``: a platform that signs real
tokens). Every actor launches into the same course of the same deployment ("own course");
the targets sit in that course, in another course of the same deployment, in another
deployment of the same platform and in another platform. A refusal must leave the target as
it was; the figure is 0 unexpected allows (and 0 unexpected refusals).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from service import audit
from service.db.engine import session as db_session
from service.db.models import (
    AuditEvent,
    Award,
    Course,
    Deployment,
    EmailMismatch,
    OutboxMessage,
    Platform,
)
from service.delivery import outbox
from service.lti import jwks, platforms
from tests import factories
from tests.lti.platform import MEMBERSHIP, FakePlatform, Network

pytestmark = pytest.mark.db

INST = "http://purl.imsglobal.org/vocab/lis/v2/institution/person#"
SYS = "http://purl.imsglobal.org/vocab/lis/v2/system/person#"

# The launch's roles of each actor in the own course.
ROLES: dict[str, list[str]] = {
    "learner": [MEMBERSHIP + "Learner"],
    "instructor": [MEMBERSHIP + "Instructor"],
    "course Administrator": [MEMBERSHIP + "Administrator"],
    # a Canvas account administrator who is not enrolled in the course
    "institution Administrator": [INST + "Administrator", SYS + "User"],
}
ACTORS = [*ROLES, "anonymous"]
OWN, SAME_DEPLOYMENT, OTHER_DEPLOYMENT, OTHER_PLATFORM = (
    "own course",
    "other course, same deployment",
    "other deployment, same platform",
    "other platform",
)
CONTEXTS = [OWN, SAME_DEPLOYMENT, OTHER_DEPLOYMENT, OTHER_PLATFORM]
REFUSED = {401, 403, 404, 405}


@dataclass
class Target:
    """What one context holds: an award flagged for review, a delivery that failed, an
    e-mail mismatch on it, and an audit row; each with text that shows on a page."""

    context: str
    course_id: int
    award_id: int
    outbox_uuid: str
    mismatch_id: int
    marker: str  # in the delivery's error, the mismatch's e-mail domain, the audit subject
    audit_subject: str


@dataclass
class World:
    moodle: FakePlatform
    canvas: FakePlatform
    targets: dict[str, Target]
    pending_platform_id: int
    engine: Engine


def _target(s: Session, context: str, course: Course, platform: Platform) -> Target:
    slug = f"t{uuid.uuid4().hex[:10]}"
    learner = factories.person(s, platform, sub=f"learner-{slug}", email=f"a@{slug}.test")
    key = str(uuid.uuid4())
    award = Award(
        course_id=course.id or 0,
        person_id=learner.id or 0,
        line_key="competency:x",
        level="beginning",
        state="issued",
        credential_uuid=key,
        delivery_key=key,
        review="a later decision is lower",
    )
    s.add(award)
    row = outbox.enqueue(
        s,
        credential_id=key,
        kind="credly.issue_badge",
        idempotency_key=f"credly.issue_badge:{key}",
        payload={"recipient_email": f"a@{slug}.test", "issuer_earner_id": key},
        person_id=learner.id,
    )
    row.status, row.attempts, row.last_error = "dead", 3, f"refused {slug}"
    s.add(row)
    s.flush()
    mismatch = EmailMismatch(
        person_id=learner.id or 0,
        credential_id=key,
        outbox_message_id=row.id or 0,
        delivered_email=f"a@{slug}.test",
        current_email=f"b@{slug}.test",
    )
    s.add(mismatch)
    subject = f"course:{course.id}"
    audit.record(s, actor="system", action="course.award_rules_changed", subject=subject)
    s.flush()
    return Target(
        context=context,
        course_id=course.id or 0,
        award_id=award.id or 0,
        outbox_uuid=row.uuid,
        mismatch_id=mismatch.id or 0,
        marker=slug,
        audit_subject=subject,
    )


@pytest.fixture
def world(app: FastAPI, engine: Engine) -> Iterator[World]:
    jwks.forget_memory_cache()
    moodle = FakePlatform()
    canvas = FakePlatform(
        issuer="https://canvas.instructure.com",
        client_id="10000000000001",
        deployment_id="9:d89e331c0f6e4f0a8b7c",
        key_index=1,
        kid="canvas-2026-11",
        family="canvas",
    )
    with db_session(engine, write=True) as s:
        m = moodle.register(s)
        c = canvas.register(s)
        dep1 = s.exec(select(Deployment).where(Deployment.platform_id == m.id)).one()
        dep2 = factories.deployment(s, m, deployment_id="2")
        cdep = s.exec(select(Deployment).where(Deployment.platform_id == c.id)).one()
        own = factories.course(s, dep1, context_id="course-7", title="Biology")  # launches here
        courses = {
            OWN: (own, m),
            SAME_DEPLOYMENT: (factories.course(s, dep1, context_id="course-8"), m),
            OTHER_DEPLOYMENT: (factories.course(s, dep2, context_id="course-7"), m),
            OTHER_PLATFORM: (factories.course(s, cdep, context_id="course-7"), c),
        }
        targets = {ctx: _target(s, ctx, course, plat) for ctx, (course, plat) in courses.items()}
        # The finding's attack: anyone registers a platform with its own issuer and keys.
        pending = platforms.add_platform(
            s,
            issuer="https://lms.attacker.example",
            client_id="evil",
            auth_login_url="https://lms.attacker.example/auth",
            auth_token_url="https://lms.attacker.example/token",
            key_set_url="https://lms.attacker.example/jwks",
            deployment_ids=["1"],
            active=False,
            actor="dynamic-registration",
        )
        s.commit()
        pending_id = pending.id or 0
    app.state.lti_http = Network(moodle, canvas).client()
    yield World(moodle, canvas, targets, pending_id, engine)
    app.state.lti_http.close()
    jwks.forget_memory_cache()


def _launch(client: TestClient, world: World, actor: str) -> str | None:
    """The session token of a real launch of ``actor`` into the own course (None: anonymous)."""
    if actor == "anonymous":
        return None
    resp = world.moodle.full_launch(
        client, roles=ROLES[actor], sub=f"user-{actor.replace(' ', '-')}"
    )
    assert resp.status_code == 303, resp.text
    client.cookies.clear()  # the token travels with each request instead
    return parse_qs(urlsplit(resp.headers["location"]).query)["mc_session"][0]


def _get(client: TestClient, token: str | None, path: str) -> httpx.Response:
    return client.get(path, params={"mc_session": token} if token else None)


def _post(client: TestClient, token: str | None, path: str, **data: str) -> httpx.Response:
    # A form that carries the session token itself needs no other CSRF token (web.auth).
    return client.post(path, data=({"mc_session": token} if token else {}) | data)


def _state(engine: Engine, target: Target) -> tuple[Any, ...]:
    with db_session(engine) as s:
        row = s.exec(select(OutboxMessage).where(OutboxMessage.uuid == target.outbox_uuid)).one()
        mismatch = s.get(EmailMismatch, target.mismatch_id)
        award = s.get(Award, target.award_id)
        assert mismatch is not None and award is not None
        return (row.status, row.max_attempts, mismatch.resolved_at, award.review, award.state)


def _expected(actor: str, context: str, route: str) -> bool | None:
    """The authorization table (README "Roles and administration"); None: not judged."""
    tenant = context in (OWN, SAME_DEPLOYMENT)
    if route in ("admin page shows it", "admin retry", "admin resend"):
        return actor == "institution Administrator" and tenant
    if route == "keep award":
        return actor in ("instructor", "course Administrator") and context == OWN
    if route in ("approve award", "revoke award"):
        # its own outcome depends on the award's course setup; outside the course: refused
        return None if actor in ("instructor", "course Administrator") and context == OWN else False
    raise AssertionError(route)


def _routes(target: Target) -> dict[str, Callable[[TestClient, str | None], httpx.Response]]:
    return {
        "admin retry": lambda c, t: _post(c, t, f"/app/admin/outbox/{target.outbox_uuid}/retry"),
        "admin resend": lambda c, t: _post(
            c, t, f"/app/admin/mismatches/{target.mismatch_id}/resend"
        ),
        "keep award": lambda c, t: _post(c, t, f"/app/course/awards/{target.award_id}/keep"),
        "approve award": lambda c, t: _post(c, t, f"/app/course/awards/{target.award_id}/approve"),
        "revoke award": lambda c, t: _post(
            c, t, f"/app/course/awards/{target.award_id}/revoke", reason="test"
        ),
    }


def test_role_by_context_matrix_has_no_unexpected_allow(
    client: TestClient, world: World, engine: Engine
) -> None:
    unexpected: list[str] = []
    judged = 0
    for actor in ACTORS:
        token = _launch(client, world, actor)
        page = _get(client, token, "/app/admin")
        for context in CONTEXTS:
            target = world.targets[context]
            # what the administration page shows of this context
            shown = [
                target.marker in page.text,  # the failed delivery, the mismatch's e-mail
                f"<td>{target.audit_subject}</td>" in page.text,  # its audit row
            ]
            want = _expected(actor, context, "admin page shows it")
            judged += 1
            if any(shown) and not want:
                unexpected.append(f"ALLOW {actor} x {context}: admin page shows it {shown}")
            if want and not all(shown):
                unexpected.append(f"REFUSE {actor} x {context}: admin page lacks it {shown}")
            for route, call in _routes(target).items():
                before = _state(engine, target)
                resp = call(client, token)
                after = _state(engine, target)
                allowed = resp.status_code not in REFUSED
                want = _expected(actor, context, route)
                if want is None:
                    continue
                judged += 1
                assert resp.status_code < 500, (actor, context, route, resp.text[:300])
                if allowed and not want:
                    unexpected.append(f"ALLOW {actor} x {context}: {route} {resp.status_code}")
                if want and not allowed:
                    unexpected.append(f"REFUSE {actor} x {context}: {route} {resp.status_code}")
                if not allowed:
                    assert before == after, (actor, context, route, "refused but changed")
                elif route == "admin retry":
                    assert after[0] == "pending"
                elif route == "admin resend":
                    assert after[2] is not None
                elif route == "keep award":
                    assert after[3] == ""
    # 5 actors x 4 contexts x (the page + 5 routes), but the 4 approve/revoke cells of the
    # course's own instructors: 116 judged cases
    assert judged == len(ACTORS) * len(CONTEXTS) * 6 - 4
    assert unexpected == [], "\n".join(unexpected)


def test_no_session_can_activate_a_platform(
    client: TestClient, world: World, engine: Engine
) -> None:
    """The finding: a course-level Administrator activated a platform that an anonymous
    caller had registered. No LTI session can activate any platform now."""
    with db_session(engine) as s:
        own = s.exec(select(Platform).where(Platform.issuer == world.moodle.issuer)).one()
    for actor in ACTORS:
        token = _launch(client, world, actor)
        for platform_id in (world.pending_platform_id, own.id):
            resp = _post(client, token, f"/app/admin/platforms/{platform_id}/activate")
            assert resp.status_code in REFUSED, (actor, resp.status_code)
    with db_session(engine) as s:
        pending = s.get(Platform, world.pending_platform_id)
        assert pending is not None and not pending.active
    # The page tells the institution administrator how it is done instead.
    token = _launch(client, world, "institution Administrator")
    page = _get(client, token, "/app/admin").text
    assert "microcred platform activate ID" in page
    assert "lms.attacker.example" not in page and "canvas.instructure.com" not in page
    assert "/activate" not in page


def test_the_admin_page_names_its_tenant_and_shows_only_its_audit_rows(
    client: TestClient, world: World, engine: Engine
) -> None:
    token = _launch(client, world, "institution Administrator")
    page = _get(client, token, "/app/admin")
    assert page.status_code == 200
    assert "For <strong>moodle</strong>, deployment <code>1</code>" in page.text
    assert "<code>https://moodle.test</code>" in page.text  # this platform's issuer
    with db_session(engine) as s:
        rows = s.exec(select(AuditEvent)).all()
        own = s.exec(select(Platform).where(Platform.issuer == world.moodle.issuer)).one()
    shown = {r.subject for r in rows if f"<td>{r.subject}</td>" in page.text}
    # its own registration (a platform-level row) and its deployment's courses: nothing else
    assert shown == {
        f"platform:{own.id}",
        world.targets[OWN].audit_subject,
        world.targets[SAME_DEPLOYMENT].audit_subject,
    }
    others = {r.subject for r in rows} - shown
    assert f"platform:{world.pending_platform_id}" in others  # the pending registration


def test_course_roles_see_a_403_that_says_who_can_open_administration(
    client: TestClient, world: World
) -> None:
    for actor in ("learner", "instructor", "course Administrator"):
        token = _launch(client, world, actor)
        page = _get(client, token, "/app/admin")
        assert page.status_code == 403
        assert "Only an administrator of your institution" in page.text
        assert "institution or system Administrator role" in page.text
    anonymous = _get(client, None, "/app/admin")
    assert anonymous.status_code == 401
    assert "Open microcred again from the link in your course" in anonymous.text


def test_a_moodle_site_administrator_is_an_instructor_in_the_course_and_administers_it(
    client: TestClient, world: World
) -> None:
    roles = [MEMBERSHIP + "Instructor", SYS + "Administrator", INST + "Administrator"]
    resp = world.moodle.full_launch(client, roles=roles, sub="moodle-admin")
    landing = client.get(resp.headers["location"])
    assert "Micro-credentials for Biology" in landing.text  # the course, as its instructor
    assert "Administration" in landing.text  # and the tab
    assert "role: instructor, administrator of this platform" in landing.text
    assert client.get("/app/admin").status_code == 200


def test_a_session_of_another_deployment_administers_only_that_deployment(
    client: TestClient, world: World, engine: Engine
) -> None:
    """An administrator from deployment 2 of the same platform: the other deployment's
    deliveries are not found, its audit rows not shown."""
    world.moodle.deployment_id = "2"
    resp = world.moodle.full_launch(client, roles=ROLES["institution Administrator"], sub="a2")
    assert resp.status_code == 303, resp.text
    token = parse_qs(urlsplit(resp.headers["location"]).query)["mc_session"][0]
    client.cookies.clear()
    page = _get(client, token, "/app/admin").text
    assert world.targets[OTHER_DEPLOYMENT].marker in page
    for context in (OWN, SAME_DEPLOYMENT, OTHER_PLATFORM):
        target = world.targets[context]
        assert target.marker not in page and f"<td>{target.audit_subject}</td>" not in page
        before = _state(engine, target)
        assert (
            _post(client, token, f"/app/admin/outbox/{target.outbox_uuid}/retry").status_code == 404
        )
        assert _state(engine, target) == before


def test_no_route_of_the_app_or_the_json_api_activates_a_platform(app: FastAPI) -> None:
    """Activation is the command line's alone: no HTTP route, in the OpenAPI document or
    outside it, names platform activation."""
    paths = [getattr(route, "path", "") for route in app.routes]
    assert [p for p in paths if "activate" in p or "/platforms" in p] == []
    assert [p for p in app.openapi()["paths"] if "platform" in p] == []
