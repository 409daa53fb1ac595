"""Institution bounds: instructors tune within them; every violation is named."""

from __future__ import annotations

from typing import Any

import pytest

from service.assessment import bounds, parse
from service.assessment.types import AggregationMethod, Level, PolicyError, VerificationLevel

BOUNDS_DOC = {
    "levels": {
        "beginning": {"threshold": {"min": "40%", "max": "60%"}},
        "intermediate": {"threshold": {"min": 60, "max": 80}, "verification": "authenticated"},
        "advanced": {"verification": {"min": "supervised"}},
    },
    "minimum_score": {"min": "30%"},
    "aggregation": ["weighted_average", "highest"],
    "weight": {"min": 50, "max": 80},
    "n": {"min": 2, "max": 4},
    "max_attempts": {"max": 5},
    "recency_days": {"min": "180 days", "max": "3 years"},
}
LIMITS = bounds.read_bounds(BOUNDS_DOC)

WITHIN: dict[str, Any] = {
    "levels": {
        "beginning": 50,
        "intermediate": {"threshold": 70, "verification": "authenticated"},
        "advanced": {"threshold": 90, "verification": "supervised-onsite-verified"},
    },
    "minimum_score": 30,
    "max_attempts": 5,
    "recency_days": 365,
}


def test_read_bounds() -> None:
    assert LIMITS.levels[Level.BEGINNING].threshold == bounds.Range(0.4, 0.6)
    assert LIMITS.levels[Level.INTERMEDIATE].verification is VerificationLevel.AUTHENTICATED
    assert LIMITS.levels[Level.ADVANCED] == bounds.LevelBounds(None, VerificationLevel.SUPERVISED)
    assert LIMITS.aggregation == {AggregationMethod.WEIGHTED_AVERAGE, AggregationMethod.HIGHEST}
    assert LIMITS.max_attempts == bounds.Range(None, 5)
    assert LIMITS.recency_days == bounds.Range(180, 1095)


def test_within_bounds() -> None:
    policy = parse.read_policy(WITHIN)
    assert bounds.violations(policy, LIMITS) == []
    bounds.check(policy, LIMITS)


def levels_with(**changes: Any) -> dict[str, Any]:
    levels = dict(WITHIN["levels"])
    levels.update(changes)
    return levels


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        # both sides of each threshold range
        (
            {"levels": levels_with(beginning=39.99)},
            "levels.beginning.threshold",
            "the Beginning threshold 39.99% is below the minimum the institution allows "
            "(40% to 60%)",
        ),
        ({"levels": levels_with(beginning=40)}, None, ""),
        ({"levels": levels_with(beginning=60)}, None, ""),
        (
            {"levels": levels_with(beginning=60.01)},
            "levels.beginning.threshold",
            "is above the maximum the institution allows (40% to 60%)",
        ),
        (
            {"levels": levels_with(intermediate={"threshold": 70})},
            "levels.intermediate.verification",
            "Intermediate must require at least authenticated, not unsupervised",
        ),
        (
            {"levels": levels_with(advanced={"threshold": 90, "verification": "authenticated"})},
            "levels.advanced.verification",
            "at least supervised",
        ),
        (
            {"levels": {k: v for k, v in WITHIN["levels"].items() if k != "advanced"}},
            "levels.advanced",
            "the institution requires the Advanced level",
        ),
        ({"minimum_score": 29}, "minimum_score", "the overall minimum 29% is below"),
        (
            {"aggregation": "average"},
            "aggregation",
            "average is not allowed by the institution (allowed: highest, weighted_average)",
        ),
        ({"weight": 90}, "weight", "the weight 90% is above"),
        ({"aggregation": "n_mastery", "n": 5}, "aggregation", "not allowed"),
        (
            {"max_attempts": 6},
            "max_attempts",
            "attempts 6 is above the maximum the institution allows (at most 5)",
        ),
        ({"max_attempts": None}, "max_attempts", "attempts no limit is above"),
        (
            {"recency_days": 179},
            "recency_days",
            "(days) 179 is below the minimum the institution allows (180 to 1095)",
        ),
        ({"recency_days": None}, "recency_days", "no limit is above"),
    ],
)
def test_violations(change: dict[str, Any], field: str | None, message: str) -> None:
    policy = parse.read_policy(WITHIN | change)
    found = bounds.violations(policy, LIMITS)
    if field is None:
        assert found == []
        return
    assert found[0].field == field
    assert message in found[0].message


def test_n_bounds_apply_to_n_mastery_only() -> None:
    limits = bounds.read_bounds({"n": {"min": 2, "max": 4}})
    assert bounds.violations(parse.read_policy({"levels": {"beginning": 50}, "n": 9}), limits) == []
    found = bounds.violations(
        parse.read_policy({"levels": {"beginning": 50}, "aggregation": "n_mastery", "n": 9}), limits
    )
    assert [(v.field, v.message) for v in found] == [
        ("n", "n 9 is above the maximum the institution allows (2 to 4)")
    ]


def test_check_reports_every_violation() -> None:
    policy = parse.read_policy(WITHIN | {"minimum_score": 10, "max_attempts": 9})
    with pytest.raises(bounds.BoundsError) as caught:
        bounds.check(policy, LIMITS)
    assert [v.field for v in caught.value.violations] == ["minimum_score", "max_attempts"]
    assert caught.value.field == "minimum_score"
    assert "; " in caught.value.message


@pytest.mark.parametrize(
    ("doc", "field", "message"),
    [
        (  # percentages as the page and the file write them, not fractions (0.7)
            {"levels": {"beginning": {"threshold": {"min": 70, "max": "60%"}}}},
            "levels.beginning.threshold.min",
            "the minimum 70% is above the maximum 60%",
        ),
        (
            {"minimum_score": {"at_least": 0.655, "at_most": 0.6}},
            "minimum_score.at_least",
            "the minimum 65.5% is above the maximum 60%",
        ),
        (
            {"max_attempts": {"min": 5, "max": 3}},
            "max_attempts.min",
            "the minimum 5 is above the maximum 3",
        ),
        (
            {"levels": {"beginning": {"threshold": {"low": 1}}}},
            "levels.beginning.threshold.low",
            "unknown",
        ),
        (
            {"levels": {"beginning": {"verification": {"max": "supervised"}}}},
            "levels.beginning.verification.max",
            "unknown",
        ),
        (
            {"levels": {"beginning": {"verification": {}}}},
            "levels.beginning.verification",
            "the least verification",
        ),
        ({"levels": {"expert": {}}}, "levels.expert", "not one of"),
        ({"aggregation": "highest"}, "aggregation", "must list"),
        ({"aggregation": []}, "aggregation", "must list"),
        ({"aggregation": ["median"]}, "aggregation[0]", "not one of"),
        ({"max_attempts": {"max": -1}}, "max_attempts.max", "at least 0"),
        ({"ceiling": 1}, "ceiling", "unknown field"),
    ],
)
def test_bounds_errors(doc: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        bounds.read_bounds(doc)
    assert caught.value.field == field
    assert message in caught.value.message


def test_range() -> None:
    assert bounds.Range().contains(5)
    assert bounds.Range(1, 2).contains(2) and not bounds.Range(1, 2).contains(2.5)
    with pytest.raises(PolicyError):
        bounds.Range(3, 2)


@pytest.mark.parametrize(
    "doc",
    [
        BOUNDS_DOC,
        {},
        {  # listed with no limit: the level is required
            "bands": {"Advanced": {}, "beginning": {"threshold": {}}},
            "minimum": {"from": 1 / 3},
            "times": {"at_most": 4},
        },
    ],
)
def test_bounds_round_trip_through_their_canonical_document(doc: dict[str, Any]) -> None:
    limits = bounds.read_bounds(doc)
    assert bounds.read_bounds(bounds.bounds_to_dict(limits)) == limits


def test_the_canonical_document_of_bounds() -> None:
    assert bounds.bounds_to_dict(LIMITS) == {
        "levels": {
            "beginning": {"threshold": {"min": "40%", "max": "60%"}},
            "intermediate": {
                "threshold": {"min": "60%", "max": "80%"},
                "verification": "authenticated",
            },
            "advanced": {"verification": "supervised"},
        },
        "minimum_score": {"min": "30%"},
        "weight": {"min": "50%", "max": "80%"},
        "n": {"min": 2, "max": 4},
        "max_attempts": {"max": 5},
        "recency_days": {"min": 180, "max": 1095},
        "aggregation": ["highest", "weighted_average"],
    }
