"""Award latency for a learner who never opens the tool: from a grade saved in the LMS to
the credential issued, through the worker's scheduled sync with the default interval.

The demo LMS (Moodle web services and NRPS on loopback) and the tool's worker, built as
`microcred worker` builds it (service.cli), run in this process; nobody launches. Each round
regrades one learner in the LMS at a random moment of the pull cycle and waits until the
credential of the new level is issued. SQLite file in a temporary folder.

    .venv/bin/python bench/sync_latency.py [ROUNDS]
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlmodel import select

from service import secretbox
from service.cli import workers
from service.db import migrate
from service.db.engine import make_engine, session
from service.db.models import Award, Person
from service.demo import bootstrap, seed, server
from service.demo.course import QuizAttempt, RubricResult
from service.settings import Settings, get_settings

# one learner per round: Kenji and Sofia regraded to full marks (their statistics quiz was
# sat supervised: Advanced); Ingrid, who had no results, graded for the first time
LEARNERS = ("u-learn-4", "u-learn-3", "u-learn-5")


def _level(engine: object, sub: str) -> str | None:
    with session(engine) as s:  # type: ignore[arg-type]
        person = s.exec(select(Person).where(Person.sub == sub)).one()
        award = s.exec(
            select(Award).where(
                Award.person_id == person.id,
                Award.line_key == "competency:data-investigation",
                Award.state == "issued",
            )
        ).first()
        return award.level if award else None


def _regrade(apps: bootstrap.DemoApps, sub: str) -> None:
    platform = apps.lms.state.platform
    course = platform.course
    if not course.rubric_results_for(sub):  # a first grade
        when = dt.datetime.now(dt.UTC)
        platform.course = dataclasses.replace(
            course,
            rubric_results=course.rubric_results
            + tuple(RubricResult(sub, c.id, "proficient", when) for c in course.criteria),
            quiz_attempts=(
                *course.quiz_attempts,
                QuizAttempt(sub, "quiz-stats", 1, 15.0, when, False),
            ),
        )
        return
    platform.course = dataclasses.replace(
        course,
        quiz_attempts=tuple(
            dataclasses.replace(a, score=20.0)
            if (a.user_id, a.quiz_id) == (sub, "quiz-stats")
            else a
            for a in course.quiz_attempts
        ),
        rubric_results=tuple(
            dataclasses.replace(r, level_id="exemplary") if r.user_id == sub else r
            for r in course.rubric_results
        ),
    )


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    tmp = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    url = f"sqlite:///{tmp / 'bench.db'}"
    key = "bench-master-key-" + "0" * 32
    os.environ.update(
        {"MICROCRED_DATABASE_URL": url, "MICROCRED_DATA_DIR": str(tmp), "MICROCRED_SECRET_KEY": key}
    )
    get_settings.cache_clear()
    settings = Settings()
    secretbox.configure(key.encode())
    migrate.upgrade(url)
    engine = make_engine(url)
    tool_socket = server.bind("127.0.0.1", 0)
    lms_socket = server.bind("127.0.0.1", 0)
    tool_url = f"http://127.0.0.1:{tool_socket.getsockname()[1]}"
    lms_url = f"http://localhost:{lms_socket.getsockname()[1]}"
    apps = bootstrap.build(settings, tool_url=tool_url, lms_url=lms_url, engine=engine)
    seed.seed(engine, apps.config, platform_id=apps.platform_id)
    interval = settings.sync_interval_seconds
    print(f"default MICROCRED_SYNC_INTERVAL_SECONDS = {interval}")
    rng = random.Random(16)
    latencies: list[float] = []
    with server.running(apps.tool, apps.lms, tool_socket=tool_socket, lms_socket=lms_socket):
        worker = workers._delivery_worker(apps.tool.state.settings, threads=2, batch=8)
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 120
            while _level(engine, "u-learn-2") is None:  # the first pull after connecting
                if time.monotonic() > deadline:
                    raise SystemExit("the first scheduled pull did not award within 120 s")
                time.sleep(0.2)
            for sub in LEARNERS[:rounds]:
                time.sleep(rng.uniform(0, interval))  # anywhere in the pull cycle
                before = _level(engine, sub)
                _regrade(apps, sub)
                t0 = time.monotonic()
                while _level(engine, sub) in (before, None):
                    if time.monotonic() - t0 > 10 * interval:
                        raise SystemExit(f"{sub}: no credential after {10 * interval} s")
                    time.sleep(0.1)
                latency = time.monotonic() - t0
                latencies.append(latency)
                after = _level(engine, sub)
                print(f"{sub}: {before} -> {after}, issued {latency:.1f} s after the grade")
        finally:
            stop.set()
            thread.join(timeout=60)
            worker.close()
            worker.engine.dispose()
    print(
        f"award latency over {len(latencies)} rounds: median {statistics.median(latencies):.1f} s,"
        f" max {max(latencies):.1f} s (target < 120 s)"
    )


if __name__ == "__main__":
    main()
