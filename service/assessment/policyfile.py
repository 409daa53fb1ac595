"""Policy files: one document holding one policy, or institution defaults and bounds with
per-competency overrides, and optionally stacked credentials.

Accepted shapes (all read by ``read_policy_file``):

1. a single policy (``levels: ...`` at the top), for every competency in the evidence
   unless it names one;
2. a list of policies, each naming its ``competency``;
3. a mapping with any of ``defaults`` (a policy layer every policy starts from),
   ``bounds`` (the institution's limits, checked on every composed policy), ``course`` (a
   course's override of the defaults, for every competency in it), ``policies`` (a list,
   or a mapping from competency id to its override) and ``stacks`` (stacked credentials).
   This is also the shape of a course's policy export.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.assessment import bounds as bounds_mod
from service.assessment import parse, reading
from service.assessment.types import Policy, PolicyError, StackPolicy

__all__ = ["PolicySet", "read_policy_file"]

_SET_KEYS = ("defaults", "bounds", "course", "policies", "stacks")


@dataclass(frozen=True, slots=True)
class PolicySet:
    """What a policy file holds."""

    policies: tuple[Policy, ...]
    stacks: tuple[StackPolicy, ...] = ()
    bounds: bounds_mod.Bounds | None = None
    paths: tuple[str, ...] = ()  # where each policy is written in the file


def _compose(
    defaults: parse.Layer,
    layer: parse.Layer,
    path: str,
    limits: bounds_mod.Bounds | None,
    competency: str,
) -> Policy:
    if competency:
        layer.setdefault("competency", competency)
    try:
        policy = parse.compose(defaults, layer)
        if limits is not None:
            bounds_mod.check(policy, limits)
    except PolicyError as exc:
        raise PolicyError(f"{path}.{exc.field}" if path else exc.field, exc.message) from None
    return policy


def read_policy_file(doc: Any) -> PolicySet:
    """Read a whole policy file (see the module docstring for the shapes).

    Raises:
        PolicyError: with the path of the field at fault, including bounds violations and
            two policies for one competency.
    """
    if isinstance(doc, list):
        listed = tuple(parse.read_policy(entry, f"[{i}]") for i, entry in enumerate(doc))
        return PolicySet(_unique(listed, "[{}]"), paths=tuple(f"[{i}]" for i in range(len(doc))))
    if not isinstance(doc, Mapping):
        raise PolicyError("", "a policy file holds a policy (a mapping) or a list of policies")
    keys = [reading.norm(k) for k in doc if isinstance(k, str)]
    if not any(k in _SET_KEYS for k in keys):
        if _by_competency(doc):
            policies, paths = _read_policies(doc, "", {}, None)
            return PolicySet(_unique(tuple(policies), "{}"), paths=tuple(paths))
        return PolicySet((parse.read_policy(doc),), paths=("",))

    r = reading.Reader(doc, "", PolicyError)
    defaults_doc = r.take("defaults", "institution", "default")
    bounds_doc = r.take("bounds", "limits")
    course_doc = r.take("course", "course_override")
    policies_doc = r.take("policies", "competencies", "overrides")
    stacks_doc = r.take("stacks", "stacked", "stacked_credentials")
    r.finish(_SET_KEYS)

    defaults = {} if defaults_doc is None else parse.read_layer(defaults_doc[0], defaults_doc[1])
    if course_doc is not None:
        defaults = _merge(defaults, parse.read_layer(course_doc[0], course_doc[1]))
    limits = None if bounds_doc is None else bounds_mod.read_bounds(bounds_doc[0], bounds_doc[1])
    if policies_doc is None:
        base = course_doc or defaults_doc
        if base is None:
            raise PolicyError("policies", "give the policies (or 'defaults' for every competency)")
        policies, paths = [_compose({}, defaults, base[1], limits, "")], [base[1]]
    else:
        policies, paths = _read_policies(policies_doc[0], policies_doc[1], defaults, limits)
    stacks: list[StackPolicy] = []
    if stacks_doc is not None:
        value, where = stacks_doc
        if not isinstance(value, list):
            raise PolicyError(where, "must be a list of stacked credentials")
        stacks = [parse.read_stack_policy(entry, f"{where}[{i}]") for i, entry in enumerate(value)]
    return PolicySet(_unique(tuple(policies), "policies[{}]"), tuple(stacks), limits, tuple(paths))


_LEVELS_KEYS = {"levels", "bands", "level_bands", "thresholds"}


def _by_competency(doc: Mapping[Any, Any]) -> bool:
    """Whether ``doc`` maps competency ids to policies (each with its levels) rather than
    being one policy."""
    if not doc or any(reading.norm(str(k)) in _LEVELS_KEYS for k in doc):
        return False
    return all(
        isinstance(v, Mapping) and any(reading.norm(str(k)) in _LEVELS_KEYS for k in v)
        for v in doc.values()
    )


def _read_policies(
    value: Any, where: str, defaults: parse.Layer, limits: bounds_mod.Bounds | None
) -> tuple[list[Policy], list[str]]:
    policies: list[Policy] = []
    paths: list[str] = []
    if isinstance(value, Mapping):
        for competency, entry in value.items():
            path = f"{where}.{competency}" if where else str(competency)
            layer = parse.read_layer(entry or {}, path)
            policies.append(_compose(defaults, layer, path, limits, str(competency)))
            paths.append(path)
    elif isinstance(value, list):
        for i, entry in enumerate(value):
            layer = parse.read_layer(entry, f"{where}[{i}]")
            policies.append(_compose(defaults, layer, f"{where}[{i}]", limits, ""))
            paths.append(f"{where}[{i}]")
    else:
        raise PolicyError(where, "must be a list of policies or a mapping by competency")
    return policies, paths


def _merge(base: parse.Layer, override: parse.Layer) -> parse.Layer:
    """Two layers as one (later fields win; levels merge field by field)."""
    merged = base | override
    if "levels" in base and "levels" in override:
        levels = dict(base["levels"])
        for level, fields in override["levels"].items():
            levels[level] = fields if fields.get("_removed") else levels.get(level, {}) | fields
        merged["levels"] = levels
    return merged


def _unique(policies: tuple[Policy, ...], where: str) -> tuple[Policy, ...]:
    seen: set[str] = set()
    for i, policy in enumerate(policies):
        if policy.competency in seen:
            name = policy.competency or "(any competency)"
            raise PolicyError(where.format(i), f"a second policy for {name}")
        seen.add(policy.competency)
    return policies
