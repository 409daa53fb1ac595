"""Decisions per second of the pure rules engine, on one core.

A course of 5,000 learners x 8 competencies x 6 evidence items each (two quizzes with
attempts, rubric criteria, an assignment), a typical policy per competency (three bands,
verification for Advanced, a floor for Intermediate, required evidence, attempt limit,
recency window). One process, so one core. Evidence is built before timing; what is
timed is ``evaluate`` producing complete decisions with every rule's reason, and
separately that plus turning each decision into JSON-ready data with its evidence hash
(what ``microcred evaluate`` does). CPU time (``time.process_time``) is the figure to
compare on a shared machine; the wall clock is printed too.

Run: python bench/evaluate.py [--learners 5000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.assessment import canonical, engine, normalise, parse
from service.assessment.types import Evidence, VerificationLevel

NOW = dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC)
RUBRIC = (("beginning", 1.0), ("developing", 2.0), ("proficient", 3.0), ("exemplary", 4.0))
COMPETENCIES = [f"competency-{i}" for i in range(8)]


def policy_for(competency: str) -> parse.Policy:
    return parse.read_policy(
        {
            "competency": competency,
            "aggregation": "weighted_average",
            "levels": {
                "beginning": "50%",
                "intermediate": {"threshold": "65%", "floor": "developing"},
                "advanced": {"threshold": "85%", "verification": "supervised-online-verified"},
            },
            "items": ["quiz-1", "quiz-2", "crit-a", "crit-b", "essay"],
            "required": {"at_least": 3},
            "max_attempts": 3,
            "recency_days": 730,
        }
    )


def evidence_for(rng: random.Random, learner: str, competency: str) -> list[Evidence]:
    def when(days: int) -> dt.datetime:
        return NOW - dt.timedelta(days=days, minutes=rng.randrange(600))

    verification = rng.choice(list(VerificationLevel))
    return [
        Evidence(
            learner=learner,
            competency=competency,
            kind="quiz",
            item="quiz-1",
            attempt=1,
            score=rng.randrange(21),
            max_score=20,
            at=when(90),
        ),
        Evidence(
            learner=learner,
            competency=competency,
            kind="quiz",
            item="quiz-1",
            attempt=2,
            score=rng.randrange(21),
            max_score=20,
            at=when(80),
        ),
        Evidence(
            learner=learner,
            competency=competency,
            kind="quiz",
            item="quiz-2",
            attempt=1,
            score=rng.randrange(11),
            max_score=10,
            at=when(30),
            verification=verification,
        ),
        normalise.rubric_rating(
            learner=learner,
            competency=competency,
            item="crit-a",
            rubric=RUBRIC,
            rating=rng.choice(RUBRIC)[0],
            at=when(60),
        ),
        normalise.rubric_rating(
            learner=learner,
            competency=competency,
            item="crit-b",
            rubric=RUBRIC,
            rating=rng.choice(RUBRIC)[0],
            at=when(60),
        ),
        Evidence(
            learner=learner,
            competency=competency,
            item="essay",
            score=rng.randrange(101),
            max_score=100,
            at=when(10),
        ),
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--learners", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rng = random.Random(20261128)
    policies = {c: policy_for(c) for c in COMPETENCIES}
    work = [
        (evidence_for(rng, f"learner-{n}", c), policies[c])
        for n in range(args.learners)
        for c in COMPETENCIES
    ]
    decisions = len(work)
    print(
        f"{args.learners} learners x {len(COMPETENCIES)} competencies x 6 evidence items "
        f"= {decisions} decisions, best of {args.repeat}"
    )

    def just_evaluate() -> None:
        for evidence, policy in work:
            engine.evaluate(evidence, policy, NOW)

    def evaluate_to_json() -> None:
        for evidence, policy in work:
            canonical.decision_to_dict(engine.evaluate(evidence, policy, NOW))

    for label, run in (("evaluate", just_evaluate), ("evaluate + to JSON", evaluate_to_json)):
        cpu = wall = float("inf")
        for _ in range(args.repeat):
            start_cpu, start_wall = time.process_time(), time.perf_counter()
            run()
            cpu = min(cpu, time.process_time() - start_cpu)
            wall = min(wall, time.perf_counter() - start_wall)
        print(
            f"{label + ':':<20}{decisions / cpu:>10,.0f} decisions/s of CPU time ({cpu:.2f} s), "
            f"{decisions / wall:>10,.0f} by the wall clock ({wall:.2f} s)"
        )


if __name__ == "__main__":
    main()
