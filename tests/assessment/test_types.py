"""Value types validate themselves; words shown to people."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from service.assessment.types import (
    Evidence,
    EvidenceError,
    Floor,
    Level,
    LevelRule,
    MappedItem,
    Policy,
    PolicyError,
    RubricLevel,
    VerificationLevel,
    percent,
)

BASE: dict[str, Any] = {
    "learner": "ada",
    "competency": "c",
    "item": "q",
    "score": 5,
    "max_score": 10,
}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"learner": " "}, "learner"),
        ({"competency": ""}, "competency"),
        ({"item": 3}, "item"),
        ({"max_score": 0}, "max_score"),
        ({"max_score": float("inf")}, "max_score"),
        ({"score": -1}, "score"),
        ({"score": 11}, "score"),
        ({"score": float("nan")}, "score"),
        ({"attempt": 0}, "attempt"),
        ({"at": dt.datetime(2026, 1, 1)}, "at"),
        ({"rubric": (RubricLevel("a", 1),), "rating": "b"}, "rating"),
    ],
)
def test_invalid_evidence(change: dict[str, Any], field: str) -> None:
    with pytest.raises(EvidenceError) as caught:
        Evidence(**(BASE | change))
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


def test_evidence_name() -> None:
    assert Evidence(**BASE).name == "q"
    assert Evidence(**BASE, label="Quiz", attempt=2).name == "Quiz attempt 2"


RULE = LevelRule(0.5)


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"levels": {}}, "levels"),
        ({"levels": {Level.NONE: RULE}}, "levels.none"),
        (
            {"levels": {Level.BEGINNING: LevelRule(0.6), Level.ADVANCED: LevelRule(0.5)}},
            "levels.advanced.threshold",
        ),
        ({"version": 0}, "version"),
        ({"weight": 0.0}, "weight"),
        ({"weight": 1.5}, "weight"),
        ({"n": 0}, "n"),
        ({"minimum_score": 2.0}, "minimum_score"),
        ({"require_all": True}, "required"),
        ({"min_results": -1}, "required"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"recency_days": 0}, "recency_days"),
        ({"items": (MappedItem("a"), MappedItem("a"))}, "items[1]"),
    ],
)
def test_invalid_policy(kw: dict[str, Any], field: str) -> None:
    with pytest.raises(PolicyError) as caught:
        Policy(**({"levels": {Level.BEGINNING: RULE}} | kw))
    assert caught.value.field == field


def test_policy_error_message_for_decreasing_bands() -> None:
    with pytest.raises(
        PolicyError, match=r"Advanced \(50%\) cannot be lower than Beginning \(60%\)"
    ):
        Policy(levels={Level.BEGINNING: LevelRule(0.6), Level.ADVANCED: LevelRule(0.5)})


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({}, "either a percentage or a rubric level"),
        ({"fraction": 0.5, "rating": "x"}, "either a percentage or a rubric level"),
        ({"fraction": 1.5}, "between 0% and 100%"),
    ],
)
def test_invalid_floor(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        Floor(**kw)


def test_invalid_threshold() -> None:
    with pytest.raises(PolicyError) as caught:
        LevelRule(-0.1)
    assert caught.value.field == "threshold"


def test_floor_text() -> None:
    assert Floor(fraction=0.5).text == "50%"
    assert Floor(rating="proficient").text == '"proficient"'


@pytest.mark.parametrize(
    ("fraction", "text"),
    [
        (0.7, "70%"),
        (0.65, "65%"),
        (0.6499, "64.99%"),
        (0.64999, "64.99%"),  # truncated, never rounded up to the 65% band
        (2 / 3, "66.66%"),
        (0.125, "12.5%"),
        (0.0, "0%"),
        (1.0, "100%"),
    ],
)
def test_percent(fraction: float, text: str) -> None:
    assert percent(fraction) == text


def test_level_names() -> None:
    assert [lv.key for lv in Level] == ["none", "beginning", "intermediate", "advanced"]
    assert [lv.label for lv in Level] == ["No level", "Beginning", "Intermediate", "Advanced"]


def test_verification_levels_are_ordered_and_described() -> None:
    assert sorted(VerificationLevel) == list(VerificationLevel)
    assert [v.key for v in VerificationLevel] == [
        "unsupervised",
        "authenticated",
        "supervised",
        "supervised-online-verified",
        "supervised-onsite-verified",
    ]
    v = VerificationLevel.SUPERVISED_ONSITE_VERIFIED
    assert v.described == "supervised on site with an identity check"
    assert v.required == "a supervised, identity-verified sitting on site"
