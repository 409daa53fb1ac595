"""Who may do what: roles from the launch, one course per session, tenants by
(issuer, client_id, deployment), and CSRF on every form (token tied to the tool session)."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import select

from service.db.engine import session as db_session
from service.db.models import Award, Course, Person
from service.lti import jwks
from tests.flows.conftest import Live, Tab, launch
from tests.lti.platform import MEMBERSHIP, C, FakePlatform, Network

pytestmark = pytest.mark.db


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert found, page[:500]
    return found.group(1)


def test_a_learner_cannot_open_or_use_the_instructor_and_admin_pages(live: Live) -> None:
    learner = launch(live, "u-learn-1")
    own = learner.get("/app/me")
    csrf = _csrf(own.text) if 'name="csrf"' in own.text else ""
    for path in ("/app/course", "/app/setup"):
        page = learner.get(path)
        assert page.status_code == 403, path
        assert "Your role in this course does not allow this page" in page.text
    page = learner.get("/app/admin")
    assert page.status_code == 403
    assert "Only an administrator of your institution" in page.text
    for path in ("/app/course/reevaluate", "/app/course/sync", "/app/setup/rules"):
        assert learner.post(path, {}, csrf=csrf or None).status_code == 403, path


def test_an_instructor_cannot_act_on_another_courses_credentials(live: Live) -> None:
    instructor = launch(live, "u-instr-1")
    csrf = _csrf(instructor.get("/app/course").text)
    with db_session(live.engine, write=True) as s:
        own = s.get(Course, live.course_id)
        assert own is not None
        other = Course(deployment_id=own.deployment_id, context_id="ctx-other", title="Other")
        s.add(other)
        s.flush()
        person = s.exec(select(Person).where(Person.sub == "u-learn-1")).one()
        foreign = Award(
            course_id=other.id or 0,
            person_id=person.id or 0,
            line_key="competency:x",
            level="beginning",
            state="pending_approval",
        )
        s.add(foreign)
        s.commit()
        foreign_id = foreign.id
    for action, data in (("approve", {}), ("revoke", {"reason": "test"}), ("keep", {})):
        answer = instructor.post(f"/app/course/awards/{foreign_id}/{action}", data, csrf=csrf)
        assert answer.status_code == 404, (action, answer.text[:300])
    with db_session(live.engine) as s:
        row = s.get(Award, foreign_id)
        assert row is not None and row.state == "pending_approval"


def test_the_same_context_id_from_another_platform_is_another_course(
    live: Live, app: FastAPI, client: TestClient
) -> None:
    jwks.forget_memory_cache()
    other = FakePlatform()
    with db_session(live.engine, write=True) as s:
        other.register(s)
        s.commit()
    network = Network(other)
    app.state.lti_http = network.client()
    try:
        launched = other.full_launch(
            client,
            **{
                C + "roles": [MEMBERSHIP + "Instructor"],
                C + "context": {"id": "ctx-data-literacy-101", "title": "Same id, other LMS"},
            },
        )
        assert launched.status_code == 303, launched.text
        page = client.get("/app/course")  # the launch's cookie
        assert page.status_code == 200
        assert "Same id, other LMS" in page.text
        assert "Amara" not in page.text and "No competencies yet" in page.text
    finally:
        app.state.lti_http.close()
        jwks.forget_memory_cache()


def test_forms_need_the_csrf_token_of_their_own_session(live: Live) -> None:
    first = launch(live, "u-instr-1")
    second = launch(live, "u-instr-1")
    csrf = _csrf(first.get("/app/course").text)

    def post_with_header(tab: Tab, token: str | None) -> int:
        # The session travels in a header (as a cookie would), not in the form.
        data = {} if token is None else {"csrf": token}
        return tab.http.post(
            "/app/course/reevaluate", data=data, headers={"x-microcred-session": tab.token}
        ).status_code

    assert post_with_header(first, None) == 403
    assert post_with_header(first, "0" * 64) == 403
    assert post_with_header(second, csrf) == 403  # another session's token
    assert post_with_header(first, csrf) == 303
    # With cookies blocked the form carries the session token itself: that is the secret.
    assert first.post("/app/course/reevaluate", {}).status_code == 303


def test_a_learner_cannot_reach_another_learners_credentials(live: Live) -> None:
    launch(live, "u-learn-2")  # Lucas gets credentials
    with db_session(live.engine) as s:
        lucas = s.exec(select(Person).where(Person.sub == "u-learn-2")).one()
        award = s.exec(
            select(Award).where(Award.person_id == lucas.id, Award.state == "issued")
        ).first()
    assert award is not None
    kenji = launch(live, "u-learn-4")
    csrf = _csrf(kenji.get("/app/me").text) if "csrf" in kenji.get("/app/me").text else ""
    download = kenji.get(f"/app/me/credentials/{award.credential_uuid}/credential.json")
    assert download.status_code == 404
    consent = kenji.post(
        "/app/me/consent",
        {"credential_id": award.delivery_key, "repository_id": "1", "granted": "false"},
        csrf=csrf or None,
    )
    assert consent.status_code == 404


def test_the_demo_site_administrator_administers_the_demo_platform(live: Live) -> None:
    """Launched by the demo LMS as its site administrator (Instructor + institution and
    system Administrator, as Moodle sends them): the course as an instructor, and the
    administration of this platform."""
    admin = launch(live, "u-admin-1")
    assert admin.get("/app/course").status_code == 200
    page = admin.get("/app/admin")
    assert page.status_code == 200, page.text[:300]
    assert "microcred administration" in page.text and "deployment <code>" in page.text
    assert "microcred platform activate ID" in page.text
    # the instructor of the course is not an administrator
    assert launch(live, "u-instr-1").get("/app/admin").status_code == 403
