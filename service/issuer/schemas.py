"""API models of the issuer (request bodies of ``/api/credentials``)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field, TypeAdapter

from service.db.types import MAX_ROW_ID
from service.issuer import inputs

__all__ = ["CredentialCreate", "CredentialPublic", "RevocationRequest"]


class LearnerIn(BaseModel):
    """The learner (EU element 1); the email is only stored hashed."""

    lti_user_id: str = Field(min_length=1, max_length=255)
    email: str | None = Field(default=None, max_length=320)
    name: str | None = Field(default=None, max_length=300)
    person_id: int | None = Field(default=None, ge=1, le=MAX_ROW_ID)


class LevelIn(BaseModel):
    """One level of a scale, low to high in its list."""

    key: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")
    name: str = Field(min_length=1, max_length=200)
    description: str = ""


class AlignmentIn(BaseModel):
    """An OB 3.0 Alignment (competency framework item, skill)."""

    target_name: str
    target_url: str
    target_type: str | None = "ceasn:Competency"
    target_code: str | None = None
    target_description: str | None = None
    target_framework: str | None = None


class CriterionIn(BaseModel):
    """A rubric criterion with its levels."""

    key: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")
    name: str
    levels: list[LevelIn] = Field(min_length=1)
    description: str = ""
    url: str | None = None


class EuIn(BaseModel):
    """EU micro-credential elements of the achievement (Annex I)."""

    learning_outcomes: list[str] = Field(min_length=1)
    assessment_type: str = Field(min_length=1)
    participation_form: str = Field(min_length=1)
    quality_assurance: str = Field(min_length=1)
    ects_credits: float | None = Field(default=None, ge=0)
    workload_hours: float | None = Field(default=None, ge=0)
    eqf_level: int | None = Field(default=None, ge=1, le=8)
    field_of_study: str | None = None
    prerequisites: str | None = None
    integration_stackability: Literal["stand-alone", "stackable"] = "stand-alone"
    further_information: str | None = None


class TemplateIn(BaseModel):
    """A competency with its level scale; one Achievement per level."""

    key: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._/-]+$")
    competency_name: str = Field(min_length=1, max_length=300)
    description: str = Field(min_length=1)
    criteria_narrative: str = Field(min_length=1)
    levels: list[LevelIn] = Field(min_length=1)
    eu: EuIn
    alignments: list[AlignmentIn] = []
    rubric_criteria: list[CriterionIn] = []
    image_url: str | None = None
    criteria_url: str | None = None
    achievement_type: str = "MicroCredential"
    language: str = "en"
    tags: list[str] = []
    version: str | None = None
    valid_for_days: int | None = Field(default=None, ge=1)


class EvidenceIn(BaseModel):
    """One evidence entry."""

    name: str = Field(min_length=1)
    description: str = ""
    narrative: str | None = None
    url: str | None = None
    genre: str | None = None


class CredentialCreate(BaseModel):
    """Issue one credential: who, which competency level, on what evidence."""

    learner: LearnerIn
    template: TemplateIn
    level_key: str
    awarded_at: dt.datetime | None = None
    evidence: list[EvidenceIn] = []
    supervision: inputs.Supervision | None = None
    grade: str | None = None
    criterion_levels: dict[str, str] = {}
    valid_until: dt.datetime | None = None
    parts: list[str] = Field(
        default=[], description="ids (uuid) of credentials this one stacks, if any"
    )

    def to_award(self, now: dt.datetime) -> inputs.AwardInput:
        # The models mirror the input dataclasses field for field: pydantic builds those
        # (lists become tuples) from the validated body.
        award = self.model_dump(exclude={"parts"}) | {"awarded_at": self.awarded_at or now}
        return _AWARD.validate_python(award)


_AWARD = TypeAdapter(inputs.AwardInput)


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
