"""Policy files: one policy, a list, or defaults + bounds + per-competency overrides."""

from __future__ import annotations

from typing import Any

import pytest

from service.assessment import bounds, policyfile
from service.assessment.types import Level, PolicyError

DEFAULTS = {"levels": {"beginning": 50, "intermediate": 65, "advanced": 85}, "max_attempts": 3}


def test_a_single_policy() -> None:
    result = policyfile.read_policy_file(DEFAULTS)
    assert [p.competency for p in result.policies] == [""]
    assert result.paths == ("",) and result.stacks == () and result.bounds is None


def test_a_list_of_policies() -> None:
    result = policyfile.read_policy_file(
        [DEFAULTS | {"competency": "a"}, DEFAULTS | {"competency": "b"}]
    )
    assert [p.competency for p in result.policies] == ["a", "b"]
    assert result.paths == ("[0]", "[1]")


def test_defaults_bounds_overrides_and_stacks() -> None:
    doc: dict[str, Any] = {
        "defaults": DEFAULTS,
        "bounds": {"levels": {"advanced": {"threshold": {"min": 80}}}},
        "policies": {
            "stats": {"levels": {"advanced": 90}},
            "cleaning": None,
        },
        "stacks": [{"name": "S", "requires": {"stats": "beginning", "cleaning": "beginning"}}],
    }
    result = policyfile.read_policy_file(doc)
    stats, cleaning = result.policies
    assert (stats.competency, stats.levels[Level.ADVANCED].threshold) == ("stats", 0.9)
    assert (cleaning.competency, cleaning.max_attempts) == ("cleaning", 3)
    assert result.paths == ("policies.stats", "policies.cleaning")
    assert result.bounds == bounds.read_bounds(doc["bounds"])
    assert [s.name for s in result.stacks] == ["S"]


def test_overrides_as_a_list_and_defaults_alone() -> None:
    listed = policyfile.read_policy_file(
        {"defaults": DEFAULTS, "policies": [{"competency": "x", "aggregation": "highest"}]}
    )
    assert listed.paths == ("policies[0]",)
    alone = policyfile.read_policy_file({"defaults": DEFAULTS})
    assert alone.policies[0].competency == "" and alone.paths == ("defaults",)


@pytest.mark.parametrize(
    ("doc", "field", "message"),
    [
        ("policy", "", "holds a policy"),
        ({"bounds": {}}, "policies", "give the policies"),
        ({"defaults": DEFAULTS, "policies": "x"}, "policies", "a list of policies or a mapping"),
        ({"defaults": DEFAULTS, "stacks": {"name": "S"}}, "stacks", "a list of stacked"),
        ({"defaults": DEFAULTS, "extras": 1}, "extras", "unknown field"),
        (
            {"defaults": DEFAULTS, "policies": [{"competency": "a"}, {"competency": "a"}]},
            "policies[1]",
            "a second policy for a",
        ),
        ([DEFAULTS, DEFAULTS], "[1]", "a second policy for (any competency)"),
        (
            {
                "defaults": DEFAULTS,
                "bounds": {"max_attempts": {"max": 2}},
                "policies": {"stats": {"levels": {"beginning": 55}}},
            },
            "policies.stats.max_attempts",
            "attempts 3 is above the maximum the institution allows (at most 2)",
        ),
        (
            {"defaults": DEFAULTS, "policies": [{"levels": {"beginning": 70}}]},
            "policies[0].levels.intermediate.threshold",
            "cannot be lower",
        ),
        (
            {"defaults": {"levels": {"beginning": 70, "intermediate": 60}}, "bounds": {}},
            "defaults.levels.intermediate.threshold",
            "cannot be lower",
        ),
        (
            {"defaults": DEFAULTS, "policies": [{"levels": {"x": 1}}]},
            "policies[0].levels.x",
            "not one of",
        ),
    ],
)
def test_errors_name_the_field(doc: Any, field: str, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        policyfile.read_policy_file(doc)
    assert caught.value.field == field
    assert message in caught.value.message


def test_a_course_layer_sits_between_defaults_and_competencies() -> None:
    doc: dict[str, Any] = {
        "defaults": DEFAULTS,
        "course": {"levels": {"beginning": 55, "advanced": None}, "aggregation": "average"},
        "policies": {"stats": {"levels": {"beginning": {"floor": "30%"}}}},
    }
    [stats] = policyfile.read_policy_file(doc).policies
    assert sorted(stats.levels) == [Level.BEGINNING, Level.INTERMEDIATE]
    assert stats.levels[Level.BEGINNING].threshold == 0.55
    assert stats.levels[Level.BEGINNING].floor is not None
    assert stats.aggregation.value == "average" and stats.max_attempts == 3


def test_a_course_layer_alone() -> None:
    result = policyfile.read_policy_file({"course": {"levels": {"beginning": 40}}})
    assert result.paths == ("course",)
    assert result.policies[0].levels[Level.BEGINNING].threshold == 0.4
    only_fields = policyfile.read_policy_file({"defaults": DEFAULTS, "course": {"max_attempts": 1}})
    assert only_fields.policies[0].max_attempts == 1


def test_a_mapping_from_competency_to_policy() -> None:
    result = policyfile.read_policy_file(
        {"stats": {"levels": {"beginning": 50}}, "writing": {"thresholds": {"advanced": 80}}}
    )
    assert [p.competency for p in result.policies] == ["stats", "writing"]
    assert result.paths == ("stats", "writing")
    with pytest.raises(PolicyError) as caught:
        policyfile.read_policy_file({"stats": {"levels": {"beginning": "x"}}})
    assert caught.value.field == "stats.levels.beginning"


def test_a_single_policy_whose_fields_are_all_mappings() -> None:
    result = policyfile.read_policy_file(
        {"bands": {"beginning": 50}, "aggregation": {"method": "highest"}}
    )
    assert [p.competency for p in result.policies] == [""]
