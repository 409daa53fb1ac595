"""Recording an LTI launch (person, course, enrolment, the course's gradebook endpoint) and
what a learner's launch starts afterwards (re-evaluation, a sync request)."""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import Engine, and_, bindparam
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, select

from service import evaluation
from service.db import prepared
from service.db.engine import session as db_session
from service.db.models import (
    Course,
    Enrolment,
    Person,
    PersonLink,
)
from service.db.types import utcnow
from service.errors import ServiceError
from service.flows.evaluating import Summary
from service.flows.learner_inputs import LearnerState, learner_state, learner_state_columns
from service.flows.setup_store import course_setup
from service.flows.syncing import request_sync
from service.lti.types import LaunchContext
from service.settings import Settings
from service.sources import store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LaunchRecord:
    """Who launched, in which course (None for a launch without context), with which role;
    for a learner in a course, the state ``after_launch`` decides on."""

    person_id: int
    course_id: int | None
    role: str
    learner: LearnerState | None = None


# The statements of every launch, run on the DBAPI cursor (db.prepared): through the ORM
# each cost several times the SQLite call. A first launch creates its rows with the ORM.
_PERSON_FIELDS = ("name", "given_name", "family_name", "email")
_LOOK_UP: Any = object()  # not read yet: the upsert reads the row itself


def _person_query() -> Any:
    t = prepared.table(Person)
    return sa_select(t.c.id, *(t.c[f] for f in _PERSON_FIELDS)).where(
        t.c.platform_id == bindparam("platform_id"), t.c.sub == bindparam("sub")
    )


def _course_query() -> Any:
    t = prepared.table(Course)
    return sa_select(t.c.id, t.c.title, t.c.label).where(
        t.c.deployment_id == bindparam("deployment_id"), t.c.context_id == bindparam("context_id")
    )


def _enrolment_query() -> Any:
    t = prepared.table(Enrolment)
    return sa_select(t).where(
        t.c.course_id == bindparam("course_id"), t.c.person_id == bindparam("person_id")
    )


def _returning_query() -> Any:
    p, c, e = (prepared.table(m) for m in (Person, Course, Enrolment))
    return (
        sa_select(p.c.id, *(p.c[f] for f in _PERSON_FIELDS), c.c.id, c.c.title, c.c.label, e)
        .select_from(p)
        .outerjoin(
            c,
            and_(
                c.c.deployment_id == bindparam("deployment_id"),
                c.c.context_id == bindparam("context_id"),
            ),
        )
        .outerjoin(e, and_(e.c.course_id == c.c.id, e.c.person_id == p.c.id))
        .where(p.c.platform_id == bindparam("platform_id"), p.c.sub == bindparam("sub"))
    )


def _returning_learner_query() -> Any:
    p, c = prepared.table(Person), prepared.table(Course)
    # scalar subqueries correlated with the outer person and course
    return _returning_query().add_columns(*learner_state_columns(c.c.id, p.c.id))


# launch_lookup's columns: the person's id and fields, the course's id, title and label,
# the enrolment, and for a learner the learner state's values
_COURSE_AT = 1 + len(_PERSON_FIELDS)


@functools.cache
def _returning_width() -> int:
    return _COURSE_AT + 3 + prepared.width(Enrolment)


def _create(session: Session, row: SQLModel, *, create: bool) -> bool:
    """INSERT ``row`` in a savepoint; False when a concurrent first launch made it first."""
    if not create:
        raise _CreateNeeded
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return False
    return True


def _upsert_person(
    session: Session,
    launch: LaunchContext,
    now: dt.datetime,
    known: Any = _LOOK_UP,
    *,
    create: bool = True,
) -> int:
    params: dict[str, Any] = {"platform_id": launch.platform_id, "sub": launch.sub}
    found = prepared.one(session, _person_query, **params) if known is _LOOK_UP else known
    # Name and email are mutable attributes (LTI Core §5.3.6): refresh them when sent; a
    # launch that withholds them (privacy settings) keeps what we knew. A returning user
    # with nothing changed costs no write.
    sent = {f: v for f in _PERSON_FIELDS if (v := getattr(launch, f))}
    if found is None:
        person = Person(platform_id=launch.platform_id, sub=launch.sub, **sent)
        if _create(session, person, create=create):
            return person.id or 0
        found = prepared.one(session, _person_query, **params)
        assert found is not None
    person_id, *known = found
    values = {f: sent.get(f, old) for f, old in zip(_PERSON_FIELDS, known, strict=True)}
    if list(values.values()) != known:
        prepared.update(session, Person, person_id, values | {"updated_at": now})
    return int(person_id)


def _upsert_course(
    session: Session, launch: LaunchContext, known: Any = _LOOK_UP, *, create: bool = True
) -> int | None:
    if not launch.context_id:
        return None
    params: dict[str, Any] = {
        "deployment_id": launch.deployment_pk,
        "context_id": launch.context_id,
    }
    found = prepared.one(session, _course_query, **params) if known is _LOOK_UP else known
    if found is None:
        course = Course(deployment_id=launch.deployment_pk, context_id=launch.context_id)
        course.title, course.label = launch.context_title, launch.context_label
        if _create(session, course, create=create):
            return course.id
        found = prepared.one(session, _course_query, **params)
        assert found is not None
    course_id, title, label = found
    new = (launch.context_title or title, launch.context_label or label)
    if new != (title, label):
        prepared.update(session, Course, course_id, {"title": new[0], "label": new[1]})
    return int(course_id)


def _upsert_enrolment(
    session: Session,
    launch: LaunchContext,
    *,
    course_id: int,
    person_id: int,
    now: dt.datetime,
    known: Any = _LOOK_UP,
    create: bool = True,
) -> Enrolment:
    """The enrolment as a detached row (read only: db.prepared)."""
    params: dict[str, Any] = {"course_id": course_id, "person_id": person_id}
    found = prepared.one(session, _enrolment_query, **params) if known is _LOOK_UP else known
    roles = list(launch.roles)
    if found is None:
        created = Enrolment(course_id=course_id, person_id=person_id, role=launch.role, roles=roles)
        if _create(session, created, create=create):
            return created
        found = prepared.one(session, _enrolment_query, **params)
    row = prepared.values(Enrolment, found)
    assert row is not None
    if row["role"] != launch.role or row["roles"] != roles or row["status"] != "active":
        # a launch is proof of membership: a learner the roster had marked removed is back
        changed = {"role": launch.role, "roles": roles, "status": "active", "updated_at": now}
        prepared.update(session, Enrolment, row["id"], changed)
        row |= changed
    return Enrolment.model_construct(**row)


def _link_canvas_user(
    session: Session, launch: LaunchContext, canvas_id: str, person_id: int, *, create: bool
) -> None:
    found = session.exec(
        select(PersonLink.person_id).where(
            PersonLink.platform_id == launch.platform_id, PersonLink.lms_user_id == canvas_id
        )
    ).first()
    if found == person_id:
        return
    if not create:
        raise _CreateNeeded
    store.link_person(
        session, platform_id=launch.platform_id, lms_user_id=canvas_id, person_id=person_id
    )


class _CreateNeeded(Exception):
    """``record_launch(create=False)`` found a row to create."""


def record_launch(
    session: Session,
    *,
    launch: LaunchContext,
    now: dt.datetime | None = None,
    create: bool = True,
    known: Sequence[Any] | None = None,
) -> LaunchRecord | None:
    """Upsert the person (platform, sub), the course (deployment, context) and the enrolment;
    for a learner, read what ``after_launch`` needs to decide (``LearnerState``).

    Runs in the launch route's write session; the route commits. ``create=False`` (a
    session whose statements commit one by one, where the savepoint a first launch's INSERT
    needs cannot be had): a returning user's changed name or role is written, and None is
    returned if a row must be created; the route then calls again in a transaction.
    ``known``: the row of ``launch_lookup``'s statement, when the launch read it already
    (with the take of its login state, lti.launch).
    """
    try:
        return _record_launch(
            session, launch=launch, now=now or utcnow(), create=create, known=known
        )
    except _CreateNeeded:
        return None


def launch_lookup(launch: LaunchContext) -> tuple[Callable[[], Any], dict[str, Any], int]:
    """A returning user's person, course, enrolment and, for a learner, the learner state, in
    one statement: its builder, parameters and how many leading columns to convert (the
    learner state's values are hashed as the driver gives them). A first launch finds no
    person (NULLs, in a joined read); what is missing is looked up or created after."""
    build = _returning_learner_query if launch.role == "learner" else _returning_query
    params = {
        "platform_id": launch.platform_id,
        "sub": launch.sub,
        "deployment_id": launch.deployment_pk,
        "context_id": launch.context_id,
    }
    return build, params, _returning_width()


def launch_lookup_ids(also: Any) -> tuple[Any, Any]:
    """The person's and the course's id columns of ``launch_lookup``'s read, as a CTE
    (``lti.launch.Opening``: the web session opened with the take)."""
    columns = list(also.c)
    return columns[0], columns[_COURSE_AT]


def _record_launch(
    session: Session,
    *,
    launch: LaunchContext,
    now: dt.datetime,
    create: bool,
    known: Sequence[Any] | None,
) -> LaunchRecord:
    learner = launch.role == "learner"
    width = _returning_width()
    if known is None:
        # One round trip on PostgreSQL where four cost four.
        build, params, convert = launch_lookup(launch)
        known = prepared.one(session, build, convert=convert, **params)
    elif known[0] is None:
        known = None  # read joined to another row: no such person
    person, course, enrolment_row = _LOOK_UP, _LOOK_UP, _LOOK_UP
    state_row = None
    if known is not None:
        n = _COURSE_AT
        person, course, enrolment_row = known[:n], known[n : n + 3], known[n + 3 : width]
        course = course if course[0] is not None else None
        enrolment_row = enrolment_row if enrolment_row[0] is not None else None
        if learner and enrolment_row is not None:
            state_row = known[width:]
    person_id = _upsert_person(session, launch, now, person, create=create)
    course_id = _upsert_course(session, launch, course, create=create)
    state: LearnerState | None = None
    if course_id is not None:
        enrolment = _upsert_enrolment(
            session,
            launch,
            course_id=course_id,
            person_id=person_id,
            now=now,
            known=enrolment_row if course is not None else _LOOK_UP,
            create=create,
        )
        lineitems = launch.ags.get("lineitems")
        lineitems = lineitems if isinstance(lineitems, str) else ""
        if lineitems or launch.nrps_url:
            # AGS 2.0 §3.1: the line-items container of this context; the tool keeps its own
            # line items there (one per competency), created on first write-back. NRPS 2.0
            # §2: the context's membership container, which the worker's roster sync reads.
            setup = course_setup(session, course_id=course_id, create=create)
            if setup.id is None:  # only without ``create``: a transient default
                raise _CreateNeeded
            scopes = [str(x) for x in launch.ags.get("scope") or []] if lineitems else None
            new_ags = (lineitems, scopes) if lineitems else (setup.ags_lineitems_url, None)
            nrps = launch.nrps_url[:1000] or setup.nrps_url
            # the first resource link seen is kept: any link of the course will do for rlid
            rlid = setup.nrps_rlid or (launch.resource_link_id[:255] if launch.nrps_url else "")
            if (
                setup.ags_lineitems_url != new_ags[0]
                or (scopes is not None and setup.ags_scopes != scopes)
                or setup.nrps_url != nrps
            ):
                setup.ags_lineitems_url = new_ags[0]
                if scopes is not None:
                    setup.ags_scopes = scopes
                setup.nrps_url = nrps
                setup.updated_at = now
                session.add(setup)
                state_row = None  # the course's setup is among the inputs: read them anew
            if setup.nrps_rlid != rlid:  # not an evaluation input: updated_at stays
                setup.nrps_rlid = rlid
                session.add(setup)
            session.flush()
        canvas_id = launch.custom.get("canvas_user_id") if course_id is not None else None
        if isinstance(canvas_id, str | int) and str(canvas_id).isdigit():
            # Canvas's own user id ($Canvas.user.id, requested at registration): the REST
            # API names learners by it, the LTI sub is opaque (reference/lti.md §3.3).
            _link_canvas_user(session, launch, str(canvas_id), person_id, create=create)
        if learner:
            state = learner_state(session, enrolment=enrolment, row=state_row)
    return LaunchRecord(person_id=person_id, course_id=course_id, role=launch.role, learner=state)


def _learner_launch(record: LaunchRecord) -> LearnerState | None:
    """The state ``after_launch`` decides on: a learner's launch in a course only."""
    if record.role != "learner" or record.course_id is None:
        return None
    return record.learner


def after_launch_due(*, settings: Settings, record: LaunchRecord, now: dt.datetime) -> bool:
    """Whether ``after_launch`` has anything to do for this launch (no statement)."""
    state = _learner_launch(record)
    if state is None:
        return False
    return state.sync_due(
        now, dt.timedelta(seconds=settings.launch_sync_interval_seconds)
    ) or state.evaluation_due(now, dt.timedelta(seconds=settings.launch_evaluation_max_age_seconds))


def after_launch(
    engine_: Engine,
    *,
    settings: Settings,
    record: LaunchRecord,
    now: dt.datetime,
    client: httpx.Client | None = None,
) -> Summary | None:
    """A learner's launch: ask the worker for a pull of the course (when a source is
    connected and the last pull is older than ``launch_sync_interval_seconds``: a
    timestamp, no LMS call in the request) and queue that learner's evaluation (the
    worker's evaluation job awards; ``evaluation.enqueue`` is idempotent) when anything the
    evaluation reads changed since their last launch queued it, or that was longer ago than
    ``launch_evaluation_max_age_seconds`` (time-dependent rules). A returning learner with
    nothing new costs no statement here; the page renders what is known and says that an
    evaluation is pending. Returns None (no evaluation runs in the request).

    Runs after the launch committed. ``client`` is unused (no request waits on the LMS);
    kept for callers.
    """
    state = _learner_launch(record)
    if state is None or record.course_id is None:
        return None
    course_id = record.course_id
    wanted = state.sync_due(now, dt.timedelta(seconds=settings.launch_sync_interval_seconds))
    max_age = dt.timedelta(seconds=settings.launch_evaluation_max_age_seconds)
    evaluate = state.evaluation_due(now, max_age)
    if not wanted and not evaluate:
        return None
    try:
        with db_session(engine_, write=True) as s:
            if wanted:
                request_sync(s, course_id=course_id, now=now)
            summary = None
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
            return summary
    except ServiceError as exc:
        log.warning("refresh on launch in course %s failed: %s", course_id, exc.detail)
        return None
