"""Sample issuer inputs for tests and benchmarks (plain builders with overrides)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from service.issuer.inputs import (
    Alignment,
    AwardInput,
    EuElements,
    EvidenceItem,
    IssuerProfile,
    Learner,
    LevelTemplate,
    RubricCriterion,
    ScaleLevel,
)

LEVELS = (
    ScaleLevel("beginning", "Beginning", "Applies the basics with guidance."),
    ScaleLevel("intermediate", "Intermediate", "Applies the skill independently."),
    ScaleLevel("advanced", "Advanced", "Adapts the skill to new problems and teaches it."),
)


def issuer_profile(**kw: Any) -> IssuerProfile:
    base = IssuerProfile(
        name="Example University",
        url="https://university.example",
        country_code="NL",
        region="Utrecht",
        email="badges@university.example",
        description="Faculty of Science",
        image_url="https://university.example/logo.png",
        other_identifiers=(("999999999", "ext:EU-PIC"),),
    )
    return dataclasses.replace(base, **kw)


def template(**kw: Any) -> LevelTemplate:
    base = LevelTemplate(
        key="data-analysis",
        competency_name="Data analysis",
        description="Cleans, explores and models tabular data and reports the findings.",
        criteria_narrative="Assessed through the course rubric and a supervised quiz.",
        levels=LEVELS,
        eu=EuElements(
            learning_outcomes=(
                "Clean a messy data set and document each step.",
                "Choose and fit a suitable statistical model.",
            ),
            assessment_type="testing and application of a skill",
            participation_form="online",
            quality_assurance="Internal quality assurance of the Faculty of Science",
            ects_credits=3.0,
            workload_hours=84.0,
            eqf_level=6,
            field_of_study="Statistics",
            prerequisites="Introductory statistics",
            integration_stackability="stackable",
            further_information="https://university.example/micro/data-analysis",
        ),
        alignments=(
            Alignment(
                target_name="Analyse data",
                target_url="http://data.europa.eu/esco/skill/a1b2",
                target_type="ext:ESCOSkill",
                target_framework="ESCO",
            ),
        ),
        rubric_criteria=(
            RubricCriterion("cleaning", "Data cleaning", LEVELS, "Handles missing values"),
            RubricCriterion("modelling", "Modelling", LEVELS),
        ),
        image_url="https://university.example/badges/data-analysis.png",
        criteria_url="https://university.example/micro/data-analysis/criteria",
        tags=("statistics", "data"),
        version="2026.1",
        valid_for_days=3 * 365,
    )
    return dataclasses.replace(base, **kw)


def learner(**kw: Any) -> Learner:
    base = Learner(lti_user_id="lti-user-42", email="Ada@Example.org", name="Ada Lovelace")
    return dataclasses.replace(base, **kw)


NOW = dt.datetime(2026, 11, 28, 12, 0, 0, tzinfo=dt.UTC)


def award(**kw: Any) -> AwardInput:
    base = AwardInput(
        learner=learner(),
        template=template(),
        level_key="intermediate",
        awarded_at=NOW - dt.timedelta(hours=1),
        evidence=(
            EvidenceItem(
                name="Rubric: final project",
                description="Scored 17/20 on the course rubric",
                url="https://lms.example/mod/assign/view.php?id=7",
                genre="Rubric",
            ),
            EvidenceItem(name="Quiz: statistics", description="82 %", genre="Quiz"),
        ),
        supervision="supervised-online-verified",
        grade="B",
        criterion_levels={"cleaning": "advanced", "modelling": "intermediate"},
    )
    return dataclasses.replace(base, **kw)
