"""The evaluation queue: learners are claimed once, evaluated and awarded by workers, never
twice, and a worker killed mid-batch loses nothing (both database lanes)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import multiprocessing
import os
import signal
import threading
import time
from typing import Any

import pytest
from sqlalchemy import Engine, func, text
from sqlmodel import col, select

from service import evaluation
from service.db.engine import make_engine
from service.db.engine import session as db_session
from service.db.models import Award, Credential, Decision, EvaluationJob, ImportRun, OutboxMessage
from service.db.types import utcnow
from service.delivery import repositories
from service.flows import evaluating, evaluation_queue, syncing, wiring
from service.issuer import service as issuer_service
from service.policies import service as policies
from service.settings import Settings
from service.sources import store
from service.sources.types import LearnerRef, Result, SourceKind
from tests import factories
from tests.conftest import LANE

NOW = dt.datetime(2026, 12, 6, 12, tzinfo=dt.UTC)


@dataclasses.dataclass
class Course:
    id: int
    person_ids: list[int]


def _results(learners: int, *, bonus: int = 0) -> list[tuple[str, Result]]:
    """Two quizzes per learner: learner i scores 10 + i % 10 of 20 (50 % to 95 %)."""
    out = []
    for i in range(learners):
        for item in ("21", "22"):
            out.append(
                (
                    f"u{i} {item}",
                    Result(
                        origin="test",
                        kind=SourceKind.QUIZ,
                        learner=LearnerRef(sub=f"u{i}"),
                        item_id=item,
                        score=float(min(20, 10 + i % 10 + bonus)),
                        max_score=20.0,
                        attempt=1,
                        graded_at=NOW,
                    ),
                )
            )
    return out


def _store(engine: Engine, course_id: int, results: list[tuple[str, Result]]) -> None:
    with db_session(engine, write=True) as s:
        run = ImportRun(kind="push", origin="test", status="running", started_at=NOW)
        s.add(run)
        store.apply(s, course_id=course_id, results=results, run=run, keep="always", now=NOW)
        s.commit()


def _course(engine: Engine, settings: Settings, *, learners: int, mapped: bool = True) -> Course:
    """A course whose two competencies read quizzes 21 and 22 (unmapped: no items yet)."""
    with db_session(engine, write=True) as s:
        plat = factories.platform(s)
        course = factories.course(s, factories.deployment(s, plat))
        people = [factories.person(s, plat, sub=f"u{i}", name=f"L{i}") for i in range(learners)]
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
            author="test",
        )
        assert course.id is not None
        for key, item in (("quiz-one", "21"), ("quiz-two", "22")):
            comp = policies.create_competency(s, key=key, name=key, author="test")
            policies.save_competency_override(
                s,
                course_id=course.id,
                competency_row=comp,
                document={"items": [item] if mapped else []},
                author="test",
            )
        repositories.create(
            s, kind="webhook", name="hook", config={"url": "https://h.test/"}, secret="s"
        )
        issuer_service.keyring(s, settings, create=True)
        s.commit()
        course_id, ids = course.id, [p.id or 0 for p in people]
    _store(engine, course_id, _results(learners))
    return Course(course_id, ids)


def _queue_all(engine: Engine, course_id: int) -> int:
    with db_session(engine, write=True) as s:
        n = evaluation.enqueue(s, course_id=course_id, reason="test")
        s.commit()
    return n


def _drain(engine: Engine, settings: Settings) -> evaluating.Summary:
    total = evaluating.Summary()
    while True:
        n, summary = evaluation_queue.run_evaluation_jobs(
            engine, settings=settings, limit=4, batch=2
        )
        if not n:
            return total
        total.issued += summary.issued
        total.decisions += summary.decisions


def _count(engine: Engine, model: Any, *where: Any) -> int:
    with db_session(engine) as s:
        return int(s.exec(select(func.count()).select_from(model).where(*where)).one())


def _ledger_is_sound(engine: Engine, *, deliveries: bool = True) -> None:
    """No line holds two issued credentials, every credential is an award's, every issued
    award queued its delivery (``deliveries``: the course's repositories take them all)."""
    with db_session(engine) as s:
        lines = s.exec(
            select(Award.person_id, Award.line_key, func.count())
            .where(Award.state == "issued")
            .group_by(col(Award.person_id), col(Award.line_key))
        ).all()
        assert all(n == 1 for _, _, n in lines), lines
        awarded = set(s.exec(select(Award.credential_uuid)).all())
        signed = set(s.exec(select(Credential.uuid)).all())
        assert signed == awarded - {None}
        queued = set(s.exec(select(OutboxMessage.credential_id)).all())
        keys = set(s.exec(select(Award.delivery_key).where(Award.state == "issued")).all())
        assert keys <= queued or not deliveries


def test_due_jobs_are_claimed_once_until_their_lease_runs_out(
    engine: Engine, settings: Settings
) -> None:
    course = _course(engine, settings, learners=5)
    assert _queue_all(engine, course.id) == 5
    now = utcnow()
    first = evaluation.claim(engine, now=now, limit=3, lease_seconds=60)
    second = evaluation.claim(engine, now=now, limit=3, lease_seconds=60)
    assert len(first) == 3 and len(second) == 2
    assert {j.person_id for j in first} | {j.person_id for j in second} == set(course.person_ids)
    assert evaluation.claim(engine, now=now, limit=3, lease_seconds=60) == []
    # The holder died: after the lease, another worker takes its jobs.
    later = now + dt.timedelta(seconds=61)
    again = evaluation.claim(engine, now=later, limit=10, lease_seconds=60)
    assert {j.person_id for j in again} == set(course.person_ids)
    # ... and the first holder, back to life, finds it holds nothing any more.
    with db_session(engine, write=True) as s:
        assert evaluation.lock_claimed(s, first) == []


def test_the_worker_evaluates_and_issues_and_an_unchanged_rerun_issues_nothing(
    engine: Engine, settings: Settings
) -> None:
    course = _course(engine, settings, learners=6)
    with db_session(engine, write=True) as s:
        assert evaluation_queue.enqueue_new_evidence(s) == {course.id: 6}
        s.commit()
    assert _count(engine, Credential) == 0  # queued, not evaluated in the import
    done = _drain(engine, settings)
    assert done.decisions == 12
    issued = _count(engine, Credential)
    assert issued == done.issued > 0
    assert _count(engine, EvaluationJob, col(EvaluationJob.due_at).is_not(None)) == 0
    # Nothing changed: a re-import queues no one; re-evaluating everyone issues nothing.
    _store(engine, course.id, _results(6))
    with db_session(engine, write=True) as s:
        assert evaluation_queue.enqueue_new_evidence(s) == {course.id: 0}
        s.commit()
    assert _queue_all(engine, course.id) == 6
    again = _drain(engine, settings)
    assert again.decisions == 12 and again.issued == 0
    assert _count(engine, Credential) == issued
    assert _count(engine, Decision) == 12
    # One learner's results change: only that learner is queued and re-evaluated.
    _store(engine, course.id, [r for r in _results(6, bonus=4) if r[0].startswith("u0 ")])
    with db_session(engine, write=True) as s:
        assert evaluation_queue.enqueue_new_evidence(s) == {course.id: 1}
        s.commit()
    assert _drain(engine, settings).decisions == 2
    _ledger_is_sound(engine)


def test_saving_the_mapping_queues_the_course_and_the_worker_issues(
    engine: Engine, settings: Settings
) -> None:
    course = _course(engine, settings, learners=4, mapped=False)
    assert _queue_all(engine, course.id) == 4
    assert _drain(engine, settings).issued == 0  # nothing mapped: no level
    with db_session(engine, write=True) as s:
        queued = wiring.save_competency_setup(
            s,
            course_id=course.id,
            competency_key="quiz-one",
            items=[("21", "Quiz 21")],
            thresholds={},
            actor="instructor",
        )
        s.commit()
    assert queued == 4
    assert _count(engine, Credential) == 0  # the page says "re-evaluating 4 learners…"
    done = _drain(engine, settings)
    assert done.issued == 4  # 50 %, 55 %, 60 %, 65 %: every learner reaches a level
    with db_session(engine) as s:
        levels = s.exec(select(Award.level).where(Award.line_key == "competency:quiz-one")).all()
    assert sorted(levels) == ["beginning", "beginning", "beginning", "intermediate"]


def test_two_workers_never_sign_the_same_credential(engine: Engine, settings: Settings) -> None:
    course = _course(engine, settings, learners=30)
    assert _queue_all(engine, course.id) == 30
    errors: list[BaseException] = []
    engines = [make_engine(str(engine.url.render_as_string(hide_password=False)))]
    engines.append(make_engine(str(engine.url.render_as_string(hide_password=False))))

    def work(own: Engine) -> None:
        try:
            _drain(own, settings)
        except BaseException as exc:  # asserted below
            errors.append(exc)

    # Each worker has its own engine (connections), as two processes would.
    threads = [threading.Thread(target=work, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    for e in engines:
        e.dispose()
    assert errors == []
    assert _count(engine, EvaluationJob, col(EvaluationJob.due_at).is_not(None)) == 0
    with db_session(engine) as s:
        decided = s.exec(select(Decision.person_id, Decision.competency_id)).all()
    assert len(decided) == len(set(decided)) == 60  # each learner evaluated once
    _ledger_is_sound(engine)


def test_the_ledger_refuses_a_second_issued_credential_on_a_line(
    engine: Engine, settings: Settings
) -> None:
    from sqlalchemy.exc import IntegrityError

    course = _course(engine, settings, learners=1)
    _queue_all(engine, course.id)
    _drain(engine, settings)
    with db_session(engine, write=True) as s:
        held = s.exec(select(Award).where(Award.state == "issued")).first()
        assert held is not None
        twin = Award(**{**held.model_dump(), "id": None, "credential_uuid": None})
        s.add(twin)
        with pytest.raises(IntegrityError):
            s.flush()


def _levels(engine: Engine, line_key: str) -> list[str]:
    with db_session(engine) as s:
        return sorted(
            s.exec(
                select(Award.level).where(Award.state == "issued", Award.line_key == line_key)
            ).all()
        )


def test_re_evaluating_unchanged_learners_reuses_their_decisions_until_the_rules_change(
    engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    course = _course(engine, settings, learners=4)
    _queue_all(engine, course.id)
    _drain(engine, settings)
    ran: list[str] = []
    evaluate = evaluating.engine.evaluate
    monkeypatch.setattr(
        evaluating.engine,
        "evaluate",
        lambda *a, **k: ran.append(k.get("learner", "")) or evaluate(*a, **k),
    )
    _queue_all(engine, course.id)
    again = _drain(engine, settings)
    assert ran == []  # nothing the engine reads changed: the stored decisions stand
    assert again.decisions == 8 and again.issued == 0
    assert _levels(engine, "competency:quiz-one") == ["beginning"] * 3 + ["intermediate"]
    # The rules change: every learner is evaluated again and the levels follow them.
    with db_session(engine, write=True) as s:
        comp = policies.competency(s, "quiz-one")
        policies.save_competency_override(
            s,
            course_id=course.id,
            competency_row=comp,
            document={
                "items": ["21"],
                "levels": {
                    "beginning": {"threshold": "30%"},
                    "intermediate": {"threshold": "40%"},
                    "advanced": {"threshold": "50%"},
                },
            },
            author="test",
        )
        s.commit()
    _queue_all(engine, course.id)
    _drain(engine, settings)
    assert len(ran) == 8
    assert _levels(engine, "competency:quiz-one") == ["advanced"] * 4
    # One learner's results change: that learner's engine runs, the others' does not.
    ran.clear()
    _store(engine, course.id, [r for r in _results(4, bonus=8) if r[0].startswith("u0 ")])
    _queue_all(engine, course.id)
    _drain(engine, settings)
    assert sorted(ran) == [str(course.person_ids[0])] * 2
    # u0: 90 % on quiz 22 (Advanced); the others unchanged
    assert _levels(engine, "competency:quiz-two") == [
        "advanced",
        "beginning",
        "beginning",
        "intermediate",
    ]


def test_a_result_dated_after_an_evaluation_counts_when_its_time_comes(
    engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    course = _course(engine, settings, learners=1)  # u0: 50 %, Beginning on both
    later = utcnow() + dt.timedelta(hours=1)
    second = Result(
        origin="test",
        kind=SourceKind.QUIZ,
        learner=LearnerRef(sub="u0"),
        item_id="21",
        score=20.0,
        max_score=20.0,
        attempt=2,
        graded_at=later,
    )
    _store(engine, course.id, [("u0 21 second", second)])

    def evaluate(now: dt.datetime) -> None:
        with db_session(engine, write=True) as s:
            evaluation.enqueue(s, course_id=course.id, reason="test", now=now)
            s.commit()
        monkeypatch.setattr(evaluation_queue, "utcnow", lambda: now)  # the worker's clock
        _drain(engine, settings)

    evaluate(utcnow())  # the second attempt is dated later: it does not count yet
    assert _levels(engine, "competency:quiz-one") == ["beginning"]
    evaluate(later + dt.timedelta(minutes=1))  # nothing stored changed, but time did
    assert _levels(engine, "competency:quiz-one") == ["advanced"]  # the later attempt counts


# --- workers killed mid-batch ----------------------------------------------------------------


def _worker_main(url: str, master_key: bytes, data_dir: str, lease: float, gate: str) -> None:
    """A worker process: what `microcred worker` runs for evaluation, with a short lease.
    After each batch is evaluated, signed and flushed but not committed, it says so in
    ``gate`` (``<pid>.<n>.paused``) and waits for the test's ``<pid>.<n>.go``: the test
    kills it there or lets it commit, whatever the machine's speed."""
    from pathlib import Path

    from service import secretbox
    from service.db.engine import make_engine as make
    from service.flows import evaluation_queue

    secretbox.configure(master_key)
    engine = make(url)
    own = Settings(
        environment="test",
        data_dir=data_dir,
        database_url=url,
        base_url="https://tool.test",
        evaluation_lease_seconds=lease,
    )
    original = evaluation_queue.evaluate_course
    batches = iter(range(1_000_000))

    def held(*args: Any, **kwargs: Any) -> Any:
        summary = original(*args, **kwargs)
        name = f"{os.getpid()}.{next(batches)}"
        (Path(gate) / f"{name}.paused").write_text("")
        go = Path(gate) / f"{name}.go"
        deadline = time.monotonic() + 600
        while not go.exists():
            if time.monotonic() > deadline:
                raise TimeoutError("the test never answered")
            time.sleep(0.01)
        return summary

    evaluation_queue.evaluate_course = held  # type: ignore[assignment]
    while True:
        if not evaluation_queue.run_evaluation_jobs(engine, settings=own, limit=4, batch=2)[0]:
            time.sleep(0.05)


def _kill_while_working(
    engine: Engine,
    settings: Settings,
    *,
    database_url: str,
    master_key: bytes,
    gate: Any,
    learners: int,
    workers: int,
    kills: int,
) -> int:
    """Queue a course of ``learners`` (two quiz competencies, every learner reaches a
    level), run ``workers`` worker processes over it and SIGKILL the one holding every
    second batch (signed, not committed) until ``kills`` were killed, starting another each
    time; then let every batch commit. Returns how many were killed."""
    gate.mkdir()
    course = _course(engine, settings, learners=learners)
    _queue_all(engine, course.id)
    ctx = multiprocessing.get_context("spawn")
    args = (database_url, master_key, str(settings.data_dir), 2.0, str(gate))

    def start() -> Any:
        proc = ctx.Process(target=_worker_main, args=args, daemon=True)
        proc.start()
        return proc

    procs = {p.pid: p for p in (start() for _ in range(workers))}
    killed = paused = 0
    handled: set[str] = set()
    deadline = time.monotonic() + 600  # generous: the outcome is asserted, not the speed
    try:
        while _count(engine, EvaluationJob, col(EvaluationJob.due_at).is_not(None)):
            assert time.monotonic() < deadline, "the workers did not finish in 10 minutes"
            for mark in sorted(gate.glob("*.paused")):
                if mark.name in handled:
                    continue
                handled.add(mark.name)
                pid = int(mark.name.split(".")[0])
                paused += 1
                if killed < kills and paused % 2 == 1 and pid in procs:
                    os.kill(pid, signal.SIGKILL)  # mid-transaction: signed, flushed, not committed
                    procs.pop(pid).join()
                    killed += 1
                    fresh = start()
                    procs[fresh.pid] = fresh
                else:
                    (gate / mark.name.replace(".paused", ".go")).write_text("")
            time.sleep(0.05)
    finally:
        for p in procs.values():
            if p.is_alive():
                p.kill()
                p.join()
    return killed


def _nothing_lost_or_twice(engine: Engine, *, learners: int) -> None:
    """Every learner decided once per competency and holding exactly one issued credential
    per competency, each with its outbox row; no credential outside the ledger."""
    assert _count(engine, EvaluationJob, col(EvaluationJob.due_at).is_not(None)) == 0, "lost"
    with db_session(engine) as s:
        pairs = s.execute(
            text("SELECT count(*) FROM (SELECT DISTINCT person_id, competency_id FROM decision) d")
        ).scalar_one()
    assert pairs == 2 * learners  # every learner and competency decided
    assert _count(engine, Decision) == 2 * learners  # ... and stored once
    # every learner scores 50 % or more: one issued credential per line, none twice
    assert _count(engine, Award, Award.state == "issued") == 2 * learners
    assert _count(engine, Credential) == 2 * learners
    assert _count(engine, OutboxMessage) == 2 * learners  # one webhook repository
    _ledger_is_sound(engine)


def test_a_worker_killed_mid_batch_loses_and_duplicates_nothing(
    engine: Engine, settings: Settings, database_url: str, master_key: bytes, tmp_path: Any
) -> None:
    killed = _kill_while_working(
        engine,
        settings,
        database_url=database_url,
        master_key=master_key,
        gate=tmp_path / "gate",
        learners=12,
        workers=1 if LANE == "sqlite" else 2,  # SQLite: one worker (DESIGN.md)
        kills=3,
    )
    assert killed == 3
    _nothing_lost_or_twice(engine, learners=12)


@pytest.mark.postgres
def test_workers_killed_again_and_again_lose_and_duplicate_nothing(
    engine: Engine, settings: Settings, database_url: str, master_key: bytes, tmp_path: Any
) -> None:
    """Three workers share the queue (SKIP LOCKED); one of them is SIGKILLed mid-batch
    eight times over, each replaced, while the others keep working."""
    killed = _kill_while_working(
        engine,
        settings,
        database_url=database_url,
        master_key=master_key,
        gate=tmp_path / "gate",
        learners=24,
        workers=3,
        kills=8,
    )
    assert killed == 8
    _nothing_lost_or_twice(engine, learners=24)


# --- the setup page --------------------------------------------------------------------------


def test_the_setup_page_says_it_is_re_evaluating_and_the_worker_issues(live: Any) -> None:
    import re
    from urllib.parse import urlsplit

    from tests.flows.conftest import launch

    tab = launch(live, "u-instr-1")
    page = tab.get("/app/setup")
    csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
    assert csrf is not None
    # results are in (a sync), no one evaluated yet: queue them and let nobody work
    fetched = syncing.fetch_course(live.engine, course_id=live.course_id)
    with db_session(live.engine, write=True) as s:
        syncing.store_fetched(s, pull=fetched, now=utcnow(), actor="test")
        s.commit()
    saved = tab.post(
        "/app/setup/competencies/data-investigation",
        {"items": ["11/1", "11/2", "21"], "threshold_intermediate": "60"},
        csrf=csrf.group(1),
    )
    assert saved.status_code == 303, saved.text
    queued = _count(live.engine, EvaluationJob, col(EvaluationJob.due_at).is_not(None))
    assert queued >= 4
    where = urlsplit(saved.headers["location"])
    shown = tab.http.get(f"{where.path}?{where.query}")
    assert f"re-evaluating {queued} learners…" in shown.text
    assert _count(live.engine, Credential) == 0
    done = _drain(live.engine, live.settings)
    assert done.issued > 0 and _count(live.engine, Credential) == done.issued
    _ledger_is_sound(live.engine, deliveries=False)
