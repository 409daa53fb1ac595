"""A large course through the evaluation queue: stored results -> evaluation -> signed
credentials -> outbox rows, worked on by W worker processes (what ``microcred worker``
runs: ``evaluation_queue.run_evaluation_jobs``). Prints, per number of workers, the first run (every
learner queued), a re-run after re-importing the same results (queues and issues
nothing), and a run after 10 % of the learners' results changed (only those are
re-evaluated); the time, credentials per second and the peak memory of each process; the
scaling factor from 1 to 2 workers when both are measured; then a check that no
credential was issued twice and no learner was left out.

    .venv/bin/python bench/course.py [--learners 5000] [--competencies 8]
        [--database URL] [--workers 1 2] [--kill-every SECONDS]

``--database``: a SQLite file URL (default: a new file), or a PostgreSQL server URL, e.g.
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``: a fresh database is created on
that server for each run and dropped after it. ``--kill-every``: SIGKILL a random worker
every so many seconds (and start another), with a short lease, to check that nothing is
lost or issued twice. The last line reads
``course: L x K, D decisions, C credentials in S s (DATABASE, W workers), peak M MB``.
Times run from the moment the queue is handed to workers that have started (as long-running
``microcred worker`` processes are) until it is empty.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url

from service import evaluation, secretbox
from service.db import migrate
from service.db.engine import make_engine, session
from service.db.models import ImportRun, Person
from service.delivery import repositories
from service.flows import evaluation_queue
from service.issuer import service as issuer_service
from service.policies import service as policies
from service.settings import Settings
from service.sources import store
from service.sources.types import LearnerRef, Result, RubricLevel, SourceKind
from tests import factories

NOW = dt.datetime(2026, 12, 6, tzinfo=dt.UTC)
KEY = b"bench-master-key-" + b"0" * 32
SCALE = (
    ("1", "Beginning", 1.0),
    ("2", "Developing", 2.0),
    ("3", "Proficient", 3.0),
    ("4", "Exemplary", 4.0),
)


def _settings(data: Path, lease: float) -> Settings:
    return Settings(
        data_dir=data,
        base_url="https://microcred.example.edu",
        evaluation_lease_seconds=lease,
    )


# --- results ---------------------------------------------------------------------------------


def _results(
    learners: int, comps: int, *, seed: int, changed: float = 0.0
) -> list[tuple[str, Result]]:
    """Per learner and competency: one rubric criterion and two quiz attempts; scores
    spread around the learner's ability (some reach no level, a few Advanced).
    ``changed``: that share of the learners has a better second quiz attempt."""
    rng = random.Random(seed)
    pick = random.Random(seed + 1)  # the same scores whatever share changes
    bumped = set(pick.sample(range(learners), int(learners * changed))) if changed else set()
    out = []
    for i in range(learners):
        who = LearnerRef(sub=f"u{i}")
        ability = min(1.0, max(0.2, rng.gauss(0.68, 0.14)))
        for k in range(comps):
            skill = min(1.0, max(0.0, ability + rng.gauss(0, 0.08)))
            level = SCALE[min(3, int(skill * 4))]
            out.append(
                (
                    f"u{i} c{k} rubric",
                    Result(
                        origin="bench",
                        kind=SourceKind.RUBRIC_CRITERION,
                        learner=who,
                        item_id=f"1{k:02d}",
                        criterion_id="1",
                        level=RubricLevel(id=level[0], name=level[1], points=level[2], scale=SCALE),
                        graded_at=NOW,
                    ),
                )
            )
            for attempt in (1, 2):
                score = round(min(20.0, max(0.0, 20 * (skill + rng.gauss(0, 0.1)))), 1)
                if attempt == 2 and i in bumped:
                    score = min(20.0, score + 3.0)
                out.append(
                    (
                        f"u{i} c{k} quiz {attempt}",
                        Result(
                            origin="bench",
                            kind=SourceKind.QUIZ,
                            learner=who,
                            item_id=f"2{k:02d}",
                            score=score,
                            max_score=20.0,
                            attempt=attempt,
                            graded_at=NOW,
                        ),
                    )
                )
    return out


def _import(url: str, course_id: int, results: list[tuple[str, Result]]) -> tuple[int, float]:
    """Store the results as a push would, and queue the learners whose results changed."""
    engine = make_engine(url)
    started = time.perf_counter()
    with session(engine, write=True) as s:
        run = ImportRun(
            kind="push", origin="bench", status="running", started_at=NOW, course_id=course_id
        )
        s.add(run)
        store.apply(s, course_id=course_id, results=results, run=run, keep="always", now=NOW)
        s.commit()
    took = time.perf_counter() - started
    with session(engine, write=True) as s:
        queued = evaluation_queue.enqueue_new_evidence(s).get(course_id, 0)
        s.commit()
    engine.dispose()
    return queued, took


def _requeue_all(url: str, course_id: int) -> int:
    """The instructor's Re-evaluate: every learner queued."""
    engine = make_engine(url)
    with session(engine, write=True) as s:
        queued = evaluation.enqueue(s, course_id=course_id, reason="bench")
        s.commit()
    engine.dispose()
    return queued


def _setup(url: str, learners: int, comps: int) -> int:
    migrate.upgrade(url)
    engine = make_engine(url)
    settings = _settings(Path(tempfile.mkdtemp()), 300)
    with session(engine, write=True) as s:
        plat = factories.platform(s)
        course = factories.course(s, factories.deployment(s, plat))
        s.add_all(
            Person(platform_id=plat.id, sub=f"u{i}", name=f"Learner {i}", email=f"u{i}@example.edu")
            for i in range(learners)
        )
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
        for k in range(comps):
            comp = policies.create_competency(
                s, key=f"comp-{k}", name=f"Competency {k}", author="bench"
            )
            policies.save_competency_override(
                s,
                course_id=course.id,
                competency_row=comp,
                document={"items": [f"1{k:02d}/1", f"2{k:02d}"]},
                author="bench",
            )
        repositories.create(
            s, kind="webhook", name="hook", config={"url": "https://h.test/"}, secret="s"
        )
        issuer_service.keyring(s, settings, create=True)  # the keys exist before the workers start
        s.commit()
        course_id = int(course.id or 0)
    engine.dispose()
    return course_id


# --- workers ---------------------------------------------------------------------------------


def _peak_mb(usage: Any) -> float:
    """This process's own peak resident memory: ``VmHWM`` where /proc has it.
    ``ru_maxrss`` survives ``exec`` on Linux, so a worker started by a large parent would
    report the parent's size at the fork."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float(usage.ru_maxrss) / 1024


def _child(url: str, lease: float, *, wait: bool) -> None:
    """One worker process: evaluation jobs until none is due, then its figures as JSON.
    With ``wait``, it says "ready" once started and waits for "go" (a long-running worker
    is started before the burst: the parent times from "go")."""
    secretbox.configure(KEY)
    settings = _settings(Path(tempfile.mkdtemp()), lease)
    engine = make_engine(url)
    with session(engine) as s:  # connected, like a worker that has been running
        s.execute(text("SELECT 1"))
    statements = [0, 0]  # statements sent, commits

    @event.listens_for(engine, "before_cursor_execute")
    def _count(*_args: Any) -> None:
        statements[0] += 1

    @event.listens_for(engine, "commit")
    def _commit(*_args: Any) -> None:
        statements[1] += 1

    if wait:
        print("ready", flush=True)
        sys.stdin.readline()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    started_cpu = usage.ru_utime + usage.ru_stime  # the work, not the start-up
    jobs = 0
    while True:
        # what `microcred worker` runs in its loop (service.cli._delivery_worker)
        done, _summary = evaluation_queue.run_evaluation_jobs(engine, settings=settings, limit=16)
        jobs += done
        if done:
            continue
        with session(engine) as s:
            left = s.execute(
                text("SELECT count(*) FROM evaluation_job WHERE due_at IS NOT NULL")
            ).scalar_one()
        if not left:
            break
        time.sleep(0.2)  # another worker holds the rest, or a dead worker's lease runs out
    engine.dispose()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak, cpu = _peak_mb(usage), usage.ru_utime + usage.ru_stime
    figures = {"jobs": jobs, "peak_mb": peak, "cpu": cpu - started_cpu}
    figures |= {"statements": statements[0], "commits": statements[1]}
    print(json.dumps(figures), flush=True)


@dataclass
class Phase:
    seconds: float
    decisions: int
    credentials: int
    outbox: int
    peak_mb: float
    killed: int = 0
    cpu: float = 0.0  # CPU seconds of the workers, summed
    statements: int = 0  # sent by the workers (the harness's own polling not counted)
    commits: int = 0
    db_cpu: float | None = None  # PostgreSQL's CPU seconds for the workers' connections


def _due(engine: Any) -> int:
    with session(engine) as s:
        due = s.execute(
            text("SELECT count(*) FROM evaluation_job WHERE due_at IS NOT NULL")
        ).scalar_one()
    return int(due)


def _counts(url: str) -> tuple[int, int, int]:
    engine = make_engine(url)
    with session(engine) as s:
        row = s.execute(
            text(
                "SELECT (SELECT count(*) FROM decision), (SELECT count(*) FROM credential), "
                "(SELECT count(*) FROM outbox_message)"
            )
        ).one()
    engine.dispose()
    return int(row[0]), int(row[1]), int(row[2])


class _Backends:
    """The CPU time of the PostgreSQL backends serving a database (local server: their
    ``/proc`` times), sampled while the workers run; ``skip``: the harness's own."""

    def __init__(self, engine: Any, skip: int) -> None:
        self.engine, self.skip = engine, skip
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.tick = os.sysconf("SC_CLK_TCK")

    def sample(self) -> None:
        with self.engine.connect() as conn:
            pids = conn.execute(
                text(
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> :skip"
                ),
                {"skip": self.skip},
            ).scalars()
            for pid in pids:
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                cpu = (int(fields[11]) + int(fields[12])) / self.tick
                self.first.setdefault(pid, cpu)
                self.last[pid] = cpu

    def seconds(self) -> float:
        return sum(self.last[p] - self.first[p] for p in self.last)


def _spawn(url: str, lease: float, *, wait: bool = False) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "--child", url, "--lease", str(lease)]
        + (["--wait"] if wait else []),
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE,
        text=True,
    )


def _work(url: str, workers: int, *, lease: float, kill_every: float) -> Phase:
    """Start the workers, wait until each has started (imports, connection), then time
    from "go" until the queue is empty and every worker has stopped."""
    before = _counts(url)
    procs = [_spawn(url, lease, wait=True) for _ in range(workers)]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    started = time.perf_counter()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    finished: list[subprocess.Popen[str]] = []
    killed = 0
    next_kill = time.monotonic() + kill_every if kill_every else float("inf")
    rng = random.Random(7)
    took = 0.0
    watch = make_engine(url)
    backends = None
    if watch.dialect.name == "postgresql":
        with watch.connect() as conn:
            own = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
        backends = _Backends(watch, own)
        backends.sample()  # the workers' idle connections: their start-up is not counted
    while procs:
        if backends is not None and not took:
            backends.sample()
        if not took and not _due(watch):
            took = time.perf_counter() - started  # all work committed (exits not counted)
        for p in list(procs):
            if p.poll() is not None:
                procs.remove(p)
                finished.append(p)
        if procs and time.monotonic() >= next_kill:
            victim = rng.choice(procs)
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            procs.remove(victim)
            killed += 1
            procs.append(_spawn(url, lease))
            next_kill = time.monotonic() + kill_every
        time.sleep(0.05)
    took = took or time.perf_counter() - started
    db_cpu = None if backends is None else backends.seconds()
    watch.dispose()
    phase = Phase(took, 0, 0, 0, 0.0, killed, db_cpu=db_cpu)
    for p in finished:
        out = (p.stdout.read() if p.stdout else "").strip().splitlines()
        if p.returncode == 0 and out:
            figures = json.loads(out[-1])
            phase.peak_mb = max(phase.peak_mb, float(figures["peak_mb"]))
            phase.cpu += float(figures["cpu"])
            phase.statements += int(figures["statements"])
            phase.commits += int(figures["commits"])
    after = _counts(url)
    phase.decisions, phase.credentials, phase.outbox = (
        a - b for a, b in zip(after, before, strict=True)
    )
    return phase


def _check(url: str, course_id: int, learners: int, comps: int) -> tuple[int, int]:
    """(duplicates, lost): a line with two issued credentials, a credential no award
    records, an award without its credential; a learner and competency without a decision
    or a job still due."""
    engine = make_engine(url)
    with session(engine) as s:
        dup = s.execute(
            text(
                "SELECT count(*) FROM (SELECT course_id, person_id, line_key FROM award "
                "WHERE state = 'issued' GROUP BY course_id, person_id, line_key "
                "HAVING count(*) > 1) d"
            )
        ).scalar_one()
        orphan = s.execute(
            text(
                "SELECT count(*) FROM credential c WHERE NOT EXISTS "
                "(SELECT 1 FROM award a WHERE a.credential_uuid = c.uuid)"
            )
        ).scalar_one()
        decided = s.execute(
            text(
                "SELECT count(*) FROM (SELECT DISTINCT person_id, competency_id FROM decision "
                "WHERE course_id = :c) d"
            ),
            {"c": course_id},
        ).scalar_one()
        due = s.execute(
            text("SELECT count(*) FROM evaluation_job WHERE due_at IS NOT NULL")
        ).scalar_one()
        no_outbox = s.execute(
            text(
                "SELECT count(*) FROM award a WHERE a.state IN ('issued', 'superseded') "
                "AND NOT EXISTS (SELECT 1 FROM outbox_message o "
                "WHERE o.credential_id = a.delivery_key)"
            )
        ).scalar_one()
    engine.dispose()
    return int(dup) + int(orphan), (learners * comps - int(decided)) + int(due) + int(no_outbox)


# --- databases -------------------------------------------------------------------------------


def _fresh_database(base: str, tag: str) -> tuple[str, str | None]:
    """A new database for one run: a SQLite file, or a PostgreSQL database on the server."""
    if base.startswith("sqlite"):
        if base == "sqlite":
            return f"sqlite:///{tempfile.mkdtemp()}/course-{tag}.db", None
        return base, None
    url = make_url(base)
    name = f"bench_course_{os.getpid()}_{tag}"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False), name


def _drop_database(base: str, name: str | None) -> None:
    if name is None:
        return
    admin = create_engine(make_url(base).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _profile(base: str, learners: int, comps: int, rounds: int) -> None:
    """Where a worker's CPU goes, after the course is stored and queued: ``rounds`` worker
    rounds (16 learners each) timed with a light wrapper around the issuer's ``issue``
    (build, canonicalize, sign, schema check, its row: "signing"), then ``rounds`` more
    under cProfile (CPU timer; it inflates pure-Python code) for the top entries."""
    import cProfile
    import pstats

    url, name = _fresh_database(base, "profile")
    inside = [0.0]
    # a worker's batch issues through issue_held (plain values), one credential through issue
    originals = {"issue": issuer_service.issue, "issue_held": issuer_service.issue_held}

    def timing(fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                inside[0] += time.process_time() - started

        return timed

    def patch(timed: bool) -> None:
        for attr, fn in originals.items():
            setattr(issuer_service, attr, timing(fn) if timed else fn)

    try:
        _import(url, _setup(url, learners, comps), _results(learners, comps, seed=1))
        engine = make_engine(url)
        settings = _settings(Path(tempfile.mkdtemp()), 300)
        statements = [0]
        event.listen(
            engine,
            "before_cursor_execute",
            lambda *_a: statements.__setitem__(0, statements[0] + 1),
        )
        evaluation_queue.run_evaluation_jobs(engine, settings=settings, limit=16)  # warm
        before, statements[0] = _counts(url), 0
        patch(True)
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(rounds):
            evaluation_queue.run_evaluation_jobs(engine, settings=settings, limit=16)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        patch(False)
        issued, sent = _counts(url)[1] - before[1], statements[0]
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        for _ in range(rounds):
            evaluation_queue.run_evaluation_jobs(engine, settings=settings, limit=16)
        profiler.disable()
        engine.dispose()
    finally:
        patch(False)
        _drop_database(base, name)
    saved = Path(tempfile.mkdtemp()) / "course.prof"
    profiler.dump_stats(saved)  # for pstats: python -m pstats FILE
    print(f"profile saved to {saved}")
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(50)
    per = max(issued, 1)
    print(
        f"profile: {rounds} rounds, {issued} credentials in {cpu:.2f} worker CPU-s "
        f"({1000 * cpu / per:.2f} ms per credential; {wall:.1f} s wall); signing (issuer's "
        f"issue) {100 * inside[0] / cpu:.0f} % ({1000 * inside[0] / per:.2f} ms), the rest "
        f"{100 * (cpu - inside[0]) / cpu:.0f} % ({1000 * (cpu - inside[0]) / per:.2f} ms); "
        f"{sent} statements ({sent / per:.1f} per credential); load average {_load()}"
    )


def _line(label: str, learners: int, comps: int, p: Phase, db: str, workers: int) -> str:
    rate = p.credentials / p.seconds if p.seconds else 0.0
    # per credential only where some were issued (a phase that issues none has no such rate)
    each = p.credentials or None
    cost = f"{p.statements} statements" + (
        f" ({p.statements / each:.1f} per credential)" if each else ""
    )
    cost += f", {p.commits} commits"
    if p.db_cpu is not None:
        cost += f", PostgreSQL {p.db_cpu:.1f} CPU-s" + (
            f" ({1000 * p.db_cpu / each:.2f} ms per credential)" if each else ""
        )
    if p.credentials and p.cpu:
        cost += f", {p.credentials / p.cpu:.0f} credentials per worker CPU-second"
    return (
        f"{label}: {learners} x {comps}, {p.decisions} decisions, {p.credentials} credentials, "
        f"{p.outbox} outbox rows in {p.seconds:.1f} s ({rate:.0f} credentials/s; {db}, "
        f"{workers} workers{f', {p.killed} killed' if p.killed else ''}), "
        f"{p.cpu:.1f} CPU-s in the workers, peak {p.peak_mb:.0f} MB per worker; {cost}; "
        f"load average {_load()}"
    )


def _load() -> str:
    """The 1-minute load average now (the machine is shared: read every figure with it)."""
    return f"{os.getloadavg()[0]:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--learners", type=int, default=5000)
    parser.add_argument("--competencies", type=int, default=8)
    parser.add_argument("--database", default="sqlite")
    parser.add_argument("--workers", type=int, nargs="+", default=None)
    parser.add_argument("--kill-every", type=float, default=0.0)
    parser.add_argument("--lease", type=float, default=None)
    parser.add_argument("--profile", type=int, default=0, metavar="ROUNDS")
    parser.add_argument("--child", default="")
    parser.add_argument("--wait", action="store_true")
    args = parser.parse_args()
    lease = args.lease if args.lease is not None else (5.0 if args.kill_every else 300.0)
    if args.child:
        _child(args.child, lease, wait=args.wait)
        return
    secretbox.configure(KEY)
    if args.profile:
        _profile(args.database, args.learners, args.competencies, args.profile)
        return
    db = "SQLite" if args.database.startswith("sqlite") else "PostgreSQL"
    workers = args.workers or ([1] if db == "SQLite" else [1, 2])
    L, K = args.learners, args.competencies
    first: dict[int, Phase] = {}
    last = ""
    for w in workers:
        url, name = _fresh_database(args.database, f"w{w}")
        try:
            course_id = _setup(url, L, K)
            queued, took = _import(url, course_id, _results(L, K, seed=1))
            print(
                f"setup ({db}, {w} workers): {L * K * 3} results stored in {took:.1f} s; "
                f"load average {_load()}",
                flush=True,
            )
            p = _work(url, w, lease=lease, kill_every=args.kill_every)
            first[w] = p
            print(_line(f"first run ({queued} learners queued)", L, K, p, db, w), flush=True)
            queued, took = _import(url, course_id, _results(L, K, seed=1))
            p2 = _work(url, w, lease=lease, kill_every=0)
            label = f"re-run, results unchanged (re-import {took:.1f} s, {queued} learners queued)"
            print(_line(label, L, K, p2, db, w), flush=True)
            queued, took = _import(url, course_id, _results(L, K, seed=1, changed=0.10))
            p3 = _work(url, w, lease=lease, kill_every=0)
            label = f"10 % of the learners changed (import {took:.1f} s, {queued} learners queued)"
            print(_line(label, L, K, p3, db, w), flush=True)
            queued = _requeue_all(url, course_id)
            p4 = _work(url, w, lease=lease, kill_every=0)
            label = f"Re-evaluate everyone, nothing changed ({queued} learners queued)"
            print(_line(label, L, K, p4, db, w), flush=True)
            dup, lost = _check(url, course_id, L, K)
            print(f"check: {dup} duplicates, {lost} lost", flush=True)
            last = (
                f"course: {L} x {K}, {p.decisions} decisions, {p.credentials} credentials in "
                f"{p.seconds:.1f} s ({db}, {w} workers), peak {p.peak_mb:.0f} MB"
            )
        finally:
            _drop_database(args.database, name)
    if 1 in first and 2 in first:
        r1 = first[1].credentials / first[1].seconds
        r2 = first[2].credentials / first[2].seconds
        c1 = first[1].credentials / first[1].cpu if first[1].cpu else 0.0
        c2 = first[2].credentials / first[2].cpu if first[2].cpu else 0.0
        print(
            f"scaling from 1 to 2 workers: {r2 / r1:.2f}x ({r1:.0f} -> {r2:.0f} credentials/s); "
            f"credentials per worker CPU-second {c1:.0f} -> {c2:.0f}"
        )
    print(last)


if __name__ == "__main__":
    main()
