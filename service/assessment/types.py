"""Value types of the rules engine: evidence in, policy, decision out.

Every type is immutable and validates itself on construction, so a value that exists is
a valid one. Scores are fractions of the maximum (0.0 to 1.0) everywhere inside the engine;
percentages exist only in files and in the words shown to people.

Errors (both are ``ValueError``; "not eligible" is never an error, it is a ``Decision``):

    AssessmentError      field: dotted path of the value at fault ("levels.advanced.threshold")
     ├── PolicyError     the policy (or its bounds) is malformed or out of bounds
     └── EvidenceError   an evidence item is malformed or does not fit the policy
"""

from __future__ import annotations

import datetime as dt
import enum
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

__all__ = [
    "DEFAULT_N",
    "DEFAULT_WEIGHT",
    "EPSILON",
    "AggregationMethod",
    "AssessmentError",
    "AttemptGrading",
    "Decision",
    "Evidence",
    "EvidenceError",
    "Exclusion",
    "Floor",
    "Gap",
    "Level",
    "LevelRule",
    "MappedItem",
    "Policy",
    "PolicyError",
    "RubricLevel",
    "RuleKind",
    "RuleResult",
    "StackDecision",
    "StackPolicy",
    "StackRequirement",
    "VerificationLevel",
    "percent",
]

NO_TIME = dt.datetime.min.replace(tzinfo=dt.UTC)
# Scores are compared with this tolerance so 7 out of 10 is exactly 70 %, whatever the
# floating-point rounding of the aggregation did on the way.
EPSILON = 1e-9
# Canvas Outcomes' defaults: 65 % for the most recent result, mastery 5 times (peers.md §2.3).
DEFAULT_WEIGHT = 0.65
DEFAULT_N = 5


class AssessmentError(ValueError):
    """Malformed input; ``field`` is the dotted path of the value at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


class PolicyError(AssessmentError):
    """The policy or its bounds are malformed, or a policy is outside its bounds."""


class EvidenceError(AssessmentError):
    """An evidence item is malformed or does not fit the policy it is evaluated with."""


class Level(enum.IntEnum):
    """Competency levels, ordered. ``NONE`` is the outcome when no level is reached."""

    NONE = 0
    BEGINNING = 1
    INTERMEDIATE = 2
    ADVANCED = 3

    @property
    def key(self) -> str:
        """The name used in files and the API: ``"intermediate"``."""
        return _LEVEL_KEYS[self]

    @property
    def label(self) -> str:
        """The name shown to people: ``"Intermediate"``."""
        return _LEVEL_LABELS[self]


# Tuples indexed by the level's number: enum-keyed lookups are slow in the hot path.
_LEVEL_KEYS = ("none", "beginning", "intermediate", "advanced")
_LEVEL_LABELS = ("No level", "Beginning", "Intermediate", "Advanced")


class VerificationLevel(enum.IntEnum):
    """How an assessment sitting was supervised and the learner identified (DESIGN.md).

    Ordered from weakest to strongest; it follows the EU micro-credential element
    "supervision and identity verification during assessment" (Council Recommendation
    2022/C 243/02, Annex I, optional elements).
    """

    UNSUPERVISED = 1
    AUTHENTICATED = 2
    SUPERVISED = 3
    SUPERVISED_ONLINE_VERIFIED = 4
    SUPERVISED_ONSITE_VERIFIED = 5

    @property
    def key(self) -> str:
        """The name used in files and the API: ``"supervised-online-verified"``."""
        return _VERIFICATION_TEXT[self][0]

    @property
    def described(self) -> str:
        """How a sitting at this level is described to a learner."""
        return _VERIFICATION_TEXT[self][1]

    @property
    def required(self) -> str:
        """What a requirement of at least this level asks for, in words."""
        return _VERIFICATION_TEXT[self][2]


# Indexed by the level's number: (key, a sitting described, a requirement described).
_VERIFICATION_TEXT = (
    ("", "", ""),
    ("unsupervised", "unsupervised", "any sitting"),
    (
        "authenticated",
        "unsupervised (signed in through the LMS)",
        "a sitting signed in through the LMS",
    ),
    ("supervised", "supervised without an identity check", "a supervised sitting"),
    (
        "supervised-online-verified",
        "supervised online with an identity check",
        "a supervised, identity-verified sitting",
    ),
    (
        "supervised-onsite-verified",
        "supervised on site with an identity check",
        "a supervised, identity-verified sitting on site",
    ),
)


class AggregationMethod(enum.StrEnum):
    """How the results for one competency combine into one score (Canvas Outcomes' methods).

    - ``WEIGHTED_AVERAGE``: the most recent result counts ``weight``, the average of all
      earlier results the rest (Canvas' "weighted average", formerly "decaying average").
    - ``AVERAGE``: the plain mean.
    - ``LATEST``: the most recent result.
    - ``HIGHEST``: the best result.
    - ``DECAYING_AVERAGE``: oldest to newest, each new result counts ``weight`` and the
      running score the rest (Canvas' "standard decaying average").
    - ``N_MASTERY``: a level is reached when at least ``n`` results each reach it, so the
      score is the ``n``-th best result (none with fewer than ``n`` results).
    """

    WEIGHTED_AVERAGE = "weighted_average"
    AVERAGE = "average"
    LATEST = "latest"
    HIGHEST = "highest"
    DECAYING_AVERAGE = "decaying_average"
    N_MASTERY = "n_mastery"

    def describe(self, *, weight: float, n: int) -> str:
        """The method in words, for explanations."""
        share = f"{round(weight * 100, 1):g}%"
        if self is AggregationMethod.WEIGHTED_AVERAGE:
            return (
                f"weighted average: your most recent result counts {share}, "
                "the average of the earlier ones the rest"
            )
        if self is AggregationMethod.DECAYING_AVERAGE:
            return f"decaying average: each newer result counts {share} against what came before"
        if self is AggregationMethod.N_MASTERY:
            return f"the level reached by at least {n} of your results"
        return {
            AggregationMethod.AVERAGE: "average of your results",
            AggregationMethod.LATEST: "your most recent result",
            AggregationMethod.HIGHEST: "your best result",
        }[self]


class AttemptGrading(enum.StrEnum):
    """Which attempt stands for an item that was attempted several times (Moodle's quiz
    grading methods)."""

    HIGHEST = "highest"
    AVERAGE = "average"
    FIRST = "first"
    LAST = "last"


class RuleKind(enum.Enum):
    """The rules a decision reports on; the value is the name shown in explanations."""

    THRESHOLD = "score"
    MINIMUM = "overall minimum"
    VERIFICATION = "verification"
    FLOOR = "minimum per result"
    REQUIRED = "required evidence"
    ATTEMPTS = "attempt limit"
    RECENCY = "recency"
    STACK = "stack requirement"


def _check_fraction(value: float, field: str, error: type[AssessmentError]) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and 0.0 <= value <= 1.0):
        raise error(field, f"must be between 0% and 100%, not {value!r}")


@dataclass(frozen=True, slots=True)
class RubricLevel:
    """One rating on a rubric criterion's scale, with the points the rubric gives it."""

    name: str
    points: float


@dataclass(frozen=True, slots=True)
class Evidence:
    """One normalised result of one learner for one competency.

    ``score`` and ``max_score`` are points; ``fraction`` (score / max) is what the engine
    uses. For a rubric criterion, ``rubric`` lists the scale and ``rating`` the level
    given; ``normalise.rubric_rating`` builds it so the points come from the rubric.

    Raises:
        EvidenceError: a field is missing or out of range (``field`` names it).
    """

    learner: str
    competency: str
    item: str
    score: float
    max_score: float
    label: str = ""
    kind: str = "assignment"
    rubric: tuple[RubricLevel, ...] = ()
    rating: str | None = None
    attempt: int | None = None
    at: dt.datetime | None = None
    verification: VerificationLevel = VerificationLevel.UNSUPERVISED
    fraction: float = field(init=False, compare=False, repr=False)
    rubric_fractions: Mapping[str, float] = field(init=False, compare=False, repr=False)
    order: tuple[dt.datetime, int, str, float, int] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("learner", "competency", "item"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise EvidenceError(name, "is required and must be non-empty text")
        if not math.isfinite(self.max_score) or self.max_score <= 0:
            raise EvidenceError("max_score", f"must be more than 0, not {self.max_score!r}")
        if not math.isfinite(self.score) or not 0 <= self.score <= self.max_score:
            raise EvidenceError(
                "score", f"must be between 0 and the maximum {self.max_score:g}, not {self.score:g}"
            )
        if self.attempt is not None and self.attempt < 1:
            raise EvidenceError("attempt", f"attempts are numbered from 1, not {self.attempt}")
        if self.at is not None and self.at.utcoffset() is None:
            raise EvidenceError("at", "needs a time zone (write Z for UTC)")
        if self.rating is not None and self.rating not in {r.name for r in self.rubric}:
            raise EvidenceError("rating", f"{self.rating!r} is not a level of the rubric")
        object.__setattr__(self, "fraction", self.score / self.max_score)
        top = self.max_score
        object.__setattr__(self, "rubric_fractions", {r.name: r.points / top for r in self.rubric})
        # Oldest first, then a total order on the fields that matter, so no outcome depends
        # on the order evidence arrived in. Undated results sort before dated ones.
        object.__setattr__(
            self,
            "order",
            (self.at or NO_TIME, self.attempt or 0, self.item, self.fraction, self.verification),
        )

    @property
    def name(self) -> str:
        """How the item is called in explanations, with its attempt if there were several."""
        base = self.label or self.item
        return base if self.attempt is None else f"{base} attempt {self.attempt}"


@dataclass(frozen=True, slots=True)
class Floor:
    """A minimum every counted result must meet: a fraction, or a rubric rating."""

    fraction: float | None = None
    rating: str | None = None

    def __post_init__(self) -> None:
        if (self.fraction is None) == (self.rating is None):
            raise PolicyError("floor", "give either a percentage or a rubric level name")
        if self.fraction is not None:
            _check_fraction(self.fraction, "floor", PolicyError)

    @property
    def text(self) -> str:
        """The floor in words: ``50%`` or ``"proficient"``."""
        return f'"{self.rating}"' if self.rating is not None else percent(self.fraction or 0.0)


@dataclass(frozen=True, slots=True)
class LevelRule:
    """What one level asks for: a score band, a verification minimum and floors."""

    threshold: float
    verification: VerificationLevel = VerificationLevel.UNSUPERVISED
    floor: Floor | None = None
    item_floors: tuple[tuple[str, Floor], ...] = ()

    def __post_init__(self) -> None:
        _check_fraction(self.threshold, "threshold", PolicyError)


@dataclass(frozen=True, slots=True)
class MappedItem:
    """An LMS item (rubric criterion, quiz, assignment) mapped to the competency."""

    item: str
    label: str = ""


@dataclass(frozen=True, slots=True)
class Policy:
    """The rule set for one competency (in one course).

    Levels form a ladder: a level is granted only when its own rules and the rules of every
    level below it are met. ``competency`` empty means "any competency".

    Raises:
        PolicyError: a value is out of range or the levels are inconsistent.
    """

    levels: Mapping[Level, LevelRule]
    competency: str = ""
    version: int = 1
    aggregation: AggregationMethod = AggregationMethod.WEIGHTED_AVERAGE
    weight: float = DEFAULT_WEIGHT
    n: int = DEFAULT_N
    minimum_score: float = 0.0
    items: tuple[MappedItem, ...] = ()
    require_all: bool = False
    min_results: int = 0
    max_attempts: int | None = None
    attempt_grading: AttemptGrading = AttemptGrading.HIGHEST
    recency_days: int | None = None
    ladder: tuple[tuple[Level, LevelRule], ...] = field(init=False, compare=False, repr=False)
    labels: Mapping[str, str] = field(init=False, compare=False, repr=False)
    basis: str = field(init=False, compare=False, repr=False)  # the aggregation in words
    # What the engine derives from the policy alone (reason texts per level, the recency
    # window), built on the first evaluation and reused for every learner after it.
    engine_plan: Any = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.levels:
            raise PolicyError("levels", "define at least one of beginning, intermediate, advanced")
        if Level.NONE in self.levels:
            raise PolicyError("levels.none", "'none' is the outcome, not a level to define")
        ladder = tuple(sorted(self.levels.items()))
        for (low, low_rule), (high, high_rule) in itertools.pairwise(ladder):
            if high_rule.threshold < low_rule.threshold:
                raise PolicyError(
                    f"levels.{high.key}.threshold",
                    f"{high.label} ({percent(high_rule.threshold)}) cannot be lower than "
                    f"{low.label} ({percent(low_rule.threshold)})",
                )
        object.__setattr__(self, "ladder", ladder)
        if self.version < 1:
            raise PolicyError("version", f"versions are numbered from 1, not {self.version}")
        if not (math.isfinite(self.weight) and 0.0 < self.weight <= 1.0):
            raise PolicyError("weight", f"must be more than 0% and at most 100%, not {self.weight}")
        if self.n < 1:
            raise PolicyError("n", f"must be at least 1, not {self.n}")
        _check_fraction(self.minimum_score, "minimum_score", PolicyError)
        if self.require_all and not self.items:
            raise PolicyError("required", "'all' needs the list of mapped items")
        if self.min_results < 0:
            raise PolicyError("required", f"cannot be negative, not {self.min_results}")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise PolicyError("max_attempts", f"must be at least 1, not {self.max_attempts}")
        if self.recency_days is not None and self.recency_days < 1:
            raise PolicyError("recency_days", f"must be at least 1 day, not {self.recency_days}")
        seen: set[str] = set()
        for i, mapped in enumerate(self.items):
            if mapped.item in seen:
                raise PolicyError(f"items[{i}]", f"{mapped.item!r} is listed twice")
            seen.add(mapped.item)
        object.__setattr__(self, "labels", {m.item: m.label or m.item for m in self.items})
        object.__setattr__(self, "basis", self.aggregation.describe(weight=self.weight, n=self.n))


class RuleResult(NamedTuple):
    """The outcome of one rule. ``level`` is None for rules that apply to every level.

    (A named tuple rather than a dataclass: a decision makes several, and the engine's
    throughput target is 50,000 decisions a second.)"""

    kind: RuleKind
    level: Level | None
    passed: bool
    reason: str


class Exclusion(NamedTuple):
    """An evidence item that was not counted, and why."""

    evidence: Evidence
    why: str


class Gap(NamedTuple):
    """What is missing for the next level: its failed rules and, if the score is short,
    by how much (a fraction of the maximum)."""

    level: Level
    missing: tuple[RuleResult, ...]
    score_needed: float | None


class Decision(NamedTuple):
    """The outcome of ``evaluate``: the level reached (possibly ``Level.NONE``), every rule's
    outcome with its reason, the evidence used and left out, and the gap to the next level.

    (Immutable like every value here; a named tuple because one is made per learner and
    competency and a frozen dataclass costs several times more to build.)"""

    learner: str
    competency: str
    level: Level
    score: float | None
    score_basis: str
    rules: tuple[RuleResult, ...]
    used: tuple[Evidence, ...]
    excluded: tuple[Exclusion, ...]
    gap: Gap | None
    policy_version: int
    evaluated_at: dt.datetime

    @property
    def failed(self) -> tuple[RuleResult, ...]:
        """The rules that were not met."""
        return tuple(r for r in self.rules if not r.passed)


@dataclass(frozen=True, slots=True)
class StackRequirement:
    """One competency a stacked credential needs, at a minimum level."""

    competency: str
    level: Level
    label: str = ""

    def __post_init__(self) -> None:
        if not self.competency.strip():
            raise PolicyError("competency", "is required")
        if self.level is Level.NONE:
            raise PolicyError("level", "must be beginning, intermediate or advanced")


@dataclass(frozen=True, slots=True)
class StackPolicy:
    """A stacked credential: awarded when ``min_required`` of the requirements are held
    (all of them when ``min_required`` is None)."""

    name: str
    requires: tuple[StackRequirement, ...]
    min_required: int | None = None

    def __post_init__(self) -> None:
        if not self.requires:
            raise PolicyError("requires", "list at least one competency")
        competencies = [r.competency for r in self.requires]
        if len(set(competencies)) != len(competencies):
            raise PolicyError("requires", "a competency is listed twice")
        if self.min_required is not None and not 1 <= self.min_required <= len(self.requires):
            raise PolicyError(
                "min_required",
                f"must be between 1 and {len(self.requires)}, not {self.min_required}",
            )


@dataclass(frozen=True, slots=True)
class StackDecision:
    """Whether a stacked credential is awarded, with one result per requirement."""

    name: str
    awarded: bool
    rules: tuple[RuleResult, ...]
    reason: str


def percent(fraction: float) -> str:
    """A fraction as a percentage for people: 0.7 -> "70%", 0.66666 -> "66.66%".

    Truncated (after the comparison tolerance), never rounded up, so a score just below
    a threshold is never shown as equal to it.
    """
    hundredths = math.floor((fraction + EPSILON) * 10000)
    whole, part = divmod(hundredths, 100)
    if part == 0:
        return f"{whole}%"
    if part % 10 == 0:  # no trailing zero: 66.5%, not 66.50%
        return f"{whole}.{part // 10}%"
    return f"{whole}.{part:02d}%"
