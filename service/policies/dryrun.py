"""``microcred evaluate``: policy file + evidence file -> JSON decisions with reasons.

Files are read with ``files`` (JSON or YAML); every error names the file, the line and
the field at fault. Nothing is stored: this is the rules engine on its own.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from service.assessment import canonical, engine, parse, policyfile, stack
from service.assessment.types import (
    AssessmentError,
    Decision,
    Evidence,
    EvidenceError,
    Level,
    Policy,
    PolicyError,
)
from service.policies import files

__all__ = ["DEFAULT_COMPETENCY", "run"]

# The competency a policy without one is for, when the evidence names none either.
DEFAULT_COMPETENCY = "competency"


def _policy_set(loaded: files.Loaded) -> policyfile.PolicySet:
    try:
        return policyfile.read_policy_file(loaded.data)
    except AssessmentError as exc:
        raise loaded.error(exc.field, exc.message) from None


def _evidence(
    loaded: files.Loaded, policies: tuple[Policy, ...]
) -> tuple[list[tuple[Evidence, str]], dt.datetime | None]:
    fallback = ""
    if len(policies) == 1:
        fallback = policies[0].competency or DEFAULT_COMPETENCY
    try:
        return parse.read_evidence_file(loaded.data, competency=fallback)
    except AssessmentError as exc:
        raise loaded.error(exc.field, exc.message) from None


def run(
    policy_path: Path,
    evidence_path: Path,
    *,
    now: str | None = None,
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> dict[str, Any]:
    """Evaluate every (learner, competency) in the evidence file.

    ``now`` (ISO 8601) wins over the evidence file's ``now``; without either, ``clock()``.

    Raises:
        files.FileError: a file is missing, not JSON/YAML, or has a field at fault (with
            its line).
    """
    policy_file = files.load(policy_path)
    policy_set = _policy_set(policy_file)
    evidence_file = files.load(evidence_path)
    items, file_now = _evidence(evidence_file, policy_set.policies)

    when = file_now
    if now is not None:
        try:
            when = parse.parse_datetime(now, "--now", EvidenceError)
        except AssessmentError as exc:
            raise files.FileError("--now", exc.message) from None
    when = when or clock()

    by_competency = dict(
        zip((p.competency for p in policy_set.policies), policy_set.paths, strict=True)
    )
    policies = {p.competency: p for p in policy_set.policies}
    groups: dict[tuple[str, str], list[tuple[Evidence, str]]] = {}
    for ev, where in items:
        if ev.competency not in policies and "" not in policies:
            known = ", ".join(sorted(policies))
            raise evidence_file.error(
                f"{where}.competency",
                f"no policy for competency {ev.competency!r} in {policy_path} (it has: {known})",
            )
        groups.setdefault((ev.learner, ev.competency), []).append((ev, where))

    decisions = []
    for (_, competency), group in sorted(groups.items()):
        policy = policies.get(competency) or policies[""]
        try:
            decisions.append(engine.evaluate([ev for ev, _ in group], policy, when))
        except EvidenceError as exc:
            # "evidence[i].field", i the position in this learner's group: back to the file
            match = re.fullmatch(r"evidence\[(\d+)\]\.(.+)", exc.field)
            field = f"{group[int(match[1])][1]}.{match[2]}" if match else exc.field
            raise evidence_file.error(field, exc.message) from None
        except PolicyError as exc:
            prefix = by_competency[policy.competency]
            field = f"{prefix}.{exc.field}" if prefix else exc.field
            raise policy_file.error(field, exc.message) from None

    out: dict[str, Any] = {
        "evaluated_at": canonical.iso(when),
        "policies": [
            {
                "competency": p.competency or "(any)",
                "version": p.version,
                "policy_hash": canonical.policy_hash(p),
            }
            for p in policy_set.policies
        ],
        "summary": _summary(decisions),
        "decisions": [canonical.decision_to_dict(d) for d in decisions],
    }
    if policy_set.stacks:
        out["stacks"] = _stacks(decisions, policy_set)
    return out


def _summary(decisions: list[Decision]) -> dict[str, Any]:
    counts = Counter(d.level.key for d in decisions)
    return {
        "decisions": len(decisions),
        "learners": len({d.learner for d in decisions}),
        "levels": {level.key: counts.get(level.key, 0) for level in Level},
    }


def _stacks(decisions: list[Decision], policy_set: policyfile.PolicySet) -> list[Any]:
    held: dict[str, dict[str, Level]] = {}
    for d in decisions:
        held.setdefault(d.learner, {})[d.competency] = d.level
    out = []
    for learner, levels in sorted(held.items()):
        for stack_policy in policy_set.stacks:
            result = stack.evaluate_stack(levels, stack_policy)
            out.append(
                {
                    "learner": learner,
                    "stack": result.name,
                    "awarded": result.awarded,
                    "reason": result.reason,
                    "rules": [{"passed": r.passed, "reason": r.reason} for r in result.rules],
                }
            )
    return out
