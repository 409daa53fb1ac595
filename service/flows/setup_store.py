"""A course's setup row, and the per-learner lock award changes take."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, func, select

from service import evaluation
from service.db.models import CourseSetup, ImportRun


def course_setup(session: Session, *, course_id: int, create: bool = False) -> CourseSetup:
    """The course's wiring row (a transient default when there is none and not ``create``)."""
    row = session.exec(select(CourseSetup).where(CourseSetup.course_id == course_id)).first()
    if row is None:
        row = CourseSetup(course_id=course_id)
        if create:
            try:
                with session.begin_nested():
                    session.add(row)
            except IntegrityError:  # a concurrent launch created it
                row = session.exec(
                    select(CourseSetup).where(CourseSetup.course_id == course_id)
                ).one()
    return row


def mark_evaluated(session: Session, setup: CourseSetup) -> None:
    """Record the course's latest import as looked at (its changed learners queued, or every
    learner evaluated)."""
    latest = session.exec(
        select(func.max(ImportRun.id)).where(ImportRun.course_id == setup.course_id)
    ).one()
    if latest is not None and latest > setup.evaluated_run_id:
        setup.evaluated_run_id = latest
        session.add(setup)


def _lock_learner(session: Session, *, course_id: int, person_id: int) -> CourseSetup:
    """The course's wiring row, with the learner's evaluation locked until the transaction
    ends, so an instructor's action on a learner's award and an evaluation of that learner
    (a launch, a worker) never interleave. SQLite's BEGIN IMMEDIATE already serialises
    writers; PostgreSQL needs the row lock (``evaluation.lock_learner``)."""
    setup = course_setup(session, course_id=course_id, create=True)
    session.flush()
    evaluation.lock_learner(session, course_id=course_id, person_id=person_id)
    return setup
