"""Aggregation methods, with Canvas Outcomes' meanings (reference/peers.md §2.3)."""

from __future__ import annotations

import pytest

from service.assessment.aggregate import aggregate, describe
from service.assessment.types import AggregationMethod as M

SCORES = [0.4, 0.6, 1.0, 0.8]  # oldest first


@pytest.mark.parametrize(
    ("method", "weight", "n", "expected"),
    [
        # most recent 65 %, the mean of the earlier ones 35 %: 0.65*0.8 + 0.35*(2.0/3)
        (M.WEIGHTED_AVERAGE, 0.65, 1, 0.65 * 0.8 + 0.35 * (2.0 / 3)),
        (M.AVERAGE, 0.65, 1, 0.7),
        (M.LATEST, 0.65, 1, 0.8),
        (M.HIGHEST, 0.65, 1, 1.0),
        # running = 0.4; then 0.5*0.6+0.5*0.4 = 0.5; 0.5*1.0+0.5*0.5 = 0.75; 0.5*0.8+0.5*0.75
        (M.DECAYING_AVERAGE, 0.5, 1, 0.775),
        # the n-th best result: two results reach 0.8, three reach 0.6
        (M.N_MASTERY, 0.65, 2, 0.8),
        (M.N_MASTERY, 0.65, 3, 0.6),
        (M.N_MASTERY, 0.65, 4, 0.4),
        (M.N_MASTERY, 0.65, 5, None),
    ],
)
def test_methods(method: M, weight: float, n: int, expected: float | None) -> None:
    result = aggregate(SCORES, method, weight=weight, n=n)
    assert result == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize("method", list(M))
def test_nothing_to_aggregate(method: M) -> None:
    assert aggregate([], method, weight=0.65, n=1) is None


@pytest.mark.parametrize("method", [M.WEIGHTED_AVERAGE, M.DECAYING_AVERAGE])
def test_a_single_result_is_itself(method: M) -> None:
    assert aggregate([0.3], method, weight=0.65, n=1) == 0.3


def test_weight_of_one_is_the_latest() -> None:
    assert aggregate(SCORES, M.WEIGHTED_AVERAGE, weight=1.0, n=1) == 0.8
    assert aggregate(SCORES, M.DECAYING_AVERAGE, weight=1.0, n=1) == 0.8


@pytest.mark.parametrize(
    ("method", "text"),
    [
        (M.WEIGHTED_AVERAGE, "weighted average: your most recent result counts 65%"),
        (M.AVERAGE, "average of your results"),
        (M.LATEST, "your most recent result"),
        (M.HIGHEST, "your best result"),
        (M.DECAYING_AVERAGE, "decaying average: each newer result counts 65%"),
        (M.N_MASTERY, "the level reached by at least 3 of your results"),
    ],
)
def test_describe(method: M, text: str) -> None:
    assert describe(method, weight=0.65, n=3).startswith(text)
