"""The launch's SQL, all of it: the login's state, the registration, the user's rows, the
tool session. Every function runs in the caller's transaction (the route commits once) and
is named for what it does; rows come back as detached models or dataclasses. The login and
the launch hand in a Core connection (``Db``: no ORM session's begin, commit and close on
the hot path); the few writes that use the ORM join it (``_orm``). Other callers hand in
their session.

The only module that uses ``service.db.prepared`` (an import-linter contract): statements
built once per process, run through SQLAlchemy Core.

What pays on the launch (bench/README.md, Launch): the login state is taken and checked by
one ``UPDATE ... RETURNING`` (``take_state``: exactly one launch takes it, also under
concurrency), and a returning user's person, course, enrolment and learner state come in
one joined read (``record_user``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Boolean, Connection, and_, bindparam, delete, func, or_, update
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, col, select

from service.db import prepared
from service.db.models import (
    Award,
    Competency,
    CompetencyLevelTemplate,
    Course,
    CourseCompetency,
    CourseSetup,
    CourseSync,
    Deployment,
    Enrolment,
    LaunchState,
    LtiCache,
    Person,
    PersonLink,
    Platform,
    PolicyVersion,
    WebSession,
)
from service.db.models import Evidence as EvidenceRow
from service.db.models import VerificationEvent as VerificationRow
from service.db.types import as_text, as_time
from service.lti.types import LaunchContext

__all__ = [
    "LaunchRecord",
    "LearnerState",
    "Registration",
    "SessionRow",
    "SignedIn",
    "Take",
    "deployment",
    "drop_ticket",
    "issuer_platform",
    "learner_inputs",
    "learner_state",
    "load_context",
    "login_state",
    "open_session",
    "purge_expired",
    "read_ticket",
    "record_login",
    "record_user",
    "registration",
    "save_context",
    "save_ticket",
    "session_of",
    "take_state",
    "touch_session",
]

Db = Session | Connection  # the login runs on a Core connection, the launch in a session

# --- registrations -------------------------------------------------------------------------


@dataclass(frozen=True)
class Registration:
    """A platform registration and, when the request named one, that deployment (None:
    unknown)."""

    platform: Platform
    deployment: Deployment | None


def _platform_deployment_query() -> Any:
    platform, deployment = prepared.table(Platform), prepared.table(Deployment)
    return (
        sa_select(platform, deployment)
        .outerjoin(
            deployment,
            and_(
                deployment.c.platform_id == platform.c.id,
                deployment.c.deployment_id == bindparam("dep"),
            ),
        )
        .where(platform.c.issuer == bindparam("iss"), platform.c.client_id == bindparam("cid"))
    )


def registration(
    session: Db, *, issuer: str, client_id: str, deployment_id: str | None
) -> Registration | None:
    """The platform of (issuer, client_id), with the deployment named (one statement)."""
    found = prepared.one(
        session, _platform_deployment_query, iss=issuer, cid=client_id, dep=deployment_id or ""
    )
    if found is None:
        return None
    platform, named = prepared.models(found, Platform, Deployment)
    return Registration(platform, named if deployment_id else None)


def _issuer_query() -> Any:
    table = prepared.table(Platform)
    return sa_select(table).where(table.c.issuer == bindparam("iss"))


def issuer_platform(session: Db, issuer: str) -> Platform | None:
    """The only registration of ``issuer`` (a login or launch without client_id); None when
    it has none, or several (the platform must then name its client_id)."""
    found = prepared.rows(session, _issuer_query, iss=issuer)
    return prepared.models(found[0], Platform)[0] if len(found) == 1 else None


def _deployment_query() -> Any:
    table = prepared.table(Deployment)
    return sa_select(table).where(
        table.c.platform_id == bindparam("pid"), table.c.deployment_id == bindparam("dep")
    )


def deployment(session: Db, *, platform_id: int, deployment_id: str) -> Deployment | None:
    found = prepared.one(session, _deployment_query, pid=platform_id, dep=deployment_id)
    return prepared.model(Deployment, found)


# --- login state -----------------------------------------------------------------------------


def record_login(session: Db, *, platform_id: int, **values: Any) -> None:
    """A login's ``launch_state`` row (state, nonce, target_link_uri, storage_target,
    created_at, expires_at)."""
    prepared.insert_row(session, LaunchState, platform_id=platform_id, **values)


def purge_expired(session: Db, *, now: dt.datetime) -> None:
    for model in (LaunchState, LtiCache, WebSession):
        expired = prepared.table(model)
        prepared.execute(session, delete(expired).where(expired.c.expires_at < now))


@dataclass(frozen=True)
class Take:
    """What a launch's login state must match to be taken (from the verified token)."""

    state: str
    platform_id: int
    nonce: str
    target_link_uri: str
    bound: bool  # the browser sent back the login's state cookie
    now: dt.datetime


def _take_statement() -> Any:
    # Every check on the row in the WHERE: under concurrency PostgreSQL's row lock
    # (SQLite's write lock) lets exactly one launch take it.
    table = prepared.table(LaunchState)
    return (
        update(table)
        .where(
            table.c.state == bindparam("b_state"),
            table.c.used_at.is_(None),
            table.c.expires_at > bindparam("b_now"),
            table.c.platform_id == bindparam("b_platform"),
            table.c.nonce == bindparam("b_nonce"),
            or_(table.c.target_link_uri == "", table.c.target_link_uri == bindparam("b_target")),
            or_(table.c.storage_target != "", bindparam("b_bound", type_=Boolean)),
        )
        .values(used_at=bindparam("b_now"))
        .returning(*table.c)
    )


def take_state(session: Db, take: Take) -> LaunchState | None:
    """Mark the login state used if it fits ``take``, in one statement; the row as it was,
    or None when nothing was taken (``login_state`` then says why)."""
    found = prepared.one(
        session,
        _take_statement,
        b_state=take.state,
        b_now=take.now,
        b_platform=take.platform_id,
        b_nonce=take.nonce,
        b_target=take.target_link_uri,
        b_bound=take.bound,
    )
    return prepared.model(LaunchState, found)


def _state_query() -> Any:
    table = prepared.table(LaunchState)
    return sa_select(table).where(table.c.state == bindparam("state"))


def login_state(session: Db, state: str) -> LaunchState | None:
    return prepared.model(LaunchState, prepared.one(session, _state_query, state=state))


# --- launch data and platform-storage tickets -------------------------------------------------


def save_context(session: Db, context: LaunchContext, *, expires_at: dt.datetime) -> None:
    """A deep-linking launch's validated request, for the picker (``load_context``)."""
    save_ticket(session, f"ctx-{context.launch_id}", context.to_json(), expires_at=expires_at)


def load_context(session: Session, launch_id: str, *, now: dt.datetime) -> LaunchContext | None:
    """The validated deep-linking request of a session's launch, if not expired; None for
    any other launch (only deep linking keeps its request)."""
    value = read_ticket(session, f"ctx-{launch_id}", now=now)
    return None if value is None else LaunchContext.from_json(value)


def save_ticket(session: Db, key: str, value: dict[str, Any], *, expires_at: dt.datetime) -> None:
    prepared.insert_row(session, LtiCache, key=key, value=value, expires_at=expires_at)


def read_ticket(session: Session, key: str, *, now: dt.datetime) -> dict[str, Any] | None:
    row = session.get(LtiCache, key)
    if row is None or row.expires_at <= now or not isinstance(row.value, dict):
        return None
    return row.value


def drop_ticket(session: Session, key: str) -> bool:
    """Delete the ticket; False when another request deleted it first."""
    result = session.exec(delete(LtiCache).where(col(LtiCache.key) == key))
    return bool(result.rowcount == 1)


# --- the user's rows -------------------------------------------------------------------------


@dataclass(frozen=True)
class LearnerState:
    """What a learner's launch found: whether their evaluation is current, whether the
    course pulls results from an LMS and when it last did."""

    inputs: str  # the digest of the learner's evaluation inputs now
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
    for a learner in a course, the state ``flows.after_launch`` decides on."""

    person_id: int
    course_id: int | None
    role: str
    learner: LearnerState | None = None
    # the person's e-mail when this launch changed a known one (badges delivered by e-mail
    # may sit under the old address: ``flows.after_launch`` records that)
    new_email: str | None = None


def _scalar(query: Any) -> Any:
    return query.scalar_subquery()


def _learner_state_columns(course_id: Any, person_id: Any) -> list[Any]:
    """Everything an evaluation of the learner reads, reduced to counts and high-water
    marks, plus the course's source wiring and last pull: for a course and person given as
    parameters, or as the columns of an enclosing query (``_returning_learner_query``)."""
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


def _learner_state_query() -> Any:
    return sa_select(*_learner_state_columns(bindparam("course_id"), bindparam("person_id")))


def learner_state(
    session: Db, *, enrolment: Enrolment, row: Sequence[Any] | None = None
) -> LearnerState:
    """The learner's evaluation inputs now, against what their last launch evaluated
    (``row``: the values of ``_learner_state_columns``, when read already)."""
    if row is None:
        params = {"course_id": enrolment.course_id, "person_id": enrolment.person_id}
        row = prepared.one(session, _learner_state_query, **params)
        assert row is not None  # scalar subqueries: always one row
    *inputs, source, synced_at = row
    return LearnerState(
        inputs=_digest(inputs),
        evaluated_inputs=enrolment.evaluated_inputs,
        evaluated_at=enrolment.evaluated_at,
        connected=source is not None,
        synced_at=as_time(synced_at),
    )


def _digest(inputs: Sequence[Any]) -> str:
    return hashlib.sha256("|".join(as_text(v) for v in inputs).encode()).hexdigest()


def learner_inputs(
    session: Session, *, course_id: int, person_ids: Sequence[int]
) -> dict[int, str]:
    """``learner_state(...).inputs`` of these learners' enrolments in the course, in one
    query (a worker's batch stamps its learners with it)."""
    e = prepared.table(Enrolment)
    query = sa_select(e.c.person_id, *_learner_state_columns(e.c.course_id, e.c.person_id)).where(
        e.c.course_id == course_id, e.c.person_id.in_(list(person_ids))
    )
    return {int(p): _digest(inputs[:-2]) for p, *inputs in session.execute(query)}


_PERSON_FIELDS = ("name", "given_name", "family_name", "email")
_COURSE_AT = 1 + len(_PERSON_FIELDS)  # the course's columns in the joined read


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


@functools.cache
def _returning_width() -> int:
    return _COURSE_AT + 3 + prepared.width(Enrolment)


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


@contextlib.contextmanager
def _orm(db: Db) -> Iterator[Session]:
    """An ORM session in ``db``'s transaction: ``db`` itself, or one joined to the
    connection, for the rare writes that use the ORM (a first launch's rows, a course's
    wiring, a Canvas user link); it neither commits nor ends the connection's
    transaction (``rollback_only``: an error in it rolls back the launch's)."""
    if isinstance(db, Session):
        yield db
        return
    with Session(bind=db, join_transaction_mode="rollback_only") as session:
        yield session
        session.flush()


def _create(db: Db, row: SQLModel) -> bool:
    """INSERT ``row`` in a savepoint; False when a concurrent first launch made it first."""
    with _orm(db) as session:
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:
            return False
    return True


def _person(
    session: Db, launch: LaunchContext, now: dt.datetime, found: Any
) -> tuple[int, str | None]:
    params: dict[str, Any] = {"platform_id": launch.platform_id, "sub": launch.sub}
    # Name and email are mutable attributes (LTI Core §5.3.6): refresh them when sent; a
    # launch that withholds them (privacy settings) keeps what we knew. A returning user
    # with nothing changed costs no write.
    sent = {f: v for f in _PERSON_FIELDS if (v := getattr(launch, f))}
    if found is None:
        person = Person(platform_id=launch.platform_id, sub=launch.sub, **sent)
        if _create(session, person):
            return person.id or 0, None
        found = prepared.one(session, _person_query, **params)
        assert found is not None
    person_id, *known = found
    fields = {f: sent.get(f, old) for f, old in zip(_PERSON_FIELDS, known, strict=True)}
    if list(fields.values()) != known:
        prepared.update(session, Person, person_id, fields | {"updated_at": now})
    old_email, new_email = known[_PERSON_FIELDS.index("email")], fields["email"]
    changed = old_email and new_email and old_email.lower() != new_email.lower()
    return int(person_id), new_email if changed else None


def _course(session: Db, launch: LaunchContext, found: Any) -> int:
    params: dict[str, Any] = {
        "deployment_id": launch.deployment_pk,
        "context_id": launch.context_id,
    }
    if found is None:
        course = Course(deployment_id=launch.deployment_pk, context_id=launch.context_id)
        course.title, course.label = launch.context_title, launch.context_label
        if _create(session, course):
            return course.id or 0
        found = prepared.one(session, _course_query, **params)
        assert found is not None
    course_id, title, label = found
    new = (launch.context_title or title, launch.context_label or label)
    if new != (title, label):
        prepared.update(session, Course, course_id, {"title": new[0], "label": new[1]})
    return int(course_id)


def _enrolment(
    session: Db,
    launch: LaunchContext,
    *,
    course_id: int,
    person_id: int,
    now: dt.datetime,
    found: Any,
) -> Enrolment:
    """The enrolment as a detached row (read only)."""
    params: dict[str, Any] = {"course_id": course_id, "person_id": person_id}
    roles = list(launch.roles)
    if found is None:
        created = Enrolment(course_id=course_id, person_id=person_id, role=launch.role, roles=roles)
        if _create(session, created):
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


def _course_setup(session: Session, course_id: int) -> CourseSetup:
    row = session.exec(select(CourseSetup).where(CourseSetup.course_id == course_id)).first()
    if row is None:
        row = CourseSetup(course_id=course_id)
        if not _create(session, row):  # a concurrent launch created it
            row = session.exec(select(CourseSetup).where(CourseSetup.course_id == course_id)).one()
    return row


def _wire_course(db: Db, launch: LaunchContext, course_id: int, now: dt.datetime) -> bool:
    """Keep the course's AGS line-items container (AGS 2.0 §3.1: the tool keeps its own line
    items there, created on first write-back), NRPS membership URL (the worker's roster
    sync reads it) and a resource link id for NRPS's rlid; True when an evaluation input of
    the setup row changed."""
    lineitems = launch.ags.get("lineitems")
    lineitems = lineitems if isinstance(lineitems, str) else ""
    if not (lineitems or launch.nrps_url):
        return False
    with _orm(db) as session:
        setup = _course_setup(session, course_id)
        scopes = [str(x) for x in launch.ags.get("scope") or []] if lineitems else None
        new_ags = lineitems or setup.ags_lineitems_url
        nrps = launch.nrps_url[:1000] or setup.nrps_url
        # the first resource link seen is kept: any link of the course will do for rlid
        rlid = setup.nrps_rlid or (launch.resource_link_id[:255] if launch.nrps_url else "")
        changed = not (
            setup.ags_lineitems_url == new_ags
            and (scopes is None or setup.ags_scopes == scopes)
            and setup.nrps_url == nrps
        )
        if changed:
            setup.ags_lineitems_url = new_ags
            if scopes is not None:
                setup.ags_scopes = scopes
            setup.nrps_url = nrps
            setup.updated_at = now
        if changed or setup.nrps_rlid != rlid:  # rlid is not an evaluation input
            setup.nrps_rlid = rlid
            session.add(setup)
            session.flush()
    return changed


def _link_canvas_user(db: Db, launch: LaunchContext, canvas_id: str, person_id: int) -> None:
    """Canvas's own user id ($Canvas.user.id, requested at registration): the REST API
    names learners by it, the LTI sub is opaque (reference/lti.md §3.3)."""
    with _orm(db) as session:
        row = session.exec(
            select(PersonLink).where(
                PersonLink.platform_id == launch.platform_id, PersonLink.lms_user_id == canvas_id
            )
        ).first()
        if row is not None and row.person_id == person_id:
            return
        if row is None:
            row = PersonLink(
                platform_id=launch.platform_id, lms_user_id=canvas_id, person_id=person_id
            )
        row.person_id = person_id
        session.add(row)
        session.flush()


def record_user(session: Db, *, launch: LaunchContext, now: dt.datetime) -> LaunchRecord:
    """Upsert the person (platform, sub), the course (deployment, context) and the
    enrolment; for a learner, read what ``flows.after_launch`` needs to decide. A returning
    user's rows come in one statement; a first launch creates what is missing, each INSERT
    in a savepoint (a concurrent first launch of the same user may win)."""
    learner = launch.role == "learner"
    build = _returning_learner_query if learner else _returning_query
    known = prepared.one(
        session,
        build,
        platform_id=launch.platform_id,
        sub=launch.sub,
        deployment_id=launch.deployment_pk,
        context_id=launch.context_id,
    )
    width = _returning_width()
    person = course = enrolment_row = state_row = None
    if known is not None:
        n = _COURSE_AT
        person, course, enrolment_row = known[:n], known[n : n + 3], known[n + 3 : width]
        course = course if course[0] is not None else None
        enrolment_row = enrolment_row if enrolment_row[0] is not None else None
        if learner and enrolment_row is not None:
            state_row = known[width:]
    person_id, new_email = _person(session, launch, now, person)
    if not launch.context_id:
        return LaunchRecord(
            person_id=person_id, course_id=None, role=launch.role, new_email=new_email
        )
    if known is None:  # a new person: the course may exist all the same
        course = prepared.one(
            session, _course_query, deployment_id=launch.deployment_pk, context_id=launch.context_id
        )
    course_id = _course(session, launch, course)
    enrolment = _enrolment(
        session, launch, course_id=course_id, person_id=person_id, now=now, found=enrolment_row
    )
    if _wire_course(session, launch, course_id, now):
        state_row = None  # the course's setup is among the inputs: read them anew
    canvas_id = launch.custom.get("canvas_user_id")
    if isinstance(canvas_id, str | int) and str(canvas_id).isdigit():
        _link_canvas_user(session, launch, str(canvas_id), person_id)
    state = learner_state(session, enrolment=enrolment, row=state_row) if learner else None
    return LaunchRecord(
        person_id=person_id,
        course_id=course_id,
        role=launch.role,
        learner=state,
        new_email=new_email,
    )


# --- the tool session ------------------------------------------------------------------------


def open_session(session: Db, **values: Any) -> None:
    """The ``web_session`` row of a launch (``id`` is the token's hash)."""
    prepared.insert_row(session, WebSession, **values)


class SessionRow(NamedTuple):
    """The ``web_session`` columns signing in reads (not its ``created_at``)."""

    id: str
    person_id: int
    platform_id: int
    deployment_id: int
    course_id: int | None
    role: str
    roles: list[str]
    launch_id: str
    frame_origin: str
    last_seen_at: dt.datetime
    expires_at: dt.datetime


@dataclass(frozen=True)
class SignedIn:
    """A tool session with the rows it names (None where a row is gone). Of the
    deployment only whether it is active: None where it is gone."""

    session: SessionRow
    platform: Platform | None
    deployment_active: bool | None
    person: Person | None
    course: Course | None


_SHOWN: tuple[type[SQLModel], ...] = (Platform, Person, Course)


def _session_query() -> Any:
    ws, deployment = prepared.table(WebSession), prepared.table(Deployment)
    platform, person, course = map(prepared.table, _SHOWN)
    return (
        sa_select(*(ws.c[name] for name in SessionRow._fields), deployment.c.active)
        .add_columns(platform, person, course)
        .select_from(ws)
        .outerjoin(platform, platform.c.id == ws.c.platform_id)
        .outerjoin(deployment, deployment.c.id == ws.c.deployment_id)
        .outerjoin(person, person.c.id == ws.c.person_id)
        .outerjoin(course, course.c.id == ws.c.course_id)
        .where(ws.c.id == bindparam("id"))
    )


def session_of(session: Session, session_id: str) -> SignedIn | None:
    """The tool session ``session_id`` with its platform, deployment's state, person and
    course, in one statement (outer joins: a row deleted under a live session reads as
    None). The session's columns come as a tuple and the deployment as its ``active``
    alone: no model built for what only signing in reads."""
    found = prepared.one(session, _session_query, id=session_id)
    if found is None or found[0] is None:
        return None
    n = len(SessionRow._fields)
    platform, person, course = prepared.models(found[n + 1 :], *_SHOWN)
    return SignedIn(SessionRow._make(found[:n]), platform, found[n], person, course)


def touch_session(
    session: Session, session_id: str, *, now: dt.datetime, expires_at: dt.datetime
) -> None:
    session.exec(
        update(WebSession)
        .where(col(WebSession.id) == session_id)
        .values(last_seen_at=now, expires_at=expires_at)
    )
