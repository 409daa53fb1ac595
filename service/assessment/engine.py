"""The rules engine: ``evaluate(evidence, policy, now) -> Decision``.

Pure and deterministic: no clock (``now`` is an argument), no I/O, and the outcome does
not depend on the order the evidence arrives in. Rules, in the order they are reported:

- recency and attempt limits decide which results count (they never block a level);
- required evidence and the overall minimum apply to every level;
- per level: the score band, the verification minimum (the results from sittings
  verified at least that well must reach the band on their own) and the floors.

Levels form a ladder: the level reached is the highest one whose rules, and the rules of
every level below it, are all met.
"""

from __future__ import annotations

import datetime as dt
import functools
import operator
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple, NoReturn

from service.assessment.aggregate import aggregate
from service.assessment.normalise import Standing, standings
from service.assessment.types import (
    EPSILON,
    AggregationMethod,
    AttemptGrading,
    Decision,
    Evidence,
    EvidenceError,
    Exclusion,
    Floor,
    Gap,
    Level,
    LevelRule,
    Policy,
    PolicyError,
    RuleKind,
    RuleResult,
    VerificationLevel,
    percent,
)

__all__ = ["evaluate"]

_ANY = VerificationLevel.UNSUPERVISED
_ORDER = operator.attrgetter("order")
# ``tuple.__new__`` builds a named tuple (rule results, the decision) without running its
# Python-level ``__new__``: several are made per decision, at 50,000 decisions a second.
_new = tuple.__new__
_SEQUENCES = (list, tuple)
_CLOSEST = operator.attrgetter("verification", "fraction")
_DESCRIBED = ("", *(v.described for v in VerificationLevel))  # by number, for speed
_SHOWN = 3  # results named in one reason before "and N more"


class _Rung(NamedTuple):
    """One level of a policy's ladder, with the parts of its reasons that depend only on
    the policy."""

    level: Level
    rule: LevelRule
    threshold_text: str  # "65%"
    band: str  # "Intermediate needs a score of at least 65%"
    verification: str | None  # what the verification minimum asks; None: any sitting does
    floors: str | None  # what the floors ask; None: the level has none


class _Plan(NamedTuple):
    """What evaluating a policy needs that depends on the policy alone: worked out once
    per policy (``Policy.engine_plan``), since a policy is evaluated for every learner."""

    window: dt.timedelta | None  # the recency window
    rungs: tuple[_Rung, ...]


def _plan(policy: Policy) -> _Plan:
    plan: _Plan | None = policy.engine_plan
    if plan is None:
        plan = _make_plan(policy)
        object.__setattr__(policy, "engine_plan", plan)  # a cache: the rules are unchanged
    return plan


def _make_plan(policy: Policy) -> _Plan:
    labels = policy.labels
    rungs = []
    for level, rule in policy.ladder:
        threshold_text = percent(rule.threshold)
        band = f"{level.label} needs a score of at least {threshold_text}"
        verification = None
        if rule.verification is not _ANY:
            verification = f"{level.label} needs {rule.verification.required}"
        floors = None
        if rule.floor is not None or rule.item_floors:
            items = [labels.get(i, i) for i, _ in rule.item_floors]
            floors = _floor_text(level, rule.floor, items)
        rungs.append(_Rung(level, rule, threshold_text, band, verification, floors))
    window = None if policy.recency_days is None else dt.timedelta(policy.recency_days)
    return _Plan(window, tuple(rungs))


def evaluate(
    evidence: Iterable[Evidence], policy: Policy, now: dt.datetime, *, learner: str = ""
) -> Decision:
    """Decide the level one learner reaches in one competency.

    Args:
        evidence: the learner's results for the policy's competency, in any order.
        policy: the rules.
        now: the evaluation time; results recorded after it do not count, and the recency
            window ends at it.
        learner: the learner's id, needed only when there is no evidence.

    Returns:
        The decision; "not eligible" is ``Level.NONE`` with the failed rules saying why.

    Raises:
        EvidenceError: the evidence mixes learners or competencies, does not match the
            policy's competency, or repeats an attempt (``field`` is ``evidence[i]...``
            with ``i`` the position in ``evidence``).
        PolicyError: a floor names a rubric level that a criterion's rubric lacks.
    """
    given, learner, competency = _checked(evidence, policy, now, learner)
    ordered = sorted(given, key=_ORDER)
    labels = policy.labels
    plan = _plan(policy)

    counted, excluded, by_recency, by_attempts = _select(ordered, policy, plan.window, now)
    standing, passed_over = standings(counted, policy.attempt_grading)
    scores = [s.fraction for s in standing]
    score = aggregate(scores, policy.aggregation, weight=policy.weight, n=policy.n)

    rules = _rules_for_every_level(policy, standing, score, by_recency, by_attempts)
    climbing = not [r for r in rules if not r.passed]  # rules for every level come first

    # Every level's rules are reported, even above the first one missed, so a learner sees
    # everything that stands between them and the top.
    reached = Level.NONE
    next_up: tuple[Level, float] | None = None
    verified_cache: dict[VerificationLevel, tuple[list[Standing], float | None]] = {}
    yours = _score_text(score)
    for rung in plan.rungs:
        level, rule = rung.level, rung.rule
        band = _threshold_rule(rung, score, yours, scores, policy)
        rules.append(band)
        met = band.passed
        if rung.verification is not None:
            check = _verification_rule(
                rung, counted, standing, score, policy, verified_cache, labels
            )
            rules.append(check)
            met = met and check.passed
        if rung.floors is not None:
            check = _floor_rule(rung, standing, labels)
            rules.append(check)
            met = met and check.passed
        if climbing and met:
            reached = level
        elif next_up is None:
            climbing = False
            next_up = level, rule.threshold

    used = _used(standing, passed_over, verified_cache, excluded, policy)
    gap = _gap(next_up, rules, score)

    # Fields in declaration order: tuple.__new__ skips the named tuple's keyword-taking
    # __new__, which costs more than a microsecond with eleven fields.
    decision = (
        learner,
        competency,
        reached,
        score,
        policy.basis,  # score_basis
        tuple(rules),
        tuple(used),
        tuple(excluded),
        gap,
        policy.version,  # policy_version
        now,  # evaluated_at
    )
    return _new(Decision, decision)


def _checked(
    evidence: Iterable[Evidence], policy: Policy, now: dt.datetime, learner: str
) -> tuple[Sequence[Evidence], str, str]:
    """The evidence as a sequence, with its learner and competency, once ``now`` and the
    evidence's identity are checked (see ``evaluate``'s Raises)."""
    if now.utcoffset() is None:
        raise EvidenceError("now", "needs a time zone (write Z for UTC)")
    given = evidence if isinstance(evidence, _SEQUENCES) else list(evidence)
    learner, competency = _check_identity(given, policy, learner)
    return given, learner, competency


def _rules_for_every_level(
    policy: Policy,
    standing: list[Standing],
    score: float | None,
    by_recency: list[Evidence],
    by_attempts: list[Evidence],
) -> list[RuleResult]:
    """Recency, attempts, required results and the minimum score: the rules every level
    needs, when the policy sets them."""
    labels = policy.labels
    rules: list[RuleResult] = []
    if policy.recency_days is not None:
        rule = f"Only results from the last {policy.recency_days} days count"
        kept = "all of yours are recent enough"
        rules.append(_dropped_rule(RuleKind.RECENCY, rule, kept, by_recency, labels))
    if policy.max_attempts is not None:
        rule = f"At most {policy.max_attempts} attempts per item count"
        kept = "all of your attempts are within it"
        rules.append(_dropped_rule(RuleKind.ATTEMPTS, rule, kept, by_attempts, labels))
    if policy.require_all or policy.min_results:
        rules.append(_required_rule(policy, standing))
    if policy.minimum_score > 0:
        rules.append(_minimum_rule(policy.minimum_score, score))
    return rules


def _used(
    standing: list[Standing],
    passed_over: list[Evidence],
    verified_cache: dict[VerificationLevel, tuple[list[Standing], float | None]],
    excluded: list[Exclusion],
    policy: Policy,
) -> list[Evidence]:
    """The evidence the decision used; attempts passed over for the score are added to
    ``excluded``, unless one is the sitting that meets a verification requirement."""
    used = [ev for s in standing for ev in s.sources]
    if passed_over:
        # An attempt passed over for the score may still be the sitting that meets a
        # verification requirement; then it is used, not left out.
        # (Only a subset's own standings can hold one: the full standings passed it over.)
        verifying = {
            id(ev)
            for v, _ in verified_cache.values()
            if v is not standing
            for s in v
            for ev in s.sources
        }
        if verifying:
            also = [ev for ev in passed_over if id(ev) in verifying]
            if also:
                used = sorted(used + also, key=_ORDER)
                passed_over = [ev for ev in passed_over if id(ev) not in verifying]
        why = _passed_over_text(policy.attempt_grading)
        excluded.extend([_new(Exclusion, (ev, why)) for ev in passed_over])
    return used


def _gap(
    next_up: tuple[Level, float] | None, rules: list[RuleResult], score: float | None
) -> Gap | None:
    """What stands between the learner and the next level, if there is one."""
    gap: Gap | None = None
    if next_up is not None:
        level, threshold = next_up
        missing = tuple(
            [r for r in rules if not r.passed and (r.level is None or r.level is level)]
        )
        short = None
        if score is None or score + EPSILON < threshold:
            short = threshold - (score or 0.0)
        gap = _new(Gap, (level, missing, short))
    return gap


def _check_identity(given: Sequence[Evidence], policy: Policy, learner: str) -> tuple[str, str]:
    competency = policy.competency
    seen: set[tuple[str, int]] = set()
    for i, ev in enumerate(given):
        if not learner:
            learner = ev.learner
        elif ev.learner != learner:
            raise EvidenceError(
                f"evidence[{i}].learner",
                f"one decision is for one learner; found {learner!r} and {ev.learner!r}",
            )
        if not competency:
            competency = ev.competency
        elif ev.competency != competency:
            raise EvidenceError(
                f"evidence[{i}].competency",
                f"the policy is for {competency!r}, this result is for {ev.competency!r}",
            )
        if ev.attempt is not None:
            key = (ev.item, ev.attempt)
            if key in seen:
                raise EvidenceError(
                    f"evidence[{i}].attempt",
                    f"{ev.item!r} attempt {ev.attempt} appears twice; send each attempt once",
                )
            seen.add(key)
    return learner, competency


def _select(
    ordered: list[Evidence], policy: Policy, window: dt.timedelta | None, now: dt.datetime
) -> tuple[list[Evidence], list[Exclusion], list[Evidence], list[Evidence]]:
    """Split the evidence into what counts and what does not (with why)."""
    labels = policy.labels
    cutoff = None if window is None else now - window
    limit = policy.max_attempts
    counted: list[Evidence] = []
    excluded: list[Exclusion] = []
    by_recency: list[Evidence] = []
    by_attempts: list[Evidence] = []
    attempts: dict[str, int] = {}
    unnumbered: set[Evidence] = set()
    for ev in ordered:
        at = ev.at
        if ev.attempt is None and ev in unnumbered:
            # The same unnumbered result twice is one result sent twice, not a new attempt.
            excluded.append(Exclusion(ev, "it is the same result as another one, sent twice"))
        elif at is not None and at > now:
            excluded.append(Exclusion(ev, "it was recorded after the evaluation time"))
        elif labels and ev.item not in labels:
            excluded.append(Exclusion(ev, "it is not one of the items mapped to this competency"))
        elif cutoff is not None and (at is None or at < cutoff):
            by_recency.append(ev)
            why = "it has no date" if at is None else f"it is from {at.date().isoformat()}"
            excluded.append(Exclusion(ev, f"{why}; only the last {policy.recency_days} days count"))
        else:
            number = attempts[ev.item] = attempts.get(ev.item, 0) + 1
            if limit is not None and (ev.attempt or number) > limit:
                by_attempts.append(ev)
                excluded.append(Exclusion(ev, f"only {limit} attempts are allowed"))
            else:
                counted.append(ev)
            if ev.attempt is None:
                unnumbered.add(ev)
    return counted, excluded, by_recency, by_attempts


def _name(ev: Evidence, labels: Mapping[str, str]) -> str:
    base = ev.label or labels.get(ev.item, ev.item)
    return base if ev.attempt is None else f"{base} attempt {ev.attempt}"


def _names(names: Sequence[str]) -> str:
    if len(names) <= _SHOWN:
        return ", ".join(names)
    return f"{', '.join(names[:_SHOWN])} and {len(names) - _SHOWN} more"


@functools.cache
def _nothing_dropped(kind: RuleKind, rule: str, kept: str) -> RuleResult:
    return RuleResult(kind, None, True, f"{rule}; {kept}.")


def _dropped_rule(
    kind: RuleKind, rule: str, kept: str, dropped: list[Evidence], labels: Mapping[str, str]
) -> RuleResult:
    """The recency or attempts rule: it always passes, and names what it left out."""
    if not dropped:
        return _nothing_dropped(kind, rule, kept)
    names = _names([_name(ev, labels) for ev in dropped])
    return RuleResult(kind, None, True, f"{rule}; not counted: {names}.")


@functools.cache
def _passed_over_text(grading: AttemptGrading) -> str:
    return f"another attempt counts (the {grading.value} one)"


def _required_rule(policy: Policy, standing: list[Standing]) -> RuleResult:
    if policy.require_all:
        have = {s.item for s in standing}
        missing = [label for item, label in policy.labels.items() if item not in have]
        if missing:
            return RuleResult(
                RuleKind.REQUIRED,
                None,
                False,
                f"Every mapped item needs a result; missing: {_names(missing)}.",
            )
        return RuleResult(
            RuleKind.REQUIRED, None, True, f"All {len(policy.labels)} mapped items have a result."
        )
    return _min_results_rule(policy.min_results, len(standing))  # one standing per item


@functools.cache
def _min_results_rule(need: int, count: int) -> RuleResult:
    passed = count >= need
    you = f"you have {count}" if passed else f"you have only {count}"
    reason = f"Results from at least {need} different items are needed; {you}."
    return RuleResult(RuleKind.REQUIRED, None, passed, reason)


def _score_text(score: float | None) -> str:
    return "there are no counted results yet" if score is None else f"yours is {percent(score)}"


def _minimum_rule(minimum: float, score: float | None) -> RuleResult:
    passed = score is not None and score + EPSILON >= minimum
    return RuleResult(
        RuleKind.MINIMUM,
        None,
        passed,
        f"Every level needs an overall score of at least {percent(minimum)}; {_score_text(score)}.",
    )


def _threshold_rule(
    rung: _Rung, score: float | None, yours: str, scores: list[float], policy: Policy
) -> RuleResult:
    level, threshold = rung.level, rung.rule.threshold
    passed = score is not None and score + EPSILON >= threshold
    if policy.aggregation is AggregationMethod.N_MASTERY:
        reaching = sum(1 for s in scores if s + EPSILON >= threshold)
        reason = (
            f"{level.label} needs at least {policy.n} results of {percent(threshold)} or more; "
            f"{reaching} of yours {'is' if reaching == 1 else 'are'}."
        )
    else:
        reason = f"{rung.band}; {yours}."
    return _new(RuleResult, (RuleKind.THRESHOLD, level, passed, reason))


def _verification_rule(
    rung: _Rung,
    counted: list[Evidence],
    standing: list[Standing],
    overall: float | None,
    policy: Policy,
    cache: dict[VerificationLevel, tuple[list[Standing], float | None]],
    labels: Mapping[str, str],
) -> RuleResult:
    level, rule, head = rung.level, rung.rule, rung.verification
    need = rule.verification
    if need not in cache:
        strong = [ev for ev in counted if ev.verification >= need]
        if not strong:
            cache[need] = [], None
        elif len(strong) == len(counted):  # every sitting is verified well enough
            cache[need] = standing, overall
        else:
            verified = standings(strong, policy.attempt_grading)[0]
            fractions = [s.fraction for s in verified]
            cache[need] = (
                verified,
                aggregate(fractions, policy.aggregation, weight=policy.weight, n=policy.n),
            )
    verified, score = cache[need]
    if score is not None and score + EPSILON >= rule.threshold:
        names = [_name(ev, labels) for s in verified for ev in s.sources]
        reason = f"{head}: met by {_names(names)}."
        return _new(RuleResult, (RuleKind.VERIFICATION, level, True, reason))
    if verified:
        reason = (
            f"{head} with a score of at least {rung.threshold_text}; your results from "
            f"such sittings give {percent(score) if score is not None else 'too few results'}."
        )
    elif not standing:
        reason = f"{head}; there are no counted results yet."
    else:
        # Name the sitting closest to the requirement: the best verified, then the best score.
        sources = [ev for s in standing for ev in s.sources]
        closest = max(sources, key=_CLOSEST)
        name, described = _name(closest, labels), _DESCRIBED[closest.verification]
        if len(sources) == 1:
            reason = f"{head}; your {name} was {described}."
        else:
            reason = (
                f"{head}; none of your {len(sources)} results was such a sitting; "
                f"the best-verified was {name}: {described}."
            )
    return _new(RuleResult, (RuleKind.VERIFICATION, level, False, reason))


def _floor_fraction(floor: Floor, s: Standing, field: str) -> float | None:
    """The fraction ``floor`` asks of ``s``; None when it does not apply (a rubric-level
    floor on a result that has no rubric)."""
    if floor.fraction is not None:
        return floor.fraction
    ev = s.sources[0]
    if not ev.rubric:
        return None
    need = ev.rubric_fractions.get(floor.rating or "")
    if need is None:
        _no_such_rating(floor, ev, field)
    return need


def _no_such_rating(floor: Floor, ev: Evidence, field: str) -> NoReturn:
    # The policy names a rating this criterion's rubric does not have.
    raise PolicyError(
        field,
        f"asks for {floor.text}, but the rubric of {ev.item!r} has no such level "
        f"(it has {', '.join(r.name for r in ev.rubric)})",
    )


def _result_text(s: Standing, labels: Mapping[str, str]) -> str:
    ev = s.sources[0]
    name = _name(ev, labels)
    if len(s.sources) == 1 and ev.rating is not None:
        return f'{name} was rated "{ev.rating}"'
    return f"{name} scored {percent(s.fraction)}"


def _floor_text(level: Level, floor: Floor | None, items: list[str]) -> str:
    parts = []
    if floor is not None:
        what = "rubric criterion rated" if floor.rating is not None else "result at"
        parts.append(f"every {what} {floor.text} or above")
    if items:
        parts.append("minimums for " + ", ".join(items))
    return f"{level.label} needs {' and '.join(parts)}"


def _floor_rule(rung: _Rung, standing: list[Standing], labels: Mapping[str, str]) -> RuleResult:
    level, rule, head = rung.level, rung.rule, rung.floors
    failures: list[str] = []
    floor = rule.floor
    if floor is not None and floor.rating is None:
        need = floor.fraction or 0.0
        failures = [_result_text(s, labels) for s in standing if s.fraction + EPSILON < need]
    elif floor is not None:
        rating = floor.rating or ""
        for s in standing:
            ev = s.sources[0]
            if not ev.rubric:
                continue  # a rubric-level floor applies to rubric criteria only
            wanted = ev.rubric_fractions.get(rating)
            if wanted is None:
                _no_such_rating(floor, ev, f"levels.{level.key}.floor")
            if s.fraction + EPSILON < wanted:
                failures.append(_result_text(s, labels))
    by_item = {s.item: s for s in standing} if rule.item_floors else {}
    for item, item_floor in rule.item_floors:
        found = by_item.get(item)
        if found is None:
            label = labels.get(item, item)
            failures.append(f"{label} has no result yet (it must reach {item_floor.text})")
            continue
        wanted = _floor_fraction(item_floor, found, f"levels.{level.key}.floors.{item}")
        if wanted is not None and found.fraction + EPSILON < wanted:
            failures.append(f"{_result_text(found, labels)} (it must reach {item_floor.text})")
    if failures:
        return _new(RuleResult, (RuleKind.FLOOR, level, False, f"{head}; {'; '.join(failures)}."))
    return _new(RuleResult, (RuleKind.FLOOR, level, True, f"{head}; all of yours meet it."))
