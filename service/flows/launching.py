"""What a learner's launch starts afterwards (a sync request, an evaluation queued); the
launch's rows are recorded by ``service.lti.store.record_user``."""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import Engine
from sqlmodel import select

from service import evaluation
from service.db.engine import session as db_session
from service.db.models import Enrolment
from service.delivery import status as delivery_status
from service.errors import ServiceError
from service.flows.syncing import request_sync
from service.lti.store import LaunchRecord, LearnerState, learner_state
from service.settings import Settings

log = logging.getLogger(__name__)


def _learner_launch(record: LaunchRecord) -> LearnerState | None:
    """The state ``after_launch`` decides on: a learner's launch in a course only."""
    if record.role != "learner" or record.course_id is None:
        return None
    return record.learner


def after_launch_due(*, settings: Settings, record: LaunchRecord, now: dt.datetime) -> bool:
    """Whether ``after_launch`` has anything to do for this launch (no statement)."""
    if record.new_email is not None:
        return True
    state = _learner_launch(record)
    if state is None:
        return False
    return state.sync_due(
        now, dt.timedelta(seconds=settings.launch_sync_interval_seconds)
    ) or state.evaluation_due(now, dt.timedelta(seconds=settings.launch_evaluation_max_age_seconds))


def after_launch(
    engine_: Engine, *, settings: Settings, record: LaunchRecord, now: dt.datetime
) -> None:
    """A learner's launch: ask the worker for a pull of the course (when a source is
    connected and the last pull is older than ``launch_sync_interval_seconds``: a
    timestamp, no LMS call in the request) and queue that learner's evaluation (the
    worker's evaluation job awards; ``evaluation.enqueue`` is idempotent) when anything the
    evaluation reads changed since their last launch queued it, or that was longer ago than
    ``launch_evaluation_max_age_seconds`` (time-dependent rules). A returning learner with
    nothing new costs no statement here; the page renders what is known and says that an
    evaluation is pending (no evaluation runs in the request). Runs after the launch
    committed. A launch that brings a new e-mail records the badges delivered to the old
    one (``delivery.status.detect_email_change``) for the administrator to re-send.
    """
    if record.new_email is not None:
        with db_session(engine_, write=True) as s:
            delivery_status.detect_email_change(
                s, person_id=record.person_id, new_email=record.new_email, now=now
            )
            s.commit()
    state = _learner_launch(record)
    if state is None or record.course_id is None:
        return
    course_id = record.course_id
    wanted = state.sync_due(now, dt.timedelta(seconds=settings.launch_sync_interval_seconds))
    max_age = dt.timedelta(seconds=settings.launch_evaluation_max_age_seconds)
    evaluate = state.evaluation_due(now, max_age)
    if not wanted and not evaluate:
        return
    try:
        with db_session(engine_, write=True) as s:
            if wanted:
                request_sync(s, course_id=course_id, now=now)
            if evaluate:
                evaluation.enqueue(
                    s, course_id=course_id, person_ids=[record.person_id], reason="launch", now=now
                )
                # Stamp the inputs as queued. The worker's awards change them, so the next
                # launch queues once more and finds nothing new; a sync, an import, an
                # attestation or a rule change queues the learners it touches itself.
                enrolment = s.exec(
                    select(Enrolment).where(
                        Enrolment.course_id == course_id, Enrolment.person_id == record.person_id
                    )
                ).one()
                enrolment.evaluated_inputs = learner_state(s, enrolment=enrolment).inputs
                enrolment.evaluated_at = now
                s.add(enrolment)
            s.commit()
    except ServiceError as exc:
        log.warning("refresh on launch in course %s failed: %s", course_id, exc.detail)
