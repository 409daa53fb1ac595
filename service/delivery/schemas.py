"""API models of the delivery endpoints."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from service.db.models import (
    DeliveryAttempt,
    DeliveryPause,
    DeliveryRepository,
    EmailMismatch,
    OutboxMessage,
)
from service.db.types import MAX_ROW_ID


class AttemptPublic(BaseModel):
    number: int
    worker: str
    started_at: dt.datetime
    finished_at: dt.datetime
    duration_ms: int
    outcome: str
    request_summary: str
    response_status: int | None
    response_excerpt: str
    error_code: str | None
    error_detail: str | None
    retry_after_seconds: float | None
    next_due_at: dt.datetime | None

    @classmethod
    def of(cls, a: DeliveryAttempt) -> AttemptPublic:
        return cls.model_validate(a, from_attributes=True)


class OutboxPublic(BaseModel):
    id: int
    uuid: str
    credential_id: str
    kind: str
    repository_id: int | None
    status: str
    attempts: int
    max_attempts: int
    due_at: dt.datetime
    in_flight: bool
    uncertain: bool
    last_error: str | None
    result: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime
    delivered_at: dt.datetime | None
    attempt_log: list[AttemptPublic] | None = None

    @classmethod
    def of(
        cls, m: OutboxMessage, *, now: dt.datetime, attempts: list[DeliveryAttempt] | None = None
    ) -> OutboxPublic:
        in_flight = m.lease_expires_at is not None and m.lease_expires_at > now
        log = None if attempts is None else [AttemptPublic.of(a) for a in attempts]
        return cls.model_validate(m.model_dump() | {"in_flight": in_flight, "attempt_log": log})


class OutboxList(BaseModel):
    warnings: list[str]
    items: list[OutboxPublic]


class PausePublic(BaseModel):
    """A rate limit on one part of a repository (``scope``: ``platform:<id>``, the
    gradebook of one LMS)."""

    scope: str
    paused_until: dt.datetime
    paused_reason: str


class RepositoryPublic(BaseModel):
    id: int
    uuid: str
    kind: str
    name: str
    enabled: bool
    consent_policy: str
    config: dict[str, Any]
    has_secret: bool
    secret_expires_at: dt.datetime | None
    warning: str | None = None
    # Set while a rate limit pauses deliveries to this repository (no worker sends before).
    paused_until: dt.datetime | None = None
    paused_reason: str = ""
    # Rate limits on parts of it only (the gradebook of one LMS); the rest goes on.
    paused_parts: list[PausePublic] = []

    @classmethod
    def of(
        cls,
        r: DeliveryRepository,
        *,
        warning: str | None = None,
        pauses: Sequence[DeliveryPause] = (),
    ) -> RepositoryPublic:
        assert r.id is not None
        return cls.model_validate(
            r.model_dump(include=set(cls.model_fields))
            | {
                "has_secret": bool(r.secret),
                "warning": warning,
                "paused_reason": r.paused_reason if r.paused_until else "",
                "paused_parts": [PausePublic.model_validate(p.model_dump()) for p in pauses],
            }
        )


class RepositoryCreate(BaseModel):
    kind: str = Field(description="credly, badgr, webhook or ags")
    name: str = Field(min_length=1, max_length=200)
    config: dict[str, Any] = Field(default_factory=dict)
    secret: str | None = Field(
        default=None,
        description="Credly org token, Badgr password or webhook secret; stored encrypted",
    )
    secret_expires_at: dt.datetime | None = None
    consent_policy: str = "automatic"


class ConsentIn(BaseModel):
    repository_id: int = Field(ge=1, le=MAX_ROW_ID)
    granted: bool


class MismatchPublic(BaseModel):
    id: int
    person_id: int
    credential_id: str
    repository_id: int | None
    outbox_message_id: int
    delivered_email: str
    current_email: str
    detected_at: dt.datetime
    resolved_at: dt.datetime | None
    resolution: str | None

    @classmethod
    def of(cls, m: EmailMismatch) -> MismatchPublic:
        return cls.model_validate(m, from_attributes=True)
