"""Invariants of evaluate(), checked on generated policies and evidence (hypothesis)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from service.assessment import canonical, engine, parse
from service.assessment.types import (
    AggregationMethod,
    AttemptGrading,
    Decision,
    Evidence,
    Level,
    Policy,
    VerificationLevel,
)
from tests.assessment.build import NOW

ITEMS = ("quiz-1", "quiz-2", "essay", "exam")
LEVELS = (Level.BEGINNING, Level.INTERMEDIATE, Level.ADVANCED)


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    chosen = draw(st.lists(st.sampled_from(LEVELS), min_size=1, max_size=3, unique=True))
    thresholds = sorted(draw(st.lists(st.integers(0, 100), min_size=3, max_size=3)))
    levels: dict[str, Any] = {}
    for level in sorted(chosen):
        entry: dict[str, Any] = {"threshold": f"{thresholds[level - 1]}%"}
        if draw(st.booleans()):
            entry["verification"] = draw(st.sampled_from(list(VerificationLevel))).key
        if draw(st.booleans()):
            entry["floor"] = f"{draw(st.integers(0, 100))}%"
        if draw(st.booleans()):
            entry["floors"] = {draw(st.sampled_from(ITEMS)): f"{draw(st.integers(0, 100))}%"}
        levels[level.key] = entry
    doc: dict[str, Any] = {
        "competency": "stats",
        "levels": levels,
        "aggregation": draw(st.sampled_from(list(AggregationMethod))).value,
        "weight": f"{draw(st.integers(1, 100))}%",
        "n": draw(st.integers(1, 4)),
        "attempt_grading": draw(st.sampled_from(list(AttemptGrading))).value,
    }
    if draw(st.booleans()):
        doc["minimum_score"] = f"{draw(st.integers(0, 100))}%"
    if draw(st.booleans()):
        doc["max_attempts"] = draw(st.integers(1, 3))
    if draw(st.booleans()):
        doc["recency_days"] = draw(st.integers(1, 400))
    if draw(st.booleans()):
        doc["items"] = draw(st.lists(st.sampled_from(ITEMS), min_size=1, unique=True))
        doc["required"] = draw(st.sampled_from(["all", 0, 1, 2]))
    elif draw(st.booleans()):
        doc["required"] = draw(st.integers(0, 3))
    return parse.read_policy(doc)


@st.composite
def evidence_lists(draw: st.DrawFn) -> list[Evidence]:
    count = draw(st.integers(0, 8))
    # Distinct times keep "later" well defined; a few results have no time at all.
    offsets = draw(st.lists(st.integers(-30, 500), min_size=count, max_size=count, unique=True))
    out: list[Evidence] = []
    numbered: dict[str, int] = {}
    for offset in offsets:
        item = draw(st.sampled_from(ITEMS))
        attempt = None
        if draw(st.booleans()):
            attempt = numbered[item] = numbered.get(item, 0) + 1
        out.append(
            Evidence(
                learner="ada",
                competency="stats",
                item=item,
                score=draw(st.floats(0, 20, allow_nan=False)),
                max_score=20,
                attempt=attempt,
                at=None if offset == 500 else NOW - dt.timedelta(days=offset),
                verification=draw(st.sampled_from(list(VerificationLevel))),
            )
        )
    return out


def decide(evidence: list[Evidence], policy: Policy) -> Decision:
    return engine.evaluate(evidence, policy, NOW, learner="ada")


@settings(max_examples=300)
@given(policies(), evidence_lists(), st.data())
def test_more_score_never_lowers_the_level(
    policy: Policy, evidence: list[Evidence], data: st.DataObject
) -> None:
    before = decide(evidence, policy)
    if evidence:
        i = data.draw(st.integers(0, len(evidence) - 1))
        raised = data.draw(st.floats(evidence[i].score, 20, allow_nan=False))
        evidence = [
            *evidence[:i],
            dataclasses.replace(evidence[i], score=raised),
            *evidence[i + 1 :],
        ]
    assert decide(evidence, policy).level >= before.level


@settings(max_examples=300)
@given(policies(), evidence_lists())
def test_a_level_whose_verification_is_unmet_is_never_granted(
    policy: Policy, evidence: list[Evidence]
) -> None:
    decision = decide(evidence, policy)
    for level, rule in policy.ladder:
        if level > decision.level:
            break
        assert any(ev.verification >= rule.verification for ev in decision.used), (level, rule)
        # a used result at that verification is not one the rules left out
        assert all(ev.at is None or ev.at <= NOW for ev in decision.used)


@settings(max_examples=300)
@given(policies(), evidence_lists(), st.randoms(use_true_random=False))
def test_decisions_do_not_depend_on_the_order_of_evidence(
    policy: Policy, evidence: list[Evidence], rnd: Any
) -> None:
    shuffled = list(evidence)
    rnd.shuffle(shuffled)
    assert decide(shuffled, policy) == decide(evidence, policy)
    assert canonical.evidence_hash(shuffled) == canonical.evidence_hash(evidence)


@given(policies())
def test_no_evidence_gives_no_level(policy: Policy) -> None:
    decision = decide([], policy)
    assert decision.level is Level.NONE
    assert decision.used == () and decision.score is None


@settings(max_examples=300)
@given(policies(), evidence_lists())
def test_the_explanation_names_every_failed_rule(policy: Policy, evidence: list[Evidence]) -> None:
    decision = decide(evidence, policy)
    failed = [r for r in decision.rules if not r.passed]
    as_data = canonical.decision_to_dict(decision)
    assert as_data["failed"] == [r.reason for r in failed]
    for rule in failed:
        assert rule.reason
        if rule.level is not None:
            assert rule.reason.startswith(rule.level.label)
    top = policy.ladder[-1][0]
    if decision.level < top:
        # something stands between the learner and the next level, and it is named
        assert decision.gap is not None and decision.gap.level > decision.level
        assert decision.gap.missing
        assert all(r in failed for r in decision.gap.missing)
        assert as_data["next"]["missing"] == [r.reason for r in decision.gap.missing]
    else:
        assert decision.gap is None


@settings(max_examples=200)
@given(policies(), evidence_lists())
def test_every_level_up_to_the_one_reached_is_fully_met(
    policy: Policy, evidence: list[Evidence]
) -> None:
    decision = decide(evidence, policy)
    for rule in decision.rules:
        applies = rule.level is None or rule.level <= decision.level
        if applies and decision.level is not Level.NONE:
            assert rule.passed, rule


@settings(max_examples=200)
@given(policies())
def test_policy_documents_round_trip(policy: Policy) -> None:
    again = parse.read_policy(parse.policy_to_dict(policy))
    assert parse.policy_to_dict(again) == parse.policy_to_dict(policy)
    assert canonical.policy_hash(again) == canonical.policy_hash(policy)


@settings(max_examples=200)
@given(evidence_lists())
def test_evidence_documents_round_trip(evidence: list[Evidence]) -> None:
    for ev in evidence:
        assert parse.read_evidence(canonical.evidence_to_dict(ev)) == ev
