"""Value types of the evidence store: what a result looks like before it is stored.

Connectors, the CSV parser and the push API all produce :class:`Result` values; the store
(``service.sources.store``) turns them into ``evidence`` rows. These types are plain
dataclasses with no database or HTTP in them, so parsers are testable on their own.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = [
    "Asserter",
    "LearnerRef",
    "Problem",
    "Result",
    "RubricLevel",
    "SourceKind",
    "SyncReport",
    "Verification",
    "VerificationEvent",
    "ordered_scale",
]


class SourceKind(enum.StrEnum):
    RUBRIC_CRITERION = "rubric_criterion"
    QUIZ = "quiz"
    ASSIGNMENT = "assignment"
    MANUAL = "manual"
    PUSH = "push"


class Verification(enum.StrEnum):
    """Supervision and identity verification, ordered weakest first (DESIGN.md).

    Compare with :meth:`rank`; the string values are the stable names stored and posted.
    """

    UNSUPERVISED = "unsupervised"
    AUTHENTICATED = "authenticated"
    SUPERVISED = "supervised"
    SUPERVISED_ONLINE_VERIFIED = "supervised-online-verified"
    SUPERVISED_ONSITE_VERIFIED = "supervised-onsite-verified"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {v: i for i, v in enumerate(Verification)}


class Asserter(enum.StrEnum):
    """Who asserts the result (or the verification): provenance kept with the evidence."""

    LMS = "lms"
    IMPORT = "import"
    INSTRUCTOR = "instructor"
    PROCTORING = "proctoring"
    SYSTEM = "system"


@dataclass(frozen=True)
class RubricLevel:
    """The level picked on one rubric criterion, with the criterion's whole scale.

    ``scale`` lists every level of the criterion as (id, name, points), lowest points
    first, so a later mapping can tell where the chosen level sits.
    """

    id: str
    name: str
    points: float | None
    scale: tuple[tuple[str, str, float], ...] = ()


def ordered_scale(levels: Iterable[tuple[str, str, float]]) -> tuple[tuple[str, str, float], ...]:
    """A criterion's levels as ``RubricLevel.scale`` lists them: lowest points first."""
    return tuple(sorted(levels, key=lambda lv: lv[2]))


@dataclass(frozen=True)
class LearnerRef:
    """How a source names the learner. At least one field is set.

    ``lms_user_id``: the LMS's own user id (Moodle user id, Canvas user id);
    ``sub``: the LTI subject; ``email``: only used for matching, never stored.
    """

    lms_user_id: str = ""
    sub: str = ""
    email: str = ""

    def describe(self) -> str:
        parts = [
            f"lms_user_id={self.lms_user_id}" if self.lms_user_id else "",
            f"sub={self.sub}" if self.sub else "",
            "email=<given>" if self.email else "",
        ]
        return ", ".join(p for p in parts if p) or "no identifier"


@dataclass(frozen=True)
class Result:
    """One normalised result from any source, before it is matched to a stored person.

    The natural key is (origin, kind, item_id, criterion_id, learner, attempt): the same
    result read twice has the same key, so re-importing updates instead of duplicating.
    """

    origin: str  # the system that produced it: "moodle:3", "canvas:1", "csv", "push:proctorx"
    kind: SourceKind
    learner: LearnerRef
    item_id: str
    item_title: str = ""
    criterion_id: str = ""
    criterion_title: str = ""
    score: float | None = None
    max_score: float | None = None
    level: RubricLevel | None = None
    attempt: int = 1
    submitted_at: dt.datetime | None = None
    graded_at: dt.datetime | None = None
    verification: Verification = Verification.AUTHENTICATED
    asserted_by: Asserter = Asserter.LMS
    note: str = ""

    def key_parts(self) -> tuple[str, str, str, str, int]:
        return (self.origin, self.kind.value, self.item_id, self.criterion_id, self.attempt)


@dataclass(frozen=True)
class VerificationEvent:
    """A statement that a sitting was supervised / identity-verified at some level.

    It names the sitting by ``item_id`` (and ``attempt``, or every attempt when None);
    the effective verification of a result is the strongest of its own and its events.
    """

    origin: str
    learner: LearnerRef
    item_id: str
    level: Verification
    asserted_by: Asserter
    occurred_at: dt.datetime
    attempt: int | None = None
    sitting_id: str = ""
    note: str = ""


@dataclass(frozen=True)
class Problem:
    """Why one input record was rejected. ``where`` is "line 7" or "submission 42"."""

    where: str
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}, {self.field}: {self.reason}"


@dataclass
class SyncReport:
    """What an import or sync did: counts and a reason for every rejected record."""

    new: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[Problem] = field(default_factory=list)
    events: int = 0
    applied: bool = True
    import_run_id: int | None = None
    removed: int = 0  # results gone from the LMS, deleted by a sync
    # people whose results were added, changed or removed (who to evaluate again)
    changed_people: set[int] = field(default_factory=set)

    def as_dict(self) -> dict[str, object]:
        return {
            "new": self.new,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "verification_events": self.events,
            "rejected": [
                {"where": p.where, "field": p.field, "reason": p.reason} for p in self.rejected
            ],
            "applied": self.applied,
            "import_run_id": self.import_run_id,
        }
