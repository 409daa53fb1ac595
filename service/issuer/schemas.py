"""API models of the issuer (request bodies of ``/api/credentials``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, Field

from service.issuer import inputs

__all__ = ["CredentialCreate", "CredentialPublic", "RevocationRequest"]


class CredentialCreate(BaseModel):
    """Issue one credential: who, which competency level, on what evidence."""

    learner: inputs.Learner
    template: inputs.LevelTemplate
    level_key: str
    awarded_at: dt.datetime | None = None
    evidence: tuple[inputs.EvidenceItem, ...] = ()
    supervision: inputs.Supervision | None = None
    grade: str | None = None
    criterion_levels: dict[str, str] = {}
    valid_until: dt.datetime | None = None
    parts: list[str] = Field(
        default=[], description="ids (uuid) of credentials this one stacks, if any"
    )

    def to_award(self, now: dt.datetime) -> inputs.AwardInput:
        award = {name: value for name, value in self if name != "parts"}
        return inputs.AwardInput(**award | {"awarded_at": self.awarded_at or now})


class RevocationRequest(BaseModel):
    """Why a credential is revoked or reinstated."""

    reason: str = Field(min_length=1, max_length=1000)


class CredentialPublic(BaseModel):
    """An issued credential: both signed forms and its revocation state."""

    id: str
    url: str
    revoked: bool
    revocation_reason: str | None
    issued_at: dt.datetime
    valid_until: dt.datetime | None
    document: dict[str, Any]
    jwt: str | None
