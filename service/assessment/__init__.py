"""Pure competency assessment: evidence + policy -> decision. Standard library only.

No I/O, no clock, no settings: time and policy are arguments, so every decision can be
reproduced from what it records (policy version, evidence hash).

Modules:
    types       Evidence, Policy, Decision, Level, VerificationLevel, rule results, errors
    normalise   points, rubric ratings and quiz attempts to Evidence; attempts per item
    aggregate   Canvas Outcomes' aggregation methods
    engine      evaluate(evidence, policy, now) -> Decision
    stack       evaluate_stack(held, stack_policy) -> StackDecision
    parse       documents (from JSON/YAML) to policies and evidence, and back
    bounds      institution bounds on what instructors may change
    policyfile  whole policy files: one policy, a list, or defaults + bounds + overrides
    canonical   canonical JSON, evidence and policy hashes, decisions as data

Errors: ``AssessmentError`` (``PolicyError``, ``EvidenceError``, ``BoundsError``), all
``ValueError`` with ``field`` set to the path at fault. "Not eligible" is a Decision.
"""
