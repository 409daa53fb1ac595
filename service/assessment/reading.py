"""Reading values out of documents (the dicts JSON and YAML files load into): the key
reader and the value parsers that the policy and evidence readers (``parse``) share.

Reading is forgiving about form — key spelling (``max_score``, ``max-score``, ``Max
score``), common synonyms (``points_possible`` for ``max``), percentages written as
``70``, ``"70%"`` or ``0.7`` — and strict about meaning: an unknown key, a value out of
range or a missing field raises an ``AssessmentError`` whose ``field`` is the dotted path
of the key as written in the document (``levels.advanced.verification``,
``evidence[3].score``), so a loader can point at the line.
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from service.assessment.types import (
    AggregationMethod,
    AssessmentError,
    AttemptGrading,
    Level,
    PolicyError,
    VerificationLevel,
)

__all__ = [
    "AGGREGATIONS",
    "GRADINGS",
    "LEVELS",
    "Reader",
    "as_number",
    "as_text",
    "choice",
    "days",
    "fraction_doc",
    "integer",
    "kind_of",
    "norm",
    "parse_datetime",
    "parse_fraction",
    "parse_level",
    "parse_verification",
]


def norm(key: str) -> str:
    """A key or name in canonical spelling: ``"Max-attempts"`` -> ``"max_attempts"``."""
    return re.sub(r"[\s\-]+", "_", key.strip().lower())


class Reader:
    """Reads one mapping: takes keys by canonical name or synonym, remembers the path of
    each, and rejects keys nobody took (with a suggestion for typos)."""

    def __init__(self, data: Any, path: str, error: type[AssessmentError]) -> None:
        if not isinstance(data, Mapping):
            raise error(path, f"must be a mapping of names to values, not {kind_of(data)}")
        self.path = path
        self.error = error
        self.keys: dict[str, str] = {}
        self.data = data
        for key in data:
            if not isinstance(key, str):
                raise error(path, f"keys must be text, not {key!r}")
            canonical = norm(key)
            if canonical in self.keys:
                raise error(self.at(key), f"given twice (also as {self.keys[canonical]!r})")
            self.keys[canonical] = key
        self.taken: set[str] = set()

    def at(self, key: str) -> str:
        """The path of ``key`` in this mapping."""
        return f"{self.path}.{key}" if self.path else key

    def take(self, *names: str, agreeing: bool = False) -> tuple[Any, str] | None:
        """The value under the first of ``names`` present (and its path), or None; two
        synonyms present at once is an error, unless ``agreeing`` and their values are equal."""
        found = [self.keys[n] for n in names if n in self.keys]
        if not found:
            return None
        for other in found[1:]:
            if not agreeing or self.data[other] != self.data[found[0]]:
                but = " but says something else" if agreeing else ""
                raise self.error(self.at(other), f"means the same as {found[0]!r}{but}; give one")
        self.taken.update(found)
        return self.data[found[0]], self.at(found[0])

    def finish(self, known: Sequence[str]) -> None:
        for key in self.data:
            if key not in self.taken:
                hint = difflib.get_close_matches(norm(key), known, n=1)
                extra = f"; did you mean {hint[0]!r}?" if hint else f"; known: {', '.join(known)}"
                raise self.error(self.at(key), f"unknown field{extra}")


def kind_of(value: Any) -> str:
    if value is None:
        return "nothing"
    return {
        bool: "true/false",
        int: "a number",
        float: "a number",
        str: "text",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), type(value).__name__)


# --- scalar values ------------------------------------------------------------------


def parse_fraction(value: Any, field: str, error: type[AssessmentError] = PolicyError) -> float:
    """A percentage as a fraction: ``"70%"`` and ``70`` are 0.7; a number from 0 to 1 is
    already a fraction (``0.7``), so ``1`` means 100 %.

    Raises:
        AssessmentError: not a number or percentage, or outside 0 to 100 %.
    """
    if isinstance(value, bool):
        raise error(field, f"must be a percentage such as 70% or 0.7, not {value}")
    if isinstance(value, str):
        text = value.strip()
        try:
            if text.endswith("%"):
                number = float(text[:-1].strip()) / 100
            else:
                return parse_fraction(float(text), field, error)
        except ValueError:
            raise error(field, f"must be a percentage such as 70% or 0.7, not {value!r}") from None
    elif isinstance(value, int | float):
        number = float(value)
        if number > 1:
            number /= 100
    else:
        raise error(field, f"must be a percentage such as 70% or 0.7, not {kind_of(value)}")
    if not (math.isfinite(number) and 0.0 <= number <= 1.0):
        raise error(field, f"must be between 0% and 100%, not {value!r}")
    return number


def fraction_doc(fraction: float) -> str | float:
    """How a document writes a fraction so that ``parse_fraction`` reads it back exactly:
    ``"70%"``, ``"66.66667%"``, or the number itself when no percentage with at most ten
    decimals does (a third is ``0.3333333333333333``)."""
    text = f"{round(fraction * 100, 10):.15g}%"
    return text if parse_fraction(text, "") == fraction else fraction


def as_number(value: Any, field: str, error: type[AssessmentError]) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise error(field, f"must be a number, not {kind_of(value)}")
    try:
        number = float(value)
    except ValueError:
        raise error(field, f"must be a number, not {value!r}") from None
    if not math.isfinite(number):
        raise error(field, f"must be a finite number, not {value!r}")
    return number


def integer(value: Any, field: str, error: type[AssessmentError], minimum: int = 1) -> int:
    """A whole number of at least ``minimum`` (``3``, ``3.0`` or ``"3"``)."""
    number = as_number(value, field, error)
    if number != int(number):
        raise error(field, f"must be a whole number, not {value!r}")
    if number < minimum:
        raise error(field, f"must be at least {minimum}, not {value!r}")
    return int(number)


def as_text(value: Any, field: str, error: type[AssessmentError]) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise error(field, f"must be text, not {kind_of(value)}")
    text = str(value).strip()
    if not text:
        raise error(field, "must not be empty")
    return text


def choice(value: Any, field: str, error: type[AssessmentError], options: Mapping[str, Any]) -> Any:
    """The option ``value`` names (any spelling of its key or a synonym); the error lists
    the canonical names only (the value's own ``key`` or ``value``)."""
    if not isinstance(value, str) or norm(value) not in options:
        names = dict.fromkeys(_canonical(v) for v in options.values())
        raise error(field, f"{value!r} is not one of: {', '.join(names)}")
    return options[norm(value)]


def _canonical(option: Any) -> str:
    if isinstance(option, Level | VerificationLevel):
        return option.key
    return str(getattr(option, "value", option))


LEVELS = {lv.key: lv for lv in Level if lv is not Level.NONE}
_VERIFICATIONS: dict[str, VerificationLevel] = {
    **{norm(v.key): v for v in VerificationLevel},
    "none": VerificationLevel.UNSUPERVISED,
    "any": VerificationLevel.UNSUPERVISED,
    "lms": VerificationLevel.AUTHENTICATED,
    "signed_in": VerificationLevel.AUTHENTICATED,
    "proctored": VerificationLevel.SUPERVISED_ONLINE_VERIFIED,
    "online_proctored": VerificationLevel.SUPERVISED_ONLINE_VERIFIED,
    "proctored_online": VerificationLevel.SUPERVISED_ONLINE_VERIFIED,
    "supervised_online_with_id": VerificationLevel.SUPERVISED_ONLINE_VERIFIED,
    "onsite_proctored": VerificationLevel.SUPERVISED_ONSITE_VERIFIED,
    "in_person_verified": VerificationLevel.SUPERVISED_ONSITE_VERIFIED,
    "supervised_onsite_with_id": VerificationLevel.SUPERVISED_ONSITE_VERIFIED,
    "online_verified": VerificationLevel.SUPERVISED_ONLINE_VERIFIED,
    "verified": VerificationLevel.SUPERVISED_ONLINE_VERIFIED,
    "onsite_verified": VerificationLevel.SUPERVISED_ONSITE_VERIFIED,
    "on_site_verified": VerificationLevel.SUPERVISED_ONSITE_VERIFIED,
    "supervised_on_site_verified": VerificationLevel.SUPERVISED_ONSITE_VERIFIED,
}
AGGREGATIONS: dict[str, AggregationMethod] = {
    **{m.value: m for m in AggregationMethod},
    "mean": AggregationMethod.AVERAGE,
    "most_recent": AggregationMethod.LATEST,
    "last": AggregationMethod.LATEST,
    "max": AggregationMethod.HIGHEST,
    "best": AggregationMethod.HIGHEST,
    "decaying": AggregationMethod.DECAYING_AVERAGE,
    "standard_decaying_average": AggregationMethod.DECAYING_AVERAGE,
    "n_times": AggregationMethod.N_MASTERY,
    "n_number_of_times": AggregationMethod.N_MASTERY,
}
GRADINGS: dict[str, AttemptGrading] = {
    **{g.value: g for g in AttemptGrading},
    "best": AttemptGrading.HIGHEST,
    "mean": AttemptGrading.AVERAGE,
    "latest": AttemptGrading.LAST,
    "most_recent": AttemptGrading.LAST,
}


def parse_level(value: Any, field: str, error: type[AssessmentError] = PolicyError) -> Level:
    """``"intermediate"`` (any case) to ``Level.INTERMEDIATE``."""
    level: Level = choice(value, field, error, LEVELS)
    return level


def parse_verification(
    value: Any, field: str, error: type[AssessmentError] = PolicyError
) -> VerificationLevel:
    """A verification level by name (``supervised-online-verified``, ``supervised online
    verified``, ``proctored``...) or by its number 1 to 5."""
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 5:
        return VerificationLevel(value)
    level: VerificationLevel = choice(value, field, error, _VERIFICATIONS)
    return level


_EXAMPLE_TIME = "2026-11-28T14:30:00Z"


def parse_datetime(value: Any, field: str, error: type[AssessmentError]) -> dt.datetime:
    """An ISO 8601 date or time; a time without a zone, and a bare date, are UTC."""
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, dt.date):
        parsed = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        try:
            parsed = dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        except ValueError:
            raise error(
                field, f"must be a date and time such as {_EXAMPLE_TIME}, not {value!r}"
            ) from None
    else:
        raise error(field, f"must be a date and time such as {_EXAMPLE_TIME}, not {kind_of(value)}")
    return parsed if parsed.utcoffset() is not None else parsed.replace(tzinfo=dt.UTC)


_DURATION = re.compile(r"^(\d+)\s*(d|days?|w|weeks?|months?|y|years?)$")
_ISO_DURATION = re.compile(r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?$")
_DAYS = {"d": 1, "w": 7, "m": 30, "y": 365}


def days(value: Any, field: str) -> int:
    """A period in whole days: ``365``, ``"90 days"``, ``"12 weeks"``, ``"2 years"``,
    ``"P1Y"``. A month is 30 days and a year 365."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return integer(value, field, PolicyError)
    if isinstance(value, str):
        text = value.strip().lower()
        if match := _DURATION.match(text):
            return integer(int(match[1]) * _DAYS[match[2][0]], field, PolicyError)
        if (match := _ISO_DURATION.match(text.upper())) and any(match.groups()):
            years, months, weeks, days = (int(g or 0) for g in match.groups())
            return integer(years * 365 + months * 30 + weeks * 7 + days, field, PolicyError)
        if text.isascii() and text.isdigit():
            return integer(int(text), field, PolicyError)
    raise PolicyError(
        field, f"must be a number of days or a period such as '2 years', not {value!r}"
    )
