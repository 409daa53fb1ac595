"""Smoke test of an installed microcred: start `microcred demo`, launch as a learner over HTTP.

    python scripts/smoke.py --microcred VENV/bin/microcred
    python scripts/smoke.py --demo http://localhost:8001     (a demo already running)

Starts the demo (tool and demo LMS) on free ports in a temporary folder, then does what the
demo course page's *Launch as learner* does in a browser: the LMS's login initiation form →
the tool's OIDC login → the LMS's authorization answer (a form with the signed id_token) →
the tool's /lti/launch → the learner's page, which must show the learner's name and role and
(once the demo's worker has pulled and evaluated what the launch queued: the page is
reloaded while it says an evaluation is pending, for at most a minute) their competencies
with their levels.
Then it stops the demo. Exit status 0 when all of that worked, 1 with a message saying what
failed and what to do otherwise.

Standard library only, so it can report a broken environment instead of failing to import.
The launch does without LTI platform storage (the login initiation's lti_storage_target,
which needs the browser's postMessage): the state travels in the tool's cookie, as with an
LMS that offers no platform storage.
"""

from __future__ import annotations

import argparse
import html
import http.cookiejar
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

LEARNER = ("u-learn-1", "Amara Okafor")
COURSE = "Data Literacy 101"
START_DEADLINE = 120.0  # seconds: generous; only a demo that never serves reaches it
HTTP_TIMEOUT = 60.0
PENDING_DEADLINE = 60.0  # seconds the worker may take to pull and evaluate the learner

URL_LINES = {
    "lms": re.compile(r"Open the demo course:\s+(http://\S+?)/?$", re.M),
    "tool": re.compile(r"The tool:\s+(http://\S+?)/?\s", re.M),
}
IMPORT_ERROR = re.compile(r"^(?:\w+\.)*(ModuleNotFoundError|ImportError): (.+)$", re.M)
FIX_DEPENDENCY = (
    "what to do: declare the distribution that provides it in pyproject.toml "
    "[project].dependencies, run `bash scripts/lock.sh` and commit requirements/*.txt "
    "(the README's run command installs from requirements/runtime.txt)."
)


class SmokeFailure(Exception):
    """One step failed: what was seen (``details``), then which step and what to do."""

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join("    " + line for line in text.rstrip().splitlines()[-lines:])


def _diagnose_exit(log: str, code: int) -> str:
    found = IMPORT_ERROR.findall(log)
    if found:
        kind, detail = found[-1]
        return (
            f"microcred demo exited with status {code} before it served: {kind}: {detail}\n"
            f"A runtime dependency is missing from the installed environment.\n{FIX_DEPENDENCY}"
        )
    return (
        f"microcred demo exited with status {code} before it served (its output is above).\n"
        "what to do: run `microcred demo` in a fresh checkout as the README says and fix the "
        "error it prints."
    )


class Demo:
    """`microcred demo` on free ports, its output in a log file."""

    def __init__(self, microcred: str, workdir: Path) -> None:
        self.log_path = workdir / "demo.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MICROCRED_")}
        env["MICROCRED_DATA_DIR"] = str(workdir / "var")
        env["PYTHONUNBUFFERED"] = "1"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(  # noqa: S603 - our own CLI, given on the command line
            [microcred, "demo", "--port", "0", "--lms-port", "0"],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_urls(self) -> dict[str, str]:
        deadline = time.monotonic() + START_DEADLINE
        while time.monotonic() < deadline:
            code = self.proc.poll()
            log = self.log()
            urls = {k: m.group(1) for k, rx in URL_LINES.items() if (m := rx.search(log))}
            if len(urls) == len(URL_LINES) and self._serving(urls):
                return urls
            if code is not None:
                raise SmokeFailure(_diagnose_exit(log, code), _tail(log))
            time.sleep(0.2)
        raise SmokeFailure(
            f"microcred demo did not serve within {START_DEADLINE:.0f} s (its output is above).\n"
            "what to do: run `microcred demo` by hand and see where it stops.",
            _tail(self.log()),
        )

    @staticmethod
    def _serving(urls: dict[str, str]) -> bool:
        for url in urls.values():
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=5) as resp:  # noqa: S310
                    if resp.status != 200:
                        return False
            except OSError:
                return False
        return True

    def stop(self) -> str | None:
        """Ctrl-C, as a user stops it; None when it stopped, else what went wrong."""
        problem = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                problem = "microcred demo did not stop within 30 s of Ctrl-C (SIGINT); killed it"
        self._log.close()
        return problem


class Browser:
    """Enough of a browser for the launch: cookies, redirects, auto-posted forms."""

    def __init__(self) -> None:
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def open(self, step: str, url: str, form: dict[str, str] | None = None) -> tuple[str, str]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        try:
            with self.opener.open(url, data=data, timeout=HTTP_TIMEOUT) as resp:
                return resp.geturl(), resp.read().decode("utf-8", errors="replace")
        except urllib.error.HTTPError as exc:
            body = exc.read().decode("utf-8", errors="replace")
            raise SmokeFailure(
                f"{step}: {'POST' if data else 'GET'} {exc.url} answered {exc.code} (the page is "
                "above).\nwhat to do: run `microcred demo`, open the demo course and launch as "
                "the learner in a browser to see the same error.",
                _tail(_text(body), 25),
            ) from exc
        except OSError as exc:
            raise SmokeFailure(f"{step}: {url} could not be reached: {exc}") from exc


def _text(page: str) -> str:
    page = re.sub(r"(?s)<(script|style)\b.*?</\1>", " ", page)
    return re.sub(r"[ \t]+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page))).strip()


def autopost(step: str, page: str) -> tuple[str, dict[str, str]]:
    """The action and hidden fields of an auto-submitted form (the LMS's launch pages)."""
    match = re.search(r'<form id="autopost" method="post" action="([^"]+)">', page)
    if not match:
        raise SmokeFailure(
            f"{step}: expected an auto-submitted form (got the page above)", _tail(_text(page))
        )
    fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page)
    return html.unescape(match.group(1)), {html.unescape(k): html.unescape(v) for k, v in fields}


def launch_as_learner(lms_url: str) -> str:
    user_id, name = LEARNER
    browser = Browser()
    _, page = browser.open(
        "the demo course's launch page", f"{lms_url}/launch?as={urllib.parse.quote(user_id)}"
    )
    login_url, fields = autopost("the demo LMS's login initiation", page)
    tool = urllib.parse.urlsplit(login_url)
    tool_url = f"{tool.scheme}://{tool.netloc}"
    fields.pop("lti_storage_target", None)  # no platform storage: the cookie carries the state
    # The tool's login redirects to the LMS's authorization endpoint, which answers with the
    # form that carries the signed id_token to the tool's launch URL.
    _, page = browser.open("the tool's OIDC login (/lti/login)", login_url, fields)
    launch_url, fields = autopost("the demo LMS's authorization answer (/auth)", page)
    if "id_token" not in fields:
        raise SmokeFailure(f"the LMS's answer carries no id_token: fields {sorted(fields)}")
    final_url, page = browser.open("the tool's launch (/lti/launch)", launch_url, fields)
    # The launch only queues a pull and the learner's evaluation; the demo's in-process
    # worker runs them within seconds. The page says so (the pending note) and reloads
    # itself until then, as this loop does.
    deadline = time.monotonic() + PENDING_DEADLINE
    while 'data-testid="pending"' in page and time.monotonic() < deadline:
        time.sleep(1.0)
        final_url, page = browser.open("the learner's page, reloaded", final_url)
    text = _text(page)
    expected = [f"Signed in as {name}", COURSE, "role: learner", "Your micro-credentials"]
    missing = [e for e in expected if e not in text]
    if missing or not final_url.startswith(tool_url + "/app"):
        raise SmokeFailure(
            f"the launch did not land on the learner's page (at {final_url.split('?')[0]}, missing "
            f"{missing}; the page is above)",
            _tail(text, 25),
        )
    # The worker pulled the learner's results from the LMS and evaluated them: each
    # competency card shows a level, none is left at "No results yet".
    levels = re.findall(r'<span class="lvl lvl-(\w+)">', page)
    if not levels or "No results yet" in text:
        still = 'data-testid="pending"' in page
        raise SmokeFailure(
            "the learner's page (above) shows no competency levels: "
            + (
                f"its evaluation was still pending after {PENDING_DEADLINE:.0f} s (is the "
                "demo's worker running? its log says)"
                if still
                else "the worker did not pull and evaluate the learner's results"
            ),
            _tail(text, 25),
        )
    where = final_url.split("?")[0]  # the query may carry the session token: never print it
    return f"{name}'s page at {where} shows levels {', '.join(levels)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--microcred", help="the installed microcred command: start its demo")
    which.add_argument("--demo", metavar="LMS_URL", help="the demo LMS of a running demo")
    args = parser.parse_args(argv)
    if args.demo:
        try:
            print(
                f"smoke: OK: learner launch over HTTP: {launch_as_learner(args.demo.rstrip('/'))}"
            )
        except SmokeFailure as failure:
            if failure.details:
                print(failure.details)
            print(f"smoke: FAILED: {failure}", flush=True)
            return 1
        return 0
    microcred = Path(args.microcred).absolute()
    if not microcred.is_file():
        print(f"smoke: FAILED: {microcred} does not exist: is microcred installed?")
        return 1
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="microcred-smoke-") as tmp:
        demo = Demo(str(microcred), Path(tmp))
        try:
            urls = demo.wait_for_urls()
            print(f"smoke: demo serving (tool {urls['tool']}, LMS {urls['lms']})", flush=True)
            seen = launch_as_learner(urls["lms"])
        except SmokeFailure as failure:
            demo.stop()
            if failure.details:
                print(failure.details)
            print(f"smoke: FAILED: {failure}", flush=True)
            return 1
        problem = demo.stop()
        if problem:
            print(f"{_tail(demo.log())}\nsmoke: FAILED: {problem}", flush=True)
            return 1
    print(f"smoke: OK in {time.monotonic() - started:.1f} s: learner launch over HTTP: {seen}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
