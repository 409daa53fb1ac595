"""Mapping LMS items to competencies: ``item_key`` / ``available_items`` name the items a
policy's ``items`` refer to; ``to_engine`` turns stored evidence into the engine's."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session

from service.assessment.types import Evidence, RubricLevel, VerificationLevel
from service.sources import store
from service.sources.types import Verification


def item_key(record: store.EvidenceRecord) -> str:
    """The id a policy's ``items`` use for an LMS item: the item, or item/criterion."""
    return f"{record.item_id}/{record.criterion_id}" if record.criterion_id else record.item_id


def item_label(record: store.EvidenceRecord) -> str:
    title = record.item_title or record.item_id
    if record.criterion_id:
        return f"{title}: {record.criterion_title or record.criterion_id}"
    return title


@dataclass(frozen=True)
class Item:
    """An LMS item with results in a course, as the instructor maps it."""

    key: str
    label: str
    kind: str
    results: int


def available_items(session: Session, *, course_id: int) -> list[Item]:
    """Every rubric criterion, quiz and assignment that has results in the course."""
    found: dict[str, tuple[str, str, int]] = {}
    for r in store.list_evidence(session, course_id=course_id):
        key = item_key(r)
        label, kind, n = found.get(key, (item_label(r), r.kind, 0))
        found[key] = (label, kind, n + 1)
    return [Item(k, label, kind, n) for k, (label, kind, n) in sorted(found.items())]


def _verification(value: Verification) -> VerificationLevel:
    # The store and the engine share the five names of DESIGN.md.
    return next(v for v in VerificationLevel if v.key == value.value)


def to_engine(record: store.EvidenceRecord, *, competency: str, label: str) -> Evidence | None:
    """The engine's Evidence for a stored result (None when it has no score yet)."""
    at = record.graded_at or record.submitted_at
    verification = _verification(record.verification)
    learner = str(record.person_id)
    attempt = record.attempt if record.kind == "quiz" or record.attempt > 1 else None
    if record.level_scale and record.level_name is not None:
        names = [name for _, name, _ in record.level_scale]
        if len(set(names)) == len(names) and record.level_name in names:
            return Evidence(
                learner=learner,
                competency=competency,
                item=item_key(record),
                score=next(p for _, n, p in record.level_scale if n == record.level_name),
                max_score=max(p for _, _, p in record.level_scale),
                label=label,
                kind="rubric",
                rubric=tuple(RubricLevel(name, float(p)) for _, name, p in record.level_scale),
                rating=record.level_name,
                attempt=attempt,
                at=at,
                verification=verification,
            )
    if record.score is None or not record.max_score:
        return None
    return Evidence(
        learner=learner,
        competency=competency,
        item=item_key(record),
        score=min(max(record.score, 0.0), record.max_score),
        max_score=record.max_score,
        label=label,
        kind=record.kind,
        attempt=attempt,
        at=at,
        verification=verification,
    )
