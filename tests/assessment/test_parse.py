"""Reading documents: forgiving about form, strict about meaning, precise about where."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.assessment import parse, reading
from service.assessment.types import (
    AggregationMethod,
    AttemptGrading,
    Evidence,
    EvidenceError,
    Floor,
    Level,
    MappedItem,
    PolicyError,
    VerificationLevel,
)

# --- scalars --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "fraction"),
    [
        ("70%", 0.7),
        (" 70 % ", 0.7),
        (70, 0.7),
        (70.5, 0.705),
        ("70", 0.7),
        (0.7, 0.7),
        ("0.7", 0.7),
        (1, 1.0),
        (0, 0.0),
        ("100%", 1.0),
        ("0.5%", 0.005),
    ],
)
def test_percentages(value: Any, fraction: float) -> None:
    assert parse.parse_fraction(value, "f") == pytest.approx(fraction)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "not True"),
        ("lots", "not 'lots'"),
        ("x%", "not 'x%'"),
        (None, "not nothing"),
        ([70], "not a list"),
        (101, "between 0% and 100%"),
        ("-5%", "between 0% and 100%"),
        (float("nan"), "between 0% and 100%"),
    ],
)
def test_bad_percentages(value: Any, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse.parse_fraction(value, "levels.beginning.threshold")
    assert caught.value.field == "levels.beginning.threshold"
    assert message in caught.value.message


@pytest.mark.parametrize(
    ("value", "level"),
    [
        ("supervised-online-verified", VerificationLevel.SUPERVISED_ONLINE_VERIFIED),
        ("Supervised online verified", VerificationLevel.SUPERVISED_ONLINE_VERIFIED),
        ("supervised_onsite_verified", VerificationLevel.SUPERVISED_ONSITE_VERIFIED),
        ("proctored", VerificationLevel.SUPERVISED_ONLINE_VERIFIED),
        ("online proctored", VerificationLevel.SUPERVISED_ONLINE_VERIFIED),
        ("in-person verified", VerificationLevel.SUPERVISED_ONSITE_VERIFIED),
        ("on-site verified", VerificationLevel.SUPERVISED_ONSITE_VERIFIED),
        ("none", VerificationLevel.UNSUPERVISED),
        ("LMS", VerificationLevel.AUTHENTICATED),
        (3, VerificationLevel.SUPERVISED),
    ],
)
def test_verification_names(value: Any, level: VerificationLevel) -> None:
    assert parse.parse_verification(value, "v") is level


@pytest.mark.parametrize("value", ["proctord", 0, 6, True, None])
def test_bad_verification_lists_the_five_levels(value: Any) -> None:
    with pytest.raises(PolicyError) as caught:
        parse.parse_verification(value, "v")
    assert caught.value.message.endswith(
        "is not one of: unsupervised, authenticated, supervised, "
        "supervised-online-verified, supervised-onsite-verified"
    )


def test_levels_by_name() -> None:
    assert parse.parse_level("Intermediate", "l") is Level.INTERMEDIATE
    with pytest.raises(
        PolicyError, match="'none' is not one of: beginning, intermediate, advanced"
    ):
        parse.parse_level("none", "l")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-28T14:30:00Z", dt.datetime(2026, 11, 28, 14, 30, tzinfo=dt.UTC)),
        (
            "2026-11-28T15:30:00+01:00",
            dt.datetime(2026, 11, 28, 14, 30, tzinfo=dt.UTC),
        ),
        ("2026-11-28 14:30", dt.datetime(2026, 11, 28, 14, 30, tzinfo=dt.UTC)),
        ("2026-11-28", dt.datetime(2026, 11, 28, tzinfo=dt.UTC)),
        (dt.date(2026, 11, 28), dt.datetime(2026, 11, 28, tzinfo=dt.UTC)),
        (dt.datetime(2026, 11, 28, 14, 30), dt.datetime(2026, 11, 28, 14, 30, tzinfo=dt.UTC)),
    ],
)
def test_datetimes(value: Any, expected: dt.datetime) -> None:
    parsed = parse.parse_datetime(value, "at", EvidenceError)
    assert parsed == expected and parsed.utcoffset() is not None


@pytest.mark.parametrize("value", ["yesterday", 20261128, None])
def test_bad_datetimes(value: Any) -> None:
    with pytest.raises(EvidenceError, match="such as 2026-11-28T14:30:00Z"):
        parse.parse_datetime(value, "at", EvidenceError)


@pytest.mark.parametrize(
    ("value", "days"),
    [
        (30, 30),
        ("30", 30),
        ("90 days", 90),
        ("1 day", 1),
        ("12 weeks", 84),
        ("6 months", 180),
        ("2 years", 730),
        ("1y", 365),
        ("P1Y", 365),
        ("P18M", 540),
        ("P2W", 14),
        ("P10D", 10),
        ("p1y2m", 425),
    ],
)
def test_recency_periods(value: Any, days: int) -> None:
    assert parse.read_policy({"levels": {"beginning": 50}, "recency": value}).recency_days == days


@pytest.mark.parametrize("value", ["soon", "P", "0 days", 0, 1.5, True, ["x"]])
def test_bad_recency_periods(value: Any) -> None:
    with pytest.raises(PolicyError) as caught:
        parse.read_policy({"levels": {"beginning": 50}, "recency": value})
    assert caught.value.field == "recency"


@pytest.mark.parametrize("value", [None, "none", "off"])
def test_no_recency_window(value: Any) -> None:
    assert parse.read_policy({"levels": {"beginning": 50}, "recency": value}).recency_days is None


# --- policies -------------------------------------------------------------------------

FULL = {
    "competency": "stats",
    "version": 3,
    "name": "Statistics",
    "description": "How statistics is assessed",
    "aggregation": {"method": "decaying average", "weight": "75%"},
    "levels": {
        "beginning": "40%",
        "intermediate": {"threshold": 60, "floor": "developing", "floors": {"exam": "50%"}},
        "advanced": {"min_score": 0.8, "verification": "proctored", "floor": "55%"},
    },
    "minimum_score": "30%",
    "items": [{"item": "exam", "label": "Final exam"}, "quiz"],
    "required": "all",
    "attempts": {"max": 2, "grading": "best"},
    "recency_days": "1 year",
}


def test_a_full_policy() -> None:
    policy = parse.read_policy(FULL)
    assert policy.competency == "stats" and policy.version == 3
    assert policy.aggregation is AggregationMethod.DECAYING_AVERAGE and policy.weight == 0.75
    assert [(lv, r.threshold) for lv, r in policy.ladder] == [
        (Level.BEGINNING, 0.4),
        (Level.INTERMEDIATE, 0.6),
        (Level.ADVANCED, 0.8),
    ]
    intermediate = policy.levels[Level.INTERMEDIATE]
    assert intermediate.floor == Floor(rating="developing")
    assert intermediate.item_floors == (("exam", Floor(fraction=0.5)),)
    advanced = policy.levels[Level.ADVANCED]
    assert advanced.verification is VerificationLevel.SUPERVISED_ONLINE_VERIFIED
    assert advanced.floor == Floor(fraction=0.55)
    assert policy.minimum_score == 0.3
    assert policy.items == (MappedItem("exam", "Final exam"), MappedItem("quiz"))
    assert policy.require_all and policy.min_results == 0
    assert policy.max_attempts == 2 and policy.attempt_grading is AttemptGrading.HIGHEST
    assert policy.recency_days == 365


def test_canonical_document_round_trips() -> None:
    policy = parse.read_policy(FULL)
    doc = parse.policy_to_dict(policy)
    assert doc["levels"]["advanced"] == {
        "threshold": "80%",
        "verification": "supervised-online-verified",
        "floor": "55%",
    }
    assert doc["items"] == [{"item": "exam", "label": "Final exam"}, "quiz"]
    assert parse.read_policy(doc) == policy


def test_canonical_document_of_a_small_policy() -> None:
    doc = parse.policy_to_dict(
        parse.read_policy(
            {"levels": {"beginning": 50}, "aggregation": "n_mastery", "n": 2, "required": 2}
        )
    )
    assert doc == {
        "version": 1,
        "aggregation": "n_mastery",
        "n": 2,
        "levels": {"beginning": {"threshold": "50%"}},
        "required": {"at_least": 2},
        "attempt_grading": "highest",
    }


@pytest.mark.parametrize(
    ("doc", "check"),
    [
        (
            {"calculation_method": "most_recent"},
            lambda p: p.aggregation is AggregationMethod.LATEST,
        ),
        ({"method": "n-number-of-times", "times": 3}, lambda p: p.n == 3),
        ({"aggregation": "Weighted Average", "calculation_int": 65}, lambda p: p.weight == 0.65),
        ({"aggregation": {"name": "n_times", "n": 4}}, lambda p: p.n == 4),
        ({"aggregation": {"method": "decaying", "decay": 0.5}}, lambda p: p.weight == 0.5),
        ({"aggregation": "n_mastery", "mastery_count": 2}, lambda p: p.n == 2),
        ({"bands": {"beginning": 50}}, lambda p: Level.BEGINNING in p.levels),
        ({"overall_minimum": 25}, lambda p: p.minimum_score == 0.25),
        (
            {"mapped_items": {"q1": "Quiz 1", "q2": None}},
            lambda p: p.labels == {"q1": "Quiz 1", "q2": "q2"},
        ),
        ({"required_evidence": "at least 2"}, lambda p: p.min_results == 2),
        ({"required": "3 items"}, lambda p: p.min_results == 3),
        ({"required": {"min": 1}}, lambda p: p.min_results == 1),
        ({"required": "none"}, lambda p: (p.require_all, p.min_results) == (False, 0)),
        ({"required": None}, lambda p: (p.require_all, p.min_results) == (False, 0)),
        ({"required": 2}, lambda p: p.min_results == 2),
        ({"max_attempts": "unlimited"}, lambda p: p.max_attempts is None),
        ({"attempts": None}, lambda p: p.max_attempts is None),
        ({"attempt_limit": 3}, lambda p: p.max_attempts == 3),
        (
            {"attempts": {"grading": "first"}},
            lambda p: (p.max_attempts, p.attempt_grading) == (None, AttemptGrading.FIRST),
        ),
        ({"attempts": {"limit": None}}, lambda p: p.max_attempts is None),
        ({"grading": "most recent"}, lambda p: p.attempt_grading is AttemptGrading.LAST),
        ({"Attempt-Grading": "mean"}, lambda p: p.attempt_grading is AttemptGrading.AVERAGE),
        ({"title": "Stats", "notes": "x"}, lambda p: p.competency == ""),
        ({"min_items": 2}, lambda p: p.min_results == 2),
        ({"attempts_allowed": 2}, lambda p: p.max_attempts == 2),
        ({"max_age_days": 30}, lambda p: p.recency_days == 30),
        ({"overall_min": "45%"}, lambda p: p.minimum_score == 0.45),
    ],
)
def test_policy_variants(doc: dict[str, Any], check: Any) -> None:
    base = {} if "bands" in doc else {"levels": {"beginning": 50}}
    assert check(parse.read_policy(base | doc))


@pytest.mark.parametrize(
    ("doc", "field", "message"),
    [
        ({"levels": {"beginning": 50}, "treshold": 5}, "treshold", "unknown field"),
        (
            {"levels": {"beginning": {"treshold": 50}}},
            "levels.beginning.treshold",
            "did you mean 'threshold'?",
        ),
        ({"levels": {"beginning": 50}, "zzz": 1}, "zzz", "unknown field; known: competency"),
        ({"levels": {"expert": 50}}, "levels.expert", "is not one of"),
        (
            {"levels": {"beginning": {"verification": "supervised"}}},
            "levels.beginning.threshold",
            "every level needs a threshold",
        ),
        (
            {"levels": {"beginning": 50}, "minimum": 10, "minimum_score": 10},
            "minimum",
            "means the same as 'minimum_score'",
        ),
        ({"levels": {"beginning": 50}, "Version": 1, "version": 2}, "version", "given twice"),
        ({"levels": []}, "levels", "define at least one"),
        ({"levels": "high"}, "levels", "must be a mapping"),
        ({"levels": ["beginning"]}, "levels[0]", "a mapping with 'level'"),
        ({"levels": [{"threshold": 50}]}, "levels[0]", "needs 'level'"),
        (
            {"levels": [{"level": "beginning", "threshold": 5}, {"level": "beginning"}]},
            "levels[1].level",
            "not a new level name",
        ),
        (
            {"levels": {"beginning": 50}, "thresholds": {"beginning": 60}},
            "thresholds.beginning",
            "also given under 'levels'",
        ),
        ({"thresholds": {"expert": 60}}, "thresholds.expert", "is not one of"),
        ({"levels": {"beginning": 50}, "items": "q1"}, "items", "must be a list of item ids"),
        ({"levels": {"beginning": 50}, "items": [{"label": "x"}]}, "items[0]", "needs an 'item'"),
        ({"levels": {"beginning": 50}, "items": [""]}, "items[0]", "must not be empty"),
        ({"levels": {"beginning": 50}, "items": [["a"]]}, "items[0]", "must be text"),
        ({"levels": {"beginning": 50}, "required": "most"}, "required", "must be 'all'"),
        (
            {"levels": {"beginning": 50}, "required": {"all": True}},
            "required",
            "write 'all' or 'at_least: N'",
        ),
        ({"levels": {"beginning": 50}, "required": -1}, "required", "at least 0"),
        (
            {"levels": {"beginning": 50}, "required": "all"},
            "required",
            "needs the list of mapped items",
        ),
        ({"levels": {"beginning": 50}, "max_attempts": 1.5}, "max_attempts", "whole number"),
        (
            {"levels": {"beginning": 50}, "max_attempts": "three"},
            "max_attempts",
            "must be a number",
        ),
        (
            {"levels": {"beginning": 50}, "max_attempts": [3]},
            "max_attempts",
            "must be a number, not a list",
        ),
        ({"levels": {"beginning": 50}, "max_attempts": float("inf")}, "max_attempts", "finite"),
        ({"levels": {"beginning": 50}, "attempts": {"max": 0}}, "attempts.max", "at least 1"),
        (
            {"levels": {"beginning": 50}, "aggregation": "median"},
            "aggregation",
            "weighted_average, average",
        ),
        (
            {"levels": {"beginning": 50}, "aggregation": {"method": "x"}},
            "aggregation.method",
            "not one of",
        ),
        ({"levels": {"beginning": 50}, "aggregation": {"weight": 0}}, "weight", "more than 0%"),
        ({"levels": {"beginning": 50}, "aggregation": {"w": 1}}, "aggregation.w", "unknown field"),
        ({"levels": {"beginning": 50}, "competency": ""}, "competency", "must not be empty"),
        ({"levels": {"beginning": 50}, "version": 0}, "version", "at least 1"),
        (
            {"levels": {"beginning": 50, "intermediate": 40}},
            "levels.intermediate.threshold",
            "cannot be lower",
        ),
        ({"levels": {"beginning": 50}, 3: 1}, "", "keys must be text"),
    ],
)
def test_policy_errors_name_the_field(doc: dict[Any, Any], field: str, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse.read_policy(doc)
    assert caught.value.field == field
    assert message in caught.value.message


def test_two_names_or_descriptions_for_people_must_agree() -> None:
    """``name``/``title`` and ``description``/``note``/``notes`` are one field each: the
    second of two was dropped silently, so a file's text could vanish from its export."""
    levels = {"beginning": 50}
    for doc, field in (
        ({"name": "Stats", "Title": "Statistics"}, "Title"),
        ({"description": "Senate 2026", "note": "Draft"}, "note"),
        ({"notes": "Senate 2026", "description": "Draft"}, "notes"),
    ):
        with pytest.raises(PolicyError) as caught:
            parse.read_layer(doc | {"levels": levels})
        assert caught.value.field == field
        assert "means the same as" in caught.value.message
        assert "but says something else; give one" in caught.value.message
    agreeing = {"name": "Stats", "title": "Stats", "note": "x", "notes": "x", "levels": levels}
    layer = parse.read_layer(agreeing)
    assert (layer["name"], layer["description"]) == ("Stats", "x")
    assert parse.read_layer(parse.layer_to_dict(layer)) == layer


def test_errors_carry_the_document_path() -> None:
    with pytest.raises(PolicyError) as caught:
        parse.read_policy({"levels": {"beginning": 50, "advanced": 40}}, "policies[2]")
    assert caught.value.field == "policies[2].levels.advanced.threshold"
    with pytest.raises(PolicyError) as caught:
        parse.read_policy({"levels": {"beginning": "x"}}, "policies[2]")
    assert caught.value.field == "policies[2].levels.beginning"


def test_not_a_mapping() -> None:
    with pytest.raises(PolicyError, match="must be a mapping of names to values, not text"):
        parse.read_policy("levels")


def test_levels_as_a_list_or_side_by_side() -> None:
    as_list = parse.read_policy(
        {
            "levels": [
                {"level": "beginning", "threshold": "40%"},
                {"name": "Advanced", "min": 80, "verification": "proctored"},
            ]
        }
    )
    side_by_side = parse.read_policy(
        {
            "thresholds": {"beginning": "40%", "advanced": 80},
            "verification": {"advanced": "supervised-online-verified"},
        }
    )
    assert as_list == side_by_side
    floors = parse.read_policy(
        {"levels": {"beginning": 40}, "floors_by_level": {"beginning": "proficient"}}
    )
    assert floors.levels[Level.BEGINNING].floor == Floor(rating="proficient")
    aliases = parse.read_policy({"levels": {"beginning": {"threshold": 40, "criterion_floor": 30}}})
    assert aliases.levels[Level.BEGINNING].floor == Floor(fraction=0.3)


def test_floor_rating_or_percent() -> None:
    levels = {
        "beginning": {"threshold": 10, "floor": "proficient", "floors": {"a": " 60 % ", "b": 0.5}}
    }
    rule = parse.read_policy({"levels": levels}).levels[Level.BEGINNING]
    assert rule.floor == Floor(rating="proficient")
    assert rule.item_floors == (("a", Floor(fraction=0.6)), ("b", Floor(fraction=0.5)))


# --- layers ---------------------------------------------------------------------------


def test_layers_compose_field_by_field() -> None:
    institution = parse.read_layer(
        {
            "levels": {
                "beginning": 50,
                "intermediate": 65,
                "advanced": {"threshold": 85, "verification": "supervised"},
            },
            "max_attempts": 3,
        }
    )
    course = parse.read_layer({"levels": {"advanced": {"threshold": 90}}, "aggregation": "highest"})
    competency = parse.read_layer({"levels": {"intermediate": None}, "competency": "stats"})
    policy = parse.compose(institution, course, competency)
    assert policy.competency == "stats"
    assert sorted(policy.levels) == [Level.BEGINNING, Level.ADVANCED]
    assert policy.levels[Level.ADVANCED].threshold == 0.9
    assert policy.levels[Level.ADVANCED].verification is VerificationLevel.SUPERVISED
    assert policy.aggregation is AggregationMethod.HIGHEST and policy.max_attempts == 3


def test_a_floor_can_be_removed_by_a_later_layer() -> None:
    base = parse.read_layer({"levels": {"beginning": {"threshold": 50, "floor": "40%"}}})
    override = parse.read_layer({"levels": {"beginning": {"floor": None}}})
    assert parse.compose(base, override).levels[Level.BEGINNING].floor is None


@pytest.mark.parametrize(
    "doc",
    [
        FULL,
        {"levels": {"advanced": {"threshold": "85%"}}},  # partial: only what it sets
        {
            "bands": [{"level": "Beginning", "from": 0.4}, {"name": "advanced", "score": 90}],
            "verification": {"advanced": "proctored"},
            "floors_by_level": {"beginning": "developing"},
            "calculation_method": "n_mastery",
            "mastery_times": 3,
            "required": "none",
        },
        {  # "nothing" values a later layer uses to remove what a lower one sets
            "levels": {"intermediate": None, "beginning": {"floor": None, "floors": {}}},
            "max_attempts": "unlimited",
            "recency": "off",
            "required": 3,
        },
        {  # fractions no short percentage gives exactly
            "levels": {"beginning": {"threshold": 1 / 3, "floors": {"a": "12.3456789%"}}},
            "weight": "66.66666667%",
            "minimum_score": 0.1 + 0.2,
        },
        {"name": "Defaults", "notes": "Senate", "competency": "stats", "version": 2},
    ],
)
def test_a_layer_round_trips_through_its_canonical_document(doc: dict[str, Any]) -> None:
    layer = parse.read_layer(doc)
    assert parse.read_layer(parse.layer_to_dict(layer)) == layer


def test_the_canonical_document_of_a_layer() -> None:
    layer = parse.read_layer(
        {
            "Level-Bands": {
                "Beginning": 0.4,
                "ADVANCED": {"At least": 80, "Min each": "proficient", "Criteria": {"q1": 0.5}},
            },
            "Verification": {"advanced": "proctored"},
            "Attempts": {"max": 2, "grading": "best"},
            "Required": "all",
            "items": {"q1": None},
            "weight": 1 / 3,
        }
    )
    assert parse.layer_to_dict(layer) == {
        "weight": 1 / 3,
        "levels": {
            "beginning": {"threshold": "40%"},
            "advanced": {
                "threshold": "80%",
                "floor": "proficient",
                "floors": {"q1": "50%"},
                "verification": "supervised-online-verified",
            },
        },
        "items": ["q1"],
        "required": "all",
        "max_attempts": 2,
        "attempt_grading": "highest",
    }


@given(st.floats(0.0, 1.0))
def test_a_fraction_is_written_so_it_reads_back_exactly(fraction: float) -> None:
    written = reading.fraction_doc(fraction)
    assert parse.parse_fraction(written, "f") == fraction
    assert isinstance(written, str) or written == fraction


# --- evidence -------------------------------------------------------------------------

ITEM = {"learner": "ada", "competency": "stats", "item": "q1", "score": 7, "max": 10}


@pytest.mark.parametrize(
    ("doc", "check"),
    [
        (ITEM, lambda e: (e.fraction, e.kind) == (0.7, "assignment")),
        (
            {
                "user_id": "ada",
                "competency_id": "stats",
                "quiz": "q1",
                "points": 7,
                "points_possible": 10,
            },
            lambda e: (e.kind, e.learner, e.fraction) == ("quiz", "ada", 0.7),
        ),
        (
            {"student": "ada", "competency": "stats", "assignment_id": "a1", "percent": "85%"},
            lambda e: (e.kind, e.fraction) == ("assignment", 0.85),
        ),
        ({**ITEM, "score": "85%", "max": None} | {}, lambda e: e.fraction == 0.85),
        ({**ITEM, "score": 85, "max": None}, lambda e: e.fraction == 0.85),
        ({**ITEM, "score": 0.85, "max": None}, lambda e: e.fraction == 0.85),
        (
            {"learner": "ada", "competency": "stats", "item": "q", "score": "85%"},
            lambda e: e.fraction == 0.85,
        ),
        (
            {**ITEM, "kind": "Manual", "label": "Viva", "attempt": 2},
            lambda e: (e.kind, e.name) == ("manual", "Viva attempt 2"),
        ),
        (
            {**ITEM, "attempt": None, "at": None, "label": None},
            lambda e: (e.attempt, e.at, e.label) == (None, None, ""),
        ),
        (
            {**ITEM, "graded_at": "2026-10-01"},
            lambda e: e.at == dt.datetime(2026, 10, 1, tzinfo=dt.UTC),
        ),
        (
            {**ITEM, "supervision": "supervised"},
            lambda e: e.verification is VerificationLevel.SUPERVISED,
        ),
        (
            {
                **{k: v for k, v in ITEM.items() if k not in ("score", "max")},
                "rubric": {"low": 1, "high": 3},
                "rating": "low",
            },
            lambda e: (e.kind, e.fraction, e.rating) == ("rubric", 1 / 3, "low"),
        ),
        (
            {
                **{k: v for k, v in ITEM.items() if k not in ("score", "max")},
                "rubric_levels": [{"name": "low", "points": 1}, ["high", "4"]],
                "rubric_level": "high",
            },
            lambda e: e.fraction == 1.0,
        ),
    ],
)
def test_evidence_variants(doc: dict[str, Any], check: Any) -> None:
    doc = {k: v for k, v in doc.items() if not (k == "max" and v is None)}
    assert check(parse.read_evidence(doc))


RUBRIC_ITEM = {"learner": "ada", "competency": "stats", "item": "crit"}


@pytest.mark.parametrize(
    ("doc", "field", "message"),
    [
        (
            {"competency": "stats", "item": "q", "score": 1, "max": 2},
            "evidence[4].learner",
            "is required",
        ),
        (
            {"learner": "ada", "competency": "stats", "score": 1, "max": 2},
            "evidence[4].item",
            "is required",
        ),
        ({**ITEM, "score": 11}, "evidence[4].score", "between 0 and the maximum 10, not 11"),
        ({**ITEM, "max": 0}, "evidence[4].max", "more than 0"),
        ({**ITEM, "max": "ten"}, "evidence[4].max", "must be a number"),
        ({**ITEM, "score": 150, "max": None}, "evidence[4].score", "between 0% and 100%"),
        ({k: v for k, v in ITEM.items() if k != "score"}, "evidence[4].score", "is required"),
        ({**ITEM, "percent": 50}, "evidence[4].percent", "either 'percent' or 'score'"),
        ({**ITEM, "attempt": 0}, "evidence[4].attempt", "at least 1"),
        ({**ITEM, "at": "later"}, "evidence[4].at", "such as"),
        ({**ITEM, "kind": "exam"}, "evidence[4].kind", "rubric, quiz, assignment, manual"),
        ({**ITEM, "verification": "maybe"}, "evidence[4].verification", "is not one of"),
        ({**ITEM, "extra": 1}, "evidence[4].extra", "unknown field"),
        ({**RUBRIC_ITEM, "rating": "high"}, "evidence[4].rubric", "needs both"),
        ({**RUBRIC_ITEM, "rubric": {"high": 1}}, "evidence[4].rating", "needs both"),
        (
            {**RUBRIC_ITEM, "rubric": {"high": 1}, "rating": "high", "score": 1},
            "evidence[4].score",
            "from the rubric",
        ),
        (
            {**RUBRIC_ITEM, "rubric": {"high": 1}, "rating": "high", "percent": 1},
            "evidence[4].percent",
            "from the rubric",
        ),
        (
            {**RUBRIC_ITEM, "rubric": {"high": 1}, "rating": "low"},
            "evidence[4].rating",
            "not a level of this rubric",
        ),
        (
            {**RUBRIC_ITEM, "rubric": {"high": -1}, "rating": "high"},
            "evidence[4].rubric",
            "negative",
        ),
        (
            {**RUBRIC_ITEM, "rubric": {"high": "x"}, "rating": "high"},
            "evidence[4].rubric.high",
            "must be a number",
        ),
        (
            {**RUBRIC_ITEM, "rubric": "high", "rating": "high"},
            "evidence[4].rubric",
            "must map each level",
        ),
        (
            {**RUBRIC_ITEM, "rubric": [{"name": "a"}], "rating": "a"},
            "evidence[4].rubric[0]",
            "'name' and 'points'",
        ),
        (
            {**RUBRIC_ITEM, "rubric": [["a", 1, 2]], "rating": "a"},
            "evidence[4].rubric[0]",
            "a name with its points",
        ),
        (
            {**RUBRIC_ITEM, "rubric": [{"name": "a", "points": 1, "x": 0}], "rating": "a"},
            "evidence[4].rubric[0].x",
            "unknown",
        ),
        ([1, 2], "evidence[4]", "must be a mapping"),
    ],
)
def test_evidence_errors_name_the_field(doc: Any, field: str, message: str) -> None:
    with pytest.raises(EvidenceError) as caught:
        parse.read_evidence(doc, "evidence[4]")
    assert caught.value.field == field
    assert message in caught.value.message


def test_evidence_defaults_fill_learner_and_competency() -> None:
    e = parse.read_evidence(
        {"item": "q", "score": 1, "max": 2}, defaults={"learner": "ada", "competency": "c"}
    )
    assert (e.learner, e.competency) == ("ada", "c")


def _items(doc: Any, competency: str = "") -> list[tuple[Evidence, str]]:
    return parse.read_evidence_file(doc, competency=competency)[0]


def test_evidence_file_shapes() -> None:
    flat = [{"learner": "ada", "item": "q", "score": 1, "max": 2}]
    assert [w for _, w in _items(flat, "c")] == ["[0]"]
    wrapped = {"now": "2026-11-28T12:00:00Z", "competency": "c", "results": flat}
    items, now = parse.read_evidence_file(wrapped)
    assert [w for _, w in items] == ["results[0]"]
    assert now == dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC)
    by_map = {"learners": {"ada": [{"item": "q", "score": 1, "max": 2}]}}
    [(e, where)] = _items(by_map, "c")
    assert (e.learner, where) == ("ada", "learners.ada[0]")
    by_list = {
        "competency": "c",
        "learners": [{"id": "ada", "evidence": [{"item": "q", "score": 1, "max": 2}]}],
    }
    [(e, where)] = _items(by_list)
    assert (e.learner, e.competency, where) == ("ada", "c", "learners[0].evidence[0]")


@pytest.mark.parametrize(
    ("doc", "field", "message"),
    [
        ({"now": "soon", "evidence": []}, "now", "such as"),
        ({"learners": "ada"}, "learners", "must be a list of learners"),
        ({"now": "2026-11-28"}, "evidence", "found no 'evidence' list"),
        ({"evidence": [], "extra": 1}, "extra", "unknown field"),
        ({"evidence": [{"item": "q", "score": 1, "max": 2}]}, "evidence[0].learner", "is required"),
        ("ada", "", "must be a mapping"),
    ],
)
def test_evidence_file_errors(doc: Any, field: str, message: str) -> None:
    with pytest.raises(EvidenceError) as caught:
        parse.read_evidence_file(doc)
    assert caught.value.field == field
    assert message in caught.value.message
