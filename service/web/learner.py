"""The learner's page inside the LMS frame: progress per competency, what is missing for
the next level, credentials with their public page and downloads, where each went, and
consent per repository."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session, select

from service.db.models import Award, Credential
from service.db.types import MAX_ROW_ID, utcnow
from service.delivery import awards as delivery_awards
from service.delivery import status as delivery_status
from service.deps import SessionDep, WriteSessionDep
from service.errors import NotFound
from service.flows import learner_store, learner_view
from service.policies import badge
from service.web import auth
from service.web import pending as pending_work
from service.web.appshell import NO_STORE, back, page

__all__ = ["router"]

router = APIRouter(tags=["learner"], include_in_schema=False)


def _view(s: Session, user: auth.CurrentUser) -> dict[str, Any]:
    progress: list[dict[str, Any]] = []
    pulled = ""
    note = ""
    if user.course_id is None:
        mine = learner_store.person_awards(s, person_id=user.person_id)
    else:
        # One statement says what else to read: nothing more for a learner of a course
        # without competencies who holds no award yet.
        known = learner_view.course_state(s, course_id=user.course_id, person_id=user.person_id)
        health = known.health
        note = pending_work.note(pending_work.of(health, known.evaluations), learner=True)
        if health.connected:
            pulled = health.pulled_text(utcnow()) + (
                " A new pull is on its way." if health.waiting else ""
            )
        mine = []
        if known.has_awards:
            mine = learner_store.person_awards(
                s, person_id=user.person_id, course_id=user.course_id
            )
        if known.has_competencies:
            progress = _progress(s, user.course_id, user.person_id, [a for a, _ in mine])
    return {
        "progress": progress,
        "credentials": _credentials(s, mine),
        "pulled": pulled,
        "pending_note": note,
        "reload_path": "/app/me",
    }


def _progress(
    s: Session, course_id: int, person_id: int, awards: list[Award]
) -> list[dict[str, Any]]:
    progress = []
    for comp, decision, held_or_pending in learner_view.learner_status(
        s, course_id=course_id, person_id=person_id, awards=awards
    ):
        reasons = decision.reasons if decision is not None else None
        progress.append(
            {
                "competency": comp,
                "reasons": reasons,
                "held": next((a for a in held_or_pending if a.state == "issued"), None),
                "pending": next(
                    (a for a in held_or_pending if a.state == "pending_approval"), None
                ),
                "score": (reasons or {}).get("score"),
            }
        )
    return progress


def _credentials(s: Session, mine: list[tuple[Award, Credential | None]]) -> list[dict[str, Any]]:
    """The credentials with their destinations: one statement for all of them."""
    issued = [a.delivery_key for a, cred in mine if cred is not None and a.state == "issued"]
    where = delivery_status.destinations_of(s, issued)
    credentials = []
    for award, cred in mine:
        if cred is None:  # pending approval, or withdrawn: no credential signed
            continue
        achievement = cred.document.get("credentialSubject", {}).get("achievement", {})
        shown = achievement.get("image") if isinstance(achievement, dict) else None
        image = urlsplit(str(shown.get("id", ""))).path if isinstance(shown, dict) else ""
        credentials.append(
            {
                "award": award,
                "credential": cred,
                # the badge its instructor designed (served here), else the level's seal
                "image": image if image.startswith(badge.PATH_PREFIX) else None,
                "name": cred.document.get("name") or achievement.get("name"),
                "destinations": (
                    where.get(award.delivery_key, []) if award.state == "issued" else []
                ),
            }
        )
    return credentials


@router.get("/app/me")
def my_progress(request: Request, session: SessionDep, user: auth.UserDep) -> HTMLResponse:
    """Your levels, what is missing for the next, and your credentials."""
    view = _view(session, user)
    # The page only read: its transaction ends with a COMMIT, which costs what the ROLLBACK
    # of closing the session would, but leaves psycopg's prepared statements on the
    # connection (a ROLLBACK discards them all, so every statement of the page would be
    # parsed and planned again: ~0.2 ms of PostgreSQL CPU each, bench/README.md).
    session.commit()
    return page(request, session, user, "app/learner.html", tab="me", **view)


def _own_credential(s: Session, user: auth.CurrentUser, uuid: str) -> Credential:
    row = s.exec(select(Credential).where(Credential.uuid == uuid)).first()
    if row is None or row.person_id != user.person_id:
        raise NotFound("You have no credential with this id.")
    return row


def _download(row: Credential, body: bytes | str, ext: str, media_type: str) -> Response:
    """One of your credential's files, as an attachment no cache keeps."""
    named = {"content-disposition": f'attachment; filename="credential-{row.uuid}.{ext}"'}
    return Response(body, media_type=media_type, headers=NO_STORE | named)


@router.get("/app/me/credentials/{uuid}/credential.json")
def download_json(uuid: str, session: SessionDep, user: auth.UserDep) -> Response:
    """Download your signed credential (OB 3.0, JSON-LD with a Data Integrity proof)."""
    row = _own_credential(session, user, uuid)
    body = json.dumps(row.document, ensure_ascii=False, separators=(",", ":"))  # as JSONResponse
    return _download(row, body, "json", "application/vc+ld+json")


@router.get("/app/me/credentials/{uuid}/credential.jwt")
def download_jwt(uuid: str, session: SessionDep, user: auth.UserDep) -> Response:
    """Download your credential as a VC-JWT."""
    row = _own_credential(session, user, uuid)
    if row.jwt is None:
        raise NotFound("This credential has no VC-JWT form.")
    return _download(row, row.jwt, "jwt", "application/vc+jwt")


@router.post("/app/me/consent")
def consent(
    user: auth.UserDep,
    session: WriteSessionDep,
    credential_id: Annotated[str, Form(max_length=64)],
    repository_id: Annotated[int, Form(ge=1, le=MAX_ROW_ID)],
    granted: Annotated[str, Form(max_length=5)],
) -> Response:
    """Send (or not) one of your credentials to a repository that asks for your consent."""
    award = session.exec(
        select(Award).where(Award.delivery_key == credential_id, Award.person_id == user.person_id)
    ).first()
    if award is None:
        raise NotFound("You have no credential with this id.")
    delivery_awards.set_consent(
        session,
        credential_id=credential_id,
        repository_id=repository_id,
        granted=granted == "true",
        now=utcnow(),
    )
    session.commit()
    return back(user, "/app/me", "consent")
