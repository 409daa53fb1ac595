"""The instructor's pages inside the LMS frame: learners and their levels, competencies.

Authorized by the role in the session's course (``auth.InstructorDep``); every action
works on ``user.course_id`` only, so an instructor of course A cannot touch course B. Forms
carry the CSRF token tied to the tool session (and the session token when cookies are
blocked).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool

from service import evaluation
from service.assessment.types import Level, VerificationLevel
from service.db.models import Award, Enrolment, Person, SourceConnection
from service.db.types import row_id, utcnow
from service.deps import RowId, SessionDep, SettingsDep, WriteSessionDep
from service.errors import BadInput, ServiceError
from service.flows import (
    awarding,
    evaluating,
    mapping,
    revoking,
    setup_store,
    syncing,
    wiring,
)
from service.policies import badge
from service.policies import repository as policies_repo
from service.settings import Settings
from service.web import auth
from service.web import pending as pending_work
from service.web.appshell import page, submit

__all__ = ["router"]

router = APIRouter(tags=["instructor"], include_in_schema=False)

LEVEL_KEYS = ("beginning", "intermediate", "advanced")


def _course_id(user: auth.CurrentUser) -> int:
    if user.course_id is None:
        raise BadInput(
            "This session is not in a course.",
            hint="Open microcred from a course to manage its credentials.",
        )
    return user.course_id


def _learners_view(s: Session, course_id: int, settings: Settings) -> dict[str, Any]:
    rows = evaluating.preview_course(s, course_id=course_id, now=utcnow())
    competencies = wiring.course_competencies(s, course_id=course_id)
    items = mapping.available_items(s, course_id=course_id)
    health = syncing.sync_health(s, course_id=course_id, settings=settings)
    note = pending_work.note(
        pending_work.state(s, course_id=course_id, health=health), learner=False
    )
    setup = setup_store.course_setup(s, course_id=course_id)
    connection = (
        s.get(SourceConnection, setup.source_connection_id)
        if setup.source_connection_id is not None
        else None
    )
    stacked: dict[int, list[Award]] = defaultdict(list)
    for award in s.exec(
        select(Award).where(
            Award.course_id == course_id,
            Award.state == "issued",
            col(Award.line_key).startswith("stack:"),
        )
    ):
        stacked[award.person_id].append(award)
    gone = select(Enrolment.person_id).where(Enrolment.course_id == course_id)
    removed = set(s.exec(gone.where(Enrolment.status == "removed")))
    by_person: dict[int, list[evaluating.Row]] = defaultdict(list)
    people: dict[int, Person] = {}
    counts = {lv.key: 0 for lv in Level}
    for row in rows:
        assert row.person.id is not None
        by_person[row.person.id].append(row)
        people[row.person.id] = row.person
        if row.decision is not None:
            counts[row.decision.level.key] += 1
    attest_items: dict[str, str] = {}
    for item in items:
        attest_items.setdefault(item.key.split("/")[0], item.label.split(": ")[0])
    return {
        "attest_items": sorted(attest_items.items(), key=lambda kv: kv[1]),
        "learners": [(people[pid], by_person[pid]) for pid in people],
        "stacked": stacked,
        "removed": removed,
        "competencies": competencies,
        "connected": health.connected,
        "health": health,
        "pulled": health.pulled_text(utcnow()),
        "connection": (
            {"kind": connection.kind, "base_url": connection.base_url, "name": connection.name}
            if connection is not None
            else None
        ),
        "setup": setup,
        "counts": counts,
        "verifications": [v for v in VerificationLevel if v >= VerificationLevel.SUPERVISED],
        "pending_note": note,
        "reload_path": "/app/course",
    }


@router.get("/app/course")
def learners_page(request: Request, session: SessionDep, user: auth.InstructorDep) -> HTMLResponse:
    """Who reaches which level and why; approve, revoke, attest, re-evaluate, sync."""
    view = _learners_view(session, _course_id(user), request.app.state.settings)
    return page(request, session, user, "app/instructor.html", tab="course", **view)


def _submit(
    request: Request,
    session: Session,
    user: auth.CurrentUser,
    work: Callable[[], int | None],
    done: str,
    *,
    setup: bool = False,
    queued: str | None = None,
    **typed: Any,
) -> Response:
    """A form post of the learners page (or, ``setup``, of the competencies page): see
    ``appshell.submit``; an error shows that page again, with what was ``typed``."""

    def failed(exc: ServiceError) -> HTMLResponse:
        course_id = _course_id(user)
        if setup:
            view = _setup_view(session, course_id) | typed
            template, tab, status = "app/setup.html", "setup", 422
        else:
            view = _learners_view(session, course_id, request.app.state.settings)
            template, tab, status = "app/instructor.html", "course", 502
        status = exc.status_code if exc.status_code < 500 else status
        return page(
            request, session, user, template, tab=tab, status_code=status, error=exc, **view
        )

    to = "/app/setup" if setup else "/app/course"
    return submit(session, user, work, to=to, done=done, queued=queued, failed=failed)


@router.post("/app/course/reevaluate")
def reevaluate(
    request: Request, session: WriteSessionDep, settings: SettingsDep, user: auth.InstructorDep
) -> Response:
    """Queue every learner of the course for the worker's evaluation (and a pull when the
    course's results are stale)."""
    course_id = _course_id(user)

    def work() -> int:
        queued = evaluation.enqueue(session, course_id=course_id, reason="re-evaluate (instructor)")
        # the worker evaluates the queued learners; a stale course's pull is asked for too
        syncing.request_sync_if_stale(session, settings=settings, course_id=course_id, now=utcnow())
        return queued

    return _submit(request, session, user, work, "queued")


@router.post("/app/course/sync")
def sync_from_lms(request: Request, session: WriteSessionDep, user: auth.InstructorDep) -> Response:
    """Ask the worker to pull the course's roster and results now (no LMS call here)."""
    course_id = _course_id(user)

    def work() -> None:
        if not syncing.sync_health(session, course_id=course_id).connected:
            raise BadInput(
                "This course is not connected to the LMS's data API.",
                hint="Connect it below (Connect to the LMS).",
            )
        syncing.request_sync(session, course_id=course_id, now=utcnow())

    return _submit(request, session, user, work, "sync_requested")


@router.post("/app/course/connect")
def connect_source(
    request: Request,
    session: WriteSessionDep,
    user: auth.InstructorDep,
    kind: Annotated[str, Form(max_length=20)],
    base_url: Annotated[str, Form(max_length=1000)],
    lms_course_id: Annotated[str, Form(max_length=255)],
    token: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    """Connect the course to its Moodle web services or Canvas REST API (token encrypted at
    rest, never shown back); the worker pulls it from now on."""
    course_id = _course_id(user)

    def work() -> None:
        wiring.connect_course(
            session,
            course_id=course_id,
            kind=kind,
            base_url=base_url,
            token=token,
            lms_course_id=lms_course_id,
            actor=user.actor,
            now=utcnow(),
        )

    return _submit(request, session, user, work, "connected")


@router.post("/app/course/attest")
def attest(
    request: Request,
    session: WriteSessionDep,
    user: auth.InstructorDep,
    person_id: Annotated[int, Form()],
    item_id: Annotated[str, Form(max_length=255)],
    level: Annotated[str, Form(max_length=40)],
    attempt: Annotated[str, Form(max_length=6)] = "",
    note: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Record that a learner's sitting was supervised / identity-verified, and re-evaluate."""
    course_id = _course_id(user)

    def work() -> None:
        if attempt.strip() and row_id(attempt.strip()) is None:
            raise BadInput("attempt: a number (1, 2, …), or empty for every attempt")
        if not evaluation.course_learner_ids(session, course_id=course_id, person_ids=[person_id]):
            raise BadInput("This learner is not in the course.")
        now = utcnow()
        awarding.attest(
            session,
            course_id=course_id,
            person_id=person_id,
            item_id=item_id,
            level=level,
            attempt=int(attempt) if attempt.strip() else None,
            note=note,
            actor=user.actor,
            now=now,
        )
        # the worker re-evaluates (and awards) the learner
        evaluation.enqueue(
            session, course_id=course_id, person_ids=[person_id], reason="attestation", now=now
        )

    return _submit(request, session, user, work, "attested")


@router.post("/app/course/awards/{award_id}/approve")
def approve(
    request: Request,
    award_id: RowId,
    session: WriteSessionDep,
    settings: SettingsDep,
    user: auth.InstructorDep,
) -> Response:
    """Approve a credential that waits for approval."""

    def work() -> None:
        awarding.approve(
            session,
            settings=settings,
            course_id=_course_id(user),
            award_id=award_id,
            actor=user.actor,
            now=utcnow(),
        )

    return _submit(request, session, user, work, "approved")


@router.post("/app/course/awards/{award_id}/revoke")
def revoke(
    request: Request,
    award_id: RowId,
    session: WriteSessionDep,
    settings: SettingsDep,
    user: auth.InstructorDep,
    reason: Annotated[str, Form(max_length=500)] = "",
    confirm: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Revoke a credential, with the reason the learner and repositories will see."""

    def work() -> None:
        if confirm != "yes":
            raise BadInput(
                "the credential was not revoked: the confirmation was not ticked",
                hint="Open Revoke… again, give the reason and tick “Yes, revoke this credential”.",
            )
        revoking.revoke_award(
            session,
            settings=settings,
            course_id=_course_id(user),
            award_id=award_id,
            reason=reason,
            actor=user.actor,
            now=utcnow(),
        )

    return _submit(request, session, user, work, "revoked")


@router.post("/app/course/awards/{award_id}/allow")
def allow_reaward(
    request: Request, award_id: int, session: WriteSessionDep, user: auth.InstructorDep
) -> Response:
    """Lift a revocation's re-award block, then re-evaluate the learner."""
    course_id = _course_id(user)

    def work() -> None:
        now = utcnow()
        award = revoking.allow_reaward(
            session, course_id=course_id, award_id=award_id, actor=user.actor, now=now
        )
        evaluation.enqueue(
            session,
            course_id=course_id,
            person_ids=[award.person_id],
            reason="re-award allowed",
            now=now,
        )

    return _submit(request, session, user, work, "allowed")


@router.post("/app/course/awards/{award_id}/keep")
def keep(
    request: Request, award_id: RowId, session: WriteSessionDep, user: auth.InstructorDep
) -> Response:
    """Keep a credential that a lower decision flagged for review."""

    def work() -> None:
        revoking.keep_award(
            session,
            course_id=_course_id(user),
            award_id=award_id,
            actor=user.actor,
            now=utcnow(),
        )

    return _submit(request, session, user, work, "kept")


# --- competencies, mapping, thresholds, award rules ------------------------------------------


def _setup_view(s: Session, course_id: int) -> dict[str, Any]:
    competencies = wiring.course_competencies(s, course_id=course_id)
    items = mapping.available_items(s, course_id=course_id)
    attached = {c.competency.id for c in competencies}
    catalogue = [c for c in policies_repo.competencies(s) if c.id not in attached]
    setup = setup_store.course_setup(s, course_id=course_id)
    # how many other courses assess each competency (its badge is then not this one's)
    shared = {
        c.competency.key: badge.other_courses(s, c.competency, course_id) for c in competencies
    }
    note = pending_work.note(pending_work.state(s, course_id=course_id), learner=False)
    labels = {i.key: i.label for i in items}
    for c in competencies:
        if c.policy is not None:
            labels.update(
                {m.item: m.label or m.item for m in c.policy.items if m.item not in labels}
            )
    return {
        "competencies": competencies,
        "items": items,
        "item_labels": labels,
        "catalogue": catalogue,
        "setup": setup,
        "level_keys": LEVEL_KEYS,
        "shared": shared,
        "image_path": badge.image_path,
        "max_image_kb": badge.MAX_BYTES // 1024,
        "pending_note": note,
        "reload_path": "/app/setup",
    }


@router.get("/app/setup")
def setup_page(request: Request, session: SessionDep, user: auth.InstructorDep) -> HTMLResponse:
    """The course's competencies, their mapping and thresholds, and the award rules."""
    view = _setup_view(session, _course_id(user))
    return page(request, session, user, "app/setup.html", tab="setup", **view)


@router.post("/app/setup/competencies/{key}")
async def save_competency(
    request: Request,
    key: str,
    session: WriteSessionDep,
    settings: SettingsDep,
    user: auth.InstructorDep,
) -> Response:
    """Save one competency's mapped items and thresholds (within the institution's bounds)."""
    form = await request.form()
    chosen = [str(v) for v in form.getlist("items")][:200]
    thresholds = {lv: str(form.get(f"threshold_{lv}", ""))[:10] for lv in LEVEL_KEYS}
    course_id = _course_id(user)

    def work() -> int:
        labels = {i.key: i.label for i in mapping.available_items(session, course_id=course_id)}
        current = next(
            (
                c
                for c in wiring.course_competencies(session, course_id=course_id)
                if c.competency.key == key
            ),
            None,
        )
        if current is not None and current.policy is not None:
            for m in current.policy.items:
                labels.setdefault(m.item, m.label or m.item)
        unknown = [k for k in chosen if k not in labels]
        if unknown:
            raise BadInput(f"items: {unknown[0]!r} is not an item of this course")
        queued = wiring.save_competency_setup(
            session,
            course_id=course_id,
            competency_key=key,
            items=[(k, labels[k]) for k in chosen],
            thresholds=thresholds,
            actor=user.actor,
        )
        # the worker evaluates the queued learners; a stale course's pull is asked for too
        syncing.request_sync_if_stale(session, settings=settings, course_id=course_id, now=utcnow())
        return queued

    return await run_in_threadpool(
        _submit, request, session, user, work, "saved", setup=True, queued="saved_queued"
    )


@router.post("/app/setup/competencies/{key}/badge")
async def design_badge(
    request: Request, key: str, session: WriteSessionDep, user: auth.InstructorDep
) -> Response:
    """Save a competency's badge: its name, each level's criteria and its PNG image."""
    form = await request.form()

    def text(name: str, limit: int) -> str:
        value = form.get(name)
        return value[:limit] if isinstance(value, str) else ""

    upload = form.get("image")
    data = b""
    try:
        if upload is not None and not isinstance(upload, str):
            # read one byte more than allowed: a larger file is refused, not cut
            data = await upload.read(badge.MAX_BYTES + 1)
    finally:
        await form.close()  # the upload's temporary file

    typed = {"name": text("name", 300)} | {
        f"criteria_{lv}": text(f"criteria_{lv}", 2000) for lv in LEVEL_KEYS
    }

    def work() -> None:
        badge.design(
            session,
            course_id=_course_id(user),
            competency_key=key,
            name=typed["name"],
            criteria={lv: typed[f"criteria_{lv}"] for lv in LEVEL_KEYS},
            image_data=data or None,
            remove_image=text("default_image", 5) == "on",
            author=user.actor,
            now=utcnow(),
        )

    # on an error, what was typed comes back (the file must be chosen again)
    return await run_in_threadpool(
        _submit,
        request,
        session,
        user,
        work,
        "badge_saved",
        setup=True,
        typed_badge={key: typed},
        open_badge=key,
    )


@router.post("/app/setup/competencies")
def add_competency(
    request: Request,
    session: WriteSessionDep,
    user: auth.InstructorDep,
    key: Annotated[str, Form(max_length=100)],
) -> Response:
    """Assess a competency from the institution's catalogue in this course."""

    def work() -> None:
        wiring.add_competency(
            session, course_id=_course_id(user), competency_key=key, actor=user.actor
        )

    return _submit(request, session, user, work, "added", setup=True)


@router.post("/app/setup/new-competency")
def create_competency(
    request: Request,
    session: WriteSessionDep,
    user: auth.InstructorDep,
    name: Annotated[str, Form(max_length=300)] = "",
    description: Annotated[str, Form(max_length=4000)] = "",
    beginning: Annotated[str, Form(max_length=2000)] = "",
    intermediate: Annotated[str, Form(max_length=2000)] = "",
    advanced: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Create a competency (name, description, what each level means) for this course."""

    def work() -> None:
        wiring.create_course_competency(
            session,
            course_id=_course_id(user),
            name=name,
            description=description,
            level_descriptions={
                "beginning": beginning,
                "intermediate": intermediate,
                "advanced": advanced,
            },
            actor=user.actor,
        )

    return _submit(request, session, user, work, "added", setup=True)


@router.post("/app/setup/rules")
def save_rules(
    request: Request,
    session: WriteSessionDep,
    settings: SettingsDep,
    user: auth.InstructorDep,
    on_lower: Annotated[str, Form(max_length=20)] = "flag",
    approval_required: Annotated[str, Form(max_length=5)] = "",
) -> Response:
    """What a lower decision does to a held credential; whether awards need approval."""
    course_id = _course_id(user)

    def work() -> int:
        wiring.set_award_rules(
            session,
            course_id=course_id,
            on_lower=on_lower,
            approval_required=approval_required == "on",
            actor=user.actor,
            now=utcnow(),
        )
        # the worker evaluates the learners due; a stale course's pull is asked for too
        syncing.request_sync_if_stale(session, settings=settings, course_id=course_id, now=utcnow())
        return evaluation.due(session, course_id=course_id)

    return _submit(request, session, user, work, "rules", setup=True, queued="rules_queued")
