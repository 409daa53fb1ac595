"""Screenshots of the instructor, competencies, learner and admin pages at iframe size.

Runs the tool and the demo LMS on loopback (a fresh data folder), seeds the demo as
``microcred demo`` does, launches for real, syncs from the demo's Moodle web services,
delivers the outbox once (one target points at a closed port, so the admin page has a
failure to show), and saves ``docs/screenshots/{instructor,competencies,learner,admin}.png``
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
from sqlmodel import select  # noqa: E402

from service import flows, secretbox  # noqa: E402
from service.db import migrate  # noqa: E402
from service.db.engine import make_engine  # noqa: E402
from service.db.engine import session as db_session  # noqa: E402
from service.db.models import Deployment, Person, Platform  # noqa: E402
from service.delivery import repositories  # noqa: E402
from service.delivery.worker import Worker, build_connectors  # noqa: E402
from service.demo import bootstrap, seed, server  # noqa: E402
from service.lti.types import LaunchContext  # noqa: E402
from service.settings import Settings  # noqa: E402
from service.web import auth  # noqa: E402
from tests.flows.conftest import Live, Tab, launch  # noqa: E402

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def _admin_tab(engine: object, settings: Settings, tool_url: str, live: Live) -> Tab:
    """A session as an LTI Administrator of the course would get (the demo has none)."""
    with db_session(live.engine, write=True) as s:
        person = s.exec(select(Person).where(Person.sub == "u-instr-1")).one()
        dep = s.exec(
            select(Deployment).where(Deployment.platform_id == live.apps.platform_id)
        ).one()
        context = LaunchContext(
            launch_id="screenshots",
            platform_id=live.apps.platform_id,
            deployment_pk=dep.id or 0,
            issuer=live.apps.config.issuer,
            client_id=live.apps.config.tool.client_id,
            deployment_id=dep.deployment_id,
            message_type="LtiResourceLinkRequest",
            sub=person.sub,
            role="admin",
            roles=[],
        )
        record = flows.LaunchRecord(person.id or 0, live.course_id, "admin")
        token = auth.start_session(s, record=record, launch=context, settings=settings)
        s.add(
            Platform(
                name="Moodle (registered, waiting)",
                issuer="https://moodle.example.edu",
                client_id="Ab12Cd",
                auth_login_url="https://moodle.example.edu/mod/lti/auth.php",
                auth_token_url="https://moodle.example.edu/mod/lti/token.php",  # noqa: S106
                key_set_url="https://moodle.example.edu/mod/lti/certs.php",
                active=False,
            )
        )
        s.commit()
    return Tab(httpx.Client(base_url=tool_url), token)


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
        with httpx.Client(timeout=10) as http:
            poster = flows.ags_poster(engine, http)
            worker = Worker(engine, build_connectors(engine, ags_poster=poster), threads=1)
            for _ in range(3):
                worker.run_once()
            worker.close()
        learner = launch(live, "u-learn-3")
        admin = _admin_tab(engine, settings, tool_url, live)
        shots = (
            ("instructor", instructor, "/app/course"),
            ("competencies", instructor, "/app/setup"),
            ("learner", learner, "/app/me"),
            ("admin", admin, "/app/admin"),
        )
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1000, "height": 700})
            for name, tab, path in shots:
                page.goto(f"{tool_url}{path}?mc_session={tab.token}")
                page.screenshot(path=str(out / f"{name}.png"))
            browser.close()
        admin.http.close()
        for client in live.clients:
            client.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshots")
