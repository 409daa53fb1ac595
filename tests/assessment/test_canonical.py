"""Canonical JSON, hashes and decisions as data: what makes a decision reproducible."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

from service.assessment import canonical, engine, normalise
from service.assessment.types import VerificationLevel
from tests.assessment.build import NOW, RUBRIC, ev, policy


def test_iso_is_utc_with_z() -> None:
    paris = dt.timezone(dt.timedelta(hours=1))
    assert canonical.iso(dt.datetime(2026, 11, 28, 13, 0, tzinfo=paris)) == "2026-11-28T12:00:00Z"


def test_canonical_json_is_sorted_and_compact() -> None:
    assert canonical.canonical_json({"b": 1, "a": [1.5, "é"]}) == '{"a":[1.5,"é"],"b":1}'


def test_evidence_hash_is_order_free_and_content_sensitive() -> None:
    a, b = ev("a", 50), ev("b", 60)
    assert canonical.evidence_hash([a, b]) == canonical.evidence_hash([b, a])
    assert canonical.evidence_hash([a, b]) != canonical.evidence_hash(
        [a, dataclasses.replace(b, score=61)]
    )
    assert len(canonical.evidence_hash([])) == 64


def test_policy_hash_changes_with_the_rules() -> None:
    assert canonical.policy_hash(policy()) == canonical.policy_hash(policy())
    assert canonical.policy_hash(policy()) != canonical.policy_hash(policy(minimum_score=10))
    # the version number labels the rules; it is not one of them
    assert canonical.policy_hash(policy(version=2)) == canonical.policy_hash(policy())


def test_evidence_to_dict() -> None:
    crit = normalise.rubric_rating(
        learner="ada",
        competency="stats",
        item="crit",
        rubric=RUBRIC,
        rating="proficient",
        label="Argument",
        attempt=1,
        at=NOW,
        verification=VerificationLevel.SUPERVISED,
    )
    assert canonical.evidence_to_dict(crit) == {
        "learner": "ada",
        "competency": "stats",
        "item": "crit",
        "kind": "rubric",
        "verification": "supervised",
        "rubric": {"beginning": 1.0, "developing": 2.0, "proficient": 3.0, "exemplary": 4.0},
        "rating": "proficient",
        "label": "Argument",
        "attempt": 1,
        "at": "2026-11-28T12:00:00Z",
    }


def test_decision_to_dict() -> None:
    evidence = [
        ev("q", 40, attempt=1, days=3),
        ev("q", 70, attempt=2, days=2),
        ev("late", 90, days=-1),
    ]
    decision = engine.evaluate(evidence, policy(version=4), NOW)
    data = canonical.decision_to_dict(decision)
    json.dumps(data)  # JSON-ready
    assert data["level"] == "intermediate" and data["level_label"] == "Intermediate"
    assert data["score"] == 70.0
    assert data["policy_version"] == 4
    assert data["evaluated_at"] == "2026-11-28T12:00:00Z"
    assert data["failed"] == ["Advanced needs a score of at least 85%; yours is 70%."]
    assert data["next"] == {"level": "advanced", "score_needed": 15.0, "missing": data["failed"]}
    assert [e["attempt"] for e in data["used"]] == [2]
    assert [x["why"] for x in data["excluded"]] == [
        "it was recorded after the evaluation time",
        "another attempt counts (the highest one)",
    ]
    assert data["evidence_hash"] == canonical.evidence_hash(evidence)
    assert data["rules"][0] == {
        "rule": "score",
        "level": "beginning",
        "passed": True,
        "reason": "Beginning needs a score of at least 50%; yours is 70%.",
    }


def test_decision_to_dict_without_score_or_gap() -> None:
    nothing = canonical.decision_to_dict(engine.evaluate([], policy(), NOW, learner="ada"))
    assert nothing["score"] is None and nothing["next"]["score_needed"] == 50.0
    top = canonical.decision_to_dict(engine.evaluate([ev(score=100)], policy(), NOW))
    assert top["next"] is None
    floor_only = policy(levels={"beginning": {"threshold": 10, "floor": "50%"}})
    short = canonical.decision_to_dict(engine.evaluate([ev(score=40)], floor_only, NOW))
    assert short["next"]["score_needed"] is None
