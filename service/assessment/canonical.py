"""Canonical JSON and hashes, so a stored decision can be explained and reproduced.

Canonical JSON here: keys sorted, no insignificant whitespace, UTF-8, numbers as Python
prints them (shortest round-trip form), datetimes as ISO 8601 UTC with ``Z``. The
evidence hash is the SHA-256 of the canonical JSON of the evidence items sorted by their
own canonical form, so it does not depend on the order they arrived in.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from typing import Any

from service.assessment.parse import policy_to_dict
from service.assessment.types import Decision, Evidence, Gap, Policy, RuleResult

__all__ = [
    "canonical_json",
    "decision_to_dict",
    "evidence_hash",
    "evidence_to_dict",
    "iso",
    "policy_hash",
]


def iso(value: dt.datetime) -> str:
    """A UTC ISO 8601 timestamp ending in ``Z``."""
    text = value.astimezone(dt.UTC).isoformat()
    return text.removesuffix("+00:00") + "Z"


def canonical_json(value: Any) -> str:
    """Deterministic JSON text of ``value``."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def evidence_to_dict(ev: Evidence) -> dict[str, Any]:
    """An evidence item as a document that ``parse.read_evidence`` reads back."""
    doc: dict[str, Any] = {
        "learner": ev.learner,
        "competency": ev.competency,
        "item": ev.item,
        "kind": ev.kind,
        "verification": ev.verification.key,
    }
    if ev.rubric:
        doc["rubric"] = {lv.name: lv.points for lv in ev.rubric}
        doc["rating"] = ev.rating
    else:
        doc["score"] = ev.score
        doc["max"] = ev.max_score
    if ev.label:
        doc["label"] = ev.label
    if ev.attempt is not None:
        doc["attempt"] = ev.attempt
    if ev.at is not None:
        doc["at"] = iso(ev.at)
    return doc


def evidence_hash(evidence: Iterable[Evidence]) -> str:
    """SHA-256 (hex) of the evidence set, independent of order."""
    items = sorted(canonical_json(evidence_to_dict(ev)) for ev in evidence)
    return hashlib.sha256(("[" + ",".join(items) + "]").encode()).hexdigest()


def policy_hash(policy: Policy) -> str:
    """SHA-256 (hex) of the policy's rules: its canonical document without the version
    number (a label given to the rules, not one of them)."""
    document = policy_to_dict(policy)
    del document["version"]
    return hashlib.sha256(canonical_json(document).encode()).hexdigest()


def _rule(r: RuleResult) -> dict[str, Any]:
    return {
        "rule": r.kind.value,
        "level": None if r.level is None else r.level.key,
        "passed": r.passed,
        "reason": r.reason,
    }


def _gap(gap: Gap) -> dict[str, Any]:
    return {
        "level": gap.level.key,
        "score_needed": None if gap.score_needed is None else round(gap.score_needed * 100, 4),
        "missing": [r.reason for r in gap.missing],
    }


def decision_to_dict(decision: Decision) -> dict[str, Any]:
    """A decision as JSON-ready data: level, score (percent), every rule with its reason,
    the evidence used and left out, the gap to the next level and the evidence hash."""
    return {
        "learner": decision.learner,
        "competency": decision.competency,
        "level": decision.level.key,
        "level_label": decision.level.label,
        "score": None if decision.score is None else round(decision.score * 100, 4),
        "score_basis": decision.score_basis,
        "policy_version": decision.policy_version,
        "evaluated_at": iso(decision.evaluated_at),
        "rules": [_rule(r) for r in decision.rules],
        "failed": [r.reason for r in decision.failed],
        "next": None if decision.gap is None else _gap(decision.gap),
        "used": [evidence_to_dict(ev) for ev in decision.used],
        "excluded": [
            {"evidence": evidence_to_dict(x.evidence), "why": x.why} for x in decision.excluded
        ],
        "evidence_hash": evidence_hash(
            decision.used + tuple(x.evidence for x in decision.excluded)
        ),
    }
