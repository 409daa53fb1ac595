"""Use cases that cross packages (launch -> sync -> evaluate -> award -> deliver).

The only module that imports ``lti``, ``sources``, ``assessment``, ``policies``, ``issuer``
and ``delivery`` together. Functions add and flush; the caller (route, CLI command)
commits once, so a decision, its credential and the credential's outbox rows are written
in one transaction (STYLE.md "Transactions").

- launches: ``record_launch`` (person, course, enrolment, the course's gradebook endpoint)
- mapping: ``item_key`` / ``available_items`` — the LMS items a policy's ``items`` name
- evaluation: ``evaluate_course``, ``evaluate_learner``, ``preview_course`` (no writes)
- the evaluation queue (``service.evaluation``, docs/scale.md): ``run_evaluation_jobs`` (a
  worker step), ``run_course_jobs`` (work on one course's queue here), ``reevaluate`` and
  ``evaluate_new_evidence`` (queue, and evaluate at once when few), ``enqueue_new_evidence``
- awards: ``approve``, ``revoke_award``, ``revoke_credential``, ``allow_reaward``,
  ``attest``, ``set_award_rules`` (a person's revocation blocks re-award: docs/awarding.md)
- sync: ``fetch_course`` (HTTP, outside any transaction) then ``store_fetched``
- gradebook: ``ags_poster`` wires delivery's AGS connector to the LTI AGS client
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import logging
import math
import re
import uuid as uuidlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import Engine, and_, bindparam, delete, update
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, col, func, select

from service import audit, evaluation, outbound
from service.assessment import canonical, engine, parse, stack
from service.assessment.types import (
    AssessmentError,
    Evidence,
    Level,
    Policy,
    RubricLevel,
    VerificationLevel,
    percent,
)
from service.assessment.types import Decision as EngineDecision
from service.db import engine as db_engine
from service.db import prepared
from service.db.engine import session as db_session
from service.db.models import (
    AgsLineItem,
    Award,
    Competency,
    CompetencyLevelTemplate,
    Course,
    CourseCompetency,
    CourseSetup,
    CourseSync,
    Credential,
    Decision,
    EffectivePolicy,
    Enrolment,
    ImportRun,
    Person,
    PersonLink,
    Platform,
    PolicyVersion,
    SourceConnection,
)
from service.db.models import Evidence as EvidenceRow
from service.db.models import VerificationEvent as VerificationRow
from service.db.types import utcnow
from service.delivery import awards as delivery_awards
from service.delivery import errors as delivery_errors
from service.delivery.ags import ScorePoster
from service.delivery.outbox import AttemptRecord
from service.errors import BadInput, Conflict, NotFound, ServiceError
from service.issuer import inputs as issuer_inputs
from service.issuer import service as issuer_service
from service.lti import platforms as lti_platforms
from service.lti import roles as lti_roles
from service.lti import services as lti_services
from service.lti import types as lti_types
from service.lti.errors import PlatformCallFailed
from service.lti.types import LaunchContext
from service.policies import repository as policies_repo
from service.policies import service as policies
from service.settings import Settings
from service.sources import store, sync
from service.sources.connectors.base import Connector, Fetched
from service.sources.types import Asserter, LearnerRef, SyncReport, Verification
from service.sources.types import VerificationEvent as SourceEvent

log = logging.getLogger(__name__)

# --- lti: record a launch ------------------------------------------------------------------


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


# --- course wiring ---------------------------------------------------------------------------


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


def _lock_learner(session: Session, *, course_id: int, person_id: int) -> CourseSetup:
    """The course's wiring row, with the learner's evaluation locked until the transaction
    ends, so an instructor's action on a learner's award and an evaluation of that learner
    (a launch, a worker) never interleave. SQLite's BEGIN IMMEDIATE already serialises
    writers; PostgreSQL needs the row lock (``evaluation.lock_learners``)."""
    setup = course_setup(session, course_id=course_id, create=True)
    session.flush()
    evaluation.lock_learners(session, course_id=course_id, person_ids=[person_id])
    return setup


def set_award_rules(
    session: Session,
    *,
    course_id: int,
    on_lower: str,
    approval_required: bool,
    actor: str,
    now: dt.datetime,
) -> CourseSetup:
    """What a lower decision does to a held credential, and whether awards need approval."""
    if on_lower not in ("flag", "revoke"):
        raise BadInput(f"on_lower: must be 'flag' or 'revoke', not {on_lower!r}")
    setup = course_setup(session, course_id=course_id, create=True)
    setup.on_lower, setup.approval_required, setup.updated_at = on_lower, approval_required, now
    session.add(setup)
    audit.record(
        session,
        actor=actor,
        action="course.award_rules_changed",
        subject=f"course:{course_id}",
        on_lower=on_lower,
        approval_required=approval_required,
    )
    session.flush()
    evaluation.enqueue(session, course_id=course_id, reason="award rules changed", now=now)
    return setup


def connect_source(
    session: Session,
    *,
    course_id: int,
    connection_id: int | None,
    lms_course_id: str,
    actor: str,
    now: dt.datetime,
    interval_seconds: int | None = None,
) -> CourseSetup:
    """Name the source connection (and the LMS's own course id) a course syncs from; the
    worker pulls it from now on (the first pull is due at once)."""
    if connection_id is not None and session.get(SourceConnection, connection_id) is None:
        raise NotFound(f"no source connection {connection_id}")
    if interval_seconds is not None and interval_seconds < 5:
        raise BadInput("interval: at least 5 seconds between pulls")
    if session.get(Course, course_id) is None:
        raise NotFound(f"no course {course_id}")
    setup = course_setup(session, course_id=course_id, create=True)
    setup.source_connection_id, setup.lms_course_id = connection_id, lms_course_id.strip()[:255]
    if interval_seconds is not None:
        setup.sync_interval_seconds = interval_seconds
    setup.updated_at = now
    session.add(setup)
    if connection_id is not None:
        request_sync(session, course_id=course_id, now=now)
    audit.record(
        session,
        actor=actor,
        action="course.source_connected",
        subject=f"course:{course_id}",
        source_connection=connection_id,
        lms_course_id=setup.lms_course_id,
    )
    session.flush()
    return setup


def connect_course(
    session: Session,
    *,
    course_id: int,
    kind: str,
    base_url: str,
    token: str,
    lms_course_id: str,
    actor: str,
    now: dt.datetime,
) -> CourseSetup:
    """Connect a course to its LMS data API from the instructor's page: the course's own
    connection (created, or updated in place), its token encrypted at rest. An empty
    ``token`` keeps the stored one (it is never shown back)."""
    if kind not in sync.KINDS:
        raise BadInput(f"kind: one of {', '.join(sync.KINDS)}, not {kind[:20]!r}")
    url = lti_platforms.check_url(base_url, what="LMS address").rstrip("/")
    lms_course_id = lms_course_id.strip()
    if not lms_course_id.isdigit():
        raise BadInput(
            f"LMS course id: a number, not {lms_course_id[:40]!r}",
            hint="Moodle: the id= in the course's address (course/view.php?id=…); Canvas: "
            "the number after /courses/ in the course's address.",
        )
    _course, platform_id = store.platform_of_course(session, course_id=course_id)
    name = f"course-{course_id}"
    row = session.exec(select(SourceConnection).where(SourceConnection.name == name)).first()
    if row is None:
        if not token.strip():
            raise BadInput(
                "token: required for a new connection",
                hint="Moodle: a web service token of the service user (docs/evidence-sources.md);"
                " Canvas: an access token of a teacher or admin.",
            )
        row = SourceConnection(name=name, kind=kind, base_url=url, access_token=token.strip())
    row.kind, row.base_url, row.platform_id, row.active = kind, url, platform_id, True
    if token.strip():
        row.access_token = token.strip()
    row.updated_at = now
    session.add(row)
    session.flush()
    return connect_source(
        session,
        course_id=course_id,
        connection_id=row.id,
        lms_course_id=lms_course_id,
        actor=actor,
        now=now,
    )


# --- mapping LMS items to competencies ------------------------------------------------------


def item_key(record: store.EvidenceRecord) -> str:
    """The id a policy's ``items`` use for an LMS item: the item, or item/criterion."""
    return f"{record.item_id}/{record.criterion_id}" if record.criterion_id else record.item_id


def item_label(record: store.EvidenceRecord) -> str:
    title = record.item_title or record.item_id
    if record.criterion_id:
        return f"{title}: {record.criterion_title or record.criterion_id}"
    return title


@dataclass(frozen=True)
class Item:
    """An LMS item with results in a course, as the instructor maps it."""

    key: str
    label: str
    kind: str
    results: int


def available_items(session: Session, *, course_id: int) -> list[Item]:
    """Every rubric criterion, quiz and assignment that has results in the course."""
    found: dict[str, tuple[str, str, int]] = {}
    for r in store.list_evidence(session, course_id=course_id):
        key = item_key(r)
        label, kind, n = found.get(key, (item_label(r), r.kind, 0))
        found[key] = (label, kind, n + 1)
    return [Item(k, label, kind, n) for k, (label, kind, n) in sorted(found.items())]


def _verification(value: Verification) -> VerificationLevel:
    # The store and the engine share the five names of DESIGN.md.
    return next(v for v in VerificationLevel if v.key == value.value)


def to_engine(record: store.EvidenceRecord, *, competency: str, label: str) -> Evidence | None:
    """The engine's Evidence for a stored result (None when it has no score yet)."""
    at = record.graded_at or record.submitted_at
    verification = _verification(record.verification)
    learner = str(record.person_id)
    attempt = record.attempt if record.kind == "quiz" or record.attempt > 1 else None
    if record.level_scale and record.level_name is not None:
        names = [name for _, name, _ in record.level_scale]
        if len(set(names)) == len(names) and record.level_name in names:
            return Evidence(
                learner=learner,
                competency=competency,
                item=item_key(record),
                score=next(p for _, n, p in record.level_scale if n == record.level_name),
                max_score=max(p for _, _, p in record.level_scale),
                label=label,
                kind="rubric",
                rubric=tuple(RubricLevel(name, float(p)) for _, name, p in record.level_scale),
                rating=record.level_name,
                attempt=attempt,
                at=at,
                verification=verification,
            )
    if record.score is None or not record.max_score:
        return None
    return Evidence(
        learner=learner,
        competency=competency,
        item=item_key(record),
        score=min(max(record.score, 0.0), record.max_score),
        max_score=record.max_score,
        label=label,
        kind=record.kind,
        attempt=attempt,
        at=at,
        verification=verification,
    )


# --- evaluation ------------------------------------------------------------------------------


@dataclass
class Summary:
    """What an evaluation run did."""

    learners: int = 0
    decisions: int = 0
    stored: int = 0
    unchanged: int = 0
    issued: int = 0
    upgraded: int = 0
    pending: int = 0
    flagged: int = 0
    revoked: int = 0
    blocked: int = 0  # a level reached again that a person's revocation keeps from re-award
    queued: int = 0  # learners left to the workers (evaluation_job)
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Row:
    """One learner and competency in the preview: the decision and what the learner holds."""

    person: Person
    competency: Competency
    decision: EngineDecision | None
    held: Award | None
    pending: Award | None
    problem: str = ""
    # A revocation by a person that keeps this level (or a lower one) from being re-awarded.
    blocked: Award | None = None

    @property
    def blocked_text(self) -> str:
        """Why no credential is issued although the rules give a level (revoked by a person)."""
        if self.blocked is None or self.held is not None:
            return ""
        return blocked_text(self.blocked)

    @property
    def failed(self) -> list[str]:
        return [] if self.decision is None else [r.reason for r in self.decision.failed]

    @property
    def gap_text(self) -> str:
        return gap_text(self.decision)

    @property
    def gap_short(self) -> str:
        """One line: how far the score is from the next level, else its first missing rule."""
        if self.decision is None or self.decision.gap is None:
            return ""
        gap = self.decision.gap
        if gap.score_needed is not None and gap.score_needed > 0:
            # Rounded up to the hundredth: a gap is never shown smaller than it is.
            needed = math.ceil(gap.score_needed * 10000 - 1e-6) / 10000
            return f"{percent(needed)} short of {gap.level.label}"
        if gap.missing:
            # The first clause says it ("Advanced needs a supervised sitting"); details follow.
            return gap.missing[0].reason.split(";")[0].split(":")[0]
        return ""


def blocked_text(award: Award) -> str:
    """The instructor's explanation of a re-award block (docs/awarding.md)."""
    level = award.level.capitalize()
    when = award.updated_at.strftime("%d %b %Y")
    return (
        f"No credential: {level} was revoked on {when} ({award.review or 'no reason given'}). "
        f"Re-evaluating does not issue {level} or a lower level again; a higher level is "
        "issued when the evidence reaches it. Allow re-award to issue what the evidence shows."
    )


def _reaward_block(
    session: Session, *, course_id: int, person_id: int, line_key: str
) -> Award | None:
    """The highest revoked award on the line whose revocation (by a person) blocks re-award."""
    return _reaward_blocks(session, course_id=course_id, person_id=person_id).get(
        (person_id, line_key)
    )


def _reaward_blocks(
    session: Session, *, course_id: int, person_id: int | None = None
) -> dict[tuple[int, str], Award]:
    """``_reaward_block`` for every line of the course (or of one learner), in one query."""
    q = select(Award).where(
        Award.course_id == course_id,
        Award.state == "revoked",
        col(Award.reaward_blocked).is_(True),
    )
    if person_id is not None:
        q = q.where(Award.person_id == person_id)
    out: dict[tuple[int, str], Award] = {}
    # The highest level wins (ties: the latest): it bounds what may be awarded again.
    for a in sorted(session.exec(q), key=lambda a: (_rank(a.level), a.id or 0)):
        out[(a.person_id, a.line_key)] = a
    return out


def _rank(level_key: str) -> int:
    # Competency levels by their order; a stack's single level ("awarded") ranks above all.
    return int(Level[level_key.upper()]) if level_key.upper() in Level.__members__ else 99


def _blocks(block: Award | None, level_key: str) -> bool:
    return block is not None and _rank(level_key) <= _rank(block.level)


def gap_text(decision: EngineDecision | None) -> str:
    """What is missing for the next level, in words: "For Advanced: <each failed rule>"."""
    if decision is None or decision.gap is None:
        return ""
    reasons = "; ".join(r.reason for r in decision.gap.missing)
    return f"For {decision.gap.level.label}: {reasons}" if reasons else ""


def course_learners(
    session: Session, *, course_id: int, person_ids: Sequence[int] | None = None
) -> list[Person]:
    """Learners enrolled in the course, and anyone with results in it (of ``person_ids``
    only, when given: evaluating one learner reads that learner, not the course)."""
    enrolled_q = select(Enrolment.person_id).where(
        Enrolment.course_id == course_id,
        Enrolment.role == "learner",
        Enrolment.status != "removed",  # gone from the roster (results still count below)
    )
    results_q = select(EvidenceRow.person_id).where(EvidenceRow.course_id == course_id).distinct()
    if person_ids is not None:
        enrolled_q = enrolled_q.where(col(Enrolment.person_id).in_(person_ids))
        results_q = results_q.where(col(EvidenceRow.person_id).in_(person_ids))
    ids = sorted(set(session.exec(enrolled_q).all()) | set(session.exec(results_q).all()))
    if not ids:
        return []
    return list(
        session.exec(select(Person).where(col(Person.id).in_(ids)).order_by(col(Person.id)))
    )


def _policies(
    session: Session, *, course_id: int
) -> list[tuple[Competency, Policy, EffectivePolicy]]:
    out = []
    for comp in policies_repo.course_competencies(session, course_id):
        policy, row = policies.effective(session, course_id=course_id, competency_row=comp)
        out.append((comp, policy, row))
    return out


def _evidence_for(
    records: Iterable[store.EvidenceRecord], comp: Competency, policy: Policy
) -> list[Evidence]:
    out = []
    for r in records:
        key = item_key(r)
        if key not in policy.labels:
            continue
        label = policy.labels[key] if policy.labels[key] != key else item_label(r)
        ev = to_engine(r, competency=comp.key, label=label)
        if ev is not None:
            out.append(ev)
    return out


def _current(session: Session, *, course_id: int, person_id: int, line_key: str) -> list[Award]:
    return list(
        session.exec(
            select(Award)
            .where(
                Award.course_id == course_id,
                Award.person_id == person_id,
                Award.line_key == line_key,
                col(Award.state).in_(("issued", "pending_approval")),
            )
            .order_by(col(Award.id))
        )
    )


def _held(rows: Sequence[Award]) -> tuple[Award | None, Award | None]:
    issued = next((a for a in reversed(rows) if a.state == "issued"), None)
    pending = next((a for a in reversed(rows) if a.state == "pending_approval"), None)
    return issued, pending


def preview_course(
    session: Session, *, course_id: int, now: dt.datetime, person_ids: Sequence[int] | None = None
) -> list[Row]:
    """Who would reach which level now and why, without storing anything."""
    rows: list[Row] = []
    # the rules in force without numbering them: a preview reads, it never writes
    plans = [
        (comp, policies.in_force(session, course_id=course_id, competency_row=comp))
        for comp in policies_repo.course_competencies(session, course_id)
    ]
    records_by_person: dict[int, list[store.EvidenceRecord]] = {}
    for r in store.list_evidence(session, course_id=course_id):
        records_by_person.setdefault(r.person_id, []).append(r)
    blocks = _reaward_blocks(session, course_id=course_id)
    for person in course_learners(session, course_id=course_id):
        assert person.id is not None
        if person_ids is not None and person.id not in person_ids:
            continue
        for comp, policy in plans:
            held, pending = _held(
                _current(session, course_id=course_id, person_id=person.id, line_key=_line(comp))
            )
            block = blocks.get((person.id, _line(comp)))
            evidence = _evidence_for(records_by_person.get(person.id, []), comp, policy)
            try:
                decision = engine.evaluate(evidence, policy, now, learner=str(person.id))
            except AssessmentError as exc:
                rows.append(Row(person, comp, None, held, pending, problem=str(exc), blocked=block))
                continue
            rows.append(Row(person, comp, decision, held, pending, blocked=block))
    return rows


def _line(comp: Competency) -> str:
    return f"competency:{comp.key}"


@dataclass
class _Known:
    """What ``evaluate_course`` reads of its learners' ledgers in three queries, not three
    per learner and competency: the latest decision per competency, the issued and pending
    awards per line, and re-award blocks. Each line is acted on once per evaluation, so
    the copy stays true while it runs."""

    decisions: dict[tuple[int, int], Decision]
    current: dict[tuple[int, str], list[Award]]
    blocks: dict[tuple[int, str], Award]


def _known(session: Session, *, course_id: int, person_ids: Sequence[int] | None) -> _Known:
    newest = (
        select(func.max(col(Decision.id)))
        .where(Decision.course_id == course_id)
        .group_by(col(Decision.person_id), col(Decision.competency_id))
    )
    decisions_q = select(Decision).where(col(Decision.id).in_(newest))
    current_q = (
        select(Award)
        .where(Award.course_id == course_id, col(Award.state).in_(("issued", "pending_approval")))
        .order_by(col(Award.id))
    )
    if person_ids is not None:
        newest = newest.where(col(Decision.person_id).in_(person_ids))
        decisions_q = select(Decision).where(col(Decision.id).in_(newest))
        current_q = current_q.where(col(Award.person_id).in_(person_ids))
    current: dict[tuple[int, str], list[Award]] = {}
    for award in session.exec(current_q):
        current.setdefault((award.person_id, award.line_key), []).append(award)
    # revoked awards that block re-award are few: the course's, in one query
    blocks = _reaward_blocks(session, course_id=course_id)
    return _Known(
        decisions={(d.person_id, d.competency_id): d for d in session.exec(decisions_q)},
        current=current,
        blocks=blocks,
    )


def evaluate_course(
    session: Session,
    *,
    settings: Settings,
    course_id: int,
    now: dt.datetime,
    actor: str,
    person_ids: Sequence[int] | None = None,
    progress: Callable[[int, int], None] | None = None,
    locked: bool = False,
) -> Summary:
    """Evaluate every learner (or ``person_ids``) of a course and act on the decisions.

    A decision that reaches a level above what the learner holds issues a credential and
    queues its deliveries (or waits for approval); a lower one flags the held credential
    for review or revokes it, as the course says. Unchanged evidence and rules store and
    issue nothing new. The learners' evaluation jobs are locked (``locked``: the caller,
    a worker, locked them already) and left with nothing due.
    """
    if session.get(Course, course_id) is None:
        raise NotFound(f"no course {course_id}")
    setup = course_setup(session, course_id=course_id, create=True)
    session.flush()
    if not locked:
        # The learners' queue rows are the lock two evaluations of a learner share (a
        # worker, a launch, the CLI): never both see "nothing held" and issue twice.
        ids = (
            evaluation.course_learner_ids(session, course_id=course_id)
            if person_ids is None
            else list(person_ids)
        )
        evaluation.lock_learners(session, course_id=course_id, person_ids=ids)
    plans = _policies(session, course_id=course_id)
    people = course_learners(session, course_id=course_id, person_ids=person_ids)
    summary = Summary(learners=len(people))
    by_person: dict[int, list[store.EvidenceRecord]] = {}
    # one query for the learners, not one per learner
    for r in store.list_evidence(
        session,
        course_id=course_id,
        person_ids=None if person_ids is None else [p.id for p in people if p.id is not None],
    ):
        by_person.setdefault(r.person_id, []).append(r)
    known = _known(
        session, course_id=course_id, person_ids=None if person_ids is None else list(person_ids)
    )
    for done, person in enumerate(people, start=1):
        assert person.id is not None
        records = by_person.get(person.id, [])
        for comp, policy, eff in plans:
            _evaluate_one(
                session,
                settings=settings,
                setup=setup,
                person=person,
                comp=comp,
                policy=policy,
                eff=eff,
                records=records,
                now=now,
                actor=actor,
                summary=summary,
                known=known,
            )
        if setup.stacks:
            _stacks(
                session,
                settings=settings,
                setup=setup,
                person=person,
                now=now,
                actor=actor,
                summary=summary,
            )
        if progress is not None:
            progress(done, len(people))
    done_ids = [p.id or 0 for p in people] if person_ids is None else list(person_ids)
    evaluation.finish(session, course_id=course_id, person_ids=done_ids, now=now)
    if person_ids is None:
        latest = session.exec(
            select(func.max(ImportRun.id)).where(ImportRun.course_id == course_id)
        ).one()
        if latest is not None and latest > setup.evaluated_run_id:
            setup = course_setup(session, course_id=course_id, create=True)
            setup.evaluated_run_id = latest
            session.add(setup)
    session.flush()
    return summary


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
        latest = session.exec(
            select(func.max(ImportRun.id)).where(ImportRun.course_id == course_id)
        ).one()
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
        if latest is not None and latest > seen:
            setup.evaluated_run_id = latest
            session.add(setup)
    session.flush()
    return queued


def evaluate_new_evidence(
    engine_: Engine, *, settings: Settings, actor: str, inline_max: int | None = None
) -> dict[int, Summary]:
    """After a CSV import or a push to the API: queue the evaluation of the learners whose
    results changed, and evaluate them here and now when they are few (at most
    ``inline_max``, default ``settings.evaluation_inline_learners``); more are left to the
    workers (``Summary.queued``)."""
    with db_session(engine_, write=True) as s:
        queued = enqueue_new_evidence(s)
        s.commit()
    limit = settings.evaluation_inline_learners if inline_max is None else inline_max
    done: dict[int, Summary] = {}
    for course_id, count in queued.items():
        if count > limit:
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


def reevaluate(
    engine_: Engine,
    *,
    settings: Settings,
    course_id: int,
    actor: str,
    reason: str,
    inline_max: int | None = None,
) -> Summary:
    """Queue the evaluation of every learner of a course (the instructor's Re-evaluate);
    evaluate them here and now when they are at most ``inline_max`` (default
    ``settings.evaluation_inline_learners``), else leave them to the workers
    (``Summary.queued``)."""
    with db_session(engine_, write=True) as s:
        if s.get(Course, course_id) is None:
            raise NotFound(f"no course {course_id}")
        count = evaluation.enqueue(s, course_id=course_id, reason=reason)
        s.commit()
    limit = settings.evaluation_inline_learners if inline_max is None else inline_max
    if count > limit:
        return Summary(queued=count)
    return run_course_jobs(engine_, settings=settings, course_id=course_id, actor=actor)


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
    lease_seconds: float | None = None,
    course_id: int | None = None,
) -> tuple[int, Summary]:
    """One worker step: lease up to ``limit`` due evaluation jobs and evaluate and award
    them, ``batch`` learners of a course per transaction (decisions, credentials, outbox
    rows and the jobs' completion commit together). A batch that fails is retried learner
    by learner; a learner that fails is given back with a backoff and its error. Returns
    how many jobs were worked on and what they did."""
    lease = settings.evaluation_lease_seconds if lease_seconds is None else lease_seconds
    jobs = evaluation.claim(
        engine_, now=utcnow(), limit=limit, lease_seconds=lease, course_id=course_id
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
        summary = evaluate_course(
            s,
            settings=settings,
            course_id=held[0].course_id,
            now=utcnow(),
            actor=actor,
            person_ids=[j.person_id for j in held],
            locked=True,
        )
        s.commit()
    return summary


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


def evaluate_learner(
    session: Session,
    *,
    settings: Settings,
    course_id: int,
    person_id: int,
    now: dt.datetime,
    actor: str,
) -> Summary:
    """``evaluate_course`` for one learner (a launch, an attestation)."""
    return evaluate_course(
        session,
        settings=settings,
        course_id=course_id,
        now=now,
        actor=actor,
        person_ids=[person_id],
    )


def _evaluate_one(
    session: Session,
    *,
    settings: Settings,
    setup: CourseSetup,
    person: Person,
    comp: Competency,
    policy: Policy,
    eff: EffectivePolicy,
    records: Sequence[store.EvidenceRecord],
    now: dt.datetime,
    actor: str,
    summary: Summary,
    known: _Known,
) -> None:
    assert person.id is not None and comp.id is not None
    evidence = _evidence_for(records, comp, policy)
    try:
        decision = engine.evaluate(evidence, policy, now, learner=str(person.id))
    except AssessmentError as exc:
        summary.problems.append(f"{person.name or person.sub} / {comp.key}: {exc}")
        return
    summary.decisions += 1
    last = known.decisions.get((person.id, comp.id))
    evidence_hash = canonical.evidence_hash(evidence)
    if (
        last is not None
        and last.policy_hash == eff.policy_hash
        and last.evidence_hash == evidence_hash
        and last.level == decision.level.key
    ):
        summary.unchanged += 1
        row = last
    else:
        row = policies.record_decision(
            session,
            decision=decision,
            evidence=evidence,
            person_id=person.id,
            course_id=setup.course_id,
            competency_row=comp,
            effective_row=eff,
        )
        summary.stored += 1
    _apply(
        session,
        settings=settings,
        setup=setup,
        person=person,
        comp=comp,
        target=decision.level,
        decision_row=row,
        now=now,
        actor=actor,
        summary=summary,
        known=known,
    )


def _apply(
    session: Session,
    *,
    settings: Settings,
    setup: CourseSetup,
    person: Person,
    comp: Competency,
    target: Level,
    decision_row: Decision,
    now: dt.datetime,
    actor: str,
    summary: Summary,
    known: _Known | None = None,
) -> None:
    """Turn a decision into award changes (DESIGN.md "Award")."""
    assert person.id is not None
    held, pending = _held(
        known.current.get((person.id, _line(comp)), [])
        if known is not None
        else _current(session, course_id=setup.course_id, person_id=person.id, line_key=_line(comp))
    )
    held_level = Level[held.level.upper()] if held is not None else Level.NONE
    if pending is not None:
        if target > held_level:
            if pending.level != target.key:
                pending.level, pending.decision_id, pending.updated_at = (
                    target.key,
                    decision_row.id,
                    now,
                )
                session.add(pending)
            return
        pending.state, pending.updated_at = "withdrawn", now
        session.add(pending)
    if target > held_level:
        block = (
            known.blocks.get((person.id, _line(comp)))
            if known is not None
            else _reaward_block(
                session, course_id=setup.course_id, person_id=person.id, line_key=_line(comp)
            )
        )
        if _blocks(block, target.key):
            # A person revoked this level (or a higher one): the same evidence does not bring
            # it back (docs/awarding.md); the instructor page says so and offers to lift it.
            summary.blocked += 1
            return
        if setup.approval_required:
            session.add(
                Award(
                    course_id=setup.course_id,
                    person_id=person.id,
                    competency_id=comp.id,
                    line_key=_line(comp),
                    level=target.key,
                    state="pending_approval",
                    decision_id=decision_row.id,
                    created_at=now,
                    updated_at=now,
                )
            )
            summary.pending += 1
            return
        _issue(
            session,
            settings=settings,
            setup=setup,
            person=person,
            comp=comp,
            level=target,
            decision_row=decision_row,
            previous=held,
            now=now,
            actor=actor,
        )
        if held is not None:
            summary.upgraded += 1
        else:
            summary.issued += 1
        return
    if held is None:
        return
    if target < held_level:
        if setup.on_lower == "revoke":
            reason = f"A re-evaluation gives {target.label}, below {held_level.label}."
            _revoke(
                session,
                settings=settings,
                award=held,
                reason=reason,
                actor=actor,
                now=now,
                by_person=False,
            )
            summary.revoked += 1
            if target > Level.NONE:
                _issue(
                    session,
                    settings=settings,
                    setup=setup,
                    person=person,
                    comp=comp,
                    level=target,
                    decision_row=decision_row,
                    previous=None,
                    now=now,
                    actor=actor,
                )
                summary.issued += 1
            return
        review = (
            f"A later evaluation gives {target.label}; this credential says {held_level.label}. "
            "Review it: keep it, or revoke it with a reason."
        )
        if held.review != review:
            held.review, held.updated_at = review, now
            session.add(held)
            audit.record(
                session,
                actor=actor,
                action="award.flagged",
                subject=f"credential:{held.credential_uuid}",
                decision=decision_row.id,
                level=target.key,
                held=held.level,
            )
            summary.flagged += 1
    elif held.review:
        held.review, held.updated_at = "", now  # the evidence supports the level again
        session.add(held)


# --- issuing ---------------------------------------------------------------------------------

_LEVELS = (Level.BEGINNING, Level.INTERMEDIATE, Level.ADVANCED)


def _template(
    session: Session, settings: Settings, comp: Competency, level_key: str, *, stackable: bool
) -> issuer_inputs.LevelTemplate:
    assert comp.id is not None
    cache = db_engine.transaction_cache(session, "level_templates")
    rows = cache.get(comp.id)
    if rows is None:
        rows = cache[comp.id] = {
            t.level: t for t in policies_repo.level_templates(session, comp.id)
        }
    t = rows.get(level_key)
    outcome = comp.level_descriptions.get(level_key) or comp.description or comp.name
    eu = issuer_inputs.EuElements(
        learning_outcomes=(outcome,),
        assessment_type=(
            "Rubric-scored work and quizzes in the course, combined by the published rules"
        ),
        participation_form="Online, in the institution's learning platform",
        quality_assurance=(
            f"Internal quality assurance of {settings.issuer_name}: every award records the "
            "rules (policy version) and the evidence it was made from"
        ),
        ects_credits=t.ects_credits if t else None,
        workload_hours=t.workload_hours if t else None,
        eqf_level=t.eqf_level if t else None,
        field_of_study=(t.iscedf_code or None) if t else None,
        integration_stackability="stackable" if stackable else "stand-alone",
    )
    alignments: tuple[issuer_inputs.Alignment, ...] = ()
    if comp.framework_url:
        alignments = (
            issuer_inputs.Alignment(
                target_name=comp.name,
                target_url=comp.framework_url,
                target_code=comp.framework_code or None,
                target_framework=comp.framework_name or None,
            ),
        )
    return issuer_inputs.LevelTemplate(
        key=comp.key,
        competency_name=comp.name,
        description=(t.description if t and t.description else comp.description) or comp.name,
        criteria_narrative=(
            "The level is decided by the course's published rules from the learner's rubric "
            "and quiz results; the credential's evidence lists what counted."
        ),
        levels=tuple(
            issuer_inputs.ScaleLevel(lv.key, lv.label, comp.level_descriptions.get(lv.key, ""))
            for lv in _LEVELS
        ),
        eu=eu,
        alignments=alignments,
        language=t.language if t else "en",
        valid_for_days=t.validity_days if t else None,
    )


def _evidence_items(reasons: dict[str, Any]) -> tuple[issuer_inputs.EvidenceItem, ...]:
    items = []
    for used in reasons.get("used", []):
        name = str(used.get("label") or used.get("item"))
        if used.get("attempt"):
            name += f" (attempt {used['attempt']})"
        if "rating" in used:
            text = f"Rated {used['rating']}"
        else:
            text = f"Scored {used.get('score', 0):g} of {used.get('max', 0):g}"
        items.append(issuer_inputs.EvidenceItem(name=name, description=text, genre="Assessment"))
    return tuple(items)


def _supervision(reasons: dict[str, Any], required: VerificationLevel) -> str | None:
    """What the credential can honestly claim: the weakest of the sittings the level rests
    on. A level that requires verified sittings is reached on those sittings alone (the
    engine's verification rule), so the weaker results that also counted do not lower it.
    """
    keys = {u.get("verification") for u in reasons.get("used", [])}
    known = [v for v in VerificationLevel if v.key in keys]
    accepted = [v for v in known if v >= required] or known
    return min(accepted).key if accepted else None


def _required_verification(
    session: Session, decision_row: Decision, level: Level
) -> VerificationLevel:
    """The verification the decision's rules ask for ``level``."""
    # Parsed once per transaction and rules version (a batch issues many credentials under
    # the same rules); effective policy rows are never changed.
    cache = db_engine.transaction_cache(session, "effective_policies")
    policy = cache.get(decision_row.effective_policy_id)
    if policy is None:
        row = session.get(EffectivePolicy, decision_row.effective_policy_id)
        if row is None:  # pragma: no cover - a decision always references its rules
            return VerificationLevel.UNSUPERVISED
        policy = parse.read_policy(row.document | {"version": row.version})
        cache[decision_row.effective_policy_id] = policy
    return next(
        (r.verification for lv, r in policy.ladder if lv == level), VerificationLevel.UNSUPERVISED
    )


def _issue(
    session: Session,
    *,
    settings: Settings,
    setup: CourseSetup,
    person: Person,
    comp: Competency,
    level: Level,
    decision_row: Decision,
    previous: Award | None,
    now: dt.datetime,
    actor: str,
    approved_by: str = "",
) -> Award:
    assert person.id is not None
    reasons = decision_row.reasons
    supervision = _supervision(reasons, _required_verification(session, decision_row, level))
    award_input = issuer_inputs.AwardInput(
        learner=issuer_inputs.Learner(
            lti_user_id=person.sub,
            email=person.email or None,
            name=person.name or None,
            person_id=person.id,
        ),
        template=_template(
            session, settings, comp, level.key, stackable=_in_stack(setup, comp.key)
        ),
        level_key=level.key,
        awarded_at=now,
        evidence=_evidence_items(reasons),
        supervision=supervision,  # type: ignore[arg-type]
        grade=level.label,
    )
    credential = issuer_service.issue(
        session,
        settings=settings,
        award=award_input,
        now=now,
        actor=actor,
        audit_scope=audit.Scope(course_id=setup.course_id),
    )
    delivery_key = previous.delivery_key if previous is not None else credential.uuid
    snapshot = _snapshot(
        session,
        setup=setup,
        person=person,
        comp=comp,
        level=level,
        credential=credential,
        settings=settings,
        delivery_key=delivery_key,
    )
    if previous is not None:
        previous.state, previous.updated_at = "superseded", now
        session.add(previous)
        delivery_awards.propagate_upgrade(session, snapshot=snapshot, now=now)
    else:
        delivery_awards.enqueue_issue(session, snapshot=snapshot, now=now)
    award = Award(
        course_id=setup.course_id,
        person_id=person.id,
        competency_id=comp.id,
        line_key=_line(comp),
        level=level.key,
        state="issued",
        credential_uuid=credential.uuid,
        delivery_key=delivery_key,
        decision_id=decision_row.id,
        approved_by=approved_by,
        created_at=now,
        updated_at=now,
    )
    session.add(award)
    session.flush()
    return award


def _in_stack(setup: CourseSetup, key: str) -> bool:
    return any(key == str(r.get("competency")) for s in setup.stacks for r in s.get("requires", []))


def _snapshot(
    session: Session,
    *,
    setup: CourseSetup,
    person: Person,
    comp: Competency,
    level: Level,
    credential: Credential,
    settings: Settings,
    delivery_key: str,
) -> delivery_awards.CredentialSnapshot:
    ags = None
    if setup.ags_lineitems_url and lti_services.AGS_LINEITEM in setup.ags_scopes:
        ags = {
            "platform_id": person.platform_id,
            "lineitems": setup.ags_lineitems_url,
            "resource_id": f"microcred:{comp.key}",
            "label": f"{comp.name} (competency level)",
            "user_id": person.sub,
            "score": int(level),
            "maximum": int(Level.ADVANCED),
            "comment": f"{level.label}: {issuer_service.credential_url(settings, credential.uuid)}",
        }
    return delivery_awards.CredentialSnapshot(
        credential_id=delivery_key,
        person_id=person.id,
        recipient_email=person.email or "",
        given_name=person.given_name or "",
        family_name=person.family_name or "",
        competency=comp.key,
        competency_name=comp.name,
        level=level.key,
        issued_at=credential.issued_at,
        credential_url=issuer_service.credential_url(settings, credential.uuid),
        expires_at=credential.valid_until,
        ags=ags,
    )


def _revoke(
    session: Session,
    *,
    settings: Settings,
    award: Award,
    reason: str,
    actor: str,
    now: dt.datetime,
    by_person: bool,
) -> Credential:
    """Revoke the award's credential: status list, revocation queued to every repository
    it reached, the ledger. A person's revocation blocks re-award (``_reaward_block``)."""
    assert award.credential_uuid is not None
    credential = issuer_service.revoke(
        session, settings=settings, uuid=award.credential_uuid, reason=reason, actor=actor, now=now
    )
    delivery_awards.propagate_revocation(session, award.delivery_key, reason, now=now)
    award.state, award.review, award.updated_at = "revoked", reason, now
    award.reaward_blocked = by_person
    award.revoked_by = actor[:300] if by_person else ""
    session.add(award)
    return credential


def _course_award(session: Session, *, course_id: int, award_id: int) -> Award:
    award = session.get(Award, award_id)
    # Another course's award is "not found": a session may act on its own course only.
    if award is None or award.course_id != course_id:
        raise NotFound(f"no award {award_id} in this course")
    return award


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
    held, _ = _held(
        _current(
            session, course_id=course_id, person_id=pending.person_id, line_key=pending.line_key
        )
    )
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
    audit.record(
        session, actor=actor, action="award.approved", subject=f"credential:{award.credential_uuid}"
    )
    return award


def revoke_award(
    session: Session,
    *,
    settings: Settings,
    course_id: int,
    award_id: int,
    reason: str,
    actor: str,
    now: dt.datetime,
) -> Award:
    """Revoke an issued credential everywhere it went (the reason is shown to the earner)."""
    if not reason.strip():
        raise BadInput("a reason is required", hint="Say why, e.g. 'awarded in error'.")
    award = _course_award(session, course_id=course_id, award_id=award_id)
    _lock_learner(session, course_id=course_id, person_id=award.person_id)
    session.refresh(award)
    if award.state != "issued":
        raise Conflict(f"award {award_id} is {award.state}, not an issued credential")
    _revoke(
        session,
        settings=settings,
        award=award,
        reason=reason.strip(),
        actor=actor,
        now=now,
        by_person=True,
    )
    session.flush()
    return award


def revoke_credential(
    session: Session, *, settings: Settings, uuid: str, reason: str, actor: str, now: dt.datetime
) -> Credential:
    """Revoke a credential by its id (``microcred credential revoke``) the way the
    instructor page does: status list, revocation queued to every repository the credential
    reached, the ledger's re-award block and the audit row, in the caller's transaction.

    A credential a higher level superseded is only marked revoked: the repositories hold
    the higher level's badge, which stays. A credential outside the award ledger (issued
    through the API) has its own deliveries, if any, revoked.
    """
    reason = reason.strip()
    if not reason:
        raise BadInput("a reason is required", hint="Say why, e.g. 'awarded in error'.")
    award = session.exec(select(Award).where(Award.credential_uuid == uuid)).first()
    if award is None:
        credential = issuer_service.revoke(
            session, settings=settings, uuid=uuid, reason=reason, actor=actor, now=now
        )
        delivery_awards.propagate_revocation(session, uuid, reason, now=now)
        return credential
    _lock_learner(session, course_id=award.course_id, person_id=award.person_id)
    session.refresh(award)
    if award.state != "issued":
        return issuer_service.revoke(
            session, settings=settings, uuid=uuid, reason=reason, actor=actor, now=now
        )
    credential = _revoke(
        session, settings=settings, award=award, reason=reason, actor=actor, now=now, by_person=True
    )
    session.flush()
    return credential


def allow_reaward(
    session: Session, *, course_id: int, award_id: int, actor: str, now: dt.datetime
) -> Award:
    """Lift the re-award block of a revoked credential: the next evaluation issues what the
    evidence shows again (the caller re-evaluates the learner)."""
    award = _course_award(session, course_id=course_id, award_id=award_id)
    _lock_learner(session, course_id=course_id, person_id=award.person_id)
    session.refresh(award)
    if award.state != "revoked" or not award.reaward_blocked:
        raise Conflict(f"award {award_id} does not block re-award")
    for row in session.exec(
        select(Award).where(
            Award.course_id == course_id,
            Award.person_id == award.person_id,
            Award.line_key == award.line_key,
            Award.state == "revoked",
            col(Award.reaward_blocked).is_(True),
        )
    ):
        row.reaward_blocked, row.updated_at = False, now
        session.add(row)
    audit.record(
        session,
        actor=actor,
        action="award.reaward_allowed",
        subject=f"credential:{award.credential_uuid}",
        level=award.level,
        revoked_for=award.review,
    )
    session.flush()
    return award


def keep_award(
    session: Session, *, course_id: int, award_id: int, actor: str, now: dt.datetime
) -> Award:
    """Clear a review flag: the instructor keeps the credential as it is."""
    award = _course_award(session, course_id=course_id, award_id=award_id)
    if award.review and award.state == "issued":
        audit.record(
            session,
            actor=actor,
            action="award.kept",
            subject=f"credential:{award.credential_uuid}",
            review=award.review,
        )
        award.review, award.updated_at = "", now
        session.add(award)
        session.flush()
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


# --- stacked credentials ---------------------------------------------------------------------


def _stacks(
    session: Session,
    *,
    settings: Settings,
    setup: CourseSetup,
    person: Person,
    now: dt.datetime,
    actor: str,
    summary: Summary,
) -> None:
    assert person.id is not None
    issued = session.exec(
        select(Award).where(
            Award.course_id == setup.course_id,
            Award.person_id == person.id,
            Award.state == "issued",
            col(Award.line_key).startswith("competency:"),
        )
    ).all()
    held = {a.line_key.removeprefix("competency:"): Level[a.level.upper()] for a in issued}
    by_key = {a.line_key.removeprefix("competency:"): a for a in issued}
    for doc in setup.stacks:
        try:
            stack_policy = parse.read_stack_policy(doc)
        except AssessmentError as exc:
            summary.problems.append(f"stack {doc.get('name')}: {exc}")
            continue
        result = stack.evaluate_stack(held, stack_policy)
        line = f"stack:{stack_policy.name}"
        current, _ = _held(
            _current(session, course_id=setup.course_id, person_id=person.id, line_key=line)
        )
        if not result.awarded or current is not None:
            continue
        if _reaward_block(session, course_id=setup.course_id, person_id=person.id, line_key=line):
            summary.blocked += 1  # revoked by a person: not re-issued until lifted
            continue
        parts = []
        for req in stack_policy.requires:
            part = by_key.get(req.competency)
            if part is not None and part.credential_uuid:
                cred = session.exec(
                    select(Credential).where(Credential.uuid == part.credential_uuid)
                ).one()
                parts.append(cred.document)
        template = issuer_inputs.LevelTemplate(
            key=f"stack-{stack_policy.name.lower().replace(' ', '-')}"[:200],
            competency_name=stack_policy.name,
            description=result.reason,
            criteria_narrative=result.reason,
            levels=(issuer_inputs.ScaleLevel("awarded", "Awarded"),),
            eu=issuer_inputs.EuElements(
                learning_outcomes=tuple(r.reason for r in result.rules),
                assessment_type="The part credentials it stacks",
                participation_form="Online, in the institution's learning platform",
                quality_assurance=f"Internal quality assurance of {settings.issuer_name}",
                integration_stackability="stackable",
            ),
        )
        credential = issuer_service.issue(
            session,
            settings=settings,
            award=issuer_inputs.AwardInput(
                learner=issuer_inputs.Learner(
                    lti_user_id=person.sub,
                    email=person.email or None,
                    name=person.name or None,
                    person_id=person.id,
                ),
                template=template,
                level_key="awarded",
                awarded_at=now,
            ),
            now=now,
            actor=actor,
            parts=parts,
            audit_scope=audit.Scope(course_id=setup.course_id),
        )
        session.add(
            Award(
                course_id=setup.course_id,
                person_id=person.id,
                line_key=line,
                level="awarded",
                state="issued",
                credential_uuid=credential.uuid,
                delivery_key=credential.uuid,
                created_at=now,
                updated_at=now,
            )
        )
        summary.issued += 1
    session.flush()


# --- sync from the LMS -----------------------------------------------------------------------


@dataclass
class _Prefetched:
    """A connector whose answer was read before the write transaction began."""

    kind: str
    origin: str
    fetched: Fetched

    def fetch_course(self, lms_course_id: str) -> Fetched:
        return self.fetched


@dataclass(frozen=True)
class Pull:
    """What ``fetch_course`` read (no database writes yet)."""

    course_id: int
    connection_id: int
    lms_course_id: str
    connector: _Prefetched
    members: list[lti_services.Member] | None = None  # the NRPS roster, when read
    roster_error: str = ""


@dataclass(frozen=True)
class _Plan:
    """What a pull needs, read in a short session before any HTTP call."""

    course_id: int
    platform_id: int
    connection: SourceConnection  # detached, secrets decrypted
    lms_course_id: str
    nrps_url: str


def _plan(engine_: Engine, *, course_id: int) -> _Plan:
    with db_session(engine_) as s:
        setup = course_setup(s, course_id=course_id)
        course, platform_id = store.platform_of_course(s, course_id=course_id)
        if setup.source_connection_id is None:
            raise BadInput(
                "This course has no connection to the LMS's data API.",
                hint="Connect it on the course page (Connect to the LMS) or with "
                "microcred course connect.",
            )
        connection = s.get(SourceConnection, setup.source_connection_id)
        assert connection is not None and connection.id is not None
        if not connection.active:
            raise BadInput(f"The source connection {connection.name!r} is not active.")
        s.expunge(connection)
        return _Plan(
            course_id=course_id,
            platform_id=platform_id,
            connection=connection,
            lms_course_id=setup.lms_course_id or course.context_id,
            nrps_url=setup.nrps_url,
        )


def token_saver(engine_: Engine, connection_id: int) -> Callable[[str, dt.datetime | None], None]:
    """A refreshed Canvas token is saved at once, in a transaction of its own: the pull
    holds no transaction, and a later failure must not lose the new token (the old
    refresh token may be spent)."""

    def save(token: str, expires_at: dt.datetime | None) -> None:
        with db_session(engine_, write=True) as s:
            s.execute(
                update(SourceConnection)
                .where(col(SourceConnection.id) == connection_id)
                .values(access_token=token, token_expires_at=expires_at, updated_at=utcnow())
            )
            s.commit()

    return save


def fetch_course(
    engine_: Engine,
    *,
    course_id: int,
    client: httpx.Client | None = None,
    roster: bool = False,
) -> Pull:
    """Read a course's results (and, with ``roster``, its NRPS roster) from its LMS, with
    no database session open during the HTTP calls.

    Raises:
        BadInput: the course has no source connection.
        SourceError: the LMS could not be read (nothing is written).
    """
    plan = _plan(engine_, course_id=course_id)
    connection = plan.connection
    assert connection.id is not None
    with contextlib.ExitStack() as stack:
        http = client or stack.enter_context(
            outbound.client(outbound.default_policy(), timeout=30.0)
        )
        connector = sync.connector_for(
            None, connection, client=http, on_refresh=token_saver(engine_, connection.id)
        )
        return prefetched_pull(
            engine_,
            course_id=course_id,
            connection=connection,
            lms_course_id=plan.lms_course_id,
            connector=connector,
            http=http,
            roster=roster,
        )


def prefetched_pull(
    engine_: Engine,
    *,
    course_id: int,
    connection: SourceConnection,
    lms_course_id: str | None,
    connector: Connector,
    http: httpx.Client,
    roster: bool = True,
) -> Pull:
    """Read through ``connector`` (and the course's NRPS roster, when known and asked
    for); the database is read in short sessions before, never during, the HTTP calls."""
    assert connection.id is not None
    with db_session(engine_) as s:
        course, platform_id = store.platform_of_course(s, course_id=course_id)
        setup = course_setup(s, course_id=course_id)
        lms = lms_course_id or setup.lms_course_id or course.context_id
        nrps_url = setup.nrps_url
    fetched = connector.fetch_course(lms)
    members: list[lti_services.Member] | None = None
    roster_error = ""
    if roster and nrps_url:
        try:
            members = read_roster(engine_, http, platform_id=platform_id, url=nrps_url)
        except PlatformCallFailed as exc:
            roster_error = f"{exc.detail} {exc.hint or ''}".strip()
    return Pull(
        course_id,
        connection.id,
        lms,
        _Prefetched(connection.kind, connector.origin, fetched),
        members,
        roster_error,
    )


def read_roster(
    engine_: Engine, http: httpx.Client, *, platform_id: int, url: str
) -> list[lti_services.Member]:
    """Every member of an NRPS 2.0 membership container (HTTP; tokens in short sessions)."""
    with db_session(engine_) as s:
        platform = s.get(Platform, platform_id)
        if platform is None:
            raise PlatformCallFailed(f"no platform with id {platform_id}")
        s.expunge(platform)
    return lti_services.roster(lti_services.ServiceClient(engine_, http, platform), url)


# NRPS 2.0 §2.2 member status: Active, Inactive, Deleted
_STATUS = {"active": "active", "inactive": "inactive", "deleted": "removed"}


def apply_roster(
    session: Session,
    *,
    course_id: int,
    members: Sequence[lti_services.Member],
    now: dt.datetime,
) -> set[int]:
    """Upsert the people and enrolments of an NRPS roster, so every enrolled learner
    exists (with name and e-mail) before they launch; learners no longer in the roster
    are marked removed (their results and credentials stay). Returns the ids of people
    whose enrolment appeared, changed status or went."""
    _course, platform_id = store.platform_of_course(session, course_id=course_id)
    people = {
        p.sub: p
        for p in session.exec(
            select(Person).where(
                Person.platform_id == platform_id,
                col(Person.sub).in_([m.user_id for m in members] or [""]),
            )
        )
    }
    enrolled = {
        e.person_id: e
        for e in session.exec(select(Enrolment).where(Enrolment.course_id == course_id))
    }
    changed: set[int] = set()
    seen: set[int] = set()
    for m in members:
        person = people.get(m.user_id)
        sent = {
            "name": m.name,
            "given_name": m.given_name,
            "family_name": m.family_name,
            "email": m.email,
        }
        sent = {k: v[:300] for k, v in sent.items() if v}
        if person is None:
            person = Person(platform_id=platform_id, sub=m.user_id[:255])
            for k, v in sent.items():
                setattr(person, k, v)
            session.add(person)
            session.flush()
            people[m.user_id] = person
        elif any(getattr(person, k) != v for k, v in sent.items()):
            for k, v in sent.items():
                setattr(person, k, v)
            person.updated_at = now
            session.add(person)
        assert person.id is not None
        seen.add(person.id)
        canvas_id = _canvas_user_id(m.raw)
        if canvas_id:
            store.link_person(
                session, platform_id=platform_id, lms_user_id=canvas_id, person_id=person.id
            )
        role = lti_roles.course_role(m.roles)
        status = _STATUS.get(m.status.lower(), "active")
        row = enrolled.get(person.id)
        if row is None:
            row = Enrolment(
                course_id=course_id, person_id=person.id, role=role, roles=m.roles, status=status
            )
            enrolled[person.id] = row
            session.add(row)
            changed.add(person.id)
        elif (row.role, row.roles, row.status) != (role, m.roles, status):
            if row.status != status:
                changed.add(person.id)
            row.role, row.roles, row.status, row.updated_at = role, m.roles, status, now
            session.add(row)
    for person_id, row in enrolled.items():
        if person_id not in seen and row.role == "learner" and row.status != "removed":
            row.status, row.updated_at = "removed", now
            session.add(row)
            changed.add(person_id)
    session.flush()
    return changed


def _canvas_user_id(raw: dict[str, Any]) -> str:
    """Canvas's own user id of an NRPS member: the ``canvas_user_id`` custom field
    ($Canvas.user.id, requested at registration) in the member's ``message`` (NRPS 2.0
    §2.4, a roster asked for with ``rlid``)."""
    for message in raw.get("message") or []:
        custom = message.get(lti_types.CLAIM + "custom") if isinstance(message, dict) else None
        value = custom.get("canvas_user_id") if isinstance(custom, dict) else None
        if isinstance(value, str | int) and str(value).isdigit():
            return str(value)
    return ""


def store_fetched(session: Session, *, pull: Pull, now: dt.datetime, actor: str) -> SyncReport:
    """Write what ``fetch_course`` read: the roster first (so every result finds its
    learner), then the results (the caller evaluates and commits)."""
    changed: set[int] = set()
    if pull.members is not None:
        changed = apply_roster(session, course_id=pull.course_id, members=pull.members, now=now)
    report = sync.sync_course(
        session,
        course_id=pull.course_id,
        connector=pull.connector,
        now=now,
        lms_course_id=pull.lms_course_id,
        connection_id=pull.connection_id,
        actor=actor,
    )
    report.changed_people |= changed
    if not (report.new or report.updated or report.removed) and report.import_run_id:
        # A pull that changed nothing leaves no run behind: the worker pulls every course
        # every minute. What it reported (rejected items) is on the course's sync row.
        run = session.get(ImportRun, report.import_run_id)
        if run is not None:
            session.delete(run)
        report.import_run_id = None
    row = _sync_row(session, course_id=pull.course_id)
    row.pulled_at = now
    row.attention = len(report.rejected)
    if pull.members is not None:
        row.members = len(pull.members)
    row.roster_error = pull.roster_error[:2000]
    session.add(row)
    session.flush()
    return report


def has_source(session: Session, *, course_id: int) -> bool:
    return course_setup(session, course_id=course_id).source_connection_id is not None


def last_sync(session: Session, *, course_id: int) -> dt.datetime | None:
    """When results were last pulled from the LMS for this course (None: never)."""
    return session.exec(
        select(CourseSync.pulled_at).where(CourseSync.course_id == course_id)
    ).first()


# --- scheduled sync (the worker) -------------------------------------------------------------

SYNC_LEASE = dt.timedelta(minutes=5)  # longer than a pull's deadlines (outbound + retries)
SYNC_MAX_BACKOFF = dt.timedelta(hours=1)


@dataclass(frozen=True)
class SyncHealth:
    """The connection health line of a course (instructor and admin pages)."""

    connected: bool
    pulled_at: dt.datetime | None
    attempted_at: dt.datetime | None
    wanted_at: dt.datetime | None
    error: str
    failures: int
    members: int | None
    roster_error: str
    attention: int
    interval_seconds: int

    def pulled_text(self, now: dt.datetime) -> str:
        """ "Results last pulled 3 minutes ago" (or never), for the pages."""
        if self.pulled_at is None:
            return "Results have not been pulled from the LMS yet."
        return f"Results last pulled from the LMS {ago(self.pulled_at, now)}."

    @property
    def waiting(self) -> bool:
        """A pull was asked for and has not happened since."""
        return self.wanted_at is not None and (
            self.attempted_at is None or self.attempted_at < self.wanted_at
        )


def ago(when: dt.datetime, now: dt.datetime) -> str:
    """'just now', '4 minutes ago', '2 hours ago', '3 days ago'."""
    seconds = max(0, int((now - when).total_seconds()))
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now" if seconds < 10 else f"{seconds} seconds ago"


def _sync_row(session: Session, *, course_id: int) -> CourseSync:
    row = session.exec(select(CourseSync).where(CourseSync.course_id == course_id)).first()
    if row is None:
        row = CourseSync(course_id=course_id)
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:  # created concurrently
            row = session.exec(select(CourseSync).where(CourseSync.course_id == course_id)).one()
    return row


def sync_interval(settings: Settings, setup: CourseSetup | None) -> dt.timedelta:
    seconds = setup.sync_interval_seconds if setup is not None else None
    return dt.timedelta(seconds=seconds or settings.sync_interval_seconds)


def sync_health(
    session: Session, *, course_id: int, settings: Settings | None = None
) -> SyncHealth:
    setup = course_setup(session, course_id=course_id)
    row = session.exec(select(CourseSync).where(CourseSync.course_id == course_id)).first()
    row = row or CourseSync(course_id=course_id)
    return SyncHealth(
        connected=setup.source_connection_id is not None,
        pulled_at=row.pulled_at,
        attempted_at=row.attempted_at,
        wanted_at=row.wanted_at,
        error=row.error,
        failures=row.failures,
        members=row.members,
        roster_error=row.roster_error,
        attention=row.attention,
        interval_seconds=int(
            setup.sync_interval_seconds or (settings.sync_interval_seconds if settings else 0)
        ),
    )


@dataclass(frozen=True)
class ConnectedCourse:
    course: Course
    connection: str
    health: SyncHealth


def connected_courses(session: Session) -> list[ConnectedCourse]:
    """Every course connected to an LMS source, with its health line (the admin page)."""
    out = []
    rows = session.exec(
        select(Course, SourceConnection.name)
        .join(CourseSetup, col(CourseSetup.course_id) == col(Course.id))
        .join(SourceConnection, col(SourceConnection.id) == col(CourseSetup.source_connection_id))
        .order_by(col(Course.id))
    ).all()
    for course, name in rows:
        assert course.id is not None
        out.append(ConnectedCourse(course, name, sync_health(session, course_id=course.id)))
    return out


def request_sync(session: Session, *, course_id: int, now: dt.datetime) -> None:
    """Ask the worker to pull the course soon (a launch, the instructor's button): a
    timestamp, no LMS call here."""
    row = _sync_row(session, course_id=course_id)
    pending = row.wanted_at is not None and (
        row.attempted_at is None or row.wanted_at > row.attempted_at
    )
    if not pending:  # a burst of launches writes once
        row.wanted_at = now
        session.add(row)
    session.flush()


def _due(row: CourseSync | None, interval: dt.timedelta, now: dt.datetime) -> bool:
    if row is not None and row.claimed_until is not None and row.claimed_until > now:
        return False  # another worker is pulling it
    if row is None or row.attempted_at is None:
        return True
    if row.wanted_at is not None and row.wanted_at > row.attempted_at:
        return True
    wait = interval * (2 ** min(row.failures, 10)) if row.failures else interval
    return now - row.attempted_at >= min(wait, max(SYNC_MAX_BACKOFF, interval))


def due_syncs(session: Session, *, settings: Settings, now: dt.datetime) -> list[int]:
    """Connected courses whose last pull is older than their interval, or that asked for
    one, the longest-waiting first."""
    rows = session.exec(
        select(CourseSetup, CourseSync)
        .join(CourseSync, col(CourseSync.course_id) == col(CourseSetup.course_id), isouter=True)
        .where(col(CourseSetup.source_connection_id).is_not(None))
    ).all()
    due = [
        (row.attempted_at if row is not None and row.attempted_at else dt.datetime.min, setup)
        for setup, row in rows
        if _due(row, sync_interval(settings, setup), now)
    ]
    epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
    due.sort(key=lambda x: x[0] if x[0].tzinfo else epoch)
    return [setup.course_id for _, setup in due]


def claim_sync(engine_: Engine, *, course_id: int, worker: str, now: dt.datetime) -> bool:
    """Take the course's pull lease (compare-and-set: two workers never pull one course at
    once, on SQLite and PostgreSQL alike). False if another worker holds it."""
    with db_session(engine_, write=True) as s:
        _sync_row(s, course_id=course_id)
        s.flush()
        taken = s.execute(
            update(CourseSync)
            .where(
                col(CourseSync.course_id) == course_id,
                (col(CourseSync.claimed_until).is_(None)) | (col(CourseSync.claimed_until) <= now),
            )
            .values(claimed_by=worker[:300], claimed_until=now + SYNC_LEASE)
        )
        s.commit()
        return bool(getattr(taken, "rowcount", 0))


@dataclass(frozen=True)
class SyncOutcome:
    course_id: int
    report: SyncReport | None
    error: str = ""
    queued: int = 0  # learners whose evaluation the pull queued (evaluation_job)


def run_sync(
    engine_: Engine,
    *,
    settings: Settings,
    course_id: int,
    http: httpx.Client,
    worker: str,
    clock: Callable[[], dt.datetime] = utcnow,
) -> SyncOutcome:
    """One scheduled pull of a claimed course: roster (NRPS) and results (Moodle WS /
    Canvas REST) over HTTP with no transaction open, then one short write transaction
    (people, enrolments, results, removals, the health line, and the evaluation jobs of the
    learners whose inputs changed: the worker's evaluation job awards them)."""
    started = clock()
    try:
        pull = fetch_course(engine_, course_id=course_id, client=http, roster=True)
    except ServiceError as exc:
        error = f"{exc.detail} {getattr(exc, 'hint', '') or ''}".strip()
        log.warning("scheduled sync of course %s failed: %s", course_id, exc.detail)
        with db_session(engine_, write=True) as s:
            row = _sync_row(s, course_id=course_id)
            row.attempted_at, row.error = started, error[:2000]
            row.failures += 1
            row.claimed_by, row.claimed_until = "", None
            s.add(row)
            s.commit()
        return SyncOutcome(course_id, None, error)
    with db_session(engine_, write=True) as s:
        report = store_fetched(s, pull=pull, now=started, actor=f"worker:{worker}"[:300])
        queued = 0
        if report.changed_people:
            queued = evaluation.enqueue(
                s, course_id=course_id, person_ids=report.changed_people, reason="sync", now=started
            )
        row = _sync_row(s, course_id=course_id)
        row.attempted_at = started
        row.error, row.failures = "", 0
        row.claimed_by, row.claimed_until = "", None
        s.add(row)
        s.commit()
    return SyncOutcome(course_id, report, "", queued)


def run_due_syncs(
    engine_: Engine,
    *,
    settings: Settings,
    http: httpx.Client,
    worker: str,
    clock: Callable[[], dt.datetime] = utcnow,
    limit: int = 4,
) -> list[SyncOutcome]:
    """The worker's sync job: pull up to ``limit`` due courses, one after the other."""
    with db_session(engine_) as s:
        due = due_syncs(s, settings=settings, now=clock())
    out = []
    for course_id in due[:limit]:
        if claim_sync(engine_, course_id=course_id, worker=worker, now=clock()):
            out.append(
                run_sync(
                    engine_,
                    settings=settings,
                    course_id=course_id,
                    http=http,
                    worker=worker,
                    clock=clock,
                )
            )
    return out


# --- gradebook write-back (AGS) --------------------------------------------------------------


def ags_poster(
    engine_: Engine, http: httpx.Client, *, clock: Callable[[], dt.datetime] = utcnow
) -> ScorePoster:
    """The poster delivery's AGS connector calls: find or create the competency's line item
    in the course (AGS 2.0 §3.2, one per competency, ``resourceId`` ``microcred:<key>``),
    then post the level as the score (§3.4; scores are "latest wins", so a retry after an
    uncertain attempt is harmless).

    The line item is created once even when several deliveries write a competency's first
    scores at the same time: its URL is kept in ``ags_line_item`` (unique per platform,
    course and competency), and a delivery claims that row before it creates the line
    item; the others wait (retried) and then use the URL the first one stored.
    """

    def post(payload: dict[str, Any], record: AttemptRecord) -> dict[str, Any]:
        ags = payload.get("ags") or {}
        with db_session(engine_) as s:
            platform = s.get(Platform, int(ags.get("platform_id") or 0))
        if platform is None or not platform.active:
            raise delivery_errors.NotConfigured("the platform of this gradebook is not active")
        client = lti_services.ServiceClient(engine_, http, platform)
        key = _line_item_key(platform.id, str(ags["lineitems"]), str(ags["resource_id"]))
        try:
            url = _line_item_url(engine_, key)
            if url is None:
                found = lti_services.line_items(
                    client, ags["lineitems"], resource_id=ags["resource_id"]
                )
                record.note(f"GET line items resource_id={ags['resource_id']}", status=200)
                if found:
                    url = _keep_line_item(engine_, key, ags, str(found[0]["id"]), now=clock())
                else:
                    url = _create_line_item_once(engine_, client, key, ags, record, now=clock())
            try:
                lti_services.post_score(
                    client,
                    url,
                    user_id=str(ags["user_id"]),
                    score_given=float(ags["score"]),
                    score_maximum=float(ags["maximum"]),
                    timestamp=clock(),
                    comment=str(ags.get("comment", "")),
                )
            except PlatformCallFailed as exc:
                if exc.status not in (404, 410):
                    raise
                # The column was deleted in the LMS: forget it; the next attempt makes it.
                _forget_line_item(engine_, key, url)
                raise delivery_errors.RetryableError(
                    f"the gradebook column {url} no longer exists in the LMS; it is created "
                    "again on the next attempt",
                    status=exc.status,
                ) from exc
            record.note("POST score", status=200)
        except PlatformCallFailed as exc:
            error = (
                delivery_errors.RetryableError
                if lti_services.is_retryable(exc)
                else delivery_errors.Rejected
            )
            raise error(exc.detail, status=exc.status) from exc
        return {"line_item": url}

    return post


LINE_ITEM_CLAIM = dt.timedelta(minutes=2)  # longer than the create request's timeout


def _line_item_key(platform_id: int | None, lineitems: str, resource_id: str) -> str:
    return hashlib.sha256(f"{platform_id}\n{lineitems}\n{resource_id}".encode()).hexdigest()


def _line_item_url(engine_: Engine, key: str) -> str | None:
    with db_session(engine_) as s:
        url = s.exec(
            select(AgsLineItem.url).where(AgsLineItem.key == key, AgsLineItem.url != "")
        ).first()
    return url or None


def _keep_line_item(
    engine_: Engine, key: str, ags: dict[str, Any], url: str, *, now: dt.datetime
) -> str:
    """Remember a line item found on the platform; returns the one remembered (the first)."""
    with db_session(engine_, write=True) as s:
        row = s.exec(select(AgsLineItem).where(AgsLineItem.key == key)).first()
        if row is not None and row.url:
            return row.url
        if row is None:
            row = _line_item_row(key, ags, now=now)
        row.url, row.claim_token, row.claimed_until = url, "", None
        s.add(row)
        try:
            s.commit()
        except IntegrityError:  # remembered by another delivery meanwhile: either will do
            s.rollback()
    return url


def _line_item_row(key: str, ags: dict[str, Any], *, now: dt.datetime) -> AgsLineItem:
    return AgsLineItem(
        key=key,
        platform_id=int(ags.get("platform_id") or 0) or None,
        lineitems_url=str(ags["lineitems"])[:1000],
        resource_id=str(ags["resource_id"])[:300],
        created_at=now,
    )


def _claim_line_item(
    engine_: Engine, key: str, ags: dict[str, Any], *, now: dt.datetime
) -> tuple[str, str]:
    """Claim the right to create the line item: ``(claim token, "")``, or ``("", URL)``
    when it exists already; raises ``NotReady`` while another delivery holds the claim."""
    token = str(uuidlib.uuid4())
    busy = delivery_errors.NotReady(
        "another delivery is creating this competency's gradebook column right now; "
        "this score follows once it exists"
    )
    with db_session(engine_, write=True) as s:
        row = s.exec(select(AgsLineItem).where(AgsLineItem.key == key)).first()
        if row is not None and row.url:
            return "", row.url
        if row is not None and row.claimed_until is not None and row.claimed_until > now:
            raise busy
        if row is None:
            row = _line_item_row(key, ags, now=now)
        # A claim whose holder died (it expired) is taken over: that holder's create, if
        # it happened, was looked up on the platform just before this.
        row.claim_token, row.claimed_until = token, now + LINE_ITEM_CLAIM
        s.add(row)
        try:
            s.commit()
        except IntegrityError:  # PostgreSQL: another delivery inserted the claim first
            s.rollback()
            raise busy from None
    return token, ""


def _create_line_item_once(
    engine_: Engine,
    client: lti_services.ServiceClient,
    key: str,
    ags: dict[str, Any],
    record: AttemptRecord,
    *,
    now: dt.datetime,
) -> str:
    token, existing = _claim_line_item(engine_, key, ags, now=now)
    if existing:
        return existing
    try:
        url = str(
            lti_services.create_line_item(
                client,
                ags["lineitems"],
                label=ags["label"],
                score_maximum=float(ags["maximum"]),
                resource_id=ags["resource_id"],
                tag="microcred",
            )["id"]
        )
    except BaseException:
        # Let the next attempt try again (it looks on the platform first, so a create that
        # did happen is found, not repeated).
        with db_session(engine_, write=True) as s:
            s.execute(
                delete(AgsLineItem).where(
                    col(AgsLineItem.key) == key,
                    col(AgsLineItem.claim_token) == token,
                    col(AgsLineItem.url) == "",
                )
            )
            s.commit()
        raise
    record.note("POST line item", status=201)
    with db_session(engine_, write=True) as s:
        s.execute(
            update(AgsLineItem)
            .where(col(AgsLineItem.key) == key, col(AgsLineItem.claim_token) == token)
            .values(url=url, claim_token="", claimed_until=None)
        )
        s.commit()
    return url


def _forget_line_item(engine_: Engine, key: str, url: str) -> None:
    with db_session(engine_, write=True) as s:
        s.execute(
            delete(AgsLineItem).where(col(AgsLineItem.key) == key, col(AgsLineItem.url) == url)
        )
        s.commit()


# --- launches --------------------------------------------------------------------------------


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


# --- course setup by the instructor ----------------------------------------------------------


@dataclass(frozen=True)
class CompetencySetup:
    """One course competency as the instructor edits it."""

    competency: Competency
    policy: Policy | None  # the rules stored, even while ``problem`` says they do not fit
    problem: str
    thresholds: dict[str, str]  # level key -> "65%"
    verification: dict[str, str]  # level key -> verification key
    bounds: dict[str, str]  # level key -> "55% to 80%"
    items: tuple[str, ...]


def _bounds_text(doc: dict[str, Any]) -> dict[str, str]:
    out = {}
    for level, entry in (doc.get("levels") or {}).items():
        rng = (entry or {}).get("threshold") or {}
        low, high = rng.get("min"), rng.get("max")
        if low is not None and high is not None:
            out[str(level)] = f"{low} to {high}"
        elif low is not None:
            out[str(level)] = f"at least {low}"
        elif high is not None:
            out[str(level)] = f"at most {high}"
    return out


def course_competencies(session: Session, *, course_id: int) -> list[CompetencySetup]:
    """The course's competencies with their rules in force and the institution's bounds."""
    inst = policies_repo.latest_version(session, policies_repo.INSTITUTION)
    bounds = _bounds_text(inst.bounds or {}) if inst is not None else {}
    out = []
    for comp in policies_repo.course_competencies(session, course_id):
        problem = ""
        policy: Policy | None
        try:
            # never numbered here: the setup and learners pages read in a read transaction
            policy = policies.in_force(session, course_id=course_id, competency_row=comp)
        except ServiceError as exc:
            # Rules outside the bounds still show (and save back) what is stored: a form of
            # empty boxes would drop the whole mapping on the next save.
            problem, policy = exc.detail, policies.stored(session, course_id=course_id, comp=comp)
        if policy is None:
            out.append(CompetencySetup(comp, None, problem, {}, {}, bounds, ()))
            continue
        out.append(
            CompetencySetup(
                comp,
                policy,
                problem,
                {lv.key: percent(rule.threshold) for lv, rule in policy.ladder},
                {lv.key: rule.verification.key for lv, rule in policy.ladder},
                bounds,
                tuple(m.item for m in policy.items),
            )
        )
    return out


def save_competency_setup(
    session: Session,
    *,
    course_id: int,
    competency_key: str,
    items: Sequence[tuple[str, str]],
    thresholds: dict[str, str],
    actor: str,
) -> int:
    """Store the instructor's mapping and thresholds as a new version of the course and
    competency override (checked against the institution bounds; errors name the field),
    and queue the evaluation of every learner of the course; returns how many."""
    comp = policies.competency(session, competency_key)
    assert comp.id is not None
    if policies_repo.course_link(session, course_id, comp.id) is None:
        raise NotFound(f"{competency_key!r} is not a competency of this course")
    latest = policies_repo.latest_version(
        session, policies_repo.competency_scope(course_id, comp.id)
    )
    document = dict(latest.document) if latest is not None else {}
    document["items"] = [{"item": key, "label": label} for key, label in items]
    levels = dict(document.get("levels") or {})
    for level, value in thresholds.items():
        if level not in ("beginning", "intermediate", "advanced"):
            raise BadInput(f"levels.{level}: not a level")
        text = value.strip()
        if not text:
            continue
        # Read as the hint says: "70%", "70" and "0.7" are all 70 %; stored as "70%".
        try:
            fraction = parse.parse_fraction(text, f"levels.{level}.threshold")
        except AssessmentError as exc:
            raise BadInput(
                f"{comp.name}: {level.capitalize()} threshold: {exc.message}",
                hint="Write a percentage such as 70% (or 70, or 0.7).",
            ) from None
        entry = levels.get(level)
        entry = dict(entry) if isinstance(entry, dict) else {}
        entry["threshold"] = f"{round(fraction * 100, 4):g}%"
        levels[level] = entry
    if levels:
        document["levels"] = levels
    try:
        policies.save_competency_override(
            session,
            course_id=course_id,
            competency_row=comp,
            document=document,
            author=actor,
            note="instructor page",
        )
    except BadInput as exc:
        # "document.levels.advanced.threshold: …" -> "Advanced threshold: …" for people.
        detail = re.sub(
            r"^(?:document|competencies\.[^.]+)\.levels\.(\w+)\.(\w+): ",
            lambda m: f"{m[1].capitalize()} {m[2]}: ",
            exc.detail,
        )
        raise BadInput(
            f"{comp.name}: {detail}",
            hint="Thresholds must stay inside the range your institution allows (shown next "
            "to each level) and rise from Beginning to Advanced.",
        ) from None
    audit.record(
        session,
        actor=actor,
        action="course.competency_setup_changed",
        subject=f"course:{course_id}",
        competency=competency_key,
    )
    # Number the new rules now, in this write transaction, so pages that read them later
    # find them and never have to write.
    policies.effective(session, course_id=course_id, competency_row=comp)
    return evaluation.enqueue(session, course_id=course_id, reason="mapping or thresholds changed")


def add_competency(session: Session, *, course_id: int, competency_key: str, actor: str) -> None:
    """Assess a catalogue competency in the course."""
    comp = policies.competency(session, competency_key)
    policies.attach(session, course_id=course_id, competency_row=comp)
    audit.record(
        session,
        actor=actor,
        action="course.competency_added",
        subject=f"course:{course_id}",
        competency=competency_key,
    )


def create_course_competency(
    session: Session,
    *,
    course_id: int,
    name: str,
    description: str,
    level_descriptions: dict[str, str],
    actor: str,
) -> Competency:
    """An instructor's new competency: added to the catalogue (its key made from the name)
    and assessed in the course at once. The level descriptions are what each level's
    credential says the learner can do (its criteria)."""
    name = name.strip()
    if not name:
        raise BadInput("name: give the competency a name, e.g. 'Data cleaning'")
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:90] or "competency"
    key = base
    n = 2
    while policies_repo.competency_by_key(session, key) is not None:
        key, n = f"{base}-{n}", n + 1
    comp = policies.create_competency(
        session,
        key=key,
        name=name,
        author=actor,
        description=description.strip(),
        level_descriptions={k: v.strip() for k, v in level_descriptions.items() if v.strip()},
    )
    add_competency(session, course_id=course_id, competency_key=key, actor=actor)
    return comp


def learner_status(
    session: Session,
    *,
    course_id: int,
    person_id: int,
    awards: Sequence[Award] | None = None,
) -> list[tuple[Competency, Decision | None, list[Award]]]:
    """Per course competency: the learner's latest stored decision and their awards (newest
    first; ``awards``: the learner's awards in the course when the caller has them)."""
    comps = [
        c
        for row in prepared.rows(session, _course_competencies_query, course_id=course_id)
        if (c := prepared.model(Competency, row)) is not None
    ]
    if not comps:
        return []
    latest = {}
    for row in prepared.rows(
        session, _latest_decisions_query, course_id=course_id, person_id=person_id
    ):
        decision = prepared.model(Decision, row)
        if decision is not None:
            latest[decision.competency_id] = decision
    if awards is None:
        awards = person_awards(session, person_id=person_id, course_id=course_id)
    by_line: dict[str, list[Award]] = {}
    for award in sorted(awards, key=lambda a: -(a.id or 0)):
        by_line.setdefault(award.line_key, []).append(award)
    return [(comp, latest.get(comp.id or 0), by_line.get(_line(comp), [])) for comp in comps]


# The learner page's statements (db.prepared); the rows come back as read-only models.
def _course_competencies_query() -> Any:
    competency, linked = prepared.table(Competency), prepared.table(CourseCompetency)
    return (
        sa_select(competency)
        .join(linked, linked.c.competency_id == competency.c.id)
        .where(linked.c.course_id == bindparam("course_id"))
        .order_by(competency.c.key)
    )


def _latest_decisions_query() -> Any:
    decision = prepared.table(Decision)
    newest = (
        sa_select(func.max(decision.c.id))
        .where(
            decision.c.person_id == bindparam("person_id"),
            decision.c.course_id == bindparam("course_id"),
        )
        .group_by(decision.c.competency_id)
    )
    return sa_select(decision).where(decision.c.id.in_(newest))


def _awards_of_person() -> Any:
    award = prepared.table(Award)
    return (
        sa_select(award)
        .where(award.c.person_id == bindparam("person_id"))
        .order_by(award.c.id.desc())
    )


def _awards_of_person_in_course() -> Any:
    award = prepared.table(Award)
    return (
        sa_select(award)
        .where(award.c.person_id == bindparam("person_id"))
        .where(award.c.course_id == bindparam("course_id"))
        .order_by(award.c.id.desc())
    )


def person_awards(session: Session, *, person_id: int, course_id: int | None = None) -> list[Award]:
    """Every issued or pending credential of a person (newest first), read only."""
    if course_id is None:
        found = prepared.rows(session, _awards_of_person, person_id=person_id)
    else:
        found = prepared.rows(
            session, _awards_of_person_in_course, person_id=person_id, course_id=course_id
        )
    return [a for row in found if (a := prepared.model(Award, row)) is not None]
