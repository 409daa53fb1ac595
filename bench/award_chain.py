"""How fast a course is evaluated and awarded (evaluating.evaluate_course): the first run, which
stores every decision and signs and queues every credential, and a re-run with unchanged
evidence (which must store and issue nothing). SQLite file by default; set
MICROCRED_BENCH_DB to a PostgreSQL URL to measure there.

    .venv/bin/python bench/award_chain.py [LEARNERS]
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service import secretbox
from service.db import migrate
from service.db.engine import make_engine, session
from service.db.models import ImportRun
from service.delivery import repositories
from service.flows import evaluating
from service.policies import service as policies
from service.settings import Settings
from service.sources import store
from service.sources.types import LearnerRef, Result, SourceKind
from tests import factories

NOW = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)
SCALE = (
    ("1", "Beginning", 1.0),
    ("2", "Developing", 2.0),
    ("3", "Proficient", 3.0),
    ("4", "Exemplary", 4.0),
)


def _results(learners: int) -> list[tuple[str, Result]]:
    out = []
    for i in range(learners):
        who = LearnerRef(sub=f"u{i}")
        for c in range(3):
            level = SCALE[(i + c) % 4]
            out.append(
                (
                    f"u{i} c{c}",
                    Result(
                        origin="bench",
                        kind=SourceKind.RUBRIC_CRITERION,
                        learner=who,
                        item_id="11",
                        criterion_id=str(c + 1),
                        level=store_level(level),
                        graded_at=NOW,
                    ),
                )
            )
        for attempt in (1, 2):
            out.append(
                (
                    f"u{i} quiz {attempt}",
                    Result(
                        origin="bench",
                        kind=SourceKind.QUIZ,
                        learner=who,
                        item_id="21",
                        score=float(8 + (i * 3 + attempt * 5) % 13),
                        max_score=20.0,
                        attempt=attempt,
                        graded_at=NOW,
                    ),
                )
            )
    return out


def store_level(level: tuple[str, str, float]) -> object:
    from service.sources.types import RubricLevel

    return RubricLevel(id=level[0], name=level[1], points=level[2], scale=SCALE)


def main() -> None:
    learners = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    secretbox.configure(b"bench-master-key-" + b"0" * 32)
    data = Path(tempfile.mkdtemp())
    url = os.environ.get("MICROCRED_BENCH_DB") or f"sqlite:///{data}/bench.db"
    settings = Settings(data_dir=data, base_url="https://microcred.example.edu")
    migrate.upgrade(url)
    engine = make_engine(url)
    with session(engine, write=True) as s:
        plat = factories.platform(s)
        course = factories.course(s, factories.deployment(s, plat))
        for i in range(learners):
            factories.person(s, plat, sub=f"u{i}")
        policies.save_institution(
            s,
            defaults={
                "aggregation": "average",
                "levels": {
                    "beginning": {"threshold": "50%"},
                    "intermediate": {"threshold": "65%"},
                    "advanced": {"threshold": "85%"},
                },
            },
            bounds={},
            author="bench",
        )
        for key, items in (("investigate", ["11/1", "11/2", "21"]), ("communicate", ["11/3"])):
            comp = policies.create_competency(s, key=key, name=key.title(), author="bench")
            policies.save_competency_override(
                s,
                course_id=course.id,
                competency_row=comp,
                document={"items": items},
                author="bench",
            )
        repositories.create(
            s, kind="webhook", name="hook", config={"url": "https://h.test/"}, secret="s"
        )
        run = ImportRun(kind="push", origin="bench", status="running", started_at=NOW)
        s.add(run)
        store.apply(
            s, course_id=course.id, results=_results(learners), run=run, keep="always", now=NOW
        )
        s.commit()
        course_id = course.id
    for label in ("first run (decide, sign, queue)", "re-run, evidence unchanged"):
        started = time.perf_counter()
        with session(engine, write=True) as s:
            people = [p.id or 0 for p in evaluating.course_learners(s, course_id=course_id)]
            summary = evaluating.evaluate_course(
                s, settings=settings, course_id=course_id, now=NOW, actor="bench", person_ids=people
            )
            s.commit()
        took = time.perf_counter() - started
        print(
            f"{label}: {learners} learners, {summary.decisions} decisions, "
            f"{summary.issued} credentials issued in {took:.2f} s "
            f"({summary.decisions / took:.0f} decisions/s, "
            f"{(summary.issued / took) if summary.issued else 0:.0f} credentials/s)"
        )
    engine.dispose()


if __name__ == "__main__":
    main()
