"""Documents (the dicts JSON and YAML files load into) to engine values, and back.

Reading is forgiving about form and strict about meaning (``reading``, which reads the
keys and values): an error's ``field`` is the dotted path of the key as written in the
document (``levels.advanced.verification``, ``evidence[3].score``), so a loader can point
at the line.

A policy is built from layers (institution defaults, course override, competency
override): ``read_layer`` reads one layer, possibly partial; ``compose`` stacks layers
into a ``Policy``. ``read_policy`` is both for a complete document.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from service.assessment.normalise import rubric_rating
from service.assessment.reading import (
    AGGREGATIONS,
    GRADINGS,
    LEVELS,
    Reader,
    as_number,
    as_text,
    choice,
    days,
    fraction_doc,
    integer,
    kind_of,
    norm,
    parse_datetime,
    parse_fraction,
    parse_level,
    parse_verification,
)
from service.assessment.types import (
    DEFAULT_N,
    DEFAULT_WEIGHT,
    AggregationMethod,
    AttemptGrading,
    Evidence,
    EvidenceError,
    Floor,
    Level,
    LevelRule,
    MappedItem,
    Policy,
    PolicyError,
    StackPolicy,
    StackRequirement,
    VerificationLevel,
)

__all__ = [
    "Layer",
    "compose",
    "layer_to_dict",
    "parse_datetime",
    "parse_fraction",
    "parse_level",
    "parse_verification",
    "policy_to_dict",
    "read_evidence",
    "read_evidence_file",
    "read_layer",
    "read_policy",
    "read_stack_policy",
]

# A layer: canonical field name -> parsed value; "levels" maps Level -> {field: value}.
Layer = dict[str, Any]


# --- policies -----------------------------------------------------------------------

_WEIGHT_NAMES = ("weight", "decay_weight", "calculation_int", "decay", "recent_weight")
_N_NAMES = ("n", "times", "mastery_times", "n_times", "mastery_count")

POLICY_KEYS = (
    "competency",
    "version",
    "name",
    "description",
    "aggregation",
    "weight",
    "n",
    "levels",
    "minimum_score",
    "items",
    "required",
    "max_attempts",
    "attempt_grading",
    "recency_days",
    "thresholds",
    "verification",
)
_LEVEL_KEYS = ("threshold", "verification", "floor", "floors")


def read_layer(doc: Any, path: str = "") -> Layer:
    """Read one policy layer (any subset of the policy fields) into canonical form.

    Raises:
        PolicyError: an unknown field or a bad value, with its path.
    """
    r = Reader(doc, path, PolicyError)
    layer: Layer = {}
    if got := r.take("competency", "competency_id"):
        layer["competency"] = as_text(got[0], got[1], PolicyError)
    if got := r.take("version"):
        layer["version"] = integer(got[0], got[1], PolicyError)
    for field, *synonyms in (("name", "title"), ("description", "note", "notes")):
        if got := r.take(field, *synonyms, agreeing=True):  # for people; not used by the rules
            layer[field] = got[0]
    if got := r.take("aggregation", "calculation_method", "method", "calculation"):
        _read_aggregation(got[0], got[1], layer)
    if got := r.take(*_WEIGHT_NAMES):
        layer["weight"] = parse_fraction(got[0], got[1])
    if got := r.take(*_N_NAMES):
        layer["n"] = integer(got[0], got[1], PolicyError)
    if got := r.take("levels", "bands", "level_bands"):
        layer["levels"] = _read_levels(got[0], got[1])
    # Per-level settings written side by side at the top ("thresholds: {beginning: 50%}",
    # "verification: {advanced: supervised}") are read into the levels too.
    for names, field, read in (
        (("thresholds",), "threshold", parse_fraction),
        (
            ("verification", "min_verification", "verification_levels"),
            "verification",
            parse_verification,
        ),
        (("floors_by_level", "level_floors"), "floor", _read_floor),
    ):
        if got := r.take(*names):
            _read_by_level(got[0], got[1], field, read, layer)
    if got := r.take(
        "minimum_score", "minimum", "overall_minimum", "min_score", "overall_min", "min_overall"
    ):
        layer["minimum_score"] = parse_fraction(got[0], got[1])
    if got := r.take("items", "mapped_items", "evidence_items"):
        layer["items"] = _read_items(got[0], got[1])
    if got := r.take(
        "required",
        "required_evidence",
        "requires",
        "required_items",
        "min_items",
        "min_evidence",
        "minimum_evidence",
    ):
        layer["required"] = _read_required(got[0], got[1])
    if got := r.take(
        "max_attempts", "attempts", "attempt_limit", "attempts_allowed", "allowed_attempts"
    ):
        _read_attempts(got[0], got[1], layer)
    if got := r.take("attempt_grading", "grading", "attempt_scoring", "grading_method"):
        layer["attempt_grading"] = choice(got[0], got[1], PolicyError, GRADINGS)
    if got := r.take(
        "recency_days", "recency", "recent_within", "recency_window", "max_age", "max_age_days"
    ):
        layer["recency_days"] = None if got[0] in (None, "none", "off") else days(*got)
    r.finish(POLICY_KEYS)
    return layer


def _read_aggregation(value: Any, path: str, layer: Layer) -> None:
    if isinstance(value, Mapping):
        r = Reader(value, path, PolicyError)
        if got := r.take("method", "name", "calculation_method"):
            layer["aggregation"] = choice(got[0], got[1], PolicyError, AGGREGATIONS)
        if got := r.take(*_WEIGHT_NAMES):
            layer["weight"] = parse_fraction(got[0], got[1])
        if got := r.take(*_N_NAMES):
            layer["n"] = integer(got[0], got[1], PolicyError)
        r.finish(("method", "weight", "n"))
    else:
        layer["aggregation"] = choice(value, path, PolicyError, AGGREGATIONS)


def _read_by_level(value: Any, path: str, field: str, read: Any, layer: Layer) -> None:
    r = Reader(value, path, PolicyError)
    levels = layer.setdefault("levels", {})
    for key in list(r.keys.values()):
        where = r.at(key)
        level = choice(key, where, PolicyError, LEVELS)
        r.taken.add(key)
        entry = levels.setdefault(level, {})
        if field in entry:
            raise PolicyError(where, f"the {level.key} {field} is also given under 'levels'")
        entry[field] = read(r.data[key], where)


def _read_levels(value: Any, path: str) -> dict[Level, dict[str, Any]]:
    if isinstance(value, list):  # [{level: beginning, threshold: 50%}, ...]
        value = _levels_from_list(value, path)
    r = Reader(value, path, PolicyError)
    levels: dict[Level, dict[str, Any]] = {}
    for key in list(r.keys.values()):
        where = r.at(key)
        level = choice(key, where, PolicyError, LEVELS)
        r.taken.add(key)
        raw = r.data[key]
        if raw is None:
            levels[level] = {"_removed": True}
        elif isinstance(raw, Mapping):
            levels[level] = _read_level(raw, where)
        else:  # "intermediate: 60%" is a band alone
            levels[level] = {"threshold": parse_fraction(raw, where)}
    return levels


def _levels_from_list(value: list[Any], path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, entry in enumerate(value):
        where = f"{path}[{i}]"
        if not isinstance(entry, Mapping):
            raise PolicyError(where, "each level is a mapping with 'level' and 'threshold'")
        name_key = next((k for k in entry if norm(str(k)) in ("level", "name")), None)
        if name_key is None:
            raise PolicyError(where, "needs 'level' (beginning, intermediate or advanced)")
        name = entry[name_key]
        if not isinstance(name, str) or name in out:
            raise PolicyError(f"{where}.{name_key}", f"{name!r} is not a new level name")
        out[name] = {k: v for k, v in entry.items() if k != name_key}
    return out


def _read_level(value: Mapping[str, Any], path: str) -> dict[str, Any]:
    r = Reader(value, path, PolicyError)
    out: dict[str, Any] = {}
    if got := r.take("threshold", "min_score", "minimum", "score", "min", "at_least", "from"):
        out["threshold"] = parse_fraction(got[0], got[1])
    if got := r.take("verification", "min_verification", "requires_verification", "supervision"):
        out["verification"] = parse_verification(got[0], got[1])
    if got := r.take(
        "floor",
        "min_each",
        "every_result",
        "each_at_least",
        "criterion_floor",
        "min_per_criterion",
        "min_per_item",
    ):
        out["floor"] = None if got[0] is None else _read_floor(got[0], got[1])
    if got := r.take("floors", "item_floors", "criteria"):
        fr = Reader(got[0], got[1], PolicyError)
        floors = []
        for item in fr.keys.values():
            fr.taken.add(item)
            floors.append((item, _read_floor(fr.data[item], fr.at(item))))
        out["item_floors"] = tuple(sorted(floors))
    r.finish(_LEVEL_KEYS)
    return out


def _read_floor(value: Any, path: str) -> Floor:
    if isinstance(value, str) and not re.fullmatch(r"\s*[\d.]+\s*%?\s*", value):
        return Floor(rating=value.strip())
    return Floor(fraction=parse_fraction(value, path))


def _read_items(value: Any, path: str) -> tuple[MappedItem, ...]:
    if isinstance(value, Mapping):  # {item id: label}
        return tuple(
            MappedItem(as_text(k, f"{path}.{k}", PolicyError), "" if v is None else str(v))
            for k, v in value.items()
        )
    if not isinstance(value, list):
        raise PolicyError(path, f"must be a list of item ids, not {kind_of(value)}")
    items = []
    for i, entry in enumerate(value):
        where = f"{path}[{i}]"
        if isinstance(entry, Mapping):
            r = Reader(entry, where, PolicyError)
            got = r.take("item", "id", "item_id", "source", "source_id")
            if got is None:
                raise PolicyError(where, "needs an 'item' (the id of the LMS item)")
            label = r.take("label", "name", "title")
            items.append(
                MappedItem(as_text(*got, PolicyError), "" if label is None else str(label[0]))
            )
            r.finish(("item", "label"))
        else:
            items.append(MappedItem(as_text(entry, where, PolicyError)))
    return tuple(items)


def _read_required(value: Any, path: str) -> tuple[bool, int]:
    """(all mapped items?, at least N items)."""
    if value is None or value is False:
        return False, 0
    if isinstance(value, str):
        text = norm(value)
        if text in ("all", "all_items", "every_item"):
            return True, 0
        if text in ("none", "any"):
            return False, 0
        if match := re.fullmatch(r"(?:at_least_)?(\d+)(?:_items?)?", text):
            return False, int(match[1])
        raise PolicyError(path, f"must be 'all', a number of items or 'at least N', not {value!r}")
    if isinstance(value, Mapping):
        r = Reader(value, path, PolicyError)
        got = r.take("at_least", "min", "minimum", "min_items", "count")
        if got is None:
            raise PolicyError(path, "write 'all' or 'at_least: N'")
        r.finish(("at_least",))
        return False, integer(got[0], got[1], PolicyError, minimum=0)
    return False, integer(value, path, PolicyError, minimum=0)


def _read_attempts(value: Any, path: str, layer: Layer) -> None:
    if isinstance(value, Mapping):
        r = Reader(value, path, PolicyError)
        if got := r.take("max", "limit", "max_attempts"):
            layer["max_attempts"] = None if got[0] is None else integer(got[0], got[1], PolicyError)
        if got := r.take("grading", "attempt_grading", "scoring", "counts"):
            layer["attempt_grading"] = choice(got[0], got[1], PolicyError, GRADINGS)
        r.finish(("max", "grading"))
    else:
        unlimited = value is None or (isinstance(value, str) and norm(value) == "unlimited")
        layer["max_attempts"] = None if unlimited else integer(value, path, PolicyError)


def compose(*layers: Layer) -> Policy:
    """Stack layers, later ones winning field by field (and per level, field by field).

    A level set to nothing (``advanced:`` with no value) in a later layer removes it.

    Raises:
        PolicyError: the result is incomplete or inconsistent.
    """
    merged: Layer = {}
    levels: dict[Level, dict[str, Any]] = {}
    for layer in layers:
        for key, value in layer.items():
            if key == "levels":
                for level, fields in value.items():
                    if fields.get("_removed"):
                        levels.pop(level, None)
                    else:
                        levels[level] = levels.get(level, {}) | fields
            else:
                merged[key] = value
    built: dict[Level, LevelRule] = {}
    for level, fields in levels.items():
        if "threshold" not in fields:
            raise PolicyError(f"levels.{level.key}.threshold", "every level needs a threshold")
        built[level] = LevelRule(
            threshold=fields["threshold"],
            verification=fields.get("verification", VerificationLevel.UNSUPERVISED),
            floor=fields.get("floor"),
            item_floors=fields.get("item_floors", ()),
        )
    require_all, min_results = merged.get("required", (False, 0))
    return Policy(
        levels=built,
        competency=merged.get("competency", ""),
        version=merged.get("version", 1),
        aggregation=merged.get("aggregation", AggregationMethod.WEIGHTED_AVERAGE),
        weight=merged.get("weight", DEFAULT_WEIGHT),
        n=merged.get("n", DEFAULT_N),
        minimum_score=merged.get("minimum_score", 0.0),
        items=merged.get("items", ()),
        require_all=require_all,
        min_results=min_results,
        max_attempts=merged.get("max_attempts"),
        attempt_grading=merged.get("attempt_grading", AttemptGrading.HIGHEST),
        recency_days=merged.get("recency_days"),
    )


def read_policy(doc: Any, path: str = "") -> Policy:
    """Read a complete policy document.

    Raises:
        PolicyError: with the path of the field at fault.
    """
    layer = read_layer(doc, path)
    try:
        return compose(layer)
    except PolicyError as exc:
        if not path:
            raise
        raise PolicyError(f"{path}.{exc.field}", exc.message) from None


def _pct_text(fraction: float) -> str:
    return f"{round(fraction * 100, 6):g}%"


def policy_to_dict(policy: Policy) -> dict[str, Any]:
    """The canonical document of a policy, as stored and hashed: percentages to six significant
    digits, so ``read_policy`` reads 66.66667% back as 66.6667% (``layer_to_dict`` is exact)."""
    levels: dict[str, Any] = {}
    for level, rule in policy.ladder:
        entry: dict[str, Any] = {"threshold": _pct_text(rule.threshold)}
        if rule.verification is not VerificationLevel.UNSUPERVISED:
            entry["verification"] = rule.verification.key
        if rule.floor is not None:
            entry["floor"] = _floor_value(rule.floor)
        if rule.item_floors:
            entry["floors"] = {item: _floor_value(f) for item, f in rule.item_floors}
        levels[level.key] = entry
    doc: dict[str, Any] = {}
    if policy.competency:
        doc["competency"] = policy.competency
    doc["version"] = policy.version
    doc["aggregation"] = policy.aggregation.value
    if policy.aggregation in (
        AggregationMethod.WEIGHTED_AVERAGE,
        AggregationMethod.DECAYING_AVERAGE,
    ):
        doc["weight"] = _pct_text(policy.weight)
    if policy.aggregation is AggregationMethod.N_MASTERY:
        doc["n"] = policy.n
    doc["levels"] = levels
    if policy.minimum_score:
        doc["minimum_score"] = _pct_text(policy.minimum_score)
    if policy.items:
        doc["items"] = _items_doc(policy.items)
    if policy.require_all:
        doc["required"] = "all"
    elif policy.min_results:
        doc["required"] = {"at_least": policy.min_results}
    if policy.max_attempts is not None:
        doc["max_attempts"] = policy.max_attempts
    doc["attempt_grading"] = policy.attempt_grading.value
    if policy.recency_days is not None:
        doc["recency_days"] = policy.recency_days
    return doc


def _floor_value(floor: Floor, pct: Callable[[float], Any] = _pct_text) -> Any:
    return floor.rating if floor.rating is not None else pct(floor.fraction or 0.0)


def _items_doc(items: tuple[MappedItem, ...]) -> list[Any]:
    return [{"item": m.item, "label": m.label} if m.label else m.item for m in items]


# How ``layer_to_dict`` writes the fields and level fields not written as they are:
# fractions exactly (``fraction_doc``), unlike a policy's hashed text.
_AS_DOC: dict[str, Callable[[Any], Any]] = {
    "aggregation": lambda method: method.value,
    "attempt_grading": lambda grading: grading.value,
    "weight": fraction_doc,
    "minimum_score": fraction_doc,
    "items": _items_doc,
    "required": lambda required: "all" if required[0] else {"at_least": required[1]},
    "threshold": fraction_doc,
    "verification": lambda level: level.key,
    "floor": lambda floor: None if floor is None else _floor_value(floor, fraction_doc),
    "item_floors": lambda floors: {item: _floor_value(f, fraction_doc) for item, f in floors},
}


def layer_to_dict(layer: Layer) -> dict[str, Any]:
    """The canonical document of a layer (``read_layer``'s value): ``read_layer`` gives the
    same layer back. Only the fields the layer sets are written: a partial layer stays
    partial, and a field set to "none" (no floor, no attempt limit) stays set."""

    def doc(fields: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "floors" if k == "item_floors" else k: _AS_DOC.get(k, lambda same: same)(v)
            for k, v in fields.items()
        }

    out = doc(layer)
    if "levels" in layer:
        out["levels"] = {
            level.key: None if fields.get("_removed") else doc(fields)
            for level, fields in sorted(layer["levels"].items())
        }
    return out


# --- evidence -----------------------------------------------------------------------

_EVIDENCE_KEYS = (
    "learner",
    "competency",
    "item",
    "label",
    "kind",
    "score",
    "max",
    "percent",
    "rubric",
    "rating",
    "attempt",
    "at",
    "verification",
)
_KINDS = ("rubric", "quiz", "assignment", "manual")


def read_evidence(
    doc: Any, path: str = "", *, defaults: Mapping[str, Any] | None = None
) -> Evidence:
    """Read one evidence item. ``defaults`` fills ``learner`` and ``competency`` when the
    item leaves them out (a file grouped by learner, a single-competency file).

    Raises:
        EvidenceError: with the path of the field at fault.
    """
    r = Reader(doc, path, EvidenceError)
    common, kind = _read_evidence_context(r, path, defaults or {})
    rubric = r.take("rubric", "rubric_levels", "scale")
    rating = r.take("rating", "rubric_level", "level", "rating_name")
    score = r.take("score", "points", "points_earned", "grade", "result")
    maximum = r.take("max", "max_score", "max_points", "points_possible", "out_of", "possible")
    pct = r.take("percent", "percentage")
    r.finish(_EVIDENCE_KEYS)
    if maximum is not None and maximum[0] is None:  # "max: null" is no maximum
        maximum = None
    if rubric is not None or rating is not None:
        return _rubric_evidence(r, rubric, rating, score or pct, common)
    return _scored_evidence(r, score, maximum, pct, kind or "assignment", common)


# A field's value as written and its path in the document (``Reader.take``).
_Taken = tuple[Any, str]


def _read_evidence_context(
    r: Reader, path: str, defaults: Mapping[str, Any]
) -> tuple[dict[str, Any], str | None]:
    """Everything but the result: the ``Evidence`` fields common to every kind of result
    (learner, competency, item, label, attempt, time, verification), and the kind if the
    item gives it (``kind``, or a ``quiz``/``assignment`` key naming the item)."""

    def need(field: str, *names: str) -> _Taken:
        got = r.take(field, *names)
        if got is not None:
            return got
        if field in defaults:
            return defaults[field], path
        raise EvidenceError(r.at(field), "is required")

    learner = as_text(
        *need("learner", "learner_id", "user", "user_id", "student", "student_id", "sub"),
        EvidenceError,
    )
    competency = as_text(*need("competency", "competency_id"), EvidenceError)
    kind = None
    got = r.take("item", "item_id", "source", "source_id", "criterion", "criterion_id")
    if got is None:
        for name in ("quiz", "assignment"):
            if got := r.take(name, f"{name}_id"):
                kind = name
                break
    if got is None:
        raise EvidenceError(
            r.at("item"), "is required (the id of the quiz, assignment or criterion)"
        )
    item = as_text(*got, EvidenceError)
    label_got = r.take("label", "name", "title")
    label = "" if label_got is None or label_got[0] is None else str(label_got[0])
    if got := r.take("kind", "type", "source_type"):
        kind = choice(got[0], got[1], EvidenceError, {k: k for k in _KINDS})
    attempt = None
    if got := r.take("attempt", "attempt_number", "attempt_no"):
        attempt = None if got[0] is None else integer(got[0], got[1], EvidenceError)
    at = None
    if got := r.take(
        "at", "time", "date", "timestamp", "submitted_at", "graded_at", "completed_at"
    ):
        at = None if got[0] is None else parse_datetime(got[0], got[1], EvidenceError)
    verification = VerificationLevel.UNSUPERVISED
    if got := r.take("verification", "supervision", "identity_verification"):
        verification = parse_verification(got[0], got[1], EvidenceError)
    common: dict[str, Any] = {
        "learner": learner,
        "competency": competency,
        "item": item,
        "label": label,
        "attempt": attempt,
        "at": at,
        "verification": verification,
    }
    return common, kind


def _rubric_evidence(
    r: Reader,
    rubric: _Taken | None,
    rating: _Taken | None,
    scored: _Taken | None,
    common: dict[str, Any],
) -> Evidence:
    """A rubric result: the ``rating`` on the ``rubric`` (both given, and no score)."""
    if rubric is None or rating is None:
        missing = "rating" if rating is None else "rubric"
        raise EvidenceError(r.at(missing), "a rubric result needs both 'rubric' and 'rating'")
    if scored is not None:
        raise EvidenceError(scored[1], "a rubric result takes its score from the rubric")
    scale = _read_rubric(*rubric)
    name = as_text(*rating, EvidenceError)
    try:
        return rubric_rating(rubric=scale, rating=name, **common)
    except EvidenceError as exc:
        where = rating[1] if exc.field == "rating" else rubric[1]
        raise EvidenceError(where, exc.message) from None


def _scored_evidence(
    r: Reader,
    score: _Taken | None,
    maximum: _Taken | None,
    pct: _Taken | None,
    kind: str,
    common: dict[str, Any],
) -> Evidence:
    """A scored result: a ``percent``, a ``score`` out of ``max``, or a bare ``score``
    (a percentage)."""
    if pct is not None:
        if score is not None or maximum is not None:
            raise EvidenceError(pct[1], "give either 'percent' or 'score' with 'max'")
        value = parse_fraction(pct[0], pct[1], EvidenceError)
        return Evidence(score=value, max_score=1.0, kind=kind, **common)
    if score is None:
        raise EvidenceError(r.at("score"), "is required (or 'percent', or 'rubric' and 'rating')")
    if maximum is None:  # a score without a maximum is a percentage: 85, "85%" or 0.85
        value = parse_fraction(score[0], score[1], EvidenceError)
        return Evidence(score=value, max_score=1.0, kind=kind, **common)
    points = as_number(score[0], score[1], EvidenceError)
    top = as_number(maximum[0], maximum[1], EvidenceError)
    try:
        return Evidence(score=points, max_score=top, kind=kind, **common)
    except EvidenceError as exc:
        raise EvidenceError(score[1] if exc.field == "score" else maximum[1], exc.message) from None


def _read_rubric(value: Any, path: str) -> list[tuple[str, float]]:
    """``{name: points}`` or a list of ``{name, points}`` or ``[name, points]``."""
    if isinstance(value, Mapping):
        return [(str(k), as_number(v, f"{path}.{k}", EvidenceError)) for k, v in value.items()]
    if not isinstance(value, list):
        raise EvidenceError(path, f"must map each level name to its points, not {kind_of(value)}")
    scale = []
    for i, entry in enumerate(value):
        where = f"{path}[{i}]"
        if isinstance(entry, Mapping):
            r = Reader(entry, where, EvidenceError)
            name = r.take("name", "level", "rating", "description", "label")
            points = r.take("points", "score", "value")
            if name is None or points is None:
                raise EvidenceError(where, "each level needs a 'name' and 'points'")
            r.finish(("name", "points"))
            scale.append((as_text(*name, EvidenceError), as_number(*points, EvidenceError)))
        elif isinstance(entry, list) and len(entry) == 2:
            scale.append(
                (as_text(entry[0], where, EvidenceError), as_number(entry[1], where, EvidenceError))
            )
        else:
            raise EvidenceError(where, "each level is a name with its points")
    return scale


def _iter_items(
    doc: Any, path: str, inherited: Mapping[str, Any]
) -> Iterator[tuple[Any, str, Mapping[str, Any]]]:
    """Walk the accepted evidence file shapes, yielding (item, path, defaults)."""
    if isinstance(doc, list):
        for i, entry in enumerate(doc):
            yield entry, f"{path}[{i}]", inherited
        return
    r = Reader(doc, path, EvidenceError)
    defaults = dict(inherited)
    for field, names in (
        ("learner", ("learner", "learner_id", "user", "user_id", "student", "id")),
        ("competency", ("competency", "competency_id")),
    ):
        if got := r.take(*names):
            defaults[field] = got[0]
    r.take("now", "evaluated_at", "as_of")  # read by read_evidence_file
    groups = r.take("learners", "students", "users")
    items = r.take("evidence", "results", "items")
    r.finish(("now", "learner", "competency", "learners", "evidence"))
    if items is not None:
        yield from _iter_items(items[0], items[1], defaults)
    if groups is not None:
        value, where = groups
        if isinstance(value, Mapping):  # {learner id: [items]}
            for learner, entries in value.items():
                yield from _iter_items(
                    entries, f"{where}.{learner}", defaults | {"learner": learner}
                )
        elif isinstance(value, list):
            for i, group in enumerate(value):
                yield from _iter_items(group, f"{where}[{i}]", defaults)
        else:
            raise EvidenceError(where, f"must be a list of learners, not {kind_of(value)}")
    if items is None and groups is None:
        raise EvidenceError(path or "evidence", "found no 'evidence' list (nor 'learners')")


def read_evidence_file(
    doc: Any, *, competency: str = ""
) -> tuple[list[tuple[Evidence, str]], dt.datetime | None]:
    """Read a whole evidence file: a list of items, or a mapping with ``evidence`` (a list)
    and/or ``learners`` (items grouped by learner), and an optional ``now``.

    Args:
        doc: the loaded file.
        competency: the competency for items that name none (a single-policy run).

    Returns:
        Each evidence item with its path in the file, and the ``now`` the file gives (None
        if it gives none).
    """
    now = None
    if isinstance(doc, Mapping):
        r = Reader(doc, "", EvidenceError)
        if got := r.take("now", "evaluated_at", "as_of"):
            now = parse_datetime(got[0], got[1], EvidenceError)
    base = {"competency": competency} if competency else {}
    return [
        (read_evidence(item, where, defaults=found), where)
        for item, where, found in _iter_items(doc, "", base)
    ], now


# --- stacked credentials ------------------------------------------------------------


def read_stack_policy(doc: Any, path: str = "") -> StackPolicy:
    """Read a stacked-credential policy: ``name``, ``requires`` ({competency: level} or a
    list of {competency, level}), optional ``at_least``.

    Raises:
        PolicyError: with the path of the field at fault.
    """
    r = Reader(doc, path, PolicyError)
    name = r.take("name", "title")
    requires = r.take("requires", "required", "competencies")
    at_least = r.take("at_least", "min_required", "minimum")
    r.finish(("name", "requires", "at_least"))
    if name is None:
        raise PolicyError(r.at("name"), "is required")
    if requires is None:
        raise PolicyError(r.at("requires"), "is required")
    value, where = requires
    reqs: list[StackRequirement] = []
    pairs: list[tuple[Any, Any, str]]
    if isinstance(value, Mapping):
        pairs = [(k, v, f"{where}.{k}") for k, v in value.items()]
    elif isinstance(value, list):
        pairs = []
        for i, entry in enumerate(value):
            er = Reader(entry, f"{where}[{i}]", PolicyError)
            comp = er.take("competency", "competency_id")
            level = er.take("level", "min_level", "minimum")
            er.finish(("competency", "level"))
            if comp is None or level is None:
                raise PolicyError(f"{where}[{i}]", "needs 'competency' and 'level'")
            pairs.append((comp[0], level[0], level[1]))
    else:
        raise PolicyError(where, f"must map competencies to levels, not {kind_of(value)}")
    for comp, level, at in pairs:
        reqs.append(StackRequirement(as_text(comp, at, PolicyError), parse_level(level, at)))
    minimum = None if at_least is None else integer(at_least[0], at_least[1], PolicyError)
    try:
        return StackPolicy(as_text(*name, PolicyError), tuple(reqs), minimum)
    except PolicyError as exc:
        field = {"requires": where, "min_required": at_least[1] if at_least else where}
        raise PolicyError(field.get(exc.field, where), exc.message) from None
