"""Aggregation: the standing results for one competency, oldest first, to one score.

The methods and their meanings follow Canvas Outcomes (reference/peers.md §2.3); each is
non-decreasing in every result, which the property tests rely on.
"""

from __future__ import annotations

from collections.abc import Sequence

from service.assessment.types import AggregationMethod

__all__ = ["aggregate", "describe"]


def aggregate(
    scores: Sequence[float], method: AggregationMethod, *, weight: float, n: int
) -> float | None:
    """Combine fractions (oldest first) into one fraction; None when there is nothing to
    combine (or, for n-times mastery, fewer than ``n`` results).

    Args:
        scores: fractions 0..1 in chronological order.
        method: the aggregation method.
        weight: share of the most recent result for the weighted and decaying averages.
        n: how many results must reach a level for n-times mastery.
    """
    if not scores:
        return None
    if method is AggregationMethod.WEIGHTED_AVERAGE:
        if len(scores) == 1:
            return scores[0]
        earlier = scores[:-1]
        return weight * scores[-1] + (1 - weight) * (sum(earlier) / len(earlier))
    if method is AggregationMethod.AVERAGE:
        return sum(scores) / len(scores)
    if method is AggregationMethod.LATEST:
        return scores[-1]
    if method is AggregationMethod.HIGHEST:
        return max(scores)
    if method is AggregationMethod.DECAYING_AVERAGE:
        running = scores[0]
        for score in scores[1:]:
            running = weight * score + (1 - weight) * running
        return running
    # N_MASTERY: the n-th best result reaches a threshold exactly when n results do.
    if len(scores) < n:
        return None
    return sorted(scores, reverse=True)[n - 1]


def describe(method: AggregationMethod, *, weight: float, n: int) -> str:
    """The method in words, for explanations (``AggregationMethod.describe``)."""
    return method.describe(weight=weight, n=n)
