"""Headless Chromium, third-party cookies blocked: the tool (http://localhost) runs in an iframe
of a platform page on another site (http://127.0.0.1). With CHIPS the partitioned state cookie
carries the launch; with the cookie stripped from the launch request, the LTI platform-storage
postMessage flow (lti.capabilities / lti.put_data / lti.get_data) carries it instead."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.lti.platform import C, FakePlatform
from tests.lti.test_serve_e2e import ROOT, _cli, _free_port, wait_until_serving
from tests.timing import HANG

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs /usr/bin/chromium"),
]

PARENT_JS = """
window.addEventListener("message", function (e) {
  const d = e.data || {};
  if (d.subject !== "lti.capabilities") return;
  e.source.postMessage({subject: "lti.capabilities.response", message_id: d.message_id,
    supported_messages: [{subject: "lti.capabilities"},
      {subject: "lti.put_data", frame: "post_message_forwarding"},
      {subject: "lti.get_data", frame: "post_message_forwarding"}]}, e.origin);
});
"""

FORWARDER_JS = """
const store = {};
window.addEventListener("message", function (e) {
  const d = e.data || {};
  if (d.subject === "lti.put_data") {
    store[e.origin + "|" + d.key] = d.value;
    window.top.__puts = (window.top.__puts || 0) + 1;
    e.source.postMessage({subject: "lti.put_data.response", message_id: d.message_id,
                          key: d.key, value: d.value}, e.origin);
  } else if (d.subject === "lti.get_data") {
    window.top.__gets = (window.top.__gets || 0) + 1;
    e.source.postMessage({subject: "lti.get_data.response", message_id: d.message_id,
                          key: d.key, value: store[e.origin + "|" + d.key]}, e.origin);
  }
});
"""


class PlatformSite:
    def __init__(self, plat: FakePlatform, tool: str) -> None:
        self.plat = plat
        self.tool = tool
        self.port = int(urlsplit(plat.issuer).port or 0)

    def page(self, path: str, query: dict[str, str]) -> tuple[str, str]:
        p = self.plat
        if path == "/jwks":
            return "application/json", json.dumps(p.jwks())
        if path == "/forwarder":
            return "text/html", f"<!doctype html><script>{FORWARDER_JS}</script>"
        if path == "/course":
            login = (
                self.tool
                + "/lti/login?"
                + urlencode(
                    {
                        "iss": p.issuer,
                        "login_hint": "u1",
                        "target_link_uri": self.tool + "/lti/launch",
                        "client_id": p.client_id,
                        "lti_deployment_id": p.deployment_id,
                        "lti_message_hint": "m1",
                        "lti_storage_target": "post_message_forwarding",
                    }
                )
            )
            return "text/html", (
                "<!doctype html><title>Course</title><h1>Biology (platform page)</h1>"
                "<iframe name='post_message_forwarding' src='/forwarder' hidden></iframe>"
                f"<iframe id='tool' src='{login}' width='900' height='500'></iframe>"
                f"<script>{PARENT_JS}</script>"
            )
        if path == "/auth":
            claims = p.claims(query["nonce"])
            claims[C + "target_link_uri"] = self.tool + "/lti/launch"
            token = p.token(claims)
            return "text/html", (
                f"<!doctype html><form id='f' method='post' action='{query['redirect_uri']}'>"
                f"<input type='hidden' name='id_token' value='{token}'>"
                f"<input type='hidden' name='state' value='{query['state']}'>"
                "<input type='hidden' name='lti_storage_target' value='post_message_forwarding'>"
                "</form><script>document.getElementById('f').submit()</script>"
            )
        return "text/plain", "not found"


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[str, str]]:
    platform_port, tool_port = _free_port(), _free_port()
    plat = FakePlatform(
        issuer=f"http://127.0.0.1:{platform_port}",
        client_id="browser-client",
        deployment_id="dep-b",
        key_index=4,
        kid="browser-key",
    )
    tool = f"http://localhost:{tool_port}"
    site = PlatformSite(plat, tool)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            ctype, body = site.page(parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()})
            data = body.encode()
            self.send_response(200)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", platform_port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = os.environ | {
        "MICROCRED_DATA_DIR": str(tmp_path),
        "MICROCRED_DATABASE_URL": f"sqlite:///{tmp_path / 'b.db'}",
        "MICROCRED_BASE_URL": tool,
        "MICROCRED_LOG_LEVEL": "WARNING",
    }
    _cli(
        env,
        "platform",
        "add",
        "--issuer",
        plat.issuer,
        "--client-id",
        plat.client_id,
        "--auth-url",
        plat.issuer + "/auth",
        "--token-url",
        plat.issuer + "/token",
        "--jwks-url",
        plat.issuer + "/jwks",
        "--deployment",
        plat.deployment_id,
    )
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--port", str(tool_port), "--no-worker"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_serving(tool, proc)
        yield plat.issuer + "/course", tool
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
        server.shutdown()
        server.server_close()


def _browser_run(course: str, *, strip_cookies: bool, shot: str) -> tuple[str, int, int]:
    from playwright.sync_api import Route, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
                "--test-third-party-cookie-phaseout",
            ],
        )
        try:
            context = browser.new_context()
            context.set_default_timeout(HANG * 1000)  # a hang guard, not a speed figure
            if strip_cookies:
                # The browser loses our cookie between login and launch (as Safari or a
                # strict cookie setting would): drop every cookie when the platform's auth
                # endpoint is reached.
                def forget(route: Route) -> None:
                    context.clear_cookies()
                    route.continue_()

                context.route("**/auth?*", forget)
            page = context.new_page()
            page.goto(course)
            frame = page.frame_locator("#tool")
            frame.locator("h1").filter(has_text="micro-credentials").wait_for()
            os.makedirs("/tmp/shots", exist_ok=True)
            page.screenshot(path=f"/tmp/shots/{shot}.png", full_page=True)
            text = frame.locator("main").inner_text()
            puts = page.evaluate("window.__puts || 0")
            gets = page.evaluate("window.__gets || 0")
            return text, int(puts), int(gets)
        finally:
            browser.close()


def test_iframe_launch_with_partitioned_cookie(setup: tuple[str, str]) -> None:
    course, _ = setup
    text, puts, gets = _browser_run(course, strip_cookies=False, shot="lti-iframe-cookie")
    assert "Your micro-credentials" in text
    assert puts == 2 and gets == 0  # storage written at login, not needed at launch


def test_iframe_launch_through_platform_storage(setup: tuple[str, str]) -> None:
    course, _ = setup
    text, puts, gets = _browser_run(course, strip_cookies=True, shot="lti-iframe-storage")
    assert "Your micro-credentials" in text
    assert puts == 2 and gets == 2
