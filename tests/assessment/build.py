"""Builders for engine values: plain functions with sensible defaults."""

from __future__ import annotations

import datetime as dt
from typing import Any

from service.assessment import parse
from service.assessment.types import Evidence, Policy, VerificationLevel

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
RUBRIC = (("beginning", 1.0), ("developing", 2.0), ("proficient", 3.0), ("exemplary", 4.0))


def days_ago(days: float) -> dt.datetime:
    return NOW - dt.timedelta(days=days)


def ev(
    item: str = "quiz-1",
    score: float = 70,
    max_score: float = 100,
    *,
    learner: str = "ada",
    competency: str = "stats",
    at: dt.datetime | None = None,
    days: float | None = 10,
    verification: VerificationLevel = VerificationLevel.UNSUPERVISED,
    **kw: Any,
) -> Evidence:
    when = at if at is not None else (None if days is None else days_ago(days))
    return Evidence(
        learner=learner,
        competency=competency,
        item=item,
        score=score,
        max_score=max_score,
        at=when,
        verification=verification,
        **kw,
    )


def policy(**doc: Any) -> Policy:
    """A policy from document fields; bands 50/65/85 unless ``levels`` is given."""
    doc.setdefault("competency", "stats")
    doc.setdefault("levels", {"beginning": 50, "intermediate": 65, "advanced": 85})
    return parse.read_policy(doc)
