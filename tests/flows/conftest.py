"""The tool and the demo LMS on loopback, seeded as ``microcred demo`` seeds them."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import Engine

from service import outbound
from service.demo import bootstrap, seed, server
from service.flows import evaluating, evaluation_queue, syncing
from service.lti.cookies import LEGACY_SUFFIX
from service.settings import Settings
from service.web.auth import SESSION_COOKIE


@dataclass
class Live:
    apps: bootstrap.DemoApps
    tool_url: str
    lms_url: str
    course_id: int
    engine: Engine
    settings: Settings
    clients: list[httpx.Client]


@pytest.fixture
def live(settings: Settings, engine: Engine) -> Iterator[Live]:
    tool_socket = server.bind("127.0.0.1", 0)
    lms_socket = server.bind("127.0.0.1", 0)
    tool_url = f"http://127.0.0.1:{tool_socket.getsockname()[1]}"
    lms_url = f"http://localhost:{lms_socket.getsockname()[1]}"
    apps = bootstrap.build(settings, tool_url=tool_url, lms_url=lms_url, engine=engine)
    course_id = seed.seed(engine, apps.config, platform_id=apps.platform_id)
    tool_settings = apps.tool.state.settings
    with server.running(apps.tool, apps.lms, tool_socket=tool_socket, lms_socket=lms_socket):
        live = Live(apps, tool_url, lms_url, course_id, engine, tool_settings, [])
        yield live
        for client in live.clients:
            client.close()
    # The tool opens its LTI httpx client lazily and never closes it on shutdown.
    lti_http = getattr(apps.tool.state, "lti_http", None)
    if lti_http is not None:
        lti_http.close()


def pull(live: Live) -> list[syncing.SyncOutcome]:
    """What the worker's jobs do when they next run: the scheduled sync pulls every due
    course (roster and results, over HTTP from the demo LMS) and queues who changed, then
    the evaluation job evaluates and awards them."""
    with outbound.client(outbound.policy(live.settings), timeout=30.0) as http:
        outcomes = syncing.run_due_syncs(
            live.engine, settings=live.settings, http=http, worker="test"
        )
    evaluate(live)
    return outcomes


def evaluate(live: Live) -> evaluating.Summary:
    """What the worker's evaluation job does when it next runs: evaluate and award every
    queued learner (requests only queue them)."""
    total = evaluating.Summary()
    while True:
        n, summary = evaluation_queue.run_evaluation_jobs(live.engine, settings=live.settings)
        if not n:
            return total
        for name, value in summary.__dict__.items():
            if isinstance(value, list):
                getattr(total, name).extend(value)
            else:
                setattr(total, name, getattr(total, name) + value)


def _fields(page: str) -> tuple[str, dict[str, str]]:
    action = re.search(r'<form[^>]*action="([^"]+)"', page)
    assert action, page[:2000]
    pairs = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page)
    return html.unescape(action.group(1)), {html.unescape(k): html.unescape(v) for k, v in pairs}


@dataclass
class Tab:
    """A browser session in the tool after a launch, the token carried as without cookies
    (the client keeps no cookie of the tool)."""

    http: httpx.Client
    token: str

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path, params={"mc_session": self.token})

    def post(
        self, path: str, data: dict[str, str | list[str]], csrf: str | None = None
    ) -> httpx.Response:
        body: dict[str, str | list[str]] = {"mc_session": self.token} | data
        if csrf is not None:
            body["csrf"] = csrf
        return self.http.post(path, data=body)


def launch(live: Live, user_id: str) -> Tab:
    """A real launch: the demo LMS's login initiation, its signed id_token, the tool's checks."""
    lms = httpx.Client(base_url=live.lms_url, timeout=30)
    tool = httpx.Client(base_url=live.tool_url, timeout=60)
    page = lms.get("/launch", params={"as": user_id, "message": "resource"})
    assert page.status_code == 200, page.text
    action, fields = _fields(page.text)
    login = tool.post(action, data=fields)
    if login.status_code == 302:
        auth_url = login.headers["location"]
    else:  # the page that also keeps the state in platform storage, then goes on
        found = re.search(r'"auth_url":\s*"([^"]+)"', login.text)
        assert login.status_code == 200 and found, login.text[:500]
        auth_url = json.loads(f'"{found.group(1)}"')
    auth = lms.get(auth_url)
    assert auth.status_code == 200, auth.text
    action, fields = _fields(auth.text)
    landed = tool.post(action, data=fields)
    if landed.status_code == 200 and "/lti/launch/confirm" in landed.text:
        pytest.fail("the launch needed platform storage; the test client keeps cookies")
    assert landed.status_code == 303, landed.text
    assert "mc_session" not in landed.headers["location"]  # the cookie carries it
    token = tool.cookies[SESSION_COOKIE + LEGACY_SUFFIX]  # what a cookieless tab would carry
    tool.cookies.clear()
    lms.close()
    live.clients.append(tool)
    return Tab(tool, token)
