"""The institution's level thresholds and bounds as the administrator's page edits them.

The page shows, per level, the default threshold, the range instructors may set and the
least sitting a level may ask for; ``edit`` turns what the administrator typed into the
next institution defaults and bounds (every other field of the current version kept), and
``service.course_conflicts`` tells which course rules they would break before
``service.save_institution`` stores them (which checks again, in its transaction).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlmodel import Session

from service.assessment import bounds as bounds_mod
from service.assessment import parse, reading
from service.assessment.types import AssessmentError, Level, VerificationLevel
from service.db.models import PolicyVersion
from service.errors import BadInput, NotFound
from service.policies import service

__all__ = ["LEVELS", "SITTINGS", "LevelForm", "conflicts", "edit", "form", "percent_text"]

LEVELS = tuple(level for level in Level if level is not Level.NONE)
# The least sitting a level may ask for, as the form offers it ("" : no lower limit).
SITTINGS = (("", "any sitting"), *((v.key, v.required) for v in VerificationLevel))
_FIELD_WORDS = {
    "threshold": "score from",
    "min": "lowest instructors may set",
    "max": "highest instructors may set",
    "verification": "sitting needed",
}


@dataclasses.dataclass(frozen=True)
class LevelForm:
    """One level's row of the form, as typed or as stored (percentages, verification key)."""

    key: str
    label: str
    threshold: str = ""
    low: str = ""
    high: str = ""
    least: str = ""  # a VerificationLevel key; "" for none
    verification: str = ""  # what the default asks, in words (read-only here)


def _pct(value: float | None) -> str:
    """A stored fraction as its box shows it, so a box saved unchanged keeps its value."""
    return "" if value is None else str(reading.fraction_doc(value))


def form(session: Session) -> tuple[PolicyVersion | None, list[LevelForm]]:
    """The current version and its levels as the form shows them (None, [] when unset),
    read through ``read_layer`` and ``read_bounds`` so every spelling they accept shows."""
    try:
        row, layer, limits = service.institution_layers(session)
        policy = parse.compose(layer)
    except (NotFound, AssessmentError):
        return None, []
    out = []
    for level in LEVELS:
        rule = policy.levels.get(level)
        b = limits.levels.get(level, bounds_mod.LevelBounds())
        rng = b.threshold or bounds_mod.Range()
        out.append(
            LevelForm(
                key=level.key,
                label=level.label,
                threshold=_pct(None if rule is None else rule.threshold),
                low=_pct(rng.low),
                high=_pct(rng.high),
                least=b.verification.key if b.verification is not None else "",
                verification="" if rule is None else rule.verification.described,
            )
        )
    return row, out


def _fraction(text: str, where: str) -> float | None:
    """A percentage typed in a form: "70%", "70" and "0.7" are all 0.7 (as the hint says);
    None for an empty box. ``where`` names the box in the error."""
    text = text.strip()
    if not text:
        return None
    try:
        return parse.parse_fraction(text, "threshold")
    except AssessmentError as exc:
        raise BadInput(
            f"{where}: {exc.message}", hint="Write a percentage such as 70% (or 70, or 0.7)."
        ) from None


def percent_text(text: str, where: str) -> str | None:
    """A percentage typed in a form as stored (exactly, as ``edit`` stores it): "70%", "70"
    and "0.7" are all "70%"; None for an empty box."""
    fraction = _fraction(text, where)
    return None if fraction is None else _pct(fraction)


def edit(session: Session, typed: list[LevelForm]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The next defaults and bounds documents: the current ones (as read, whatever their
    spelling) with the typed thresholds, ranges and least sittings (an empty box: no
    default kept as it was; no range end; no least sitting), written canonically.

    Raises:
        BadInput: a value that is not a percentage or a sitting, the defaults outside the
            new bounds, or thresholds that do not rise, in the page's words.
    """
    _, layer, limits = service.institution_layers(session)
    levels = dict(layer.get("levels", {}))
    bounded = dict(limits.levels)
    sittings = {v.key: v for v in VerificationLevel}
    for lv in typed:
        level = reading.LEVELS[lv.key]
        words = {field: f"{lv.label}, {text}" for field, text in _FIELD_WORDS.items()}
        threshold = _fraction(lv.threshold, words["threshold"])
        if threshold is not None:  # a level set to nothing below comes back with it
            kept = {} if levels.get(level, {}).get("_removed") else levels.get(level, {})
            levels[level] = kept | {"threshold": threshold}
        low, high = _fraction(lv.low, words["min"]), _fraction(lv.high, words["max"])
        if lv.least and lv.least not in sittings:
            raise BadInput(f"{lv.label}, least sitting: {lv.least!r} is not a kind of sitting")
        try:
            rng = bounds_mod.span(low, high, "min", percent=True) if {low, high} != {None} else None
        except AssessmentError as exc:
            raise BadInput(f"{words['min']}: {exc.message}", hint="Nothing was saved.") from None
        b = bounds_mod.LevelBounds(rng, sittings.get(lv.least))
        if b != bounds_mod.LevelBounds() or level in limits.levels:  # listed: it is required
            bounded[level] = b
    layer = layer | {"levels": levels}
    limits = dataclasses.replace(limits, levels=bounded)
    try:
        bounds_mod.check(parse.compose(layer), limits)
    except AssessmentError as exc:
        raise BadInput(_in_words(exc), hint="Nothing was saved.") from None
    return parse.layer_to_dict(layer), bounds_mod.bounds_to_dict(limits)


def _in_words(exc: AssessmentError) -> str:
    """``defaults.levels.intermediate.threshold: …`` -> ``Intermediate, score from: …``."""
    parts = exc.field.split(".")
    if "levels" in parts and parts.index("levels") + 1 < len(parts):
        at = parts.index("levels")
        last = parts[-1] if len(parts) > at + 2 else "threshold"
        return f"{parts[at + 1].capitalize()}, {_FIELD_WORDS.get(last, last)}: {exc.message}"
    return f"{exc.field}: {exc.message}"


def conflicts(
    session: Session, defaults: dict[str, Any], bounds: dict[str, Any]
) -> list[service.CourseConflict]:
    """The course rules these defaults and bounds would break (``edit`` checked them)."""
    return service.course_conflicts(
        session, parse.read_layer(defaults, "defaults"), bounds_mod.read_bounds(bounds, "bounds")
    )
