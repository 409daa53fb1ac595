"""The tool's own NRPS/AGS clients against the demo LMS, both served over real HTTP.

The LMS verifies the tool's client assertion with the key set it fetches from the running
tool's /lti/jwks; nothing is faked on either side.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from service.db.engine import session
from service.db.models import Platform
from service.demo import bootstrap, server
from service.lti import services
from service.settings import Settings


@pytest.fixture
def live(settings: Settings, engine: Engine) -> Iterator[tuple[bootstrap.DemoApps, Any]]:
    tool_socket = server.bind("127.0.0.1", 0)
    lms_socket = server.bind("127.0.0.1", 0)
    apps = bootstrap.build(
        settings,
        tool_url=f"http://127.0.0.1:{tool_socket.getsockname()[1]}",
        lms_url=f"http://localhost:{lms_socket.getsockname()[1]}",
        engine=engine,
    )
    with (
        server.running(apps.tool, apps.lms, tool_socket=tool_socket, lms_socket=lms_socket),
        httpx.Client(timeout=10) as http,
    ):
        with session(engine) as s:
            row = s.get(Platform, apps.platform_id)
        assert row is not None
        yield apps, services.ServiceClient(engine, http, row)


def test_tool_reads_the_roster_and_writes_a_grade_column(
    live: tuple[bootstrap.DemoApps, Any],
) -> None:
    apps, client = live
    config = apps.config
    course = apps.lms.state.platform.course
    members = services.roster(client, config.memberships_url(course.context_id))
    assert [m.user_id for m in members] == [m.user_id for m in course.members]
    assert members[1].name == "Amara Okafor" and members[1].email.startswith("amara.okafor@")

    item = services.create_line_item(
        client,
        config.lineitems_url(course.context_id),
        label="Data literacy level",
        score_maximum=3,
        tag="microcred",
        resource_link_id=course.resource_link_id,
    )
    assert item["id"].startswith(config.lineitems_url(course.context_id) + "/")
    when = dt.datetime(2026, 11, 20, 9, tzinfo=dt.UTC)
    services.post_score(
        client, item["id"], user_id="u-learn-1", score_given=3, score_maximum=3, timestamp=when
    )
    listed = services.line_items(client, config.lineitems_url(course.context_id), tag="microcred")
    assert [i["id"] for i in listed] == [item["id"]]
    grades = httpx.get(config.base + "/grades").text
    assert "Data literacy level" in grades and "3.0 / 3.0" in grades
