"""Canvas REST connector against the fake Canvas, and sync into the real DB."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import select

from service.db.engine import session
from service.db.models import Evidence, SourceConnection
from service.sources import store, sync
from service.sources.connectors.base import RetryPolicy
from service.sources.connectors.canvas import CanvasConnector
from service.sources.errors import (
    SourceAuthFailed,
    SourceDataError,
    SourceRefused,
    SourceUnavailable,
)
from service.sources.types import SourceKind
from tests.sources.fakes import FakeCanvas
from tests.sources.helpers import NOW, world

C = "/api/v1/courses/7"


def connector(fake: FakeCanvas, sleeps: list[float] | None = None, **kw: object) -> CanvasConnector:
    args: dict[str, object] = {
        "base_url": "https://canvas.test",
        "access_token": "canvas-at-1",
        "refresh_token": "canvas-rt",
        "client_id": "10000000000001",
        "client_secret": "dev-key-secret",
        "client": httpx.Client(transport=fake.transport()),
        "policy": RetryPolicy(attempts=3, base_delay=0.5),
        "sleep": (sleeps if sleeps is not None else []).append,
        "now": lambda: NOW,
    }
    return CanvasConnector(**(args | kw))  # type: ignore[arg-type]


def test_fetch_follows_pages_and_normalises() -> None:
    fake = FakeCanvas.sample()
    fetched = connector(fake).fetch_course("7")
    # page_size 2: users and assignments (3 each) need a second page
    assert sum("/users?" in c for c in fake.calls) == 2
    assert sum(c.startswith(f"GET {C}/assignments?") for c in fake.calls) == 2
    assert not any("/assignments/33/" in c for c in fake.calls)  # unpublished
    got = sorted(
        (r.kind.value, r.learner.lms_user_id, r.item_id, r.criterion_id) for _, r in fetched.results
    )
    assert got == [
        ("assignment", "1001", "31", ""),
        ("assignment", "1002", "31", ""),
        ("quiz", "1001", "32", ""),  # from the quiz submission, not twice
        ("rubric_criterion", "1001", "31", "_c1"),
        ("rubric_criterion", "1001", "31", "_c2"),
        ("rubric_criterion", "1002", "31", "_c1"),
    ]
    by = {(r.learner.lms_user_id, r.kind, r.criterion_id): r for _, r in fetched.results}
    c2 = by[("1001", SourceKind.RUBRIC_CRITERION, "_c2")]
    assert c2.level is not None and (c2.level.id, c2.level.name, c2.level.points) == (
        "r2",
        "Developing",
        1.0,
    )
    assert [lv[0] for lv in c2.level.scale] == ["r1", "r2", "r3"]
    assert by[("1001", SourceKind.QUIZ, "")].attempt == 2
    assert by[("1001", SourceKind.QUIZ, "")].max_score == 10.0
    assert by[("1001", SourceKind.ASSIGNMENT, "")].learner.email == "ada@example.edu"
    assert by[("1001", SourceKind.ASSIGNMENT, "")].graded_at == dt.datetime(
        2026, 11, 12, 10, 0, tzinfo=dt.UTC
    )
    assert fetched.problems == []  # pending_review quiz submissions are simply not final yet


def test_expired_token_is_refreshed_once_and_saved_encrypted(engine: Engine) -> None:
    w = world(engine)
    fake = FakeCanvas.sample()
    fake.access_token = "canvas-at-new-server-side"  # ours (canvas-at-1) has expired
    fake.refresh_token = "canvas-rt"
    with session(engine, write=True) as s:
        store.link_person(s, platform_id=w.platform_id, lms_user_id="1002", person_id=w.bob)
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
        c = sync.connector_for(
            s,
            conn,
            client=httpx.Client(transport=fake.transport()),
            sleep=lambda _: None,
            now=lambda: NOW,
        )
        report = sync.sync_course(
            s,
            course_id=w.course_id,
            connector=c,
            now=NOW,
            lms_course_id="7",
            connection_id=conn.id,
        )
        s.commit()
    assert fake.refreshes == 1
    assert report.new == 6 and report.rejected == []
    with session(engine) as s:
        saved = s.exec(select(SourceConnection)).one()
        raw = s.connection().exec_driver_sql("SELECT access_token FROM source_connection").scalar()
        recs = store.list_evidence(s, course_id=w.course_id)
    assert saved.access_token == "canvas-at-2"
    assert saved.token_expires_at == NOW + dt.timedelta(seconds=3600)
    assert "canvas-at-2" not in str(raw)
    assert {r.person_id for r in recs} == {w.ada, w.bob}  # e-mail and person_link
    assert {r.origin for r in recs} == {f"canvas:{saved.id}"}


def test_token_near_expiry_is_refreshed_before_the_first_call() -> None:
    fake = FakeCanvas.sample()
    c = connector(fake, expires_at=NOW + dt.timedelta(seconds=10))
    c.fetch_course("7")
    assert fake.refreshes == 1
    assert fake.calls[0].startswith("POST /login/oauth2/token")


def test_refresh_refused_is_a_clear_auth_error() -> None:
    fake = FakeCanvas.sample()
    fake.access_token = "other"
    fake.refresh_ok = False
    with pytest.raises(SourceAuthFailed, match="refused to refresh") as info:
        connector(fake).fetch_course("7")
    assert "connect the Canvas account again" in (info.value.hint or "")


def test_401_without_refresh_token_is_final() -> None:
    fake = FakeCanvas.sample()
    fake.access_token = "other"
    with pytest.raises(SourceAuthFailed, match="HTTP 401"):
        connector(fake, refresh_token=None).fetch_course("7")
    assert fake.refreshes == 0


def test_rate_limit_403_and_5xx_are_retried() -> None:
    fake = FakeCanvas.sample()
    fake.fail[f"{C}/assignments"] = [
        httpx.Response(403, text="403 Forbidden (Rate Limit Exceeded)"),
        httpx.Response(429, headers={"Retry-After": "7"}),
    ]
    fake.fail[f"{C}/assignments/31/submissions"] = [500]
    sleeps: list[float] = []
    fetched = connector(fake, sleeps).fetch_course("7")
    assert len(fetched.results) == 6
    assert sleeps == [0.5, 7.0, 0.5]


def test_persistent_5xx_on_a_later_page_writes_nothing(engine: Engine) -> None:
    w = world(engine)
    fake = FakeCanvas.sample()
    fake.fail[f"{C}/quizzes/40/submissions"] = [503, 503, 503]
    with session(engine, write=True) as s, pytest.raises(SourceUnavailable, match="quiz 40"):
        sync.sync_course(
            s, course_id=w.course_id, connector=connector(fake), now=NOW, lms_course_id="7"
        )
    with session(engine) as s:
        assert s.exec(select(Evidence)).all() == []


def test_other_4xx_is_final_with_a_hint() -> None:
    fake = FakeCanvas.sample()
    fake.fail[f"{C}/users"] = [httpx.Response(403, json={"status": "unauthorized"})]
    with pytest.raises(SourceRefused, match="HTTP 403") as info:
        connector(fake).fetch_course("7")
    assert "teacher" in (info.value.hint or "")
    with pytest.raises(SourceRefused, match="not found"):
        connector(FakeCanvas.sample()).fetch_course("8")
    with pytest.raises(SourceRefused, match="not a Canvas course id") as info:
        connector(FakeCanvas.sample()).fetch_course("abc-context")
    assert "$Canvas.course.id" in (info.value.hint or "")


def test_next_link_to_another_host_is_refused() -> None:
    fake = FakeCanvas.sample()
    fake.next_host = "evil.test"
    with pytest.raises(SourceDataError, match="another host"):
        connector(fake).fetch_course("7")
    assert not any("evil.test" in c for c in fake.calls)


def test_missing_rubric_and_unknown_criterion_are_reported() -> None:
    fake = FakeCanvas.sample()
    del fake.assignments[0]["rubric"]
    fetched = connector(fake).fetch_course("7")
    assert [(p.where, p.field) for p in fetched.problems] == [
        ("assignment 31 submission 1", "rubric"),
        ("assignment 31 submission 2", "rubric"),
    ]
    fake = FakeCanvas.sample()
    fake.submissions[31][0]["rubric_assessment"]["_c9"] = {"points": 1, "rating_id": None}
    fetched = connector(fake).fetch_course("7")
    [p] = fetched.problems
    assert "criterion _c9 is not in the rubric" in p.reason
    assert len(fetched.results) == 6  # the rest is still read


def test_free_points_without_rating_keep_the_points() -> None:
    fake = FakeCanvas.sample()
    fake.submissions[31][1]["rubric_assessment"]["_c1"] = {"points": 1.5, "rating_id": None}
    fetched = connector(fake).fetch_course("7")
    [r] = [r for _, r in fetched.results if r.learner.lms_user_id == "1002" and r.level]
    assert r.level is not None and (r.level.id, r.level.points) == ("points:1.5", 1.5)


def test_401_without_www_authenticate_is_a_permission_problem_not_a_refresh() -> None:
    fake = FakeCanvas.sample()
    fake.fail[f"{C}/users"] = [
        httpx.Response(
            401,
            json={
                "status": "unauthorized",
                "errors": [{"message": "user not authorized to perform that action"}],
            },
        )
    ]
    with pytest.raises(SourceRefused, match="not authorized") as info:
        connector(fake).fetch_course("7")
    assert fake.refreshes == 0
    assert "teacher" in (info.value.hint or "")
