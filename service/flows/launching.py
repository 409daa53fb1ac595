"""Recording an LTI launch (person, course, enrolment, the course's gradebook endpoint) and
what a learner's launch starts afterwards (re-evaluation, a sync request)."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import Engine, and_, bindparam
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, col, func, select

from service.db import prepared
from service.db.engine import session as db_session
from service.db.models import (
    Award,
    Competency,
    CompetencyLevelTemplate,
    Course,
    CourseCompetency,
    CourseSetup,
    CourseSync,
    Enrolment,
    Person,
    PersonLink,
    PolicyVersion,
)
from service.db.models import Evidence as EvidenceRow
from service.db.models import VerificationEvent as VerificationRow
from service.db.types import utcnow
from service.errors import ServiceError
from service.flows.evaluating import Summary, evaluate_learner
from service.flows.setup_store import course_setup
from service.flows.syncing import request_sync
from service.lti.types import LaunchContext
from service.settings import Settings
from service.sources import store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LearnerState:
    """What a learner's launch found: whether their evaluation is current, whether the
    course pulls results from an LMS and when it last did."""

    inputs: str  # learner_inputs() now
    evaluated_inputs: str  # ... at the learner's last evaluation on launch ("" never)
    evaluated_at: dt.datetime | None
    connected: bool
    synced_at: dt.datetime | None

    def evaluation_due(self, now: dt.datetime, max_age: dt.timedelta) -> bool:
        if self.inputs != self.evaluated_inputs or self.evaluated_at is None:
            return True
        return now - self.evaluated_at >= max_age

    def sync_due(self, now: dt.datetime, interval: dt.timedelta) -> bool:
        return self.connected and (self.synced_at is None or now - self.synced_at >= interval)


@dataclass(frozen=True)
class LaunchRecord:
    """Who launched, in which course (None for a launch without context), with which role;
    for a learner in a course, the state ``after_launch`` decides on."""

    person_id: int
    course_id: int | None
    role: str
    learner: LearnerState | None = None


def _scalar(query: Any) -> Any:
    return query.scalar_subquery()


@functools.cache
def _learner_state_query() -> Any:
    """One statement: everything an evaluation of the learner reads, reduced to counts and
    high-water marks, plus the course's source wiring and last pull.

    The evaluation's inputs are the learner's evidence and verification events in the
    course, the course's competencies, their catalogue entries and templates, every policy
    layer (append-only versions), the course's award rules, and the learner's awards.
    Built once (parameters ``course_id``, ``person_id``): building it costs more than
    running it.
    """
    return sa_select(*_learner_state_columns(bindparam("course_id"), bindparam("person_id")))


def _learner_state_columns(course_id: Any, person_id: Any) -> list[Any]:
    """The columns of ``_learner_state_query`` for a course and person: parameters, or
    the columns of an enclosing query (``_returning_learner_query``)."""
    in_course = (EvidenceRow.course_id == course_id, EvidenceRow.person_id == person_id)
    verified = (VerificationRow.course_id == course_id, VerificationRow.person_id == person_id)
    awards = (Award.course_id == course_id, Award.person_id == person_id)
    return [
        _scalar(select(func.count(col(EvidenceRow.id))).where(*in_course)),
        _scalar(select(func.max(EvidenceRow.updated_at)).where(*in_course)),
        # every change of a result bumps its version: the sum grows with any change
        _scalar(select(func.sum(EvidenceRow.version)).where(*in_course)),
        _scalar(select(func.count(col(VerificationRow.id))).where(*verified)),
        _scalar(select(func.max(VerificationRow.id)).where(*verified)),
        _scalar(select(func.max(VerificationRow.updated_at)).where(*verified)),
        _scalar(select(func.max(PolicyVersion.id))),
        _scalar(select(func.max(Competency.updated_at))),
        _scalar(select(func.max(CompetencyLevelTemplate.updated_at))),
        _scalar(
            select(func.count(col(CourseCompetency.id))).where(
                CourseCompetency.course_id == course_id
            )
        ),
        _scalar(
            select(func.max(CourseCompetency.id)).where(CourseCompetency.course_id == course_id)
        ),
        _scalar(select(CourseSetup.updated_at).where(CourseSetup.course_id == course_id)),
        _scalar(select(func.count(col(Award.id))).where(*awards)),
        _scalar(select(func.max(Award.updated_at)).where(*awards)),
        _scalar(select(CourseSetup.source_connection_id).where(CourseSetup.course_id == course_id)),
        _scalar(select(CourseSync.pulled_at).where(CourseSync.course_id == course_id)),
    ]


def _as_text(value: Any) -> str:
    # SQLite returns max() of a datetime column as text, PostgreSQL as a datetime (in the
    # session's time zone with psycopg, in UTC with asyncpg: the same instant, one text)
    if isinstance(value, dt.datetime):
        return (value.astimezone(dt.UTC) if value.tzinfo else value).isoformat()
    return str(value)


def _as_time(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    when = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def learner_state(
    session: Session, *, enrolment: Enrolment, row: Sequence[Any] | None = None
) -> LearnerState:
    """The learner's evaluation inputs now, against what their last launch evaluated
    (``row``: the values of ``_learner_state_columns``, when read already)."""
    if row is None:
        params = {"course_id": enrolment.course_id, "person_id": enrolment.person_id}
        # The driver's values: they are only hashed (SQLite's datetimes stay text, unparsed).
        row = prepared.one(session, _learner_state_query, convert=False, **params)
        assert row is not None  # scalar subqueries: always one row
    *inputs, source, synced_at = row
    digest = hashlib.sha256("|".join(_as_text(v) for v in inputs).encode()).hexdigest()
    return LearnerState(
        inputs=digest,
        evaluated_inputs=enrolment.evaluated_inputs,
        evaluated_at=enrolment.evaluated_at,
        connected=source is not None,
        synced_at=_as_time(synced_at),
    )


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
    return _returning_query().add_columns(*_learner_state_columns(c.c.id, p.c.id))


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
    timestamp, no LMS call in the request) and evaluate that learner on what is known when
    anything the evaluation reads changed since their last launch evaluated them, or that
    evaluation is older than ``launch_evaluation_max_age_seconds`` (time-dependent rules).
    A returning learner with nothing new costs no statement here.

    Runs after the launch committed. A failing rule never blocks the learner's page: it is
    logged and the learner sees what was known before. ``client`` is unused (no request
    waits on the LMS); kept for callers.
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
                summary = evaluate_learner(
                    s,
                    settings=settings,
                    course_id=course_id,
                    person_id=record.person_id,
                    now=now,
                    actor="system",
                )
                # Stamp the inputs as this transaction sees them after the evaluation (its
                # own awards included). A change committed meanwhile by another transaction
                # is a sync, an import, an attestation or a rule change, and each of those
                # evaluates the learners it touches itself; max age bounds anything else.
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
        log.warning("evaluation on launch in course %s failed: %s", course_id, exc.detail)
        return None
