"""The real-Moodle lane: a fresh Moodle 5.1 (tests/moodle/rig), microcred served as a user
runs it, headless Chromium between them.

It runs only when asked (``MICROCRED_MOODLE_LANE=1``, as scripts/suite.sh's Moodle step
does): it installs Moodle (a minute or more) and may apt-get PHP. Elsewhere every test is
skipped with the reason. The journey's steps are tests of one module that run in order;
once a step fails, the later ones are skipped (they would fail for the same reason).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.moodle import rig

LANE = os.environ.get("MICROCRED_MOODLE_LANE") == "1"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
SHOTS = Path(os.environ.get("MICROCRED_MOODLE_SHOTS", tempfile.gettempdir())) / "moodle-e2e-shots"
# What the lane measured (Moodle's setup steps, the award latency of the learner who never
# launches), printed at the end of the run and written to SHOTS/timings.json; never asserted.
LANE_FIGURES: dict[str, float] = {}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not LANE_FIGURES:
        return
    terminalreporter.section("real-Moodle lane figures (seconds)")
    for name, value in LANE_FIGURES.items():
        terminalreporter.write_line(f"{name}: {value}")
    if "award_latency_seconds" in LANE_FIGURES:
        terminalreporter.write_line(
            "award_latency_seconds: grade saved in Moodle -> credential issued, for a "
            "learner who never launches (scheduled sync, default interval)"
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here not in Path(str(item.fspath)).parents:
            continue
        item.add_marker(pytest.mark.moodle)
        if not LANE:
            item.add_marker(
                pytest.mark.skip(
                    reason="real-Moodle lane: runs with MICROCRED_MOODLE_LANE=1 "
                    "(scripts/suite.sh's Moodle step; installs Moodle and PHP)"
                )
            )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed and "journey" in getattr(item, "fixturenames", ()):
        item.module.__dict__.setdefault("_broken", item.name)  # type: ignore[union-attr]


@pytest.fixture(autouse=True)
def _after_a_broken_step(request: pytest.FixtureRequest) -> None:
    broken = request.module.__dict__.get("_broken")
    if broken and "journey" in request.fixturenames:
        pytest.skip(f"an earlier step of the journey failed ({broken})")


@pytest.fixture(scope="session")
def moodle() -> Iterator[rig.Moodle]:
    reason = rig.unavailable()
    if reason:
        pytest.skip(f"real-Moodle lane SKIPPED: {reason}")
    if not CHROMIUM.exists():
        pytest.skip("real-Moodle lane SKIPPED: no Chromium at /usr/bin/chromium")
    work = Path(tempfile.mkdtemp(prefix="moodle-e2e-"))
    site = rig.Moodle(work)
    try:
        site.start()
        yield site
    finally:
        site.stop()
        shutil.rmtree(work, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Microcred:
    """``microcred serve`` in a subprocess, with its own data folder and SQLite database."""

    data: Path
    port: int = field(default_factory=_free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.data / 'microcred.db'}"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MICROCRED_")}
        return env | {
            "MICROCRED_DATA_DIR": str(self.data),
            "MICROCRED_DATABASE_URL": self.database_url,
            "MICROCRED_BASE_URL": self.url,
            "MICROCRED_ENVIRONMENT": "development",  # loopback outbound calls allowed
            "MICROCRED_ISSUER_NAME": "microcred e2e",
            "MICROCRED_LOG_LEVEL": "WARNING",
            **extra,
        }

    def cli(self, *args: str, **env: str) -> str:
        """Run ``microcred ARGS`` as an operator would; fails the test on a non-zero exit."""
        done = subprocess.run(
            [str(Path(sys.executable).parent / "microcred"), *args],
            env=self.env(**env),
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        assert done.returncode == 0, f"microcred {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def start(self) -> None:
        with (self.data / "serve.log").open("wb") as log:
            self.proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "microcred"), "serve", "--port", str(self.port)],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((self.data / "serve.log").read_text()[-3000:])
            time.sleep(0.3)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def microcred(moodle: rig.Moodle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Microcred]:
    tool = Microcred(tmp_path_factory.mktemp("microcred"))
    tool.cli("migrate")
    tool.start()
    try:
        yield tool
    finally:
        tool.stop()


@pytest.fixture(scope="session")
def chromium(moodle: rig.Moodle) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()
