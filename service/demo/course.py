"""The sample course the demo LMS serves: people, roles, rubric criteria, quizzes, results.

Plain frozen dataclasses, built once by ``sample_course()``. Later features read the
rubric and quiz results from here (as a Moodle or Canvas source would) and add their own
pages; nothing in this module knows about LTI.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "Course",
    "Member",
    "QuizAttempt",
    "QuizSpec",
    "RubricCriterion",
    "RubricLevel",
    "RubricResult",
    "sample_course",
]

Role = Literal["instructor", "learner"]
# DESIGN.md "Identity verification levels"; the demo only records what the LMS knows.
Supervision = Literal["unsupervised", "supervised", "supervised-onsite-verified"]

# LIS v2 membership role URIs (LTI Core §A.2.3).
ROLE_URIS: dict[Role, str] = {
    "instructor": "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor",
    "learner": "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner",
}
# What Moodle adds for a site administrator (lti.md §2.6): system and institution roles.
SITE_ADMIN_URIS = (
    "http://purl.imsglobal.org/vocab/lis/v2/system/person#Administrator",
    "http://purl.imsglobal.org/vocab/lis/v2/institution/person#Administrator",
)


@dataclass(frozen=True)
class Member:
    user_id: str  # the LTI `sub`, opaque and stable
    given_name: str
    family_name: str
    email: str
    role: Role
    site_admin: bool = False  # the LMS's site administrator (not enrolled in the course)

    @property
    def name(self) -> str:
        return f"{self.given_name} {self.family_name}"

    @property
    def roles(self) -> list[str]:
        return [ROLE_URIS[self.role], *(SITE_ADMIN_URIS if self.site_admin else ())]

    @property
    def initials(self) -> str:
        return (self.given_name[:1] + self.family_name[:1]).upper()


@dataclass(frozen=True)
class RubricLevel:
    id: str
    title: str
    points: float


@dataclass(frozen=True)
class RubricCriterion:
    id: str
    title: str
    description: str
    levels: tuple[RubricLevel, ...]

    @property
    def max_points(self) -> float:
        return max(level.points for level in self.levels)


@dataclass(frozen=True)
class QuizSpec:
    id: str
    title: str
    max_score: float
    # How the sitting is run; the supervision flag travels with each attempt's evidence.
    supervision: Supervision


@dataclass(frozen=True)
class RubricResult:
    user_id: str
    criterion_id: str
    level_id: str
    assessed_at: dt.datetime


@dataclass(frozen=True)
class QuizAttempt:
    user_id: str
    quiz_id: str
    attempt: int
    score: float
    finished_at: dt.datetime
    supervised: bool


@dataclass(frozen=True)
class Course:
    context_id: str
    label: str
    title: str
    members: tuple[Member, ...]
    rubric_title: str
    criteria: tuple[RubricCriterion, ...]
    quizzes: tuple[QuizSpec, ...]
    rubric_results: tuple[RubricResult, ...] = ()
    quiz_attempts: tuple[QuizAttempt, ...] = ()
    resource_link_id: str = "rl-microcred-1"
    resource_link_title: str = "Competency credentials"
    # People who may open the course without being its members: the site administrator.
    administrators: tuple[Member, ...] = ()
    _by_id: dict[str, Member] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_id.update({m.user_id: m for m in (*self.members, *self.administrators)})

    def member(self, user_id: str) -> Member | None:
        return self._by_id.get(user_id)

    @property
    def instructors(self) -> list[Member]:
        return [m for m in self.members if m.role == "instructor"]

    @property
    def learners(self) -> list[Member]:
        return [m for m in self.members if m.role == "learner"]

    def rubric_results_for(self, user_id: str) -> list[RubricResult]:
        return [r for r in self.rubric_results if r.user_id == user_id]

    def quiz_attempts_for(self, user_id: str) -> list[QuizAttempt]:
        return [a for a in self.quiz_attempts if a.user_id == user_id]


_LEVELS = (
    RubricLevel("beginning", "Beginning", 1),
    RubricLevel("developing", "Developing", 2),
    RubricLevel("proficient", "Proficient", 3),
    RubricLevel("exemplary", "Exemplary", 4),
)


def _at(day: int, hour: int = 10) -> dt.datetime:
    return dt.datetime(2026, 10, day, hour, 0, tzinfo=dt.UTC)


def sample_course() -> Course:
    """Data Literacy 101: one instructor, five learners with varied results, and the site
    administrator (not enrolled), who administers microcred for this platform.

    The learners span the range later features need to show: strong across the board, strong
    but only unsupervised quiz attempts, improving over attempts, weak, and no results yet.
    """
    members = (
        Member("u-instr-1", "Grace", "Hopper", "grace.hopper@demo-university.test", "instructor"),
        Member("u-learn-1", "Amara", "Okafor", "amara.okafor@demo-university.test", "learner"),
        Member("u-learn-2", "Lucas", "Moreau", "lucas.moreau@demo-university.test", "learner"),
        Member("u-learn-3", "Sofia", "Rossi", "sofia.rossi@demo-university.test", "learner"),
        Member("u-learn-4", "Kenji", "Tanaka", "kenji.tanaka@demo-university.test", "learner"),
        Member("u-learn-5", "Ingrid", "Larsen", "ingrid.larsen@demo-university.test", "learner"),
    )
    criteria = (
        RubricCriterion(
            "crit-question",
            "Frames a data question",
            "States a question the data can answer and names the population it is about.",
            _LEVELS,
        ),
        RubricCriterion(
            "crit-clean",
            "Cleans and documents data",
            "Finds missing and inconsistent values and records every change made.",
            _LEVELS,
        ),
        RubricCriterion(
            "crit-communicate",
            "Communicates findings",
            "Chooses a fitting chart and explains uncertainty in plain words.",
            _LEVELS,
        ),
    )
    quizzes = (
        QuizSpec("quiz-stats", "Descriptive statistics quiz", 20, "supervised-onsite-verified"),
        QuizSpec("quiz-viz", "Reading charts quiz", 10, "unsupervised"),
    )
    rubric_levels = {
        "u-learn-1": ("exemplary", "proficient", "exemplary"),
        "u-learn-2": ("proficient", "proficient", "developing"),
        "u-learn-3": ("developing", "proficient", "proficient"),
        "u-learn-4": ("beginning", "developing", "beginning"),
    }
    rubric_results = tuple(
        RubricResult(user, crit.id, level, _at(12 + i))
        for user, levels in rubric_levels.items()
        for i, (crit, level) in enumerate(zip(criteria, levels, strict=True))
    )
    attempts: list[QuizAttempt] = []
    plan: dict[str, list[tuple[str, float, bool]]] = {
        "u-learn-1": [("quiz-stats", 18, True), ("quiz-viz", 9, False)],
        "u-learn-2": [("quiz-stats", 17, False), ("quiz-viz", 8, False)],
        "u-learn-3": [
            ("quiz-stats", 9, True),
            ("quiz-stats", 13, True),
            ("quiz-stats", 16, True),
            ("quiz-viz", 6, False),
            ("quiz-viz", 8, False),
        ],
        "u-learn-4": [("quiz-stats", 7, True), ("quiz-viz", 4, False)],
    }
    for user, rows in plan.items():
        counts: dict[str, int] = {}
        for quiz_id, score, supervised in rows:
            counts[quiz_id] = counts.get(quiz_id, 0) + 1
            attempts.append(
                QuizAttempt(
                    user, quiz_id, counts[quiz_id], score, _at(5 + 3 * counts[quiz_id]), supervised
                )
            )
    return Course(
        context_id="ctx-data-literacy-101",
        label="DATA101",
        title="Data Literacy 101",
        members=members,
        rubric_title="Data investigation project",
        criteria=criteria,
        quizzes=quizzes,
        rubric_results=rubric_results,
        quiz_attempts=tuple(attempts),
        administrators=(
            Member(
                "u-admin-1",
                "Alan",
                "Turing",
                "alan.turing@demo-university.test",
                "instructor",  # Moodle: Instructor in any course, never Learner
                site_admin=True,
            ),
        ),
    )
