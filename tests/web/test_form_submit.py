"""``appshell.submit``, the one shape of a form post: the use case commits once and the
browser goes back with a notice, or it rolls back and the page shows the error."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import Engine, func
from sqlmodel import select

from service import audit
from service.db.engine import session as db_session
from service.db.models import AuditEvent
from service.errors import BadInput, ServiceError
from service.web import auth
from service.web.appshell import submit

pytestmark = pytest.mark.db

USER = auth.CurrentUser(
    person_id=7,
    platform_id=1,
    deployment_id=1,
    course_id=3,
    role="instructor",
    roles=(),
    launch_id="",
    token="t",
    via_cookie=True,
)


def _rows(engine: Engine) -> int:
    with db_session(engine) as s:
        return int(s.exec(select(func.count()).select_from(AuditEvent)).one())


def _notice(response: Response) -> dict[str, list[str]]:
    assert response.status_code == 303
    return parse_qs(urlsplit(response.headers["location"]).query)


def test_a_use_case_that_succeeds_is_committed_and_the_browser_goes_back(engine: Engine) -> None:
    with db_session(engine, write=True) as s:

        def work() -> int:
            audit.record(s, actor=USER.actor, action="test.done", subject="x")
            return 4

        answer = submit(s, USER, work, to="/app/setup", done="saved", failed=pytest.fail)
    assert answer.headers["location"].startswith("/app/setup?")
    assert _notice(answer) == {"done": ["saved"], "n": ["4"]}
    assert _rows(engine) == 1


@pytest.mark.parametrize(
    ("count", "notice"), [(0, {"done": ["saved"]}), (2, {"done": ["saved_queued"], "n": ["2"]})]
)
def test_a_count_of_queued_learners_picks_the_notice(
    engine: Engine, count: int, notice: dict[str, list[str]]
) -> None:
    with db_session(engine, write=True) as s:
        answer = submit(
            s, USER, lambda: count, to="/", done="saved", queued="saved_queued", failed=pytest.fail
        )
    assert _notice(answer) == notice


def test_a_refused_use_case_is_rolled_back_and_its_page_shows_the_error(engine: Engine) -> None:
    shown: list[tuple[ServiceError, int]] = []
    with db_session(engine, write=True) as s:

        def work() -> None:
            audit.record(s, actor=USER.actor, action="test.half", subject="x")
            s.flush()
            raise BadInput("name: give one")

        def failed(exc: ServiceError) -> Response:
            # the page reads in the same session, after the rollback
            shown.append((exc, s.exec(select(func.count()).select_from(AuditEvent)).one()))
            return HTMLResponse("the form again", status_code=exc.status_code)

        answer = submit(s, USER, work, to="/", done="saved", failed=failed)
        assert not s.in_transaction()  # no lock held while the page is sent
    assert answer.status_code == 422 and answer.body == b"the form again"
    assert [(str(e), n) for e, n in shown] == [("name: give one", 0)]
    assert _rows(engine) == 0
