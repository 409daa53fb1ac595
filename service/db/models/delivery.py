"""Delivery to external repositories: configuration, the transactional outbox, attempts,
learner consent and e-mail mismatches.

The outbox row is independent of the credential tables (``credential_id`` is a uuid
string without a foreign key) so the issuer and the delivery code evolve apart.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from service.db.base import metadata  # noqa: F401  (naming convention first)
from service.db.types import UTCDateTime, encrypted, json_field, new_uuid, utcnow


class DeliveryRepository(SQLModel, table=True):
    """A destination: a Credly organisation, a Badgr issuer, a webhook receiver, an LMS
    gradebook. ``consent_policy`` says whether rows go out at once or wait for the learner."""

    __tablename__ = "delivery_repository"

    id: int | None = Field(default=None, primary_key=True)
    uuid: str = Field(default_factory=new_uuid, unique=True, max_length=36)
    kind: str = Field(max_length=20)  # credly | badgr | webhook | ags
    name: str = Field(max_length=200)
    enabled: bool = True
    consent_policy: str = Field(default="automatic", max_length=20)  # automatic | ask
    # Non-secret settings: organisation id, environment/base URL, template map, webhook URL.
    config: dict[str, Any] = json_field(dict)
    # The org token (Credly), account password (Badgr) or signing secret (webhook).
    secret: str | None = encrypted("delivery_repository.secret", default=None)
    secret_expires_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    # OAuth2 tokens obtained from the secret (Badgr).
    access_token: str | None = encrypted("delivery_repository.access_token", default=None)
    refresh_token: str | None = encrypted("delivery_repository.refresh_token", default=None)
    access_token_expires_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    # A rate limit (429, or 503 with Retry-After) pauses the whole repository: no worker
    # claims its rows before this time. The answer that caused it, for the operator.
    paused_until: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    paused_reason: str = Field(default="", max_length=500)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class OutboxMessage(SQLModel, table=True):
    """One effect to cause in one repository, written in the award's transaction.

    ``status``: held (waits for consent) → pending → delivered | dead | cancelled.
    A pending row with an unexpired lease is being worked on. ``uncertain`` means an
    earlier attempt may have reached the repository, so the next one checks first.
    """

    __tablename__ = "outbox_message"
    __table_args__ = (
        UniqueConstraint("idempotency_key"),
        Index("ix_outbox_message_due", "status", "due_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    uuid: str = Field(default_factory=new_uuid, unique=True, max_length=36)
    credential_id: str = Field(max_length=64, index=True)
    person_id: int | None = Field(default=None, index=True)
    kind: str = Field(max_length=60)
    repository_id: int | None = Field(
        default=None, foreign_key="delivery_repository.id", index=True
    )
    idempotency_key: str = Field(max_length=255)
    payload: dict[str, Any] = json_field(dict)
    status: str = Field(default="pending", max_length=20)
    depends_on_id: int | None = Field(default=None, foreign_key="outbox_message.id")
    attempts: int = 0
    max_attempts: int = 25
    due_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    lease_token: str | None = Field(default=None, max_length=36)
    lease_expires_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    uncertain: bool = False
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    result: dict[str, Any] = json_field(dict)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    delivered_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The HTTP request that caused the row (service/requestlog.py): the worker logs under it.
    request_id: str | None = Field(default=None, max_length=64)
    # What a rate limit met by this row pauses: "" the whole repository; otherwise a part
    # of it with limits of its own (the gradebook of one LMS platform: "platform:<id>").
    pause_scope: str = Field(default="", max_length=100, sa_column_kwargs={"server_default": ""})


class DeliveryPause(SQLModel, table=True):
    """A rate limit on one part of a repository (``OutboxMessage.pause_scope``): no worker
    claims the rows of that scope before ``paused_until``. Whole-repository pauses live on
    the repository (``DeliveryRepository.paused_until``)."""

    __tablename__ = "delivery_pause"
    __table_args__ = (UniqueConstraint("repository_id", "scope"),)

    id: int | None = Field(default=None, primary_key=True)
    repository_id: int = Field(foreign_key="delivery_repository.id")
    scope: str = Field(max_length=100)
    paused_until: dt.datetime = Field(sa_type=UTCDateTime)
    paused_reason: str = Field(default="", max_length=500)


class DeliveryAttempt(SQLModel, table=True):
    """One try at one outbox row: what was sent (no secrets), what came back, how long."""

    __tablename__ = "delivery_attempt"

    id: int | None = Field(default=None, primary_key=True)
    outbox_message_id: int = Field(foreign_key="outbox_message.id", index=True)
    number: int
    worker: str = Field(default="", max_length=100)
    started_at: dt.datetime = Field(sa_type=UTCDateTime)
    finished_at: dt.datetime = Field(sa_type=UTCDateTime)
    duration_ms: int = 0
    # delivered | retry | dead | uncertain
    outcome: str = Field(max_length=20)
    request_summary: str = Field(default="", sa_column=Column(Text, nullable=False))
    response_status: int | None = None
    response_excerpt: str = Field(default="", sa_column=Column(Text, nullable=False))
    error_code: str | None = Field(default=None, max_length=60)
    error_detail: str | None = Field(default=None, sa_column=Column(Text))
    retry_after_seconds: float | None = None
    next_due_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class DeliveryConsent(SQLModel, table=True):
    """The learner's answer for one credential and one repository."""

    __tablename__ = "delivery_consent"
    __table_args__ = (UniqueConstraint("credential_id", "repository_id"),)

    id: int | None = Field(default=None, primary_key=True)
    credential_id: str = Field(max_length=64)
    repository_id: int = Field(foreign_key="delivery_repository.id")
    granted: bool
    decided_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class EmailMismatch(SQLModel, table=True):
    """A delivery whose earner e-mail no longer matches the person's LMS e-mail."""

    __tablename__ = "email_mismatch"
    __table_args__ = (UniqueConstraint("outbox_message_id", "current_email"),)

    id: int | None = Field(default=None, primary_key=True)
    person_id: int = Field(index=True)
    credential_id: str = Field(max_length=64)
    repository_id: int | None = Field(default=None, foreign_key="delivery_repository.id")
    outbox_message_id: int = Field(foreign_key="outbox_message.id")
    delivered_email: str = Field(max_length=320)
    current_email: str = Field(max_length=320)
    detected_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    resolved_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    resolution: str | None = Field(default=None, max_length=40)


class RepositoryCheck(SQLModel, table=True):
    """A connection test of a repository asked for on the administrator's page and run by
    a worker (a request never calls the repository): queued → running → done."""

    __tablename__ = "repository_check"

    id: int | None = Field(default=None, primary_key=True)
    repository_id: int = Field(foreign_key="delivery_repository.id", index=True)
    status: str = Field(default="queued", max_length=10)  # queued | running | done
    requested_by: str = Field(default="", max_length=300)  # "person:12", "cli"
    requested_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    started_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    worker: str = Field(default="", max_length=200)
    ok: bool | None = None
    summary: str = Field(default="", sa_column=Column(Text, nullable=False))
    # one line per template-map entry that does not match the repository
    problems: list[str] = json_field(list)
