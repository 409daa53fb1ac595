"""Normalisation: LMS results (points, rubric ratings) to ``Evidence``,
and one standing result per item when an item was attempted several times."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from service.assessment.types import (
    NO_TIME,
    AttemptGrading,
    Evidence,
    EvidenceError,
    RubricLevel,
    VerificationLevel,
)

__all__ = ["Standing", "fraction", "rubric_rating", "standings"]


def fraction(score: float, max_score: float) -> float:
    """Points as a fraction of the maximum.

    Raises:
        EvidenceError: the maximum is not positive or the score is outside 0..maximum.
    """
    if max_score <= 0:
        raise EvidenceError("max_score", f"must be more than 0, not {max_score!r}")
    if not 0 <= score <= max_score:
        raise EvidenceError("score", f"must be between 0 and {max_score:g}, not {score!r}")
    return score / max_score


def rubric_rating(
    *,
    learner: str,
    competency: str,
    item: str,
    rubric: Sequence[tuple[str, float]],
    rating: str,
    label: str = "",
    at: dt.datetime | None = None,
    attempt: int | None = None,
    verification: VerificationLevel = VerificationLevel.UNSUPERVISED,
) -> Evidence:
    """Evidence for a rubric criterion rated ``rating``: its score is the points the rubric
    gives that rating, out of the rubric's highest points (as Canvas scores criteria).

    Raises:
        EvidenceError: the rubric is empty, has a negative or repeated level, or lacks
            ``rating``.
    """
    if not rubric:
        raise EvidenceError("rubric", "needs at least one level with its points")
    levels = tuple(RubricLevel(str(name), float(points)) for name, points in rubric)
    names = [lv.name for lv in levels]
    if len(set(names)) != len(names):
        raise EvidenceError("rubric", "a level name is used twice")
    if any(lv.points < 0 for lv in levels):
        raise EvidenceError("rubric", "points cannot be negative")
    top = max(lv.points for lv in levels)
    if top <= 0:
        raise EvidenceError("rubric", "the highest level must be worth more than 0 points")
    points = {lv.name: lv.points for lv in levels}
    if rating not in points:
        raise EvidenceError(
            "rating", f"{rating!r} is not a level of this rubric ({', '.join(names)})"
        )
    return Evidence(
        learner=learner,
        competency=competency,
        item=item,
        score=points[rating],
        max_score=top,
        label=label,
        kind="rubric",
        rubric=levels,
        rating=rating,
        attempt=attempt,
        at=at,
        verification=verification,
    )


class Standing(NamedTuple):
    """The result that stands for one item: its score, the time of the item's latest
    evidence (never of the attempt chosen, so a better score cannot move it in time), and
    the evidence behind it."""

    at: dt.datetime  # first, so standings sort by time, then item (unique), natively
    item: str
    fraction: float
    sources: tuple[Evidence, ...]


# ``tuple.__new__`` builds a named tuple without its Python-level ``__new__``: a standing is
# made for every item of every decision (the engine's target is 50,000 decisions a second).
_new = tuple.__new__


def _fractions(group: list[Evidence]) -> list[float]:
    return [ev.fraction for ev in group]


def standings(
    ordered: Iterable[Evidence], grading: AttemptGrading
) -> tuple[list[Standing], list[Evidence]]:
    """One standing result per item, chronological by the item's latest evidence, and the
    attempts passed over.

    ``ordered`` must be sorted by ``Evidence.order``. With several attempts, ``grading`` picks
    which one stands (Moodle's quiz grading methods); with ``AVERAGE`` all of them do.
    """
    ordered = list(ordered)
    latest = {ev.item: ev for ev in ordered}  # oldest first in, so the last one wins
    if len(latest) == len(ordered):  # one result per item: the usual case
        single = [_new(Standing, (ev.at or NO_TIME, ev.item, ev.fraction, (ev,))) for ev in ordered]
        single.sort()
        return single, []
    if grading is AttemptGrading.AVERAGE:
        groups: dict[str, list[Evidence]] = {}
        for ev in ordered:
            groups.setdefault(ev.item, []).append(ev)
        averaged = [
            _new(
                Standing,
                (latest[item].at or NO_TIME, item, sum(_fractions(g)) / len(g), tuple(g)),
            )
            for item, g in groups.items()
        ]
        averaged.sort()
        return averaged, []
    # One attempt stands per item; later entries win in a dict built from a sequence.
    chosen: dict[str, Evidence]
    if grading is AttemptGrading.HIGHEST:
        chosen = {}
        for ev in ordered:  # the best score; among equal ones the earliest attempt
            best = chosen.get(ev.item)
            if best is None or ev.fraction > best.fraction:
                chosen[ev.item] = ev
    elif grading is AttemptGrading.FIRST:
        chosen = {ev.item: ev for ev in reversed(ordered)}
    else:
        chosen = latest
    result = [
        _new(Standing, (latest[item].at or NO_TIME, item, ev.fraction, (ev,)))
        for item, ev in chosen.items()
    ]
    result.sort()
    return result, [ev for ev in ordered if chosen[ev.item] is not ev]
