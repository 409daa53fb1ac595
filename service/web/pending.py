"""What the worker still owes a page: queued evaluations and a requested LMS pull.

Requests never evaluate or award (the worker's evaluation job does, ``service.evaluation``):
a launch, a saved mapping or *Re-evaluate* queue the learners and the page renders what is
known. The learner, instructor and setup pages show a note while anything is pending
(``note``) and ``/static/pending.js`` asks ``GET /app/pending`` every few seconds until
nothing is, then reloads the page (or, when the user typed into a form, says so and
leaves the reload to them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlmodel import Session

from service import evaluation
from service.deps import SessionDep
from service.flows import syncing
from service.web import auth
from service.web.appshell import NO_STORE

__all__ = ["Pending", "note", "of", "router", "state"]

router = APIRouter(tags=["pages"], include_in_schema=False)


@dataclass(frozen=True)
class Pending:
    """Queued work for a course (``person_id`` None) or one learner of it."""

    evaluations: int
    sync: bool  # a pull from the LMS was asked for and has not run yet

    @property
    def any(self) -> bool:
        return bool(self.evaluations or self.sync)


def state(
    session: Session,
    *,
    course_id: int,
    person_id: int | None = None,
    health: syncing.SyncHealth | None = None,
) -> Pending:
    """What is still owed to the course (or one learner); ``health``: the course's sync
    health when the page has read it already."""
    health = health or syncing.sync_health(session, course_id=course_id)
    return of(health, evaluation.due(session, course_id=course_id, person_id=person_id))


def of(health: syncing.SyncHealth, evaluations: int) -> Pending:
    """What is owed, from the course's sync health and its count of due evaluations (a
    page that read both in a statement of its own)."""
    return Pending(evaluations=evaluations, sync=health.connected and health.waiting)


def note(pending: Pending, *, learner: bool) -> str:
    """The sentence a page shows while work is pending ("" when none is)."""
    if not pending.any:
        return ""
    parts = []
    if pending.sync:
        parts.append("a pull of the latest results from the LMS is queued")
    if pending.evaluations:
        parts.append(
            "your results are being evaluated"
            if learner
            else f"{pending.evaluations} learner{'s' if pending.evaluations != 1 else ''} "
            "wait for their evaluation"
        )
    text = "; ".join(parts)
    return f"{text[0].upper()}{text[1:]}. This page updates itself when the worker is done."


@router.get("/app/pending")
def pending(session: SessionDep, user: auth.UserDep) -> JSONResponse:
    """Whether the worker still owes this page an evaluation or a pull (polled by the page)."""
    body: dict[str, Any] = {"pending": False, "evaluations": 0, "sync": False}
    if user.course_id is not None:
        learner = None if user.is_instructor else user.person_id
        found = state(session, course_id=user.course_id, person_id=learner)
        body = {"pending": found.any, "evaluations": found.evaluations, "sync": found.sync}
    return JSONResponse(body, headers=NO_STORE)
