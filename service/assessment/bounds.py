"""Institution bounds: the ranges within which instructors may set a policy.

An administrator sets institution defaults and bounds; course and competency overrides
are composed on top of the defaults and the result must lie within the bounds. Every
violation is reported at once, each with the policy field at fault.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from service.assessment import reading
from service.assessment.types import (
    AggregationMethod,
    Level,
    Policy,
    PolicyError,
    VerificationLevel,
    percent,
)

__all__ = [
    "Bounds",
    "BoundsError",
    "LevelBounds",
    "Range",
    "bounds_to_dict",
    "check",
    "read_bounds",
    "span",
    "violations",
]


@dataclass(frozen=True, slots=True)
class Range:
    """An inclusive range; either end may be open (None)."""

    low: float | None = None
    high: float | None = None

    def __post_init__(self) -> None:
        if self.low is not None and self.high is not None and self.low > self.high:
            raise PolicyError("min", f"the minimum {self.low:g} is above the maximum {self.high:g}")

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies in the range (infinity for "no limit")."""
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)


@dataclass(frozen=True, slots=True)
class LevelBounds:
    """Bounds on one level: its threshold range and the least verification it may ask."""

    threshold: Range | None = None
    verification: VerificationLevel | None = None


@dataclass(frozen=True, slots=True)
class Bounds:
    """What instructors may change, and how far. An unset bound does not constrain."""

    levels: Mapping[Level, LevelBounds] = field(default_factory=dict)
    minimum_score: Range | None = None
    aggregation: frozenset[AggregationMethod] | None = None
    weight: Range | None = None
    n: Range | None = None
    max_attempts: Range | None = None
    recency_days: Range | None = None


class BoundsError(PolicyError):
    """A policy lies outside the institution's bounds; ``violations`` lists every one."""

    def __init__(self, violations: list[PolicyError]) -> None:
        first = violations[0]
        super().__init__(first.field, "; ".join(v.message for v in violations))
        self.violations = tuple(violations)


def _range(value: Any, path: str, read: Callable[[Any, str], float]) -> Range:
    r = reading.Reader(value, path, PolicyError)
    low = r.take("min", "minimum", "from", "at_least")
    high = r.take("max", "maximum", "to", "at_most")
    r.finish(("min", "max"))
    lo, hi = (None if end is None else read(*end) for end in (low, high))
    return span(lo, hi, low[1] if low else path, percent=read is reading.parse_fraction)


def span(low: float | None, high: float | None, field: str, *, percent: bool) -> Range:
    """``Range(low, high)``, refusing a minimum above the maximum in the words of the page
    and the file: percentages as the thresholds page shows them (``"65%"``), or numbers."""
    if low is not None and high is not None and low > high:
        ends = [str(reading.fraction_doc(v)) if percent else f"{v:g}" for v in (low, high)]
        raise PolicyError(field, "the minimum {} is above the maximum {}".format(*ends))
    return Range(low, high)


def _count(value: Any, path: str) -> float:
    return float(reading.integer(value, path, PolicyError, minimum=0))


def _days(value: Any, path: str) -> float:
    return float(reading.days(value, path))


def read_bounds(doc: Any, path: str = "") -> Bounds:
    """Read a bounds document, for example::

        levels:
          intermediate: {threshold: {min: 60%, max: 80%}, verification: authenticated}
          advanced: {verification: supervised-online-verified}
        minimum_score: {min: 40%}
        aggregation: [weighted_average, average, highest]
        max_attempts: {max: 5}

    Raises:
        PolicyError: with the path of the field at fault.
    """
    r = reading.Reader(doc, path, PolicyError)
    levels: dict[Level, LevelBounds] = {}
    if got := r.take("levels", "bands"):
        lr = reading.Reader(got[0], got[1], PolicyError)
        for key in list(lr.keys.values()):
            where = lr.at(key)
            level = reading.parse_level(key, where)
            lr.taken.add(key)
            br = reading.Reader(lr.data[key], where, PolicyError)
            threshold = br.take("threshold")
            verification = br.take("verification", "min_verification")
            br.finish(("threshold", "verification"))
            levels[level] = LevelBounds(
                None if threshold is None else _range(*threshold, reading.parse_fraction),
                None if verification is None else _min_verification(*verification),
            )
    out: dict[str, Any] = {"levels": levels}
    for name, synonyms, reader in (
        ("minimum_score", ("minimum_score", "minimum", "overall_minimum"), reading.parse_fraction),
        ("weight", ("weight",), reading.parse_fraction),
        ("n", ("n", "times"), _count),
        ("max_attempts", ("max_attempts", "attempts"), _count),
        ("recency_days", ("recency_days", "recency"), _days),
    ):
        if got := r.take(*synonyms):
            out[name] = _range(got[0], got[1], reader)
    if got := r.take("aggregation", "aggregations", "methods"):
        value, where = got
        if not isinstance(value, list) or not value:
            raise PolicyError(where, "must list the allowed aggregation methods")
        out["aggregation"] = frozenset(
            reading.choice(v, f"{where}[{i}]", PolicyError, reading.AGGREGATIONS)
            for i, v in enumerate(value)
        )
    r.finish(
        ("levels", "minimum_score", "weight", "n", "max_attempts", "recency_days", "aggregation")
    )
    return Bounds(**out)


def bounds_to_dict(bounds: Bounds) -> dict[str, Any]:
    """The canonical document of ``bounds``: ``read_bounds`` gives the same bounds back (a
    level listed with no range and no verification stays listed: the level is required)."""
    levels: dict[str, Any] = {}
    for level, lb in sorted(bounds.levels.items()):
        entry = levels[level.key] = {}
        if lb.threshold is not None:
            entry["threshold"] = _range_doc(lb.threshold, reading.fraction_doc)
        if lb.verification is not None:
            entry["verification"] = lb.verification.key
    doc: dict[str, Any] = {"levels": levels}
    for name in ("minimum_score", "weight", "n", "max_attempts", "recency_days"):
        if (rng := getattr(bounds, name)) is not None:  # counts and days: whole numbers
            fraction = name in ("minimum_score", "weight")
            doc[name] = _range_doc(rng, reading.fraction_doc if fraction else int)
    if bounds.aggregation is not None:
        doc["aggregation"] = sorted(method.value for method in bounds.aggregation)
    return doc


def _range_doc(rng: Range, write: Callable[[float], Any]) -> dict[str, Any]:
    return {end: write(v) for end, v in (("min", rng.low), ("max", rng.high)) if v is not None}


def _min_verification(value: Any, path: str) -> VerificationLevel:
    if isinstance(value, Mapping):
        r = reading.Reader(value, path, PolicyError)
        got = r.take("min", "minimum", "at_least")
        r.finish(("min",))
        if got is None:
            raise PolicyError(path, "write the least verification allowed, e.g. 'min: supervised'")
        return reading.parse_verification(*got)
    return reading.parse_verification(value, path)


def _fmt(value: float, as_percent: bool) -> str:
    if math.isinf(value):
        return "no limit"
    return percent(value) if as_percent else f"{value:g}"


def _range_error(field: str, what: str, value: float, rng: Range, pct: bool) -> PolicyError | None:
    if rng.contains(value):
        return None
    low = "" if rng.low is None else _fmt(rng.low, pct)
    high = "" if rng.high is None else _fmt(rng.high, pct)
    allowed = (
        f"{low} to {high}" if low and high else (f"at least {low}" if low else f"at most {high}")
    )
    side = "below the minimum" if rng.low is not None and value < rng.low else "above the maximum"
    return PolicyError(
        field,
        f"{what} {_fmt(value, pct)} is {side} the institution allows ({allowed})",
    )


def violations(policy: Policy, bounds: Bounds) -> list[PolicyError]:
    """Every way ``policy`` leaves ``bounds``; empty when it is within them."""
    found: list[PolicyError | None] = []
    for level, lb in sorted(bounds.levels.items()):
        rule = policy.levels.get(level)
        if rule is None:
            found.append(
                PolicyError(
                    f"levels.{level.key}", f"the institution requires the {level.label} level"
                )
            )
            continue
        if lb.threshold is not None:
            found.append(
                _range_error(
                    f"levels.{level.key}.threshold",
                    f"the {level.label} threshold",
                    rule.threshold,
                    lb.threshold,
                    True,
                )
            )
        if lb.verification is not None and rule.verification < lb.verification:
            found.append(
                PolicyError(
                    f"levels.{level.key}.verification",
                    f"{level.label} must require at least {lb.verification.key}, "
                    f"not {rule.verification.key}",
                )
            )
    if bounds.minimum_score is not None:
        found.append(
            _range_error(
                "minimum_score",
                "the overall minimum",
                policy.minimum_score,
                bounds.minimum_score,
                True,
            )
        )
    if bounds.aggregation is not None and policy.aggregation not in bounds.aggregation:
        allowed = ", ".join(sorted(m.value for m in bounds.aggregation))
        found.append(
            PolicyError(
                "aggregation",
                f"{policy.aggregation.value} is not allowed by the institution "
                f"(allowed: {allowed})",
            )
        )
    if bounds.weight is not None:
        found.append(_range_error("weight", "the weight", policy.weight, bounds.weight, True))
    if bounds.n is not None and policy.aggregation is AggregationMethod.N_MASTERY:
        found.append(_range_error("n", "n", policy.n, bounds.n, False))
    for name, value, rng in (
        ("max_attempts", policy.max_attempts, bounds.max_attempts),
        ("recency_days", policy.recency_days, bounds.recency_days),
    ):
        if rng is not None:
            what = "attempts" if name == "max_attempts" else "the recency window (days)"
            found.append(_range_error(name, what, math.inf if value is None else value, rng, False))
    return [v for v in found if v is not None]


def check(policy: Policy, bounds: Bounds) -> None:
    """Raise if ``policy`` is outside ``bounds``.

    Raises:
        BoundsError: every violation, each with its field.
    """
    found = violations(policy, bounds)
    if found:
        raise BoundsError(found)
