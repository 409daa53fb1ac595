"""evaluate(): band edges on both sides, every rule, the ladder, the explanation."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from service.assessment import engine, normalise, parse
from service.assessment.types import (
    Evidence,
    EvidenceError,
    Level,
    Policy,
    PolicyError,
    RuleKind,
    VerificationLevel,
)
from tests.assessment.build import NOW, RUBRIC, days_ago, ev, policy

V = VerificationLevel


def level_for(*evidence: Evidence, **doc: Any) -> Level:
    return engine.evaluate(list(evidence), policy(**doc), NOW).level


# --- score bands: both sides of every edge -------------------------------------------

BANDS = {"beginning": 50, "intermediate": 65, "advanced": 85}


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        (0, Level.NONE),
        (4999, Level.NONE),
        (5000, Level.BEGINNING),
        (6499, Level.BEGINNING),
        (6500, Level.INTERMEDIATE),
        (8499, Level.INTERMEDIATE),
        (8500, Level.ADVANCED),
        (10000, Level.ADVANCED),
    ],
)
def test_band_edges(points: int, expected: Level) -> None:
    assert level_for(ev(score=points, max_score=10000), levels=BANDS) is expected


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        # 13/20 is exactly 65% although 13 / 20 * 100 is not exact in binary floating point.
        ([(13, 20)], Level.INTERMEDIATE),
        ([(6, 10), (7, 10)], Level.INTERMEDIATE),  # average 0.65000000000000002
        ([(1, 3), (2, 3)], Level.BEGINNING),  # 50%
        ([(17, 20)], Level.ADVANCED),  # 85%
    ],
)
def test_band_edges_are_exact_despite_binary_fractions(
    scores: list[tuple[int, int]], expected: Level
) -> None:
    evidence = [ev(f"q{i}", s, m, days=10 - i) for i, (s, m) in enumerate(scores)]
    assert level_for(*evidence, levels=BANDS, aggregation="average") is expected


def test_threshold_reason_names_the_band_and_the_score() -> None:
    decision = engine.evaluate([ev(score=60)], policy(), NOW)
    band = [r for r in decision.rules if r.kind is RuleKind.THRESHOLD]
    assert [r.passed for r in band] == [True, False, False]
    assert band[1].reason == "Intermediate needs a score of at least 65%; yours is 60%."
    assert decision.gap is not None
    assert decision.gap.level is Level.INTERMEDIATE
    assert decision.gap.score_needed == pytest.approx(0.05)


def test_a_score_just_below_a_band_is_never_shown_as_reaching_it() -> None:
    decision = engine.evaluate([ev(score=64.999, max_score=100)], policy(), NOW)
    assert "yours is 64.99%" in decision.rules[1].reason


# --- verification ---------------------------------------------------------------------

ADVANCED_VERIFIED = {
    "beginning": 50,
    "intermediate": 65,
    "advanced": {"threshold": 85, "verification": "supervised-online-verified"},
}


@pytest.mark.parametrize(
    ("verification", "expected"),
    [
        (V.UNSUPERVISED, Level.INTERMEDIATE),
        (V.AUTHENTICATED, Level.INTERMEDIATE),
        (V.SUPERVISED, Level.INTERMEDIATE),  # one step below the requirement
        (V.SUPERVISED_ONLINE_VERIFIED, Level.ADVANCED),  # exactly the requirement
        (V.SUPERVISED_ONSITE_VERIFIED, Level.ADVANCED),  # above it
    ],
)
def test_verification_edges(verification: V, expected: Level) -> None:
    exam = ev("exam", 95, verification=verification)
    assert level_for(exam, levels=ADVANCED_VERIFIED) is expected


def test_unverified_sitting_is_named_in_the_reason() -> None:
    exam = ev("quiz-3", 95, label="quiz 3", attempt=1)
    decision = engine.evaluate([exam], policy(levels=ADVANCED_VERIFIED), NOW)
    assert decision.level is Level.INTERMEDIATE
    [failed] = decision.failed
    assert failed.kind is RuleKind.VERIFICATION
    assert failed.reason == (
        "Advanced needs a supervised, identity-verified sitting; "
        "your quiz 3 attempt 1 was unsupervised."
    )


def test_verified_results_must_reach_the_band_on_their_own() -> None:
    homework = ev("homework", 100, days=20)
    exam = ev("exam", 80, days=5, verification=V.SUPERVISED_ONSITE_VERIFIED)
    doc = {"levels": ADVANCED_VERIFIED, "aggregation": "highest"}
    decision = engine.evaluate([homework, exam], policy(**doc), NOW)
    assert decision.score == 1.0
    assert decision.level is Level.INTERMEDIATE
    [failed] = decision.failed
    assert failed.reason == (
        "Advanced needs a supervised, identity-verified sitting with a score of at least 85%; "
        "your results from such sittings give 80%."
    )


def test_verification_met_names_the_sittings() -> None:
    exam = ev("exam", 90, label="Final exam", verification=V.SUPERVISED_ONSITE_VERIFIED)
    decision = engine.evaluate([exam], policy(levels=ADVANCED_VERIFIED), NOW)
    check = next(r for r in decision.rules if r.kind is RuleKind.VERIFICATION)
    assert check.passed
    assert (
        check.reason == "Advanced needs a supervised, identity-verified sitting: met by Final exam."
    )


def test_verification_reason_names_the_closest_sitting() -> None:
    evidence = [
        ev("a", 95, days=9),
        ev("b", 90, days=8, verification=V.AUTHENTICATED),
        ev("c", 99, days=7),
        ev("d", 96, days=6, verification=V.SUPERVISED),
        ev("e", 97, days=5),
    ]
    decision = engine.evaluate(evidence, policy(levels=ADVANCED_VERIFIED), NOW)
    [failed] = decision.failed
    assert failed.reason == (
        "Advanced needs a supervised, identity-verified sitting; none of your 5 results was such "
        "a sitting; the best-verified was d: supervised without an identity check."
    )


def test_verification_with_no_results() -> None:
    decision = engine.evaluate([], policy(levels=ADVANCED_VERIFIED), NOW, learner="ada")
    check = next(r for r in decision.rules if r.kind is RuleKind.VERIFICATION)
    assert check.reason == (
        "Advanced needs a supervised, identity-verified sitting; there are no counted results yet."
    )


def test_verification_under_n_mastery_with_too_few_verified_results() -> None:
    evidence = [
        ev("a", 95, days=3, verification=V.SUPERVISED),
        ev("b", 95, days=2),
    ]
    doc = {
        "aggregation": {"method": "n_mastery", "n": 2},
        "levels": {"beginning": 50, "advanced": {"threshold": 85, "verification": "supervised"}},
    }
    decision = engine.evaluate(evidence, policy(**doc), NOW)
    assert decision.level is Level.BEGINNING
    check = next(r for r in decision.rules if r.kind is RuleKind.VERIFICATION)
    assert check.reason.endswith("your results from such sittings give too few results.")


# --- floors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weakest", "expected"), [(4999, Level.BEGINNING), (5000, Level.INTERMEDIATE)]
)
def test_floor_edges(weakest: int, expected: Level) -> None:
    levels = {"beginning": 50, "intermediate": {"threshold": 65, "floor": "50%"}}
    evidence = [ev("a", 10000, 10000, days=2), ev("b", weakest, 10000, days=1)]
    assert level_for(*evidence, levels=levels, aggregation="average") is expected


def rubric(item: str, rating: str, **kw: Any) -> Evidence:
    return normalise.rubric_rating(
        learner="ada",
        competency="stats",
        item=item,
        rubric=RUBRIC,
        rating=rating,
        at=days_ago(5),
        **kw,
    )


@pytest.mark.parametrize(
    ("rating", "expected"),
    [
        ("developing", Level.BEGINNING),
        ("proficient", Level.INTERMEDIATE),
        ("exemplary", Level.INTERMEDIATE),
    ],
)
def test_rubric_floor_edges(rating: str, expected: Level) -> None:
    levels = {"beginning": 20, "intermediate": {"threshold": 40, "floor": "proficient"}}
    evidence = [rubric("crit-a", "exemplary"), rubric("crit-b", rating), ev("quiz", 100)]
    assert level_for(*evidence, levels=levels, aggregation="average") is expected


def test_rubric_floor_reason_names_the_criterion_and_rating() -> None:
    levels = {"beginning": 20, "intermediate": {"threshold": 40, "floor": "proficient"}}
    decision = engine.evaluate(
        [rubric("crit-a", "developing", label="Argument")], policy(levels=levels), NOW
    )
    [failed] = decision.failed
    assert failed.kind is RuleKind.FLOOR
    assert failed.reason == (
        'Intermediate needs every rubric criterion rated "proficient" or above; '
        'Argument was rated "developing".'
    )


def test_rubric_floor_ignores_results_without_a_rubric() -> None:
    levels = {"beginning": {"threshold": 10, "floor": "proficient"}}
    assert level_for(ev("quiz", 20), levels=levels) is Level.BEGINNING
    per_item = {"beginning": {"threshold": 10, "floors": {"quiz": "proficient"}}}
    assert level_for(ev("quiz", 20), levels=per_item) is Level.BEGINNING


def test_rubric_floor_naming_a_missing_rating_is_a_policy_error() -> None:
    levels = {"beginning": {"threshold": 10, "floor": "mastered"}}
    with pytest.raises(PolicyError) as caught:
        engine.evaluate([rubric("crit-a", "proficient")], policy(levels=levels), NOW)
    assert caught.value.field == "levels.beginning.floor"
    assert caught.value.message == (
        "asks for \"mastered\", but the rubric of 'crit-a' has no such level "
        "(it has beginning, developing, proficient, exemplary)"
    )
    per_item = {"beginning": {"threshold": 10, "floors": {"crit-a": "mastered"}}}
    with pytest.raises(PolicyError) as caught:
        engine.evaluate([rubric("crit-a", "proficient")], policy(levels=per_item), NOW)
    assert caught.value.field == "levels.beginning.floors.crit-a"


@pytest.mark.parametrize(
    ("essay", "expected"), [(59.99, Level.BEGINNING), (60, Level.INTERMEDIATE)]
)
def test_item_floor_edges(essay: float, expected: Level) -> None:
    levels = {"beginning": 50, "intermediate": {"threshold": 65, "floors": {"essay": "60%"}}}
    evidence = [ev("essay", essay, days=2), ev("quiz", 100, days=1)]
    assert level_for(*evidence, levels=levels, aggregation="average") is expected


def test_item_floor_reasons() -> None:
    levels = {
        "beginning": {"threshold": 10, "floors": {"essay": "60%", "crit": "proficient", "lab": 50}}
    }
    items = [{"item": "lab", "label": "Lab report"}, "essay", "crit"]
    decision = engine.evaluate(
        [ev("essay", 40, days=3), rubric("crit", "developing")],
        policy(levels=levels, items=items),
        NOW,
    )
    [failed] = decision.failed
    assert failed.reason == (
        "Beginning needs minimums for crit, essay, Lab report; "
        'crit was rated "developing" (it must reach "proficient"); '
        "essay scored 40% (it must reach 60%); "
        "Lab report has no result yet (it must reach 50%)."
    )


def test_floor_met_reason() -> None:
    levels = {"beginning": {"threshold": 10, "floor": "30%"}}
    decision = engine.evaluate([ev(score=40)], policy(levels=levels), NOW)
    assert (
        decision.rules[-1].reason
        == "Beginning needs every result at 30% or above; all of yours meet it."
    )


def test_averaged_attempts_are_shown_by_score_in_floor_reasons() -> None:
    levels = {"beginning": {"threshold": 10, "floor": "proficient"}}
    evidence = [rubric("crit", "developing", attempt=1), rubric("crit", "proficient", attempt=2)]
    decision = engine.evaluate(evidence, policy(levels=levels, attempt_grading="average"), NOW)
    assert "crit attempt 1 scored 62.5%" in decision.failed[0].reason


# --- rules for every level ------------------------------------------------------------


@pytest.mark.parametrize(("score", "expected"), [(39.99, Level.NONE), (40, Level.BEGINNING)])
def test_overall_minimum_edges(score: float, expected: Level) -> None:
    levels = {"beginning": 20, "intermediate": 65}
    assert level_for(ev(score=score), levels=levels, minimum_score="40%") is expected


def test_overall_minimum_reason() -> None:
    decision = engine.evaluate([ev(score=30)], policy(minimum_score=40), NOW)
    [minimum] = [r for r in decision.rules if r.kind is RuleKind.MINIMUM]
    assert minimum.reason == "Every level needs an overall score of at least 40%; yours is 30%."
    assert minimum.level is None and not minimum.passed


@pytest.mark.parametrize(("count", "expected"), [(2, Level.NONE), (3, Level.ADVANCED)])
def test_at_least_n_items_edges(count: int, expected: Level) -> None:
    evidence = [ev(f"q{i}", 90, days=i + 1) for i in range(count)]
    assert level_for(*evidence, required={"at_least": 3}) is expected


def test_attempts_of_one_item_count_once_towards_at_least_n() -> None:
    evidence = [ev("q", 90, attempt=n, days=5 - n) for n in (1, 2, 3)]
    decision = engine.evaluate(evidence, policy(required=2), NOW)
    assert decision.level is Level.NONE
    assert (
        decision.failed[0].reason
        == "Results from at least 2 different items are needed; you have only 1."
    )


@pytest.mark.parametrize(
    ("present", "expected"), [(("a", "b"), Level.NONE), (("a", "b", "c"), Level.ADVANCED)]
)
def test_all_mapped_items_required(present: tuple[str, ...], expected: Level) -> None:
    evidence = [ev(item, 90) for item in present]
    assert level_for(*evidence, items=["a", "b", "c"], required="all") is expected


def test_required_all_reasons() -> None:
    items = [{"item": "a", "label": "Quiz A"}, "b"]
    missing = engine.evaluate([ev("b", 90)], policy(items=items, required="all"), NOW)
    assert missing.failed[0].reason == "Every mapped item needs a result; missing: Quiz A."
    complete = engine.evaluate([ev("a", 90), ev("b", 90)], policy(items=items, required="all"), NOW)
    assert complete.rules[0].reason == "All 2 mapped items have a result."


def test_unmapped_items_do_not_count() -> None:
    decision = engine.evaluate([ev("a", 40), ev("other", 100)], policy(items=["a"]), NOW)
    assert decision.score == 0.4
    [(left_out, why)] = decision.excluded
    assert left_out.item == "other"
    assert why == "it is not one of the items mapped to this competency"


@pytest.mark.parametrize(("attempt", "counted"), [(3, True), (4, False)])
def test_attempt_limit_edges(attempt: int, counted: bool) -> None:
    evidence = [ev("q", 30, attempt=1, days=5), ev("q", 95, attempt=attempt, days=1)]
    decision = engine.evaluate(evidence, policy(max_attempts=3, attempt_grading="last"), NOW)
    assert (decision.score == 0.95) is counted
    assert (decision.level is Level.ADVANCED) is counted


def test_attempt_limit_reasons_and_unnumbered_attempts() -> None:
    # Without numbers, attempts of one item are numbered by time.
    evidence = [ev("q", 50, days=3), ev("q", 60, days=2), ev("q", 99, days=1, label="Quiz")]
    decision = engine.evaluate(evidence, policy(max_attempts=2, attempt_grading="last"), NOW)
    assert decision.score == 0.6
    rule = decision.rules[0]
    assert rule.kind is RuleKind.ATTEMPTS and rule.passed
    assert rule.reason == "At most 2 attempts per item count; not counted: Quiz."
    quiet = engine.evaluate(evidence[:2], policy(max_attempts=2), NOW)
    assert (
        quiet.rules[0].reason
        == "At most 2 attempts per item count; all of your attempts are within it."
    )


def test_an_unnumbered_result_sent_twice_is_one_attempt() -> None:
    # The same result twice must not push the real second attempt past the limit.
    first = ev("q", 50, days=3)
    evidence = [first, first, ev("q", 90, days=1)]
    decision = engine.evaluate(evidence, policy(max_attempts=2, attempt_grading="last"), NOW)
    assert decision.score == 0.9
    assert decision.level is Level.ADVANCED
    whys = [why for _, why in decision.excluded]
    assert "it is the same result as another one, sent twice" in whys
    assert "only 2 attempts are allowed" not in whys
    # Equal scores at different times are two attempts, not a duplicate.
    twice = [ev("q", 50, days=3), ev("q", 50, days=2), ev("q", 90, days=1)]
    limited = engine.evaluate(twice, policy(max_attempts=2, attempt_grading="last"), NOW)
    assert limited.score == 0.5


@pytest.mark.parametrize(
    ("age", "counted"), [(dt.timedelta(days=30), True), (dt.timedelta(days=30, seconds=1), False)]
)
def test_recency_edges(age: dt.timedelta, counted: bool) -> None:
    decision = engine.evaluate([ev(score=90, at=NOW - age)], policy(recency_days=30), NOW)
    assert (decision.level is Level.ADVANCED) is counted


def test_recency_reasons() -> None:
    old = ev("old", 90, at=dt.datetime(2024, 1, 5, tzinfo=dt.UTC))
    undated = ev("undated", 90, days=None)
    decision = engine.evaluate([old, undated], policy(recency_days=365), NOW)
    assert decision.level is Level.NONE
    assert (
        decision.rules[0].reason
        == "Only results from the last 365 days count; not counted: undated, old."
    )
    assert {x.why for x in decision.excluded} == {
        "it has no date; only the last 365 days count",
        "it is from 2024-01-05; only the last 365 days count",
    }
    fresh = engine.evaluate([ev(score=90)], policy(recency_days=365), NOW)
    assert (
        fresh.rules[0].reason
        == "Only results from the last 365 days count; all of yours are recent enough."
    )


@pytest.mark.parametrize(
    ("offset", "counted"), [(dt.timedelta(0), True), (dt.timedelta(seconds=1), False)]
)
def test_results_after_now_do_not_count(offset: dt.timedelta, counted: bool) -> None:
    decision = engine.evaluate([ev(score=90, at=NOW + offset)], policy(), NOW)
    assert (decision.level is Level.ADVANCED) is counted
    if not counted:
        assert decision.excluded[0].why == "it was recorded after the evaluation time"


# --- the ladder, the gap, the decision -----------------------------------------------


def test_levels_are_a_ladder() -> None:
    # Advanced's own rules are met, but Intermediate's floor is not: Beginning only.
    levels = {
        "beginning": 50,
        "intermediate": {"threshold": 65, "floor": "60%"},
        "advanced": 85,
    }
    decision = engine.evaluate(
        [ev("a", 100, days=2), ev("b", 55, days=1)],
        policy(levels=levels, aggregation="highest"),
        NOW,
    )
    assert decision.level is Level.BEGINNING
    assert decision.gap is not None and decision.gap.level is Level.INTERMEDIATE
    assert [r.kind for r in decision.gap.missing] == [RuleKind.FLOOR]
    assert decision.gap.score_needed is None
    # every level's rules are still reported
    assert [r.level for r in decision.rules] == [
        Level.BEGINNING,
        Level.INTERMEDIATE,
        Level.INTERMEDIATE,
        Level.ADVANCED,
    ]


def test_a_policy_may_define_only_some_levels() -> None:
    levels = {"advanced": {"threshold": 80}}
    assert level_for(ev(score=79), levels=levels) is Level.NONE
    assert level_for(ev(score=80), levels=levels) is Level.ADVANCED


def test_no_evidence_no_level() -> None:
    decision = engine.evaluate([], policy(), NOW, learner="ada")
    assert decision.level is Level.NONE
    assert decision.score is None
    assert decision.learner == "ada" and decision.competency == "stats"
    assert (
        decision.rules[0].reason
        == "Beginning needs a score of at least 50%; there are no counted results yet."
    )
    assert decision.gap is not None and decision.gap.score_needed == 0.5


def test_top_level_reached_has_no_gap() -> None:
    decision = engine.evaluate([ev(score=100)], policy(), NOW)
    assert decision.level is Level.ADVANCED
    assert decision.gap is None and decision.failed == ()


def test_decision_records_evidence_and_policy_version() -> None:
    a1 = ev("q", 50, attempt=1, days=3)
    a2 = ev("q", 80, attempt=2, days=2)
    decision = engine.evaluate([a2, a1], policy(version=7), NOW)
    assert decision.used == (a2,)
    assert [(x.evidence, x.why) for x in decision.excluded] == [
        (a1, "another attempt counts (the highest one)")
    ]
    assert decision.policy_version == 7
    assert decision.evaluated_at == NOW
    assert decision.score_basis.startswith("weighted average")


def test_average_attempt_grading_uses_every_attempt() -> None:
    evidence = [ev("q", 50, attempt=1, days=3), ev("q", 80, attempt=2, days=2)]
    decision = engine.evaluate(evidence, policy(attempt_grading="average"), NOW)
    assert decision.score == pytest.approx(0.65)
    assert len(decision.used) == 2 and decision.excluded == ()


def test_n_mastery_reasons() -> None:
    doc = {"aggregation": "n_mastery", "n": 2}
    decision = engine.evaluate([ev("a", 90, days=2), ev("b", 60, days=1)], policy(**doc), NOW)
    assert decision.level is Level.BEGINNING
    assert (
        decision.rules[1].reason
        == "Intermediate needs at least 2 results of 65% or more; 1 of yours is."
    )
    assert (
        decision.rules[0].reason
        == "Beginning needs at least 2 results of 50% or more; 2 of yours are."
    )


# --- malformed input ------------------------------------------------------------------


def test_mixed_learners_are_an_error() -> None:
    with pytest.raises(EvidenceError) as caught:
        engine.evaluate([ev(learner="ada"), ev("q2", learner="bob")], policy(), NOW)
    assert caught.value.field == "evidence[1].learner"


def test_learner_argument_must_match_the_evidence() -> None:
    with pytest.raises(EvidenceError) as caught:
        engine.evaluate([ev(learner="bob")], policy(), NOW, learner="ada")
    assert caught.value.field == "evidence[0].learner"


def test_other_competency_is_an_error() -> None:
    with pytest.raises(EvidenceError) as caught:
        engine.evaluate([ev(), ev("q2", competency="writing")], policy(), NOW)
    assert caught.value.field == "evidence[1].competency"
    assert "'stats'" in caught.value.message and "'writing'" in caught.value.message


def _any_policy() -> Policy:
    return parse.read_policy({"levels": {"beginning": 50}})


def test_a_policy_for_any_competency_takes_the_evidence_one() -> None:
    decision = engine.evaluate([ev(competency="writing")], _any_policy(), NOW)
    assert decision.competency == "writing"


def test_duplicate_attempts_are_an_error() -> None:
    with pytest.raises(EvidenceError) as caught:
        engine.evaluate([ev("q", 50, attempt=2), ev("q", 60, attempt=2)], policy(), NOW)
    assert caught.value.field == "evidence[1].attempt"
    assert "'q' attempt 2 appears twice" in caught.value.message


def test_now_needs_a_time_zone() -> None:
    with pytest.raises(EvidenceError) as caught:
        engine.evaluate([], policy(), NOW.replace(tzinfo=None))
    assert caught.value.field == "now"


def test_evaluate_accepts_any_iterable() -> None:
    decision = engine.evaluate(iter([ev(score=90)]), policy(), NOW)
    assert decision.level is Level.ADVANCED
