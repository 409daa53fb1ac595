"""Competency catalogue, versioned policies and stored decisions."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Column, Index, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from service.db.base import metadata  # noqa: F401  (naming convention first)
from service.db.types import JSONType, UTCDateTime, json_field, utcnow


class Competency(SQLModel, table=True):
    """An institution competency; ``key`` is the id used in policies and evidence."""

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=100, unique=True)
    name: str = Field(max_length=300)
    description: str = Field(default="", sa_type=Text)
    # {"beginning": "...", "intermediate": "...", "advanced": "..."}
    level_descriptions: dict[str, str] = json_field(dict)
    framework_name: str = Field(default="", max_length=200)  # e.g. ESCO
    framework_url: str = Field(default="", max_length=1000)
    framework_code: str = Field(default="", max_length=200)
    # The badge image designed for it (``BadgeImage.sha256``); None: the default badge.
    image_sha256: str | None = Field(default=None, max_length=64)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class BadgeImage(SQLModel, table=True):
    """An uploaded badge image, stored once under its SHA-256 and never changed: the
    credentials issued with it keep pointing at the image they were issued with."""

    __tablename__ = "badge_image"

    sha256: str = Field(primary_key=True, max_length=64)
    media_type: str = Field(default="image/png", max_length=40)
    width: int
    height: int
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_by: str = Field(default="", max_length=300)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class CompetencyLevelTemplate(SQLModel, table=True):
    """Credential fields for one level of a competency (EU micro-credential elements,
    reference/credentials.md §5.1)."""

    __tablename__ = "competency_level_template"
    __table_args__ = (UniqueConstraint("competency_id", "level"),)

    id: int | None = Field(default=None, primary_key=True)
    competency_id: int = Field(foreign_key="competency.id")
    level: str = Field(max_length=20)  # beginning | intermediate | advanced
    title: str = Field(default="", max_length=300)
    description: str = Field(default="", sa_type=Text)
    validity_days: int | None = None  # None: does not expire
    workload_hours: float | None = None  # notional workload
    ects_credits: float | None = None
    eqf_level: int | None = None  # 1..8
    iscedf_code: str = Field(default="", max_length=10)  # ISCED-F 2013, e.g. "0613"
    language: str = Field(default="en", max_length=35)  # BCP 47
    updated_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class CourseCompetency(SQLModel, table=True):
    """A competency assessed in a course."""

    __tablename__ = "course_competency"
    __table_args__ = (UniqueConstraint("course_id", "competency_id"),)

    id: int | None = Field(default=None, primary_key=True)
    course_id: int = Field(foreign_key="course.id")
    competency_id: int = Field(foreign_key="competency.id", index=True)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class PolicyVersion(SQLModel, table=True):
    """One version of one policy layer, never changed once written.

    ``scope_key``: ``institution``, ``course:<id>`` or ``course:<id>/competency:<id>``.
    ``document`` is the layer as the author wrote it (any subset of the policy fields);
    ``bounds`` is set on institution versions only.
    """

    __tablename__ = "policy_version"
    __table_args__ = (UniqueConstraint("scope_key", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    scope: str = Field(max_length=20)  # institution | course | course_competency
    scope_key: str = Field(max_length=100)
    course_id: int | None = Field(default=None, foreign_key="course.id", index=True)
    competency_id: int | None = Field(default=None, foreign_key="competency.id")
    version: int
    document: dict[str, Any] = json_field(dict)
    bounds: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType, nullable=True))
    author: str = Field(default="", max_length=300)  # "person:12", "cli", "api-token:3"
    note: str = Field(default="", max_length=1000)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class EffectivePolicy(SQLModel, table=True):
    """A composed, validated policy for one course and competency, numbered per pair; a
    decision points at the one it was made with."""

    __tablename__ = "effective_policy"
    __table_args__ = (
        UniqueConstraint("course_id", "competency_id", "version"),
        UniqueConstraint("course_id", "competency_id", "policy_hash"),
    )

    id: int | None = Field(default=None, primary_key=True)
    course_id: int = Field(foreign_key="course.id")
    competency_id: int = Field(foreign_key="competency.id")
    version: int
    policy_hash: str = Field(max_length=64)
    document: dict[str, Any] = json_field(dict)
    # the layer versions it was composed from: {"institution": 3, "course": 1, ...}
    layers: dict[str, int] = json_field(dict)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Decision(SQLModel, table=True):
    """One evaluation of a learner and competency, with the policy, evidence hash and
    reasons, so it can be explained and reproduced later. Append-only: the history is the
    audit trail of why a learner did or did not hold a level."""

    __table_args__ = (Index("ix_decision_person_competency", "person_id", "competency_id"),)

    id: int | None = Field(default=None, primary_key=True)
    person_id: int = Field(foreign_key="person.id")
    course_id: int = Field(foreign_key="course.id", index=True)
    competency_id: int = Field(foreign_key="competency.id")
    effective_policy_id: int = Field(foreign_key="effective_policy.id")
    policy_version: int
    policy_hash: str = Field(max_length=64)
    evidence_hash: str = Field(max_length=64)
    level: str = Field(max_length=20)  # none | beginning | intermediate | advanced
    score: float | None = None  # fraction 0..1
    # the decision as data: rules with reasons, failed, next level, evidence used/left out
    reasons: dict[str, Any] = json_field(dict)
    evaluated_at: dt.datetime = Field(sa_type=UTCDateTime)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
