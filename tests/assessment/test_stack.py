"""Stacked credentials: a set of (competency, minimum level) held."""

from __future__ import annotations

import pytest

from service.assessment import parse
from service.assessment.stack import evaluate_stack
from service.assessment.types import Level, PolicyError, StackPolicy, StackRequirement

FOUNDATIONS = StackPolicy(
    "Data Foundations",
    (
        StackRequirement("cleaning", Level.INTERMEDIATE, "Data cleaning"),
        StackRequirement("stats", Level.BEGINNING),
    ),
)


@pytest.mark.parametrize(
    ("held", "awarded"),
    [
        ({"cleaning": Level.INTERMEDIATE, "stats": Level.BEGINNING}, True),
        ({"cleaning": Level.ADVANCED, "stats": Level.ADVANCED}, True),
        ({"cleaning": Level.BEGINNING, "stats": Level.ADVANCED}, False),  # one level short
        ({"cleaning": Level.INTERMEDIATE}, False),  # one missing
        ({}, False),
    ],
)
def test_all_required(held: dict[str, Level], awarded: bool) -> None:
    assert evaluate_stack(held, FOUNDATIONS).awarded is awarded


def test_reasons() -> None:
    decision = evaluate_stack({"cleaning": Level.BEGINNING}, FOUNDATIONS)
    assert decision.reason == "Data Foundations needs all 2 competencies; you meet 0."
    assert [r.reason for r in decision.rules] == [
        "Data cleaning is needed at Intermediate or above; you hold Beginning.",
        "stats is needed at Beginning or above; you do not hold it yet.",
    ]
    assert [r.level for r in decision.rules] == [Level.INTERMEDIATE, Level.BEGINNING]


@pytest.mark.parametrize(("met", "awarded"), [(1, False), (2, True)])
def test_at_least_n(met: int, awarded: bool) -> None:
    policy = StackPolicy(
        "Two of three",
        tuple(StackRequirement(c, Level.BEGINNING) for c in ("a", "b", "c")),
        min_required=2,
    )
    held = {c: Level.BEGINNING for c in ("a", "b", "c")[:met]}
    decision = evaluate_stack(held, policy)
    assert decision.awarded is awarded
    assert decision.reason == f"Two of three needs 2 of 3 competencies; you meet {met}."


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: StackRequirement(" ", Level.BEGINNING), "competency"),
        (lambda: StackRequirement("a", Level.NONE), "level"),
        (lambda: StackPolicy("x", ()), "requires"),
        (
            lambda: StackPolicy(
                "x", (StackRequirement("a", Level.BEGINNING), StackRequirement("a", Level.ADVANCED))
            ),
            "requires",
        ),
        (lambda: StackPolicy("x", (StackRequirement("a", Level.BEGINNING),), 2), "min_required"),
    ],
)
def test_invalid(build: object, field: str) -> None:
    with pytest.raises(PolicyError) as caught:
        build()  # type: ignore[operator]
    assert caught.value.field == field


def test_read_stack_policy_shapes() -> None:
    as_map = parse.read_stack_policy(
        {"name": "S", "requires": {"a": "intermediate", "b": "Beginning"}, "at_least": 1}
    )
    as_list = parse.read_stack_policy(
        {
            "title": "S",
            "competencies": [
                {"competency": "a", "level": "intermediate"},
                {"competency_id": "b", "min_level": "beginning"},
            ],
            "min_required": 1,
        }
    )
    assert as_map == as_list
    assert as_map.min_required == 1
    assert [r.level for r in as_map.requires] == [Level.INTERMEDIATE, Level.BEGINNING]


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"requires": {"a": "beginning"}}, "name"),
        ({"name": "S"}, "requires"),
        ({"name": "S", "requires": "a"}, "requires"),
        ({"name": "S", "requires": [{"competency": "a"}]}, "requires[0]"),
        ({"name": "S", "requires": {"a": "expert"}}, "requires.a"),
        ({"name": "S", "requires": {"a": "beginning"}, "at_least": 2}, "at_least"),
        ({"name": "S", "requires": [], "at_least": 1}, "requires"),
        ({"name": "S", "requires": {"a": "beginning"}, "extra": 1}, "extra"),
    ],
)
def test_read_stack_policy_errors(doc: dict[str, object], field: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse.read_stack_policy(doc)
    assert caught.value.field == field
