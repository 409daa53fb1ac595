"""Repository configuration mistakes are refused when made, not at delivery time; and
what goes wrong at delivery time is said plainly (issue #17)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import select
from typer.testing import CliRunner

from service.cli import app as cli_app
from service.db.engine import session as db_session
from service.db.models import DeliveryAttempt, DeliveryRepository, OutboxMessage
from service.delivery import awards, repositories
from service.delivery.errors import ConnectorError
from service.delivery.providers.credly import CredlyConnector
from service.delivery.worker import Worker
from service.errors import BadInput
from tests import factories
from tests.delivery.conftest import snapshot

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


def _credly(engine: Engine, **config: Any) -> DeliveryRepository:
    with db_session(engine, write=True) as s:
        factories.competency(s, "py")
        factories.competency(s, "sql")
        repo = repositories.create(
            s,
            kind="credly",
            name="Credly",
            secret="t",
            config={"organization_id": "org", "environment": "sandbox"} | config,
        )
        s.commit()
        s.refresh(repo)
        return repo


@pytest.mark.parametrize(
    "given",
    [
        "https://sandbox-api.credly.com",
        "https://sandbox-api.credly.com/",
        "https://sandbox-api.credly.com/v1",
        "https://sandbox-api.credly.com/v1/",
    ],
)
def test_a_credly_base_url_with_or_without_v1_is_stored_with_it(engine: Engine, given: str) -> None:
    repo = _credly(engine, base_url=given)
    assert repo.config["base_url"] == "https://sandbox-api.credly.com/v1"


@pytest.mark.parametrize(
    "given", ["https://sandbox-api.credly.com/v2", "https://credly.example/api/v1", "sandbox"]
)
def test_a_credly_base_url_with_another_path_is_refused_with_the_right_form(
    engine: Engine, given: str
) -> None:
    with pytest.raises(BadInput) as err:
        _credly(engine, base_url=given)
    assert given in err.value.detail
    assert "https://sandbox-api.credly.com/v1" in err.value.detail


def test_a_template_map_with_a_typo_is_refused_naming_the_key_and_the_valid_ones(
    engine: Engine,
) -> None:
    with pytest.raises(BadInput) as err:
        _credly(engine, templates={"py:beginning": "T1", "pyhton:advanced": "T3"})
    assert "'pyhton'" in err.value.detail and "py, sql" in err.value.detail
    with pytest.raises(BadInput) as err:
        _credly(engine, templates={"py:expert": "T1"})
    assert "'py:expert'" in err.value.detail and "beginning, intermediate, advanced" in (
        err.value.detail
    )
    repo = _credly(engine, templates={"py:beginning": "T1"})
    with db_session(engine, write=True) as s:
        with pytest.raises(BadInput, match="'sqll'"):
            repositories.update(s, repo.id or 0, templates={"sqll:advanced": "T9"})
        repositories.update(s, repo.id or 0, templates={"sql:advanced": "T9"})
        s.commit()
        assert repositories.get(s, repo.id or 0).config["templates"] == {
            "py:beginning": "T1",
            "sql:advanced": "T9",
        }


def test_a_credly_answer_in_html_is_a_plain_note_without_a_traceback(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    page = "<!DOCTYPE html><html><body>Credly - Page not found</body></html>"

    def credly(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text=page, headers={"content-type": "text/html"})

    _credly(engine, templates={"py:beginning": "T1"})
    with db_session(engine, write=True) as s:
        awards.enqueue_issue(s, snapshot=snapshot(1), now=NOW)
        s.commit()
    worker = Worker(
        engine,
        [CredlyConnector(httpx.Client(transport=httpx.MockTransport(credly)), clock=lambda: NOW)],
        clock=lambda: NOW,
    )
    try:
        with caplog.at_level(logging.INFO):
            worker.run_once()
    finally:
        worker.close()
    said = "Credly answered HTML (status 200), not JSON: is the base URL right?"
    with db_session(engine) as s:
        row = s.exec(select(OutboxMessage)).one()
        [attempt] = s.exec(select(DeliveryAttempt)).all()
    assert row.last_error == f"unexpected_answer: {said}"
    assert said in attempt.request_summary
    assert not [r for r in caplog.records if r.exc_info], "no traceback per attempt"


def _dead_rows(engine: Engine) -> dict[str, list[int]]:
    """Two dead rows on repository A, one on B, one pending on A."""
    a = _credly(engine).id
    with db_session(engine, write=True) as s:
        b = repositories.create(
            s, kind="webhook", name="HR", secret="x", config={"url": "https://hr.test/h"}
        ).id
        ids: dict[str, list[int]] = {"a": [], "b": [], "pending": []}
        for i, (repo, key) in enumerate([(a, "a"), (a, "a"), (b, "b"), (a, "pending")]):
            [row] = awards.enqueue_issue(s, snapshot=snapshot(i), repository_ids=[repo], now=NOW)
            if key != "pending":
                row.status = "dead"
                row.attempts = row.max_attempts
            s.add(row)
            s.flush()
            assert row.id is not None
            ids[key].append(row.id)
        s.commit()
    return ids | {"repos": [a or 0, b or 0]}


def _statuses(engine: Engine) -> dict[int, str]:
    with db_session(engine) as s:
        return {r.id or 0: r.status for r in s.exec(select(OutboxMessage)).all()}


@pytest.mark.usefixtures("cli_env")
def test_outbox_retry_takes_several_ids(engine: Engine) -> None:
    ids = _dead_rows(engine)
    r = CliRunner().invoke(cli_app, ["outbox", "retry", str(ids["a"][0]), str(ids["b"][0])])
    assert r.exit_code == 0, r.output
    st = _statuses(engine)
    assert st[ids["a"][0]] == st[ids["b"][0]] == "pending" and st[ids["a"][1]] == "dead"


@pytest.mark.usefixtures("cli_env")
def test_outbox_retry_of_one_repositorys_dead_rows_and_of_all(engine: Engine) -> None:
    ids = _dead_rows(engine)
    runner = CliRunner()
    r = runner.invoke(cli_app, ["outbox", "retry", "--repository", str(ids["repos"][0])])
    assert r.exit_code == 0, r.output
    st = _statuses(engine)
    assert [st[i] for i in ids["a"]] == ["pending", "pending"] and st[ids["b"][0]] == "dead"
    r = runner.invoke(cli_app, ["outbox", "retry", "--all-dead"])
    assert r.exit_code == 0, r.output
    assert set(_statuses(engine).values()) == {"pending"}
    r = runner.invoke(cli_app, ["outbox", "retry", "--all-dead"])
    assert r.exit_code == 0 and "no dead rows" in r.output
    r = runner.invoke(cli_app, ["outbox", "retry"])
    assert r.exit_code == 2 and "--all-dead" in r.output


def _snapshot(engine: Engine, **config: Any) -> Any:
    repo = _credly(engine, **config)
    with db_session(engine) as s:
        return repositories.snapshots(s, [repo.id or 0])[repo.id or 0]


def test_a_connection_test_lists_templates_and_names_the_map_entries_that_are_not_there(
    engine: Engine,
) -> None:
    seen: list[str] = []

    def credly(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        return httpx.Response(
            200,
            json={
                "data": [{"id": "T1", "state": "active"}, {"id": "T2", "state": "archived"}],
                "metadata": {"next_page_url": None},
            },
        )

    repo = _snapshot(engine, templates={"py:beginning": "T1", "py:advanced": "T2"})
    conn = CredlyConnector(httpx.Client(transport=httpx.MockTransport(credly)), clock=lambda: NOW)
    count, problems = conn.check_connection(repo)
    assert seen == ["GET /v1/organizations/org/badge_templates"]  # nothing but a read
    assert count == 1 and len(problems) == 1 and problems[0].startswith("py:advanced: template T2")


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (
            httpx.Response(200, text="<html>Credly</html>", headers={"content-type": "text/html"}),
            "Credly answered HTML (status 200), not JSON: is the base URL right?",
        ),
        (httpx.Response(401, json={"message": "Unauthorized"}), "was refused"),
    ],
)
def test_a_connection_test_says_what_is_wrong(
    engine: Engine, answer: httpx.Response, said: str
) -> None:
    repo = _snapshot(engine)
    conn = CredlyConnector(
        httpx.Client(transport=httpx.MockTransport(lambda r: answer)), clock=lambda: NOW
    )
    with pytest.raises(ConnectorError) as err:
        conn.check_connection(repo)
    assert said in err.value.detail


@pytest.mark.usefixtures("cli_env")
def test_repository_test_command(engine: Engine) -> None:
    repo = _credly(engine, base_url="http://127.0.0.1:9")  # nothing listens there
    with db_session(engine, write=True) as s:
        hook = repositories.create(
            s, kind="webhook", name="HR", secret="x", config={"url": "http://127.0.0.1:9/h"}
        )
        book = repositories.create(s, kind="ags", name="Gradebook", config={})
        s.commit()
        hook_id, book_id = hook.id, book.id
    runner = CliRunner()
    out = runner.invoke(cli_app, ["repository", "test", str(repo.id)])
    assert out.exit_code == 1 and "Credly: not working" in out.output
    out = runner.invoke(cli_app, ["repository", "test", str(hook_id)])  # a signed ping
    assert out.exit_code == 1 and "not working" in out.output, out.output
    out = runner.invoke(cli_app, ["repository", "test", str(book_id)])
    assert out.exit_code == 2 and "no connection test for ags" in out.output, out.output


def test_a_404_page_from_a_wrong_base_url_says_so(engine: Engine) -> None:
    def website(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            404, text="<!DOCTYPE html><html>Not found</html>", headers={"content-type": "text/html"}
        )

    _credly(engine, templates={"py:beginning": "T1"})
    with db_session(engine, write=True) as s:
        awards.enqueue_issue(s, snapshot=snapshot(1), now=NOW)
        s.commit()
    worker = Worker(
        engine,
        [CredlyConnector(httpx.Client(transport=httpx.MockTransport(website)), clock=lambda: NOW)],
        clock=lambda: NOW,
    )
    try:
        worker.run_once()
    finally:
        worker.close()
    with db_session(engine) as s:
        row = s.exec(select(OutboxMessage)).one()
    assert row.status == "dead"
    assert "answered 404: an HTML page, not JSON: is the base URL right?" in (row.last_error or "")
