"""Normalisation: points, rubric ratings and quiz attempts; one standing result per item."""

from __future__ import annotations

import pytest

from service.assessment import normalise
from service.assessment.types import AttemptGrading, EvidenceError
from tests.assessment.build import RUBRIC, days_ago, ev


def test_fraction() -> None:
    assert normalise.fraction(17, 20) == 0.85
    with pytest.raises(EvidenceError, match="max_score"):
        normalise.fraction(1, 0)
    with pytest.raises(EvidenceError, match="between 0 and 20"):
        normalise.fraction(21, 20)


def test_rubric_rating_scores_by_the_rubric_points() -> None:
    e = normalise.rubric_rating(
        learner="ada", competency="c", item="crit", rubric=RUBRIC, rating="proficient"
    )
    assert (e.score, e.max_score, e.fraction) == (3.0, 4.0, 0.75)
    assert e.kind == "rubric" and e.rating == "proficient"
    assert e.rubric_fractions["developing"] == 0.5


@pytest.mark.parametrize(
    ("rubric", "rating", "field", "message"),
    [
        ((), "x", "rubric", "at least one level"),
        ((("a", 1), ("a", 2)), "a", "rubric", "used twice"),
        ((("a", -1), ("b", 2)), "a", "rubric", "negative"),
        ((("a", 0), ("b", 0)), "a", "rubric", "more than 0 points"),
        ((("a", 1), ("b", 2)), "c", "rating", "'c' is not a level of this rubric (a, b)"),
    ],
)
def test_rubric_rating_errors(
    rubric: tuple[tuple[str, float], ...], rating: str, field: str, message: str
) -> None:
    with pytest.raises(EvidenceError) as caught:
        normalise.rubric_rating(
            learner="ada", competency="c", item="crit", rubric=rubric, rating=rating
        )
    assert caught.value.field == field
    assert message in caught.value.message


ATTEMPTS = [
    ev("q", 60, attempt=1, days=3),
    ev("q", 90, attempt=2, days=2),
    ev("q", 70, attempt=3, days=1),
]


@pytest.mark.parametrize(
    ("grading", "score", "chosen"),
    [
        (AttemptGrading.HIGHEST, 0.9, [2]),
        (AttemptGrading.FIRST, 0.6, [1]),
        (AttemptGrading.LAST, 0.7, [3]),
        (AttemptGrading.AVERAGE, pytest.approx(220 / 300), [1, 2, 3]),
    ],
)
def test_attempt_grading(grading: AttemptGrading, score: object, chosen: list[int]) -> None:
    [standing], passed_over = normalise.standings(sorted(ATTEMPTS, key=lambda e: e.order), grading)
    assert standing.fraction == score
    assert [e.attempt for e in standing.sources] == chosen
    assert sorted(e.attempt or 0 for e in passed_over) == sorted({1, 2, 3} - set(chosen))
    # the item's time is its latest attempt's, whichever attempt stands
    assert standing.at == days_ago(1)


def test_highest_ties_go_to_the_earliest_attempt() -> None:
    tied = [ev("q", 80, attempt=1, days=3), ev("q", 80, attempt=2, days=2)]
    [standing], _ = normalise.standings(tied, AttemptGrading.HIGHEST)
    assert standing.sources[0].attempt == 1


def test_standings_are_chronological_by_item() -> None:
    evidence = [ev("b", 10, days=1), ev("a", 10, days=5), ev("c", 10, days=None)]
    standing, _ = normalise.standings(
        sorted(evidence, key=lambda e: e.order), AttemptGrading.HIGHEST
    )
    assert [s.item for s in standing] == ["c", "a", "b"]
