"""Screenshots of the instructor, competencies, learner and admin pages at iframe size.

Runs the tool and the demo LMS on loopback (a fresh data folder), seeds the demo as
``microcred demo`` does, launches for real, syncs from the demo's Moodle web services,
delivers the outbox once (one target points at a closed port, so the admin page has a
failure to show), and saves ``docs/screenshots/{instructor,competencies,learner,admin}.png`` and
``admin-{repositories,thresholds}.png``
(1000 x 700, what the LMS frame shows). Usage: ``python scripts/flows_screenshots.py [DIR]``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["MICROCRED_DATA_DIR"] = tempfile.mkdtemp(prefix="microcred-shots-")

import httpx  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from service import secretbox  # noqa: E402
from service.db import migrate  # noqa: E402
from service.db.engine import make_engine  # noqa: E402
from service.db.engine import session as db_session  # noqa: E402
from service.delivery import repositories  # noqa: E402
from service.delivery.worker import Worker, build_connectors  # noqa: E402
from service.demo import bootstrap, seed, server  # noqa: E402
from service.flows import gradebook  # noqa: E402
from service.settings import Settings  # noqa: E402
from tests.flows.conftest import Live, launch, pull  # noqa: E402

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def main(out: Path) -> None:
    settings = Settings(data_dir=Path(os.environ["MICROCRED_DATA_DIR"]))
    secretbox.configure(secretbox.load_master_key(settings))
    migrate.upgrade(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    tool_socket, lms_socket = server.bind("127.0.0.1", 0), server.bind("127.0.0.1", 0)
    tool_url = f"http://127.0.0.1:{tool_socket.getsockname()[1]}"
    lms_url = f"http://localhost:{lms_socket.getsockname()[1]}"
    apps = bootstrap.build(settings, tool_url=tool_url, lms_url=lms_url, engine=engine)
    course_id = seed.seed(engine, apps.config, platform_id=apps.platform_id)
    with db_session(engine, write=True) as s:
        repositories.create(
            s,
            kind="webhook",
            name="Partner wallet",
            config={"url": "http://127.0.0.1:9/hook"},
            secret="demo-secret",  # noqa: S106
        )
        s.commit()
    with server.running(apps.tool, apps.lms, tool_socket=tool_socket, lms_socket=lms_socket):
        live = Live(apps, tool_url, lms_url, course_id, engine, apps.tool.state.settings, [])
        instructor = launch(live, "u-instr-1")
        instructor.post("/app/course/sync", {})
        pull(live)  # what the worker's sync and evaluation jobs do with the queued pull
        with httpx.Client(timeout=10) as http:
            poster = gradebook.ags_poster(engine, http)
            worker = Worker(engine, build_connectors(engine, ags_poster=poster), threads=1)
            for _ in range(3):
                worker.run_once()
            worker.close()
        learner = launch(live, "u-learn-3")
        admin = launch(live, "u-admin-1")  # the demo's site administrator
        shots = (
            ("instructor", instructor, "/app/course"),
            ("competencies", instructor, "/app/setup"),
            ("learner", learner, "/app/me"),
            ("admin", admin, "/app/admin"),
            ("admin-repositories", admin, "/app/admin/repositories"),
            ("admin-thresholds", admin, "/app/admin/thresholds"),
        )
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1000, "height": 700})
            for name, tab, path in shots:
                page.goto(f"{tool_url}{path}?mc_session={tab.token}")
                page.screenshot(path=str(out / f"{name}.png"))
            browser.close()
        for client in live.clients:
            client.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshots")
