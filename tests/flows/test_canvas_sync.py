"""Canvas in the scheduled sync: learners are linked by their Canvas user id (the
``canvas_user_id`` custom field, $Canvas.user.id, at launch and in the NRPS roster), not by
e-mail; a refreshed token is kept even when the pull fails afterwards."""

from __future__ import annotations

import dataclasses

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import select

from service.db.engine import session
from service.db.models import (
    Course,
    Deployment,
    Person,
    PersonLink,
    Platform,
    SourceConnection,
)
from service.errors import ServiceError
from service.flows import syncing, wiring
from service.lti import services as lti_services
from service.lti import store
from service.lti.types import CLAIM, LaunchContext
from tests.sources.fakes import FakeCanvas
from tests.sources.helpers import NOW, World, world

C = "/api/v1/courses/7"


def _connect(engine: Engine, w: World) -> int:
    with session(engine, write=True) as s:
        conn = SourceConnection(
            name="canvas-prod",
            kind="canvas",
            base_url="https://canvas.test",
            access_token="canvas-at-1",
            refresh_token="canvas-rt",
            client_id="10000000000001",
            client_secret="dev-key-secret",
        )
        s.add(conn)
        s.flush()
        wiring.connect_source(
            s, course_id=w.course_id, connection_id=conn.id, lms_course_id="7", actor="t", now=NOW
        )
        s.commit()
        assert conn.id is not None
        return conn.id


def test_a_refreshed_canvas_token_is_kept_when_the_pull_fails_later(engine: Engine) -> None:
    w = world(engine)
    conn_id = _connect(engine, w)
    fake = FakeCanvas.sample()
    fake.access_token = "canvas-at-new-server-side"  # ours has expired: refreshed first
    fake.fail[f"{C}/quizzes/40/submissions"] = [503] * 10  # then the LMS fails
    with (
        httpx.Client(transport=fake.transport()) as http,
        pytest.raises(ServiceError, match="quiz 40"),
    ):
        syncing.fetch_course(engine, course_id=w.course_id, client=http)
    assert fake.refreshes == 1
    with session(engine) as s:
        saved = s.get(SourceConnection, conn_id)
        assert saved is not None and saved.access_token == "canvas-at-2"  # not lost


def _launch(engine: Engine, w: World, sub: str, custom: dict[str, str]) -> LaunchContext:
    with session(engine) as s:
        course = s.get(Course, w.course_id)
        assert course is not None
        deployment = s.get(Deployment, course.deployment_id)
        platform = s.get(Platform, w.platform_id)
        assert deployment is not None and platform is not None
    return LaunchContext(
        launch_id="l-1",
        platform_id=w.platform_id,
        deployment_pk=course.deployment_id,
        issuer=platform.issuer,
        client_id=platform.client_id,
        deployment_id=deployment.deployment_id,
        message_type="LtiResourceLinkRequest",
        sub=sub,
        role="learner",
        roles=["http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"],
        context_id=course.context_id,
        custom=custom,
    )


def test_canvas_results_find_the_learner_by_the_canvas_user_id_from_the_launch(
    engine: Engine,
) -> None:
    w = world(engine)
    _connect(engine, w)
    with session(engine, write=True) as s:
        # Bob's opaque LTI sub is "42"; Canvas knows him as 1002 and withholds his e-mail.
        launch = _launch(engine, w, "42", {"canvas_user_id": "1002"})
        store.record_user(s, launch=launch, now=NOW)
        s.commit()
        link = s.exec(select(PersonLink).where(PersonLink.lms_user_id == "1002")).one()
        assert link.person_id == w.bob
    fake = FakeCanvas.sample()
    with httpx.Client(transport=fake.transport()) as http:
        pull = syncing.fetch_course(engine, course_id=w.course_id, client=http)
    with session(engine, write=True) as s:
        report = syncing.store_fetched(s, pull=pull, now=NOW, actor="t")
        s.commit()
    assert report.rejected == []
    assert report.changed_people == {w.ada, w.bob}


def test_the_nrps_roster_links_the_canvas_user_id_of_each_member(engine: Engine) -> None:
    w = world(engine)
    member = lti_services.Member(
        user_id="opaque-lti-id-9",
        roles=["http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"],
        name="Cleo",
        email="cleo@example.edu",
        raw={"message": [{CLAIM + "custom": {"canvas_user_id": "1009"}}]},
    )
    with session(engine, write=True) as s:
        changed = syncing.apply_roster(s, course_id=w.course_id, members=[member], now=NOW)
        s.commit()
        link = s.exec(select(PersonLink).where(PersonLink.lms_user_id == "1009")).one()
    assert changed == {link.person_id}


NRPS = "https://lms.test/api/lti/courses/ctx-1/names_and_roles"


def test_the_canvas_roster_is_asked_with_the_rlid_of_a_launch_and_links_canvas_ids(
    engine: Engine,
) -> None:
    w = world(engine)
    _connect(engine, w)
    # A launch in the course brings the membership URL and a resource link id.
    launched = _launch(engine, w, "42", {"canvas_user_id": "1002"})
    launched = dataclasses.replace(launched, nrps_url=NRPS, resource_link_id="rl-essay")
    with session(engine, write=True) as s:
        store.record_user(s, launch=launched, now=NOW)
        s.commit()
    asked: list[httpx.URL] = []
    canvas = FakeCanvas.sample()

    def lms(request: httpx.Request) -> httpx.Response:
        if str(request.url) == "https://lms.test/token":
            return httpx.Response(200, json={"access_token": "nrps-at", "expires_in": 3600})
        if request.url.copy_with(query=None) == httpx.URL(NRPS):
            asked.append(request.url)
            # Canvas: a member's custom fields come only with rlid (NRPS 2.0 §3)
            message = {CLAIM + "custom": {"canvas_user_id": "1003"}}
            member = {
                "user_id": "opaque-cy",
                "roles": ["http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"],
                "name": "Cy",
                **({"message": [message]} if request.url.params.get("rlid") else {}),
            }
            return httpx.Response(
                200,
                json={"id": NRPS, "context": {"id": "ctx-1"}, "members": [member]},
                headers={"content-type": lti_services.MT_MEMBERS},
            )
        return canvas.handle(request)

    with httpx.Client(transport=httpx.MockTransport(lms)) as http:
        pull = syncing.fetch_course(engine, course_id=w.course_id, client=http, roster=True)
    assert [u.params.get("rlid") for u in asked] == ["rl-essay"]
    with session(engine, write=True) as s:
        syncing.store_fetched(s, pull=pull, now=NOW, actor="t")
        s.commit()
        link = s.exec(select(PersonLink).where(PersonLink.lms_user_id == "1003")).one()
        cy = s.exec(select(Person).where(Person.sub == "opaque-cy")).one()
    assert link.person_id == cy.id  # Cy's Canvas results find him by his Canvas user id
