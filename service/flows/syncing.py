"""Sync from the LMS: ``fetch_course`` (HTTP, outside any transaction) then
``store_fetched``; the scheduled sync the worker runs (``run_due_syncs``)."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import Engine, Select, bindparam, update
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from service import evaluation, outbound
from service.db.engine import session as db_session
from service.db.engine import table
from service.db.models import (
    Course,
    CourseSetup,
    CourseSync,
    Enrolment,
    ImportRun,
    Person,
    Platform,
    SourceConnection,
)
from service.db.types import utcnow
from service.delivery import status as delivery_status
from service.errors import BadInput, ServiceError
from service.flows.setup_store import course_setup
from service.lti import roles as lti_roles
from service.lti import services as lti_services
from service.lti import types as lti_types
from service.lti.errors import PlatformCallFailed
from service.settings import Settings
from service.sources import store, sync
from service.sources.connectors.base import Connector, Fetched
from service.sources.types import SyncReport

log = logging.getLogger(__name__)


@dataclass
class _Prefetched:
    """A connector whose answer was read before the write transaction began."""

    kind: str
    origin: str
    fetched: Fetched

    def fetch_course(self, lms_course_id: str, *, since: dt.datetime | None = None) -> Fetched:
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


SYNC_OVERLAP = dt.timedelta(minutes=5)  # grades saved during the last pull, clock skew


def _since(
    session: Session, *, course_id: int, settings: Settings, now: dt.datetime
) -> dt.datetime | None:
    """Where an incremental pull starts (the last successful pull less an overlap), or None
    when the course is due a full pull (never pulled in full, or not for
    ``sync_full_interval_seconds``: only a full pull sees deletions)."""
    row = session.exec(select(CourseSync).where(CourseSync.course_id == course_id)).first()
    full_every = dt.timedelta(seconds=settings.sync_full_interval_seconds)
    if (
        row is None
        or row.pulled_at is None
        or row.full_pulled_at is None
        or now - row.full_pulled_at >= full_every
    ):
        return None
    return row.pulled_at - SYNC_OVERLAP


def _connection(
    engine_: Engine, *, course_id: int, settings: Settings | None, now: dt.datetime | None
) -> tuple[SourceConnection, dt.datetime | None]:
    """The course's source connection (detached, secrets decrypted) and, with ``settings``,
    where an incremental pull starts; read in a short session before any HTTP call."""
    with db_session(engine_) as s:
        setup = course_setup(s, course_id=course_id)
        store.platform_of_course(s, course_id=course_id)  # NotFound for an unknown course
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
        since = None
        if settings is not None:
            since = _since(s, course_id=course_id, settings=settings, now=now or utcnow())
        return connection, since


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
    incremental: Settings | None = None,
    now: dt.datetime | None = None,
) -> Pull:
    """Read a course's results (and, with ``roster``, its NRPS roster) from its LMS, with
    no database session open during the HTTP calls. With ``incremental`` (the settings),
    only what changed since the last pull, unless a full pull is due (``_since``).

    Raises:
        BadInput: the course has no source connection.
        SourceError: the LMS could not be read (nothing is written).
    """
    connection, since = _connection(engine_, course_id=course_id, settings=incremental, now=now)
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
            lms_course_id=None,
            connector=connector,
            http=http,
            roster=roster,
            since=since,
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
    since: dt.datetime | None = None,
) -> Pull:
    """Read through ``connector`` (and the course's NRPS roster, when known and asked
    for); the database is read in short sessions before, never during, the HTTP calls."""
    assert connection.id is not None
    with db_session(engine_) as s:
        course, platform_id = store.platform_of_course(s, course_id=course_id)
        setup = course_setup(s, course_id=course_id)
        lms = lms_course_id or setup.lms_course_id or course.context_id
        nrps_url = setup.nrps_url
        # Canvas puts $Canvas.user.id in a member's ``message`` only for a roster asked with
        # rlid (NRPS 2.0 §3); learners are linked by it (``apply_roster``).
        rlid = setup.nrps_rlid if connection.kind == "canvas" else ""
        platform = s.get(Platform, platform_id)
        assert platform is not None  # the course's platform
        s.expunge(platform)  # its service tokens are read in short sessions of their own
    fetched = connector.fetch_course(lms, since=since) if since else connector.fetch_course(lms)
    members: list[lti_services.Member] | None = None
    roster_error = ""
    if roster and nrps_url:
        try:
            client = lti_services.ServiceClient(engine_, http, platform)
            members = lti_services.roster(client, nrps_url, resource_link_id=rlid)
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
        person = _roster_person(session, platform_id, people, m, now)
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


def _roster_person(
    session: Session,
    platform_id: int,
    people: dict[str, Person],
    m: lti_services.Member,
    now: dt.datetime,
) -> Person:
    """The member's person row, made or brought up to date with what the roster sent."""
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
        old_email = person.email
        for k, v in sent.items():
            setattr(person, k, v)
        person.updated_at = now
        session.add(person)
        if old_email and person.email and old_email.lower() != person.email.lower():
            # badges delivered by e-mail (Credly, Canvas Credentials) stay under the old
            # address: the admin page lists them to re-send
            assert person.id is not None
            delivery_status.detect_email_change(
                session, person_id=person.id, new_email=person.email, now=now
            )
    return person


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
    if not pull.connector.fetched.incremental:
        row.full_pulled_at = now
    row.attention = len(report.rejected)
    if pull.members is not None:
        row.members = len(pull.members)
    row.roster_error = pull.roster_error[:2000]
    session.add(row)
    session.flush()
    return report


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


_SYNC_COLUMNS = (
    "pulled_at",
    "attempted_at",
    "wanted_at",
    "error",
    "failures",
    "members",
    "roster_error",
    "attention",
)
HEALTH_WIDTH = 2 + len(_SYNC_COLUMNS)  # the columns of ``health_query``, before any added


@functools.cache
def health_query() -> Select[Any]:
    """The columns of a course's ``SyncHealth`` (``health_of``) in one row, for the course
    ``:course_id`` (built once: a page may add columns of its own and run it as one
    statement). The course drives the outer joins, so a course without a setup or sync row
    yet reads as not connected and never pulled."""
    course, setup, sync = table(Course), table(CourseSetup), table(CourseSync)
    return (
        sa_select(
            setup.c.source_connection_id,
            setup.c.sync_interval_seconds,
            *(sync.c[name] for name in _SYNC_COLUMNS),
        )
        .select_from(
            course.outerjoin(setup, setup.c.course_id == course.c.id).outerjoin(
                sync, sync.c.course_id == course.c.id
            )
        )
        .where(course.c.id == bindparam("course_id"))
    )


def health_of(row: Sequence[Any] | None, settings: Settings | None = None) -> SyncHealth:
    """The ``SyncHealth`` of a ``health_query`` row (None: no such course)."""
    connection_id, interval, pulled, attempted, wanted, error, failures, members, roster, seen = (
        row[:HEALTH_WIDTH] if row is not None else (None,) * HEALTH_WIDTH
    )
    return SyncHealth(
        connected=connection_id is not None,
        pulled_at=pulled,
        attempted_at=attempted,
        wanted_at=wanted,
        error=error or "",
        failures=failures or 0,
        members=members,
        roster_error=roster or "",
        attention=seen or 0,
        interval_seconds=int(interval or (settings.sync_interval_seconds if settings else 0)),
    )


def sync_health(
    session: Session, *, course_id: int, settings: Settings | None = None
) -> SyncHealth:
    # One statement built once, columns not rows: a learner's landing page asks this, and a
    # course without a setup or sync row yet must not cost transient table models.
    session.flush()  # as the session's autoflush would
    row = session.connection().execute(health_query(), {"course_id": course_id}).first()
    return health_of(row, settings)


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


def request_sync_if_stale(
    session: Session, *, settings: Settings, course_id: int, now: dt.datetime
) -> bool:
    """``request_sync`` when the course is connected and its last pull is older than
    ``launch_sync_interval_seconds`` (a re-evaluation asked for by a page); whether it did."""
    health = sync_health(session, course_id=course_id)
    fresh = dt.timedelta(seconds=settings.launch_sync_interval_seconds)
    if not health.connected or (health.pulled_at is not None and now - health.pulled_at < fresh):
        return False
    request_sync(session, course_id=course_id, now=now)
    return True


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
    pull, report, error, queued = None, None, "", 0
    try:
        pull = fetch_course(
            engine_,
            course_id=course_id,
            client=http,
            roster=True,
            incremental=settings,
            now=started,
        )
    except ServiceError as exc:
        error = f"{exc.detail} {getattr(exc, 'hint', '') or ''}".strip()
        log.warning("scheduled sync of course %s failed: %s", course_id, exc.detail)
    with db_session(engine_, write=True) as s:
        if pull is not None:
            report = store_fetched(s, pull=pull, now=started, actor=f"worker:{worker}"[:300])
            if report.changed_people:
                queued = evaluation.enqueue(
                    s,
                    course_id=course_id,
                    person_ids=report.changed_people,
                    reason="sync",
                    now=started,
                )
        row = _sync_row(s, course_id=course_id)
        row.attempted_at, row.error = started, error[:2000]
        row.failures = row.failures + 1 if error else 0
        row.claimed_by, row.claimed_until = "", None
        s.add(row)
        s.commit()
    return SyncOutcome(course_id, report, error, queued)


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
