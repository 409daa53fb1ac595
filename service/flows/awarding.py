"""Instructor award actions that issue: ``approve`` a pending award, ``attest`` evidence."""

from __future__ import annotations

import datetime as dt

from sqlmodel import Session, col, select

from service import audit
from service.assessment.types import Level
from service.db.models import Award, Competency, Decision, ImportRun, Person
from service.errors import BadInput, Conflict, NotFound
from service.flows.issuing import _course_award, _issue
from service.flows.mapping import available_items
from service.flows.setup_store import _lock_learner
from service.settings import Settings
from service.sources import store
from service.sources.types import Asserter, LearnerRef, SyncReport, Verification
from service.sources.types import VerificationEvent as SourceEvent


def approve(
    session: Session,
    *,
    settings: Settings,
    course_id: int,
    award_id: int,
    actor: str,
    now: dt.datetime,
) -> Award:
    """Issue a credential that waits for approval."""
    pending = _course_award(session, course_id=course_id, award_id=award_id)
    setup = _lock_learner(session, course_id=course_id, person_id=pending.person_id)
    session.refresh(pending)
    if pending.state != "pending_approval":
        raise Conflict(f"award {award_id} is not waiting for approval (it is {pending.state})")
    person = session.get(Person, pending.person_id)
    comp = session.get(Competency, pending.competency_id)
    decision_row = session.get(Decision, pending.decision_id)
    assert person is not None and comp is not None and decision_row is not None
    held = session.exec(
        select(Award)
        .where(
            Award.course_id == course_id,
            Award.person_id == pending.person_id,
            Award.line_key == pending.line_key,
            Award.state == "issued",
        )
        .order_by(col(Award.id).desc())
    ).first()
    pending.state, pending.updated_at = "approved", now
    session.add(pending)
    award = _issue(
        session,
        settings=settings,
        setup=setup,
        person=person,
        comp=comp,
        level=Level[pending.level.upper()],
        decision_row=decision_row,
        previous=held,
        now=now,
        actor=actor,
        approved_by=actor,
    )
    assert award is not None  # not in a worker's batch: the row is returned
    audit.record(
        session, actor=actor, action="award.approved", subject=f"credential:{award.credential_uuid}"
    )
    return award


def attest(
    session: Session,
    *,
    course_id: int,
    person_id: int,
    item_id: str,
    level: str,
    attempt: int | None,
    note: str,
    actor: str,
    now: dt.datetime,
) -> SyncReport:
    """An instructor's statement that a sitting was supervised / identity-verified."""
    try:
        verification = Verification(level)
    except ValueError:
        known = ", ".join(v.value for v in Verification)
        raise BadInput(f"level: {level!r} is not one of {known}") from None
    person = session.get(Person, person_id)
    if person is None:
        raise NotFound(f"no learner {person_id}")
    if not any(
        i.key.split("/")[0] == item_id for i in available_items(session, course_id=course_id)
    ):
        raise BadInput(f"item: {item_id!r} has no results in this course")
    run = ImportRun(
        kind="attest", origin="instructor", actor=actor, status="running", started_at=now
    )
    session.add(run)
    return store.apply(
        session,
        course_id=course_id,
        results=[],
        events=[
            (
                "attestation",
                SourceEvent(
                    origin="instructor",
                    learner=LearnerRef(sub=person.sub),
                    item_id=item_id,
                    level=verification,
                    asserted_by=Asserter.INSTRUCTOR,
                    occurred_at=now,
                    attempt=attempt,
                    note=f"{actor}: {note}".strip()[:1000],
                ),
            )
        ],
        run=run,
        keep="always",
        now=now,
    )
