"""Stored results to the engine's Evidence: keys, rubric scales, verification, attempts."""

from __future__ import annotations

import datetime as dt

from service.assessment.types import VerificationLevel
from service.flows import mapping
from service.sources.store import EvidenceRecord
from service.sources.types import Verification

AT = dt.datetime(2026, 10, 12, 10, tzinfo=dt.UTC)


def _record(**changes: object) -> EvidenceRecord:
    base: dict[str, object] = {
        "id": 1,
        "course_id": 1,
        "person_id": 7,
        "origin": "moodle:1",
        "kind": "rubric_criterion",
        "item_id": "11",
        "item_title": "Data investigation project",
        "criterion_id": "2",
        "criterion_title": "Cleans and documents data",
        "score": None,
        "max_score": None,
        "level_id": "21",
        "level_name": "Proficient",
        "level_points": 3.0,
        "level_scale": (
            ("20", "Beginning", 1.0),
            ("21", "Proficient", 3.0),
            ("22", "Exemplary", 4.0),
        ),
        "attempt": 1,
        "submitted_at": None,
        "graded_at": AT,
        "verification": Verification.AUTHENTICATED,
        "verification_basis": "the result itself (lms)",
        "asserted_by": "lms",
        "version": 1,
    }
    return EvidenceRecord(**(base | changes))  # type: ignore[arg-type]


def test_a_rubric_rating_keeps_its_scale_and_is_keyed_item_slash_criterion() -> None:
    record = _record()
    assert mapping.item_key(record) == "11/2"
    assert mapping.item_label(record) == "Data investigation project: Cleans and documents data"
    ev = mapping.to_engine(record, competency="c", label="Cleans")
    assert ev is not None
    assert (ev.item, ev.kind, ev.rating, ev.score, ev.max_score) == (
        "11/2",
        "rubric",
        "Proficient",
        3.0,
        4.0,
    )
    assert ev.verification is VerificationLevel.AUTHENTICATED and ev.attempt is None
    assert ev.learner == "7" and ev.at == AT


def test_a_quiz_attempt_is_numbered_and_an_ungraded_result_is_left_out() -> None:
    quiz = _record(
        kind="quiz",
        item_id="21",
        criterion_id="",
        criterion_title="",
        level_id=None,
        level_name=None,
        level_scale=(),
        score=17.0,
        max_score=20.0,
        attempt=2,
        verification=Verification.SUPERVISED_ONSITE_VERIFIED,
    )
    ev = mapping.to_engine(quiz, competency="c", label="Stats")
    assert ev is not None and ev.item == "21" and ev.attempt == 2
    assert ev.verification is VerificationLevel.SUPERVISED_ONSITE_VERIFIED
    assert abs(ev.fraction - 0.85) < 1e-9
    assert mapping.to_engine(_record(level_name=None), competency="c", label="x") is None
