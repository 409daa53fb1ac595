"""Plain input values for building credentials.

The assessment side (competencies, policies, decisions) fills these, and the JSON API
validates request bodies straight into them (``schemas.CredentialCreate``): the field
constraints below are the API's; code that builds the values directly is trusted. Nothing
here touches the database or the clock.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import Field

from service.db.types import MAX_ROW_ID

__all__ = [
    "SUPERVISION_LABELS",
    "Alignment",
    "AwardInput",
    "EuElements",
    "EvidenceItem",
    "IssuerProfile",
    "Learner",
    "LevelTemplate",
    "RubricCriterion",
    "ScaleLevel",
    "Supervision",
]

_Key = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")]
_Text = Annotated[str, Field(min_length=1)]

Supervision = Literal[
    "unsupervised",
    "authenticated",
    "supervised",
    "supervised-online-verified",
    "supervised-onsite-verified",
]

# DESIGN.md "Identity verification levels" -> the wording of Council Recommendation
# 2022/C 243/02 Annex I (optional element "supervision and identity verification").
SUPERVISION_LABELS: dict[str, str] = {
    "unsupervised": "unsupervised with no identity verification",
    "authenticated": "unsupervised with no identity verification",
    "supervised": "supervised with no identity verification",
    "supervised-online-verified": "supervised online with identity verification",
    "supervised-onsite-verified": "supervised onsite with identity verification",
}


@dataclass(frozen=True)
class IssuerProfile:
    """The awarding body (EU elements 3 and 4). ``id`` is set from the issuer's DID."""

    name: str
    url: str
    country_code: str  # ISO 3166-1 alpha-2 (EU element 3)
    region: str | None = None
    email: str | None = None
    description: str | None = None
    image_url: str | None = None
    # (identifier, identifierType) pairs, e.g. ("EU-PIC-999999999", "ext:PIC")
    other_identifiers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Learner:
    """Who earned it (EU element 1). The email is only ever stored hashed with a salt."""

    lti_user_id: Annotated[str, Field(min_length=1, max_length=255)]
    email: Annotated[str | None, Field(max_length=320)] = None
    name: Annotated[str | None, Field(max_length=300)] = None
    person_id: Annotated[int | None, Field(ge=1, le=MAX_ROW_ID)] = None


@dataclass(frozen=True)
class Alignment:
    """An OB 3.0 Alignment: a competency-framework item, an ESCO skill, a rubric criterion."""

    target_name: str
    target_url: str
    target_type: str | None = "ceasn:Competency"
    target_code: str | None = None
    target_description: str | None = None
    target_framework: str | None = None


@dataclass(frozen=True)
class ScaleLevel:
    """One level of the competency scale (beginning, intermediate, advanced)."""

    key: _Key
    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: str = ""


@dataclass(frozen=True)
class RubricCriterion:
    """A rubric criterion that feeds the competency, with its levels low to high."""

    key: _Key
    name: str
    levels: Annotated[tuple[ScaleLevel, ...], Field(min_length=1)]
    description: str = ""
    url: str | None = None


@dataclass(frozen=True)
class EuElements:
    """EU micro-credential elements that belong to the achievement definition.

    Mandatory elements 6-11 (learning outcomes, workload, level, assessment type, form of
    participation, quality assurance) and the optional prerequisites, stackability and
    further information. Elements 1-5 come from the learner, the template name, the
    issuer profile and the award date.
    """

    learning_outcomes: Annotated[tuple[str, ...], Field(min_length=1)]
    assessment_type: _Text
    participation_form: _Text
    quality_assurance: _Text
    ects_credits: Annotated[float | None, Field(ge=0)] = None
    workload_hours: Annotated[float | None, Field(ge=0)] = None
    eqf_level: Annotated[int | None, Field(ge=1, le=8)] = None
    field_of_study: str | None = None
    prerequisites: str | None = None
    integration_stackability: Literal["stand-alone", "stackable"] = "stand-alone"
    further_information: str | None = None


@dataclass(frozen=True)
class LevelTemplate:
    """A competency with its level scale: one OB Achievement is made per level."""

    # a stable slug, unique per institution, e.g. "data-analysis"
    key: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._/-]+$")]
    competency_name: Annotated[str, Field(min_length=1, max_length=300)]
    description: _Text
    criteria_narrative: _Text
    levels: Annotated[tuple[ScaleLevel, ...], Field(min_length=1)]  # low to high
    eu: EuElements
    alignments: tuple[Alignment, ...] = ()
    rubric_criteria: tuple[RubricCriterion, ...] = ()
    image_url: str | None = None
    criteria_url: str | None = None
    achievement_type: str = "MicroCredential"
    language: str = "en"
    tags: tuple[str, ...] = ()
    version: str | None = None
    valid_for_days: Annotated[int | None, Field(ge=1)] = None

    def level(self, key: str) -> ScaleLevel:
        for level in self.levels:
            if level.key == key:
                return level
        raise KeyError(key)


@dataclass(frozen=True)
class EvidenceItem:
    """One piece of evidence summarised in the credential."""

    name: _Text
    description: str = ""
    narrative: str | None = None
    url: str | None = None
    genre: str | None = None


@dataclass(frozen=True)
class AwardInput:
    """What to issue: a learner reached ``level_key`` of ``template`` at ``awarded_at``."""

    learner: Learner
    template: LevelTemplate
    level_key: str
    awarded_at: dt.datetime
    evidence: tuple[EvidenceItem, ...] = ()
    supervision: Supervision | None = None
    grade: str | None = None
    criterion_levels: dict[str, str] = field(default_factory=dict)  # criterion key -> level key
    valid_until: dt.datetime | None = None  # overrides template.valid_for_days
