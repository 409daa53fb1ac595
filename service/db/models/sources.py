"""The evidence store: normalised results before they are mapped to competencies, and the
LMS connections, imports and API tokens that bring them in.

Email addresses are used to match learners but never stored here (security.md §4.4).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from service.db.base import metadata  # noqa: F401  (naming convention first)
from service.db.types import UTCDateTime, encrypted, json_field, utcnow


class SourceConnection(SQLModel, table=True):
    """Credentials and address of one LMS data API."""

    __tablename__ = "source_connection"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True)
    kind: str = Field(max_length=20)  # moodle | canvas
    platform_id: int | None = Field(default=None, foreign_key="platform.id", index=True)
    base_url: str = Field(max_length=1000)
    access_token: str = encrypted("source_connection.access_token")
    refresh_token: str | None = encrypted("source_connection.refresh_token", default=None)
    client_id: str = Field(default="", max_length=255)
    client_secret: str | None = encrypted("source_connection.client_secret", default=None)
    token_expires_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    active: bool = True
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ImportRun(SQLModel, table=True):
    """One import (CSV, push batch or sync) and what it did."""

    __tablename__ = "import_run"

    id: int | None = Field(default=None, primary_key=True)
    course_id: int | None = Field(default=None, foreign_key="course.id", index=True)
    kind: str = Field(max_length=20)  # csv | push | sync
    origin: str = Field(default="", max_length=100)
    source_connection_id: int | None = Field(default=None, foreign_key="source_connection.id")
    actor: str = Field(default="", max_length=300)
    filename: str = Field(default="", max_length=500)
    status: str = Field(max_length=20)  # applied | rejected | failed
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    problems: list[dict[str, Any]] = json_field(list)
    started_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    finished_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class Evidence(SQLModel, table=True):
    """One normalised result of one learner (see ``service.sources.types.Result``), one row
    per natural key: re-importing the same result updates the row and bumps ``version``."""

    __table_args__ = (
        UniqueConstraint(
            "course_id",
            "person_id",
            "origin",
            "source_kind",
            "item_id",
            "criterion_id",
            "attempt",
            name="uq_evidence_natural_key",  # the generated name exceeds PostgreSQL's 63
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    course_id: int = Field(foreign_key="course.id")
    person_id: int = Field(foreign_key="person.id", index=True)
    origin: str = Field(max_length=100)
    source_kind: str = Field(max_length=20)
    item_id: str = Field(max_length=255)
    item_title: str = Field(default="", max_length=500)
    criterion_id: str = Field(default="", max_length=255)
    criterion_title: str = Field(default="", max_length=1000)
    score: float | None = None
    max_score: float | None = None
    level_id: str | None = Field(default=None, max_length=255)
    level_name: str | None = Field(default=None, max_length=1000)
    level_points: float | None = None
    # Every level of the criterion: [[id, name, points], ...] lowest first.
    level_scale: list[list[Any]] = json_field(list)
    attempt: int = 1
    submitted_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    graded_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    verification: str = Field(max_length=40)
    asserted_by: str = Field(max_length=20)
    note: str = Field(default="", max_length=1000)
    version: int = 1
    import_run_id: int | None = Field(default=None, foreign_key="import_run.id")
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class EvidenceRevision(SQLModel, table=True):
    """Every version of an evidence row as it was written. Append-only, so a changed score
    never silently loses the previous value."""

    __tablename__ = "evidence_revision"
    __table_args__ = (UniqueConstraint("evidence_id", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    evidence_id: int = Field(foreign_key="evidence.id")
    version: int
    values: dict[str, Any] = json_field(dict)
    import_run_id: int | None = Field(default=None, foreign_key="import_run.id")
    recorded_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class VerificationEvent(SQLModel, table=True):
    """A supervision / identity-verification statement about one sitting, posted by a
    proctoring service or attested by an instructor, independent of the result.

    ``attempt`` 0 means every attempt of the item. Re-posting the same
    (origin, item, attempt, sitting) updates the level instead of adding a row.
    """

    __tablename__ = "verification_event"
    __table_args__ = (
        UniqueConstraint(
            "course_id",
            "person_id",
            "origin",
            "item_id",
            "attempt",
            "sitting_id",
            name="uq_verification_event_sitting",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    course_id: int = Field(foreign_key="course.id")
    person_id: int = Field(foreign_key="person.id", index=True)
    origin: str = Field(max_length=100)
    item_id: str = Field(max_length=255)
    attempt: int = 0
    sitting_id: str = Field(default="", max_length=255)
    level: str = Field(max_length=40)
    asserted_by: str = Field(max_length=20)
    occurred_at: dt.datetime = Field(sa_type=UTCDateTime)
    note: str = Field(default="", max_length=1000)
    import_run_id: int | None = Field(default=None, foreign_key="import_run.id")
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class PersonLink(SQLModel, table=True):
    """The LMS's own user id for a person (Canvas user id differs from the LTI ``sub``)."""

    __tablename__ = "person_link"
    __table_args__ = (UniqueConstraint("platform_id", "lms_user_id"),)

    id: int | None = Field(default=None, primary_key=True)
    platform_id: int = Field(foreign_key="platform.id")
    lms_user_id: str = Field(max_length=255)
    person_id: int = Field(foreign_key="person.id", index=True)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ApiToken(SQLModel, table=True):
    """A bearer token for the JSON API. Only its SHA-256 hash is stored."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True)
    prefix: str = Field(max_length=16, unique=True)
    token_hash: str = Field(max_length=64)
    scopes: list[str] = json_field(list)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_used_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
