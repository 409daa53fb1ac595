"""Canvas in the scheduled sync: learners are linked by their Canvas user id (the
``canvas_user_id`` custom field, $Canvas.user.id, at launch and in the NRPS roster), not by
e-mail; a refreshed token is kept even when the pull fails afterwards."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import select

from service.db.engine import session
from service.db.models import Course, Deployment, PersonLink, Platform, SourceConnection
from service.errors import ServiceError
from service.flows import launching, syncing, wiring
from service.lti import services as lti_services
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
        launching.record_launch(s, launch=_launch(engine, w, "42", {"canvas_user_id": "1002"}))
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
