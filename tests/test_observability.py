"""GET /metrics (Prometheus), request ids carried from a request into the worker's
deliveries, and JSON lines logs (service/metrics.py, service/requestlog.py)."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlmodel import select

from service import logredact, requestlog
from service.app import create_app
from service.db.engine import session as db_session
from service.db.models import CourseSetup, ImportRun, OutboxMessage, SourceConnection
from service.delivery import awards, repositories
from service.delivery.outbox import AttemptRecord
from service.delivery.providers.ags import AgsConnector
from service.delivery.worker import Worker
from service.issuer import service as issuer_service
from service.settings import Settings
from tests import factories
from tests.delivery.conftest import snapshot
from tests.issuer import samples

pytestmark = pytest.mark.db
TOKEN = "scrape-" + "t" * 32


@pytest.fixture
def observed(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update={"metrics_token": SecretStr(TOKEN)}), engine=engine)
    with TestClient(app, base_url="https://tool.test") as c:
        yield c


def _scrape(client: TestClient) -> str:
    answer = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return answer.text


def _value(text: str, series: str) -> float:
    found = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    assert found, f"{series} not in the metrics"
    return float(found.group(1))


def test_metrics_are_off_without_a_token_and_closed_without_the_right_one(
    client: TestClient, observed: TestClient, settings: Settings, engine: Engine
) -> None:
    assert client.get("/metrics").status_code == 404
    # an empty MICROCRED_METRICS_TOKEN= (a compose default) is off too, not "Bearer " open
    empty = create_app(settings.model_copy(update={"metrics_token": SecretStr("")}), engine=engine)
    with TestClient(empty, base_url="https://tool.test") as c:
        assert c.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 404
    assert observed.get("/metrics").status_code == 401
    wrong = observed.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "MICROCRED_METRICS_TOKEN" in wrong.text


def test_metrics_count_requests_by_route_and_read_the_database(
    observed: TestClient, engine: Engine, settings: Settings
) -> None:
    with db_session(engine, write=True) as s:
        issued = [
            issuer_service.issue(
                s, settings=settings, award=samples.award(), now=samples.NOW, actor="test"
            )
            for _ in range(2)
        ]
        issuer_service.revoke(
            s, settings=settings, uuid=issued[0].uuid, reason="test", actor="t", now=samples.NOW
        )
        repositories.create(s, kind="webhook", name="HR", secret="s", config={"url": "https://h"})
        awards.enqueue_issue(
            s, snapshot=snapshot(1), now=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        )
        s.commit()
    for _ in range(3):
        assert observed.get(f"/credentials/{issued[1].uuid}").status_code == 200
    assert observed.post("/verify", content=json.dumps(issued[1].document)).json()["valid"]
    assert not observed.post("/verify", content=json.dumps(issued[0].document)).json()["valid"]
    assert not observed.post("/verify", content=b'{"not": "a credential"}').json()["valid"]

    text = _scrape(observed)
    page = 'microcred_http_requests_total{method="GET",route="/credentials/{key}",status="200"}'
    assert _value(text, page) == 3  # by template: one series for every credential
    assert issued[1].uuid not in text
    assert (
        _value(
            text,
            'microcred_http_request_duration_seconds_count{method="GET",route="/credentials/{key}"}',
        )
        == 3
    )
    assert _value(text, 'microcred_verifications_total{result="valid"}') == 1
    assert _value(text, 'microcred_verifications_total{result="revoked"}') == 1
    assert _value(text, 'microcred_verifications_total{result="invalid"}') == 1
    assert _value(text, "microcred_credentials_issued") == 2
    assert _value(text, "microcred_credentials_revoked") == 1
    assert _value(text, 'microcred_deliveries{repository="HR",status="pending"}') == 1
    assert _value(text, "microcred_delivery_queue_depth") == 1
    assert _value(text, "microcred_delivery_queue_oldest_seconds") >= 5 * 60


def test_sync_lag_is_reported_per_connected_course(observed: TestClient, engine: Engine) -> None:
    now = dt.datetime.now(dt.UTC)
    with db_session(engine, write=True) as s:
        plat = factories.platform(s)
        dep = factories.deployment(s, plat)
        synced, never = factories.course(s, dep), factories.course(s, dep, context_id="ctx-2")
        source = SourceConnection(
            name="Moodle", kind="moodle", base_url="https://m", access_token="t"
        )
        s.add(source)
        s.flush()
        for c in (synced, never):
            s.add(CourseSetup(course_id=c.id, source_connection_id=source.id))
        s.add(
            ImportRun(
                course_id=synced.id,
                kind="sync",
                status="applied",
                started_at=now - dt.timedelta(hours=2, minutes=1),
                finished_at=now - dt.timedelta(hours=2),
            )
        )
        s.commit()
        ids = (synced.id, never.id)
    text = _scrape(observed)
    lag = _value(text, f'microcred_sync_lag_seconds{{course_id="{ids[0]}"}}')
    assert 2 * 3600 <= lag < 3 * 3600
    assert _value(text, f'microcred_sync_lag_seconds{{course_id="{ids[1]}"}}') == -1


def test_a_request_id_is_answered_and_taken_from_a_sane_header(client: TestClient) -> None:
    mine = client.get("/healthz", headers={"X-Request-ID": "lb-1234.abc"})
    assert mine.headers["x-request-id"] == "lb-1234.abc"
    odd = client.get("/healthz", headers={"X-Request-ID": "no spaces <script>"})
    assert re.fullmatch(r"[0-9a-f]{32}", odd.headers["x-request-id"])
    assert client.get("/healthz").headers["x-request-id"] != odd.headers["x-request-id"]


def test_the_worker_delivers_a_row_under_the_id_of_the_request_that_caused_it(
    engine: Engine,
) -> None:
    seen: list[str | None] = []

    def poster(payload: dict[str, Any], record: AttemptRecord) -> dict[str, Any]:
        seen.append(requestlog.current())
        return {"ok": True}

    with requestlog.bound("req-42"), db_session(engine, write=True) as s:
        repositories.create(s, kind="ags", name="Gradebook", config={})
        awards.enqueue_issue(s, snapshot=snapshot(4, ags={"lineitem": "l", "user": "u"}))
        s.commit()
    with db_session(engine) as s:
        assert s.exec(select(OutboxMessage.request_id)).one() == "req-42"
    worker = Worker(engine, [AgsConnector(poster)])
    assert worker.run_once() == 1
    worker.close()
    assert seen == ["req-42"]
    assert requestlog.current() is None


def test_json_lines_carry_the_request_id_and_no_email() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(requestlog.RequestIdFilter())
    handler.addFilter(logredact.RedactSecrets())
    handler.setFormatter(requestlog.JsonFormatter())
    log = logging.getLogger("microcred.test.json")
    log.addHandler(handler)
    log.propagate = False
    try:
        with requestlog.bound("req-7"):
            log.warning("credly said %s already holds it", "ada@example.org")
        log.error("outside any request")
    finally:
        log.removeHandler(handler)
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["request_id"] == "req-7" and first["level"] == "WARNING"
    assert "ada@example.org" not in first["message"] and "[email]" in first["message"]
    assert "request_id" not in second and second["message"] == "outside any request"


def test_the_serve_logging_config_writes_json_when_asked() -> None:
    config = logredact.uvicorn_log_config(json_lines=True)
    assert config["handlers"]["access"]["formatter"] == "json"
    assert "request_id" in config["handlers"]["access"]["filters"]
    assert logredact.uvicorn_log_config()["handlers"]["access"]["formatter"] == "access"


def test_the_sample_dashboard_charts_only_metrics_the_service_serves(
    observed: TestClient,
) -> None:
    from pathlib import Path

    dashboard = json.loads(
        (Path(__file__).parents[1] / "deploy" / "grafana-dashboard.json").read_text()
    )
    observed.get("/healthz")
    observed.post("/verify", content=b"{}")
    suffixes = {
        "counter": ["", "_total"],
        "histogram": ["_bucket", "_count", "_sum"],
        "gauge": [""],
    }
    served = {
        name + suffix
        for name, kind in re.findall(r"^# TYPE (microcred_\w+) (\w+)$", _scrape(observed), re.M)
        for suffix in suffixes[kind]
    }
    charted = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"microcred_\w+", target["expr"])
    }
    assert charted and charted <= served, charted - served


@pytest.mark.parametrize(("level", "httpx_level"), [("INFO", logging.WARNING), ("DEBUG", 0)])
def test_httpx_request_lines_show_only_at_debug(
    level: str, httpx_level: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    httpx_logger = logging.getLogger("httpx")
    monkeypatch.setattr(httpx_logger, "level", logging.NOTSET)
    requestlog.configure(level=level, json_lines=False)
    assert httpx_logger.level == httpx_level
