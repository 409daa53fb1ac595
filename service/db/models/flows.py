"""The award ledger and each course's wiring (flows): its setup, scheduled pulls, gradebook
columns and evaluation queue."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Index, text
from sqlmodel import Field, SQLModel

from service.db.base import metadata  # noqa: F401  (naming convention first)
from service.db.types import UTCDateTime, json_field, utcnow


class CourseSetup(SQLModel, table=True):
    """How one course is wired: source of results, gradebook, award rules."""

    __tablename__ = "course_setup"

    id: int | None = Field(default=None, primary_key=True)
    course_id: int = Field(foreign_key="course.id", unique=True)
    source_connection_id: int | None = Field(default=None, foreign_key="source_connection.id")
    lms_course_id: str = Field(default="", max_length=255)
    # NRPS 2.0 membership container of the course (from its last launch): the roster sync
    nrps_url: str = Field(default="", max_length=1000)
    # A resource link of the course (from a launch): Canvas sends each member's custom
    # fields ($Canvas.user.id) in the roster only when it is asked with ``rlid`` (NRPS 2.0
    # §2.4, §3)
    nrps_rlid: str = Field(default="", max_length=255, sa_column_kwargs={"server_default": ""})
    # seconds between scheduled pulls of this course (None: MICROCRED_SYNC_INTERVAL_SECONDS)
    sync_interval_seconds: int | None = None
    ags_lineitems_url: str = Field(default="", max_length=1000)
    ags_scopes: list[str] = json_field(list)
    on_lower: str = Field(default="flag", max_length=20)  # flag | revoke
    approval_required: bool = False
    # stack policy documents (``parse.read_stack_policy``): [{"name", "requires", ...}]
    stacks: list[dict[str, Any]] = json_field(list)
    # The newest import run (CSV, push, sync) the course was evaluated after; a newer one
    # means evidence arrived that no evaluation has seen yet.
    evaluated_run_id: int = 0
    updated_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class CourseSync(SQLModel, table=True):
    """The scheduled pull of one connected course: when it is due, who holds it, how the
    last one went (the health line on the instructor and admin pages).

    A worker claims a due course by setting ``claimed_by`` / ``claimed_until`` (a lease; on
    PostgreSQL with ``FOR UPDATE SKIP LOCKED``), pulls outside any transaction and writes
    the outcome in a short one. ``wanted_at``: a launch or an instructor asked for a pull
    sooner than the interval.
    """

    __tablename__ = "course_sync"

    id: int | None = Field(default=None, primary_key=True)
    course_id: int = Field(foreign_key="course.id", unique=True)
    wanted_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    claimed_by: str = Field(default="", max_length=300)
    claimed_until: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    attempted_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    pulled_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)  # last success
    # the last successful pull of the whole course (the others read what changed since)
    full_pulled_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    error: str = Field(default="", max_length=2000)  # of the last attempt ("" if it worked)
    failures: int = 0  # attempts failed in a row (backs off)
    members: int | None = None  # roster size at the last roster pull (None: no roster)
    roster_error: str = Field(default="", max_length=2000)
    attention: int = 0  # rejected records / warnings of the last pull


class Award(SQLModel, table=True):
    """A credential issued (or waiting for approval) to one learner at one level, for one
    competency (or stack) in one course. The awards of a learner and competency form a
    line (``line_key``); at most one of a line is ``issued`` and at most one
    ``pending_approval`` (partial unique indexes).

    ``state``: pending_approval → issued → superseded (a higher level was issued) or
    revoked; withdrawn (a pending approval whose decision fell to no level).
    ``review`` is set when a later decision is lower than the level held.
    """

    __table_args__ = (
        Index("ix_award_line", "course_id", "person_id", "line_key"),
        # The ledger's guarantee against signing twice: a second evaluation of the same
        # learner that raced the first fails its INSERT and issues nothing.
        *(
            Index(
                f"uq_award_line_{name}",
                "course_id",
                "person_id",
                "line_key",
                unique=True,
                sqlite_where=text(f"state = '{state}'"),
                postgresql_where=text(f"state = '{state}'"),
            )
            for name, state in (("issued", "issued"), ("pending", "pending_approval"))
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    course_id: int = Field(foreign_key="course.id")
    person_id: int = Field(foreign_key="person.id", index=True)
    competency_id: int | None = Field(default=None, foreign_key="competency.id")
    # "competency:<key>" or "stack:<name>": the line this award belongs to
    line_key: str = Field(max_length=300)
    level: str = Field(max_length=20)
    state: str = Field(max_length=20)
    credential_uuid: str | None = Field(default=None, max_length=36, index=True)
    # the credential id the outbox knows the line by (its first credential's uuid), so an
    # upgrade replaces the badge everywhere it went
    delivery_key: str = Field(default="", max_length=64)
    decision_id: int | None = Field(default=None, foreign_key="decision.id")
    review: str = Field(default="", max_length=1000)
    approved_by: str = Field(default="", max_length=300)
    # A revocation made by a person (instructor, administrator, CLI) blocks re-awarding
    # this level or a lower one on the line until an instructor lifts it or the evidence
    # reaches a higher level (docs/awarding.md); who revoked, for the page.
    reaward_blocked: bool = False
    revoked_by: str = Field(default="", max_length=300)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class AgsLineItem(SQLModel, table=True):
    """The gradebook column (LTI AGS line item) of one competency in one LMS course.

    ``key`` (a hash of platform, line items URL and ``resourceId``) is unique, so when
    several deliveries write a competency's first scores at once only one creates the
    column: the row is claimed (``url`` empty, ``claimed_until`` set) before the create
    and holds the column's URL after it.
    """

    __tablename__ = "ags_line_item"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=64, unique=True)
    platform_id: int | None = Field(default=None)
    lineitems_url: str = Field(default="", max_length=1000)
    resource_id: str = Field(default="", max_length=300)
    url: str = Field(default="", max_length=1000)
    claim_token: str = Field(default="", max_length=36)
    claimed_until: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class EvaluationJob(SQLModel, table=True):
    """A learner of a course whose evaluation is due (or was done: ``due_at`` empty).

    Enqueueing sets ``due_at``; a worker leases due rows (``lease_token``,
    ``lease_expires_at``), then evaluates and awards each learner in a transaction that
    locks the row and clears ``due_at``. A lease that expires (the worker died) makes the
    row claimable again; a failure moves ``due_at`` on with ``last_error``.
    """

    __tablename__ = "evaluation_job"
    __table_args__ = (
        Index("uq_evaluation_job_course_person", "course_id", "person_id", unique=True),
    )

    id: int | None = Field(default=None, primary_key=True)
    course_id: int = Field(foreign_key="course.id")
    person_id: int = Field(foreign_key="person.id")
    due_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    reason: str = Field(default="", max_length=200)
    lease_token: str = Field(default="", max_length=36)
    lease_expires_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    attempts: int = 0
    last_error: str = Field(default="", max_length=1000)
    evaluated_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    # the digest of what that evaluation read (``evaluation.inputs``): the same again
    # reuses its decisions instead of running the engine
    evaluated_inputs: str = Field(default="", max_length=64)
    updated_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
