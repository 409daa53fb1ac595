"""The evaluation queue (``service.evaluation``, docs/scale.md): ``run_evaluation_jobs`` (a
worker step), ``run_course_jobs`` (work on one course's queue here),
``evaluate_new_evidence`` (queue, and evaluate at once when few), ``enqueue_new_evidence``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from sqlalchemy import Engine, bindparam, update
from sqlmodel import Session, col, func, select

from service import evaluation
from service.db.engine import session as db_session
from service.db.models import CourseSetup, ImportRun
from service.db.models import Evidence as EvidenceRow
from service.db.models import VerificationEvent as VerificationRow
from service.db.types import utcnow
from service.errors import ServiceError
from service.flows.evaluating import Summary, evaluate_course
from service.flows.setup_store import course_setup, mark_evaluated
from service.lti.store import learner_inputs
from service.settings import Settings

log = logging.getLogger(__name__)


def courses_with_new_evidence(session: Session) -> list[int]:
    """Courses whose evidence changed (an applied import, push or sync) since their last
    evaluation of every learner."""
    latest = (
        select(ImportRun.course_id, func.max(ImportRun.id).label("run_id"))
        .where(col(ImportRun.course_id).is_not(None), ImportRun.status == "applied")
        .group_by(col(ImportRun.course_id))
        .subquery()
    )
    rows = session.exec(
        select(latest.c.course_id, latest.c.run_id, CourseSetup.evaluated_run_id).join(
            CourseSetup, col(CourseSetup.course_id) == latest.c.course_id, isouter=True
        )
    ).all()
    return sorted(int(c) for c, run, seen in rows if run > (seen or 0))


def enqueue_new_evidence(session: Session) -> dict[int, int]:
    """Queue the evaluation of every learner whose results or verification events an
    applied import, push or sync changed since the course's last look (only those
    learners); returns how many learners per course. The caller commits."""
    queued: dict[int, int] = {}
    for course_id in courses_with_new_evidence(session):
        setup = course_setup(session, course_id=course_id, create=True)
        seen = setup.evaluated_run_id
        changed = set(
            session.exec(
                select(EvidenceRow.person_id)
                .where(EvidenceRow.course_id == course_id, col(EvidenceRow.import_run_id) > seen)
                .distinct()
            ).all()
        ) | set(
            session.exec(
                select(VerificationRow.person_id)
                .where(
                    VerificationRow.course_id == course_id,
                    col(VerificationRow.import_run_id) > seen,
                )
                .distinct()
            ).all()
        )
        queued[course_id] = evaluation.enqueue(
            session,
            course_id=course_id,
            # a course's first results: every learner (those without results get their
            # "no level yet" decision too)
            person_ids=changed if seen else None,
            reason="new results",
        )
        mark_evaluated(session, setup)
    session.flush()
    return queued


def evaluate_new_evidence(engine_: Engine, *, settings: Settings, actor: str) -> dict[int, Summary]:
    """After a CSV import or a push to the API: queue the evaluation of the learners whose
    results changed, and evaluate them here and now when they are few (at most
    ``settings.evaluation_inline_learners``); more are left to the workers
    (``Summary.queued``)."""
    with db_session(engine_, write=True) as s:
        queued = enqueue_new_evidence(s)
        s.commit()
    done: dict[int, Summary] = {}
    for course_id, count in queued.items():
        if count > settings.evaluation_inline_learners:
            done[course_id] = Summary(queued=count)
            continue
        try:
            done[course_id] = run_course_jobs(
                engine_, settings=settings, course_id=course_id, actor=actor
            )
        except ServiceError as exc:
            log.warning(
                "evaluation of course %s after new evidence failed: %s", course_id, exc.detail
            )
    return done


def run_course_jobs(
    engine_: Engine,
    *,
    settings: Settings,
    course_id: int,
    actor: str,
    progress: Callable[[int, int], None] | None = None,
) -> Summary:
    """Work on a course's due evaluation jobs in this process until none is left that no
    one else holds (workers may take some meanwhile); what this process did."""
    total = Summary()
    with db_session(engine_) as s:
        due = evaluation.due(s, course_id=course_id)
    done = 0
    while True:
        n, summary = run_evaluation_jobs(
            engine_, settings=settings, actor=actor, course_id=course_id, limit=64
        )
        if not n:
            break
        _add(total, summary)
        done += n
        if progress is not None:
            progress(min(done, max(due, done)), max(due, done))
    return total


def _add(total: Summary, part: Summary) -> None:
    for name, value in part.__dict__.items():
        if isinstance(value, list):
            getattr(total, name).extend(value)
        else:
            setattr(total, name, getattr(total, name) + value)


def run_evaluation_jobs(
    engine_: Engine,
    *,
    settings: Settings,
    actor: str = "worker",
    limit: int = 64,
    batch: int = 16,
    course_id: int | None = None,
) -> tuple[int, Summary]:
    """One worker step: lease up to ``limit`` due evaluation jobs and evaluate and award
    them, ``batch`` learners of a course per transaction (decisions, credentials, outbox
    rows and the jobs' completion commit together). A batch that fails is retried learner
    by learner; a learner that fails is given back with a backoff and its error. Returns
    how many jobs were worked on and what they did."""
    jobs = evaluation.claim(
        engine_,
        now=utcnow(),
        limit=limit,
        lease_seconds=settings.evaluation_lease_seconds,
        course_id=course_id,
    )
    total = Summary()
    groups: list[list[evaluation.Claimed]] = []
    for job in jobs:
        if groups and groups[-1][0].course_id == job.course_id and len(groups[-1]) < batch:
            groups[-1].append(job)
        else:
            groups.append([job])
    for group in groups:
        try:
            _add(total, _run_jobs(engine_, settings=settings, jobs=group, actor=actor))
        except Exception as exc:
            if len(group) == 1:
                _give_back(engine_, group, exc)
                continue
            log.info("evaluation batch failed; retrying its %s learners one by one", len(group))
            for job in group:
                try:
                    _add(total, _run_jobs(engine_, settings=settings, jobs=[job], actor=actor))
                except Exception as one:
                    _give_back(engine_, [job], one)
    return len(jobs), total


def _run_jobs(
    engine_: Engine, *, settings: Settings, jobs: Sequence[evaluation.Claimed], actor: str
) -> Summary:
    with db_session(engine_, write=True) as s:
        held = evaluation.lock_claimed(s, jobs)
        if not held:
            return Summary()
        now = utcnow()
        summary = evaluate_course(
            s,
            settings=settings,
            course_id=held[0].course_id,
            now=now,
            actor=actor,
            person_ids=[j.person_id for j in held],
        )
        _stamp_evaluated(s, course_id=held[0].course_id, person_ids=[j.person_id for j in held])
        s.commit()
    return summary


def _stamp_evaluated(session: Session, *, course_id: int, person_ids: Sequence[int]) -> None:
    """Stamp the learners' inputs as this evaluation saw them (its own awards included), so
    their next launch finds nothing new to queue (``LearnerState``)."""
    stamps = learner_inputs(session, course_id=course_id, person_ids=person_ids)
    if stamps:
        e = evaluation.ENROLMENT.c
        session.execute(
            update(evaluation.ENROLMENT)
            .where(e.course_id == course_id, e.person_id == bindparam("p"))
            .values(evaluated_inputs=bindparam("inputs"), evaluated_at=utcnow()),
            [{"p": p, "inputs": inputs} for p, inputs in stamps.items()],
        )


def _give_back(engine_: Engine, jobs: Sequence[evaluation.Claimed], exc: Exception) -> None:
    job = jobs[0]
    log.warning(
        "evaluation of person %s in course %s failed (attempt %s)",
        job.person_id,
        job.course_id,
        job.attempts,
        exc_info=exc,
    )
    detail = exc.detail if isinstance(exc, ServiceError) else f"{type(exc).__name__}: {exc}"
    try:
        evaluation.fail(engine_, jobs, error=detail, now=utcnow())
    except Exception:  # the lease expires: the job comes back anyway
        log.exception("could not give evaluation jobs back")
