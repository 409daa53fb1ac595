"""The instructor's pages inside the LMS frame: learners and their levels, competencies.

Authorized by the role in the session's course (``auth.InstructorDep``); every action
works on ``user.course_id`` only, so an instructor of course A cannot touch course B. Forms
carry the CSRF token tied to the tool session (and the session token when cookies are
blocked).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import col, select
from starlette.concurrency import run_in_threadpool

from service import evaluation
from service.assessment.types import Level, VerificationLevel
from service.db.engine import session as db_session
from service.db.models import Award, Person, SourceConnection
from service.db.types import row_id, utcnow
from service.deps import EngineDep, RowId, SettingsDep
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
from service.web import auth
from service.web import pending as pending_work
from service.web.appshell import back, page

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


def _actor(user: auth.CurrentUser) -> str:
    return f"person:{user.person_id}"


def _learners_view(engine: Any, course_id: int, settings: Any = None) -> dict[str, Any]:
    with db_session(engine) as s:
        rows = evaluating.preview_course(s, course_id=course_id, now=utcnow())
        competencies = wiring.course_competencies(s, course_id=course_id)
        items = mapping.available_items(s, course_id=course_id)
        health = syncing.sync_health(s, course_id=course_id, settings=settings)
        connected = health.connected
        note = pending_work.note(pending_work.state(s, course_id=course_id), learner=False)
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
    by_person: dict[int, list[evaluating.Row]] = defaultdict(list)
    people: dict[int, Person] = {}
    for row in rows:
        assert row.person.id is not None
        by_person[row.person.id].append(row)
        people[row.person.id] = row.person
    counts = {lv.key: 0 for lv in Level}
    for row in rows:
        if row.decision is not None:
            counts[row.decision.level.key] += 1
    attest_items: dict[str, str] = {}
    for item in items:
        attest_items.setdefault(item.key.split("/")[0], item.label.split(": ")[0])
    return {
        "attest_items": sorted(attest_items.items(), key=lambda kv: kv[1]),
        "learners": [(people[pid], by_person[pid]) for pid in people],
        "stacked": stacked,
        "competencies": competencies,
        "items": items,
        "connected": connected,
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
def learners_page(request: Request, engine: EngineDep, user: auth.InstructorDep) -> HTMLResponse:
    """Who reaches which level and why; approve, revoke, attest, re-evaluate, sync."""
    course_id = _course_id(user)
    settings = getattr(request.app.state, "settings", None)
    return page(
        request,
        engine,
        user,
        "app/instructor.html",
        tab="course",
        **_learners_view(engine, course_id, settings),
    )


def _error_page(
    request: Request,
    engine: Any,
    user: auth.CurrentUser,
    exc: ServiceError,
    *,
    setup: bool,
    **typed: Any,
) -> HTMLResponse:
    course_id = _course_id(user)
    if setup:
        return page(
            request,
            engine,
            user,
            "app/setup.html",
            tab="setup",
            status_code=exc.status_code if exc.status_code < 500 else 422,
            error=exc,
            **(_setup_view(engine, course_id) | typed),
        )
    return page(
        request,
        engine,
        user,
        "app/instructor.html",
        tab="course",
        status_code=exc.status_code if exc.status_code < 500 else 502,
        error=exc,
        **_learners_view(engine, course_id, getattr(request.app.state, "settings", None)),
    )


@router.post("/app/course/reevaluate")
def reevaluate(
    request: Request, engine: EngineDep, settings: SettingsDep, user: auth.InstructorDep
) -> Response:
    """Queue every learner of the course for the worker's evaluation (and a pull when the
    course's results are stale)."""
    course_id = _course_id(user)
    try:
        with db_session(engine, write=True) as s:
            queued = evaluation.enqueue(s, course_id=course_id, reason="re-evaluate (instructor)")
            syncing.request_sync_if_stale(s, settings=settings, course_id=course_id, now=utcnow())
            s.commit()
    except ServiceError as exc:
        return _error_page(request, engine, user, exc, setup=False)
    return back(user, "/app/course", "queued", n=queued)


@router.post("/app/course/sync")
def sync_from_lms(request: Request, engine: EngineDep, user: auth.InstructorDep) -> Response:
    """Ask the worker to pull the course's roster and results now (no LMS call here)."""
    course_id = _course_id(user)
    try:
        with db_session(engine, write=True) as s:
            if not syncing.has_source(s, course_id=course_id):
                raise BadInput(
                    "This course is not connected to the LMS's data API.",
                    hint="Connect it below (Connect to the LMS).",
                )
            syncing.request_sync(s, course_id=course_id, now=utcnow())
            s.commit()
    except ServiceError as exc:
        return _error_page(request, engine, user, exc, setup=False)
    return back(user, "/app/course", "sync_requested")


@router.post("/app/course/connect")
def connect_source(
    request: Request,
    engine: EngineDep,
    user: auth.InstructorDep,
    kind: Annotated[str, Form(max_length=20)],
    base_url: Annotated[str, Form(max_length=1000)],
    lms_course_id: Annotated[str, Form(max_length=255)],
    token: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    """Connect the course to its Moodle web services or Canvas REST API (token encrypted at
    rest, never shown back); the worker pulls it from now on."""
    course_id = _course_id(user)
    try:
        with db_session(engine, write=True) as s:
            wiring.connect_course(
                s,
                course_id=course_id,
                kind=kind,
                base_url=base_url,
                token=token,
                lms_course_id=lms_course_id,
                actor=_actor(user),
                now=utcnow(),
            )
            s.commit()
    except ServiceError as exc:
        return _error_page(request, engine, user, exc, setup=False)
    return back(user, "/app/course", "connected")


@router.post("/app/course/attest")
def attest(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    user: auth.InstructorDep,
    person_id: Annotated[int, Form()],
    item_id: Annotated[str, Form(max_length=255)],
    level: Annotated[str, Form(max_length=40)],
    attempt: Annotated[str, Form(max_length=6)] = "",
    note: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Record that a learner's sitting was supervised / identity-verified, and re-evaluate."""
    course_id = _course_id(user)
    try:
        if attempt.strip() and row_id(attempt.strip()) is None:
            raise BadInput("attempt: a number (1, 2, …), or empty for every attempt")
        with db_session(engine, write=True) as s:
            _check_learner(s, course_id, person_id)
            now = utcnow()
            awarding.attest(
                s,
                course_id=course_id,
                person_id=person_id,
                item_id=item_id,
                level=level,
                attempt=int(attempt) if attempt.strip() else None,
                note=note,
                actor=_actor(user),
                now=now,
            )
            # the worker re-evaluates (and awards) the learner
            evaluation.enqueue(
                s, course_id=course_id, person_ids=[person_id], reason="attestation", now=now
            )
            s.commit()
    except ServiceError as exc:
        return _error_page(request, engine, user, exc, setup=False)
    return back(user, "/app/course", "attested")


def _check_learner(s: Any, course_id: int, person_id: int) -> None:
    if person_id not in {p.id for p in evaluating.course_learners(s, course_id=course_id)}:
        raise BadInput("This learner is not in the course.")


@router.post("/app/course/awards/{award_id}/approve")
def approve(
    request: Request,
    award_id: RowId,
    engine: EngineDep,
    settings: SettingsDep,
    user: auth.InstructorDep,
) -> Response:
    """Approve a credential that waits for approval."""
    try:
        with db_session(engine, write=True) as s:
            awarding.approve(
                s,
                settings=settings,
                course_id=_course_id(user),
                award_id=award_id,
                actor=_actor(user),
                now=utcnow(),
            )
            s.commit()
    except ServiceError as exc:
        return _error_page(request, engine, user, exc, setup=False)
    return back(user, "/app/course", "approved")


@router.post("/app/course/awards/{award_id}/revoke")
def revoke(
    request: Request,
    award_id: RowId,
    engine: EngineDep,
    settings: SettingsDep,
    user: auth.InstructorDep,
    reason: Annotated[str, Form(max_length=500)] = "",
    confirm: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Revoke a credential, with the reason the learner and repositories will see."""
    try:
        if confirm != "yes":
            raise BadInput(
                "the credential was not revoked: the confirmation was not ticked",
                hint="Open Revoke… again, give the reason and tick “Yes, revoke this credential”.",
            )
        with db_session(engine, write=True) as s:
            revoking.revoke_award(
                s,
                settings=settings,
                course_id=_course_id(user),
                award_id=award_id,
                reason=reason,
                actor=_actor(user),
                now=utcnow(),
            )
            s.commit()
    except ServiceError as exc:
        return _error_page(request, engine, user, exc, setup=False)
    return back(user, "/app/course", "revoked")


@router.post("/app/course/awards/{award_id}/allow")
def allow_reaward(
    request: Request,
    award_id: int,
    engine: EngineDep,
    settings: SettingsDep,
    user: auth.InstructorDep,
) -> Response:
    """Lift a revocation's re-award block, then re-evaluate the learner."""
    course_id = _course_id(user)
    try:
        with db_session(engine, write=True) as s:
            now = utcnow()
            award = revoking.allow_reaward(
                s, course_id=course_id, award_id=award_id, actor=_actor(user), now=now
            )
            evaluation.enqueue(
                s,
                course_id=course_id,
                person_ids=[award.person_id],
                reason="re-award allowed",
                now=now,
            )
            s.commit()
    except ServiceError as exc:
        return _error_page(request, engine, user, exc, setup=False)
    return back(user, "/app/course", "allowed")


@router.post("/app/course/awards/{award_id}/keep")
def keep(
    request: Request, award_id: RowId, engine: EngineDep, user: auth.InstructorDep
) -> Response:
    """Keep a credential that a lower decision flagged for review."""
    try:
        with db_session(engine, write=True) as s:
            revoking.keep_award(
                s, course_id=_course_id(user), award_id=award_id, actor=_actor(user), now=utcnow()
            )
            s.commit()
    except ServiceError as exc:
        return _error_page(request, engine, user, exc, setup=False)
    return back(user, "/app/course", "kept")


# --- competencies, mapping, thresholds, award rules ------------------------------------------


def _setup_view(engine: Any, course_id: int) -> dict[str, Any]:
    with db_session(engine) as s:
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
def setup_page(request: Request, engine: EngineDep, user: auth.InstructorDep) -> HTMLResponse:
    """The course's competencies, their mapping and thresholds, and the award rules."""
    return page(
        request,
        engine,
        user,
        "app/setup.html",
        tab="setup",
        **_setup_view(engine, _course_id(user)),
    )


@router.post("/app/setup/competencies/{key}")
async def save_competency(
    request: Request,
    key: str,
    engine: EngineDep,
    settings: SettingsDep,
    user: auth.InstructorDep,
) -> Response:
    """Save one competency's mapped items and thresholds (within the institution's bounds)."""
    form = await request.form()
    chosen = [str(v) for v in form.getlist("items")][:200]
    thresholds = {lv: str(form.get(f"threshold_{lv}", ""))[:10] for lv in LEVEL_KEYS}

    def run() -> evaluating.Summary:
        with db_session(engine, write=True) as s:
            labels = {
                i.key: i.label for i in mapping.available_items(s, course_id=_course_id(user))
            }
            current = next(
                (
                    c
                    for c in wiring.course_competencies(s, course_id=_course_id(user))
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
                s,
                course_id=_course_id(user),
                competency_key=key,
                items=[(k, labels[k]) for k in chosen],
                thresholds=thresholds,
                actor=_actor(user),
            )
            s.commit()
        return _after_rules_change(engine, settings, user, queued)

    try:
        summary = await run_in_threadpool(run)
    except ServiceError as exc:
        return await run_in_threadpool(_error_page, request, engine, user, exc, setup=True)
    if summary.queued:
        return back(user, "/app/setup", "saved_queued", n=summary.queued)
    return back(user, "/app/setup", "saved")


def _after_rules_change(
    engine: Any, settings: Any, user: auth.CurrentUser, queued: int
) -> evaluating.Summary:
    """The rules changed and ``queued`` learners wait for their evaluation (queued in the
    save's transaction): the worker evaluates and awards them; this asks for a pull too
    when the course's results are stale. No evaluation runs in the request."""
    with db_session(engine, write=True) as s:
        syncing.request_sync_if_stale(
            s, settings=settings, course_id=_course_id(user), now=utcnow()
        )
        s.commit()
    return evaluating.Summary(queued=queued)


@router.post("/app/setup/competencies/{key}/badge")
async def design_badge(
    request: Request, key: str, engine: EngineDep, user: auth.InstructorDep
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

    def run() -> None:
        with db_session(engine, write=True) as s:
            badge.design(
                s,
                course_id=_course_id(user),
                competency_key=key,
                name=typed["name"],
                criteria={lv: typed[f"criteria_{lv}"] for lv in LEVEL_KEYS},
                image_data=data or None,
                remove_image=text("default_image", 5) == "on",
                author=_actor(user),
                now=utcnow(),
            )
            s.commit()

    try:
        await run_in_threadpool(run)
    except ServiceError as exc:  # what was typed comes back (the file must be chosen again)
        return await run_in_threadpool(
            _error_page,
            request,
            engine,
            user,
            exc,
            setup=True,
            typed_badge={key: typed},
            open_badge=key,
        )
    return back(user, "/app/setup", "badge_saved")


@router.post("/app/setup/competencies")
def add_competency(
    request: Request,
    engine: EngineDep,
    user: auth.InstructorDep,
    key: Annotated[str, Form(max_length=100)],
) -> Response:
    """Assess a competency from the institution's catalogue in this course."""
    try:
        with db_session(engine, write=True) as s:
            wiring.add_competency(
                s, course_id=_course_id(user), competency_key=key, actor=_actor(user)
            )
            s.commit()
    except ServiceError as exc:
        return _error_page(request, engine, user, exc, setup=True)
    return back(user, "/app/setup", "added")


@router.post("/app/setup/new-competency")
def create_competency(
    request: Request,
    engine: EngineDep,
    user: auth.InstructorDep,
    name: Annotated[str, Form(max_length=300)] = "",
    description: Annotated[str, Form(max_length=4000)] = "",
    beginning: Annotated[str, Form(max_length=2000)] = "",
    intermediate: Annotated[str, Form(max_length=2000)] = "",
    advanced: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Create a competency (name, description, what each level means) for this course."""
    try:
        with db_session(engine, write=True) as s:
            wiring.create_course_competency(
                s,
                course_id=_course_id(user),
                name=name,
                description=description,
                level_descriptions={
                    "beginning": beginning,
                    "intermediate": intermediate,
                    "advanced": advanced,
                },
                actor=_actor(user),
            )
            s.commit()
    except ServiceError as exc:
        return _error_page(request, engine, user, exc, setup=True)
    return back(user, "/app/setup", "added")


@router.post("/app/setup/rules")
def save_rules(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    user: auth.InstructorDep,
    on_lower: Annotated[str, Form(max_length=20)] = "flag",
    approval_required: Annotated[str, Form(max_length=5)] = "",
) -> Response:
    """What a lower decision does to a held credential; whether awards need approval."""
    try:
        with db_session(engine, write=True) as s:
            wiring.set_award_rules(
                s,
                course_id=_course_id(user),
                on_lower=on_lower,
                approval_required=approval_required == "on",
                actor=_actor(user),
                now=utcnow(),
            )
            queued = evaluation.due(s, course_id=_course_id(user))
            s.commit()
        summary = _after_rules_change(engine, settings, user, queued)
    except ServiceError as exc:
        return _error_page(request, engine, user, exc, setup=True)
    if summary.queued:
        return back(user, "/app/setup", "rules_queued", n=summary.queued)
    return back(user, "/app/setup", "rules")
