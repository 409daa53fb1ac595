"""Tenants, people, courses and the audit log: the tables every feature shares.

A tenant is a platform registration (issuer + client_id) and one of its deployments.
People are keyed by (platform, sub); name and email are mutable and updated per launch.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from service.db.base import metadata  # noqa: F401  (naming convention first)
from service.db.types import UTCDateTime, json_field, new_uuid, utcnow


class Platform(SQLModel, table=True):
    """An LMS registration. One issuer may have many client_ids (Canvas: one for all tenants)."""

    __table_args__ = (UniqueConstraint("issuer", "client_id"),)

    id: int | None = Field(default=None, primary_key=True)
    uuid: str = Field(default_factory=new_uuid, unique=True, max_length=36)
    name: str = Field(default="", max_length=200)
    issuer: str = Field(max_length=500)
    client_id: str = Field(max_length=255)
    auth_login_url: str = Field(max_length=1000)
    auth_token_url: str = Field(max_length=1000)
    auth_audience: str | None = Field(default=None, max_length=1000)
    key_set_url: str = Field(max_length=1000)
    product_family: str = Field(default="", max_length=100)
    active: bool = True
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Deployment(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("platform_id", "deployment_id"),)

    id: int | None = Field(default=None, primary_key=True)
    platform_id: int = Field(foreign_key="platform.id")
    deployment_id: str = Field(max_length=255)
    active: bool = True
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Person(SQLModel, table=True):
    """A user of one platform, keyed by the LTI ``sub``."""

    __table_args__ = (UniqueConstraint("platform_id", "sub"),)

    id: int | None = Field(default=None, primary_key=True)
    platform_id: int = Field(foreign_key="platform.id")
    sub: str = Field(max_length=255)
    name: str = Field(default="", max_length=300)
    given_name: str = Field(default="", max_length=200)
    family_name: str = Field(default="", max_length=200)
    email: str = Field(default="", max_length=320)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Course(SQLModel, table=True):
    """An LTI context within a deployment."""

    __table_args__ = (UniqueConstraint("deployment_id", "context_id"),)

    id: int | None = Field(default=None, primary_key=True)
    deployment_id: int = Field(foreign_key="deployment.id")
    context_id: str = Field(max_length=255)
    title: str = Field(default="", max_length=500)
    label: str = Field(default="", max_length=200)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Enrolment(SQLModel, table=True):
    """Course roles of a person, from the launch or the NRPS roster."""

    __table_args__ = (UniqueConstraint("course_id", "person_id"),)

    id: int | None = Field(default=None, primary_key=True)
    course_id: int = Field(foreign_key="course.id")
    person_id: int = Field(foreign_key="person.id", index=True)
    role: str = Field(max_length=20)  # instructor | learner | admin
    roles: list[str] = json_field(list)
    updated_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # active | inactive (NRPS status Inactive) | removed (gone from the NRPS roster); a
    # launch makes it active again. Removed learners keep their results and credentials.
    status: str = Field(default="active", max_length=20)
    # The learner's last evaluation on launch: a digest of what it read (lti.store.learner_state)
    # and when, so a launch with nothing changed does not evaluate again.
    evaluated_inputs: str = Field(default="", max_length=64)
    evaluated_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class AuditEvent(SQLModel, table=True):
    """Who did what to which object, and why. Append-only.

    The tenant columns say whose row it is (``service.audit``): a course's rows carry the
    course, its deployment and platform; a platform's own rows (registered, activated) the
    platform only; institution-wide rows (catalogue, keys, API tokens) none. An
    administrator of a tenant reads its rows through the two indexes below.
    """

    __tablename__ = "audit_event"
    __table_args__ = (
        Index("ix_audit_event_deployment", "deployment_id", "id"),
        Index("ix_audit_event_platform", "platform_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    actor: str = Field(max_length=300)  # "person:12", "cli", "system", "api-token:3"
    action: str = Field(max_length=100, index=True)  # dotted: credential.revoked
    subject: str = Field(default="", max_length=300)  # "credential:abc"
    detail: dict[str, Any] = json_field(dict)
    platform_id: int | None = Field(default=None, foreign_key="platform.id")
    deployment_id: int | None = Field(default=None, foreign_key="deployment.id")
    course_id: int | None = Field(default=None, foreign_key="course.id")
