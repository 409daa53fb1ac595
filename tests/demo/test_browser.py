"""The demo LMS in headless Chromium with third-party cookies blocked: launches still work.

The LMS (http://localhost:<port>) and the tool (http://127.0.0.1:<port>) are different sites,
so everything the tool sets inside the LMS iframe is a third-party cookie. The browser runs a
persistent profile whose preferences say "block third-party cookies" (the setting behind
chrome://settings/cookies); a probe proves the setting is in effect before the launch is
trusted to have worked without those cookies.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect, sync_playwright
from sqlalchemy import Engine

from service.demo import bootstrap, server
from service.settings import Settings
from tests.timing import HANG

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
# chrome://settings/cookies "Block third-party cookies" (CookieControlsMode::kBlockThirdParty).
BLOCK_THIRD_PARTY = {"profile": {"cookie_controls_mode": 1, "block_third_party_cookies": True}}
# As above, and no cookies at all for the tool's site, partitioned ones included: a browser
# without CHIPS. Only LTI platform storage can carry the login state then.
BLOCK_TOOL_SITE = {
    "profile": {
        **BLOCK_THIRD_PARTY["profile"],
        "content_settings": {"exceptions": {"cookies": {"http://127.0.0.1:*,*": {"setting": 2}}}},
    }
}
ALLOW_THIRD_PARTY = {"profile": {"cookie_controls_mode": 0, "block_third_party_cookies": False}}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium); "
        "scripts/test.sh installs it in CI",
    ),
]

# Records the platform-storage messages the LMS page and its storage frame receive.
RECORD_MESSAGES = """
window.__lti = [];
window.addEventListener("message", function (e) {
  if (e.data && typeof e.data.subject === "string") window.__lti.push(e.data.subject);
});
"""


@dataclass(frozen=True)
class Demo:
    tool_url: str
    lms_url: str


@pytest.fixture
def demo(settings: Settings, engine: Engine) -> Iterator[Demo]:
    tool_socket = server.bind("127.0.0.1", 0)
    lms_socket = server.bind("127.0.0.1", 0)
    tool_url = f"http://127.0.0.1:{tool_socket.getsockname()[1]}"
    lms_url = f"http://localhost:{lms_socket.getsockname()[1]}"
    apps = bootstrap.build(settings, tool_url=tool_url, lms_url=lms_url, engine=engine)
    try:
        with server.running(apps.tool, apps.lms, tool_socket=tool_socket, lms_socket=lms_socket):
            yield Demo(tool_url=tool_url, lms_url=lms_url)
    finally:
        _close_tool_http(apps.tool)


def _close_tool_http(tool: Any) -> None:
    # Work-around: the tool app opens an httpx client lazily (service/lti/http.py) and never
    # closes it on shutdown; close it here so no socket is left for the garbage collector.
    client = getattr(tool.state, "lti_http", None)
    if client is not None:
        client.close()


class _Probe(http.server.BaseHTTPRequestHandler):
    """A third-party page on the tool's site: sets a plain and a partitioned cookie."""

    seen: list[str | None]

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/check":
            self.seen.append(self.headers.get("Cookie"))
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        if self.path == "/set":
            self.send_header("Set-Cookie", "probe=1; SameSite=None; Secure; Path=/")
            self.send_header(
                "Set-Cookie", "probe_chips=1; SameSite=None; Secure; Path=/; Partitioned"
            )
        self.end_headers()
        self.wfile.write(b"<!doctype html><title>probe</title>ok")


@pytest.fixture
def probe() -> Iterator[tuple[str, list[str | None]]]:
    seen: list[str | None] = []
    handler = type("Probe", (_Probe,), {"seen": seen})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", seen
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


def _context(playwright: Any, profile: Path, prefs: dict[str, Any]) -> Any:
    (profile / "Default").mkdir(parents=True)
    (profile / "Default" / "Preferences").write_text(json.dumps(prefs))
    context = playwright.chromium.launch_persistent_context(
        str(profile),
        executable_path=str(CHROMIUM),
        args=ARGS,
        headless=True,
        viewport={"width": 1400, "height": 950},
    )
    # a hang guard for every click and navigation (Playwright's own is 30 s): a launch
    # through the demo LMS can take longer than that on a loaded CI host
    context.set_default_timeout(HANG * 1000)
    return context


@pytest.fixture
def browser(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    prefs = getattr(request, "param", BLOCK_THIRD_PARTY)
    with sync_playwright() as p:
        context = _context(p, tmp_path / "profile", prefs)
        try:
            yield context
        finally:
            context.close()


def _third_party_probe(context: Any, lms_url: str, probe_url: str) -> dict[str, Any]:
    """Embed the probe in an LMS page, reload it in the frame; report what was kept and sent."""
    page = context.new_page()
    page.goto(lms_url + "/")
    page.evaluate(
        # page.evaluate has no timeout of its own: a frame that never loads fails the test
        # after HANG seconds with this message instead of hanging the lane.
        """([url, hang]) => new Promise((done, fail) => {
             setTimeout(() => fail(new Error("the probe frame did not load twice")), hang);
             const f = document.createElement("iframe");
             f.src = url + "/set";
             f.onload = () => { f.onload = () => done(); f.src = url + "/check"; };
             document.body.appendChild(f);
           })""",
        [probe_url, HANG * 1000],
    )
    cookies = {c["name"]: c for c in context.cookies() if c["domain"] == "127.0.0.1"}
    page.close()
    return cookies


@pytest.mark.parametrize("blocked", [True, False], ids=["blocked", "control-allowed"])
def test_the_profile_setting_decides_third_party_cookies(
    tmp_path: Path,
    probe: tuple[str, list[str | None]],
    settings: Settings,
    engine: Engine,
    blocked: bool,
) -> None:
    probe_url, seen = probe
    lms_socket = server.bind("127.0.0.1", 0)
    lms_url = f"http://localhost:{lms_socket.getsockname()[1]}"
    tool_socket = server.bind("127.0.0.1", 0)
    apps = bootstrap.build(
        settings,
        tool_url=f"http://127.0.0.1:{tool_socket.getsockname()[1]}",
        lms_url=lms_url,
        engine=engine,
    )
    prefs = BLOCK_THIRD_PARTY if blocked else ALLOW_THIRD_PARTY
    with (
        server.running(apps.tool, apps.lms, tool_socket=tool_socket, lms_socket=lms_socket),
        sync_playwright() as p,
    ):
        context = _context(p, tmp_path / "profile", prefs)
        try:
            cookies = _third_party_probe(context, lms_url, probe_url)
        finally:
            context.close()
            _close_tool_http(apps.tool)
    # The partitioned (CHIPS) cookie is allowed either way: it is keyed to the LMS site.
    assert cookies["probe_chips"]["partitionKey"] == "http://localhost"
    if blocked:
        assert "probe" not in cookies
        assert seen == ["probe_chips=1"]
    else:
        assert "partitionKey" not in cookies["probe"] or not cookies["probe"]["partitionKey"]
        assert seen == ["probe=1; probe_chips=1"]


def _launch(
    browser: Any, demo: Demo, testid: str, requests: list[str] | None = None
) -> tuple[Any, Any]:
    page = browser.new_page()
    if requests is not None:
        page.on("request", lambda r: requests.append(r.url))
    page.add_init_script(RECORD_MESSAGES)
    page.goto(demo.lms_url + "/")
    page.get_by_test_id(testid).click()
    page.wait_for_url(demo.lms_url + "/course/tool?*")
    frame = page.frame_locator("[data-testid=tool-frame]")
    return page, frame


def expect_landing(frame: Any, name: str, role: str) -> None:
    """The tool's landing page for this person and course role (its "signed in as" line)."""
    who = frame.locator("p.meta")
    expect(who).to_contain_text(f"Signed in as {name}")
    expect(who).to_contain_text("Data Literacy 101")
    expect(who).to_contain_text(f"role: {role}")
    expect(frame.locator("h1")).to_be_visible()


def _tool_frame(page: Any, demo: Demo) -> Any:
    (frame,) = [f for f in page.frames if f.url.startswith(demo.tool_url)]
    return frame


def test_learner_launch_succeeds_with_third_party_cookies_blocked(
    browser: Any, demo: Demo, probe: tuple[str, list[str | None]]
) -> None:
    probe_url, _ = probe
    assert "probe" not in _third_party_probe(browser, demo.lms_url, probe_url)
    requests: list[str] = []
    page, frame = _launch(browser, demo, "launch-learner-u-learn-1", requests)
    expect_landing(frame, "Amara Okafor", "learner")
    # The partitioned cookie works, so the session token is in no URL: not the frame's
    # address (nor its history), not any request the page made, not its links.
    assert _tool_frame(page, demo).url == demo.tool_url + "/app"
    tool_requests = [u for u in requests if u.startswith(demo.tool_url)]
    assert any(u.endswith("/lti/launch") for u in tool_requests)
    assert [u for u in tool_requests if "mc_session" in u] == []
    assert "mc_session" not in _tool_frame(page, demo).content()
    frame.get_by_role("link", name="My progress").click()
    expect(frame.locator("h1")).to_be_visible()
    expect_landing(frame, "Amara Okafor", "learner")
    assert _tool_frame(page, demo).url == demo.tool_url + "/app/me"
    # The tool found the LMS's platform storage and stored its state there too.
    assert "lti.capabilities" in page.evaluate("window.__lti")
    assert "lti.put_data" in page.frame(name="post_message_forwarding").evaluate("window.__lti")
    unpartitioned = [
        c["name"]
        for c in browser.cookies()
        if c["domain"] == "127.0.0.1" and not c.get("partitionKey")
    ]
    assert unpartitioned == []
    page.screenshot(
        path=str(Path("/tmp/shots").mkdir(exist_ok=True) or "/tmp/shots/demo-browser-learner.png")
    )


@pytest.mark.parametrize("browser", [BLOCK_TOOL_SITE], indirect=True, ids=["no-tool-cookies"])
def test_launch_state_travels_through_platform_storage_when_no_cookie_survives(
    browser: Any, demo: Demo, probe: tuple[str, list[str | None]]
) -> None:
    probe_url, seen = probe
    assert _third_party_probe(browser, demo.lms_url, probe_url) == {}
    assert seen == [None]
    page, frame = _launch(browser, demo, "launch-learner-u-learn-3")
    expect_landing(frame, "Sofia Rossi", "learner")
    storage = page.frame(name="post_message_forwarding").evaluate("window.__lti")
    assert "lti.put_data" in storage and "lti.get_data" in storage
    assert [c for c in browser.cookies() if c["domain"] == "127.0.0.1"] == []
    # No cookie: the token rides in the URL and in the page's links, and they work.
    assert "/app?mc_session=" in _tool_frame(page, demo).url
    frame.get_by_role("link", name="My progress").click()
    expect_landing(frame, "Sofia Rossi", "learner")
    assert "/app/me?mc_session=" in _tool_frame(page, demo).url
    page.screenshot(
        path=str(
            Path("/tmp/shots").mkdir(exist_ok=True)
            or "/tmp/shots/demo-browser-learner-no-cookies.png"
        )
    )


def test_instructor_launch_lands_on_the_instructor_page(browser: Any, demo: Demo) -> None:
    page, frame = _launch(browser, demo, "launch-instructor")
    expect_landing(frame, "Grace Hopper", "instructor")
    page.get_by_text("What the LMS sent to the tool").click()
    claims = page.get_by_test_id("launch-claims")
    expect(claims).to_contain_text('"sub": "u-instr-1"')
    expect(claims).to_contain_text("membership#Instructor")


def test_instructor_places_a_link_through_deep_linking(browser: Any, demo: Demo) -> None:
    page = browser.new_page()
    page.goto(demo.lms_url + "/course/tool?as=u-instr-1&message=deeplink")
    frame = page.frame_locator("[data-testid=tool-frame]")
    expect(frame.get_by_role("button", name="Add to course")).to_be_visible()
    frame.get_by_role("button", name="Add to course").click()
    expect(frame.get_by_test_id("placed-links")).to_contain_text("Competency credentials")
    # The placed link shows in the course and launches the tool as a learner.
    page.goto(demo.lms_url + "/")
    expect(page.get_by_test_id("course-content")).to_contain_text("Competency credentials")
    page.get_by_role("link", name="Open as Amara").click()
    expect_landing(page.frame_locator("[data-testid=tool-frame]"), "Amara Okafor", "learner")
    expect(page.locator("h1")).to_have_text("Competency credentials")


# Each message is answered or, after ``hang`` ms (a hang guard, every call expects an answer),
# resolves to "timeout".
STORAGE_CALL = """async ([msgs, target, hang]) => {
  const win = target === "_parent" ? window.parent : window.parent.frames[target];
  const out = [];
  for (const msg of msgs) {
    out.push(await new Promise(resolve => {
      const id = "t-" + Math.random();
      const timer = setTimeout(() => resolve("timeout"), hang);
      window.addEventListener("message", function on(e) {
        if (!e.data || e.data.message_id !== id) return;
        window.removeEventListener("message", on); clearTimeout(timer); resolve(e.data);
      });
      win.postMessage(Object.assign({message_id: id}, msg), "*");
    }));
  }
  return out;
}"""


def test_platform_storage_keeps_values_per_tool_and_refuses_other_origins(
    browser: Any, demo: Demo, probe: tuple[str, list[str | None]]
) -> None:
    page, frame = _launch(browser, demo, "launch-learner-u-learn-2")
    expect_landing(frame, "Lucas Moreau", "learner")
    tool = _tool_frame(page, demo)
    put = {"subject": "lti.put_data", "key": "k1", "value": "v1"}
    get = {"subject": "lti.get_data", "key": "k1"}
    delete = {"subject": "lti.put_data", "key": "k1", "value": None}
    caps, stored, read, deleted, gone, bad = tool.evaluate(
        STORAGE_CALL,
        [
            [
                {"subject": "lti.capabilities"},
                put,
                get,
                delete,
                get,
                {"subject": "lti.put_data", "key": "", "value": "x"},
            ],
            "post_message_forwarding",
            HANG * 1000,
        ],
    )
    assert caps["subject"] == "lti.capabilities.response"
    assert {"subject": "lti.put_data", "frame": "post_message_forwarding"} in caps[
        "supported_messages"
    ]
    assert stored["subject"] == "lti.put_data.response" and stored["value"] == "v1"
    assert read["subject"] == "lti.get_data.response" and read["value"] == "v1"
    assert deleted["value"] is None and gone["value"] is None
    assert bad["error"]["code"] == "bad_request"
    # Another origin (the probe: same host, other port) is refused and never sees the value.
    tool.evaluate(STORAGE_CALL, [[put], "post_message_forwarding", HANG * 1000])
    probe_url, _ = probe
    page.evaluate(
        """url => new Promise(done => {
             const f = document.createElement("iframe");
             f.name = "intruder"; f.src = url + "/page"; f.onload = () => done();
             document.body.appendChild(f);
           })""",
        probe_url,
    )
    intruder = page.frame(name="intruder")
    (refused,) = intruder.evaluate(STORAGE_CALL, [[get], "post_message_forwarding", HANG * 1000])
    assert refused["error"]["code"] == "unauthorized" and "value" not in refused
