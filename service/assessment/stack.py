"""Stacked credentials: awarded when a set of (competency, minimum level) is held."""

from __future__ import annotations

from collections.abc import Mapping

from service.assessment.types import Level, RuleKind, RuleResult, StackDecision, StackPolicy

__all__ = ["evaluate_stack"]


def evaluate_stack(held: Mapping[str, Level], stack_policy: StackPolicy) -> StackDecision:
    """Decide whether a stacked credential is awarded.

    Args:
        held: the level the learner currently holds per competency id (missing = none).
        stack_policy: the competencies and minimum levels the stacked credential needs.

    Returns:
        The decision, with one rule result per requirement and a summary reason.
    """
    rules = []
    for req in stack_policy.requires:
        have = held.get(req.competency, Level.NONE)
        name = req.label or req.competency
        passed = have >= req.level
        if have is Level.NONE:
            reason = f"{name} is needed at {req.level.label} or above; you do not hold it yet."
        else:
            reason = f"{name} is needed at {req.level.label} or above; you hold {have.label}."
        rules.append(RuleResult(RuleKind.STACK, req.level, passed, reason))
    met = sum(r.passed for r in rules)
    total = len(rules)
    need = total if stack_policy.min_required is None else stack_policy.min_required
    awarded = met >= need
    if stack_policy.min_required is None:
        summary = f"{stack_policy.name} needs all {total} competencies; you meet {met}."
    else:
        summary = f"{stack_policy.name} needs {need} of {total} competencies; you meet {met}."
    return StackDecision(stack_policy.name, awarded, tuple(rules), summary)
