"""Use cases of the competency catalogue and of versioned policies.

Services add and flush; the caller (route, CLI command) commits once. Policy layers are
append-only versions: institution defaults and bounds (administrator), a course override
and course and competency overrides (instructor). Every saved layer is checked by composing
it with the layers below and checking the result against the institution bounds, so an
instructor cannot store a policy the institution does not allow. Each distinct composed
policy gets a number per course and competency (``effective_policy``); decisions point at
it and carry the hash of the evidence they were made from.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from service import audit
from service.assessment import bounds as bounds_mod
from service.assessment import canonical, parse, policyfile
from service.assessment.types import AssessmentError, Level, Policy, PolicyError
from service.db.models import (
    Competency,
    CompetencyLevelTemplate,
    Course,
    CourseCompetency,
    Decision,
    EffectivePolicy,
    PolicyVersion,
)
from service.db.types import utcnow
from service.errors import BadInput, Conflict, NotFound
from service.policies import files
from service.policies import repository as repo

__all__ = [
    "CourseConflict",
    "attach",
    "competency",
    "course_conflicts",
    "create_competency",
    "effective",
    "effective_all",
    "explain",
    "export_course",
    "export_institution",
    "import_course",
    "import_institution",
    "institution_layers",
    "save_competency_override",
    "save_course_override",
    "save_institution",
    "set_level_template",
    "update_competency",
]

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}$")
_LEVEL_KEYS = tuple(level.key for level in Level if level is not Level.NONE)


def _bad(exc: AssessmentError, *, prefix: str = "") -> BadInput:
    field = f"{prefix}.{exc.field}" if prefix and exc.field else (exc.field or prefix)
    detail = f"{field}: {exc.message}" if field else exc.message
    return BadInput(detail, code="invalid_policy")


# --- competency catalogue ---------------------------------------------------------------


def _check_competency_fields(fields: dict[str, Any]) -> None:
    descriptions = fields.get("level_descriptions") or {}
    unknown = sorted(set(descriptions) - set(_LEVEL_KEYS))
    if unknown:
        raise BadInput(
            f"level_descriptions: {', '.join(unknown)} is not a level "
            f"(use {', '.join(_LEVEL_KEYS)})"
        )
    url = fields.get("framework_url") or ""
    if url and not url.startswith(("https://", "http://")):
        raise BadInput("framework_url: must be an http(s) URL")


def create_competency(
    session: Session, *, key: str, name: str, author: str, **fields: Any
) -> Competency:
    """Add a competency to the catalogue.

    Raises:
        BadInput: the key or a field is malformed.
        Conflict: the key is taken.
    """
    if not _KEY.match(key):
        raise BadInput(
            f"key: {key!r} must start with a letter or digit and use letters, digits "
            "and . _ : / - only (at most 100)"
        )
    if not name.strip():
        raise BadInput("name: is required")
    _check_competency_fields(fields)
    if repo.competency_by_key(session, key) is not None:
        raise Conflict(f"a competency with key {key!r} exists already")
    row = Competency(key=key, name=name.strip(), **fields)
    session.add(row)
    audit.record(session, actor=author, action="competency.created", subject=f"competency:{key}")
    session.flush()
    return row


def competency(session: Session, key: str) -> Competency:
    """The competency with ``key``.

    Raises:
        NotFound: there is none.
    """
    row = repo.competency_by_key(session, key)
    if row is None:
        raise NotFound(f"no competency with key {key!r}")
    return row


def update_competency(session: Session, *, key: str, author: str, **fields: Any) -> Competency:
    """Change a competency's name, description, level descriptions or alignment."""
    row = competency(session, key)
    _check_competency_fields(fields)
    if "name" in fields and not str(fields["name"]).strip():
        raise BadInput("name: must not be empty")
    for name, value in fields.items():
        setattr(row, name, value)
    row.updated_at = utcnow()
    session.add(row)
    audit.record(
        session,
        actor=author,
        action="competency.updated",
        subject=f"competency:{key}",
        fields=sorted(fields),
    )
    session.flush()
    return row


def set_level_template(
    session: Session, *, competency_row: Competency, level: str, author: str, **fields: Any
) -> CompetencyLevelTemplate:
    """Set the credential fields of one level of a competency (created or replaced).

    Raises:
        BadInput: an unknown level or a field out of range (EQF 1-8, ISCED-F 2 to 4
            digits, positive validity and workload).
    """
    if level not in _LEVEL_KEYS:
        raise BadInput(f"level: {level!r} is not one of {', '.join(_LEVEL_KEYS)}")
    eqf = fields.get("eqf_level")
    if eqf is not None and not 1 <= eqf <= 8:
        raise BadInput(f"eqf_level: must be 1 to 8, not {eqf}")
    iscedf = fields.get("iscedf_code") or ""
    if iscedf and not re.fullmatch(r"\d{2,4}", iscedf):
        raise BadInput(f"iscedf_code: an ISCED-F code is 2 to 4 digits (e.g. 0613), not {iscedf!r}")
    for name in ("validity_days", "workload_hours", "ects_credits"):
        value = fields.get(name)
        if value is not None and value <= 0:
            raise BadInput(f"{name}: must be more than 0, not {value}")
    assert competency_row.id is not None
    templates = {t.level: t for t in repo.level_templates(session, competency_row.id)}
    row = templates.get(level) or CompetencyLevelTemplate(
        competency_id=competency_row.id, level=level
    )
    for name, value in fields.items():
        setattr(row, name, value)
    row.updated_at = utcnow()
    session.add(row)
    audit.record(
        session,
        actor=author,
        action="competency.level_set",
        subject=f"competency:{competency_row.key}",
        level=level,
    )
    session.flush()
    return row


def attach(session: Session, *, course_id: int, competency_row: Competency) -> CourseCompetency:
    """Assess ``competency_row`` in the course (idempotent)."""
    assert competency_row.id is not None
    link = repo.course_link(session, course_id, competency_row.id)
    if link is None:
        link = CourseCompetency(course_id=course_id, competency_id=competency_row.id)
        session.add(link)
        session.flush()
    return link


# --- policy layers ----------------------------------------------------------------------


def institution_layers(session: Session) -> tuple[PolicyVersion, parse.Layer, bounds_mod.Bounds]:
    """The current institution version, its defaults layer and its bounds.

    Raises:
        NotFound: the administrator has not set institution defaults yet.
    """
    row = repo.latest_version(session, repo.INSTITUTION)
    if row is None:
        raise NotFound(
            "no institution policy yet",
            hint="An administrator sets the defaults and bounds first "
            "(`microcred policy institution import FILE`, or PUT /api/policies/institution).",
        )
    return row, parse.read_layer(row.document), bounds_mod.read_bounds(row.bounds or {})


def _new_version(
    session: Session,
    *,
    scope: str,
    scope_key: str,
    document: dict[str, Any],
    author: str,
    note: str,
    course_id: int | None = None,
    competency_id: int | None = None,
    bounds: dict[str, Any] | None = None,
) -> PolicyVersion:
    latest = repo.latest_version(session, scope_key)
    version = 1 if latest is None else latest.version + 1
    audit.record(
        session,
        actor=author,
        action="policy.saved",
        subject=f"policy:{scope_key}",
        version=version,
        note=note,
    )
    row = PolicyVersion(
        scope=scope,
        scope_key=scope_key,
        course_id=course_id,
        competency_id=competency_id,
        version=version,
        document=document,
        bounds=bounds,
        author=author,
        note=note,
    )
    session.add(row)
    session.flush()
    return row


def save_institution(
    session: Session,
    *,
    defaults: dict[str, Any],
    bounds: dict[str, Any],
    author: str,
    note: str = "",
) -> PolicyVersion:
    """Store a new version of the institution defaults and bounds.

    The defaults must form a complete policy that lies within the bounds.

    Raises:
        BadInput: with the field at fault (``defaults.levels...``, ``bounds...``).
    """
    try:
        layer = parse.read_layer(defaults, "defaults")
        limits = bounds_mod.read_bounds(bounds, "bounds")
        policy = parse.compose(layer)
        bounds_mod.check(policy, limits)
    except AssessmentError as exc:
        raise _bad(
            exc, prefix="" if exc.field.startswith(("defaults", "bounds")) else "defaults"
        ) from None
    conflicts = [c.text for c in course_conflicts(session, layer, limits)]
    if conflicts:
        raise BadInput(
            f"the new institution policy does not fit {len(conflicts)} course rule(s) in use: "
            + "; ".join(conflicts),
            code="policy_conflict",
            hint="Nothing was saved. Move those courses' thresholds inside the new bounds "
            "first (on each course's setup page, or by importing its course policy), or "
            "widen the bounds.",
        )
    return _new_version(
        session,
        scope="institution",
        scope_key=repo.INSTITUTION,
        document=defaults,
        bounds=bounds,
        author=author,
        note=note,
    )


@dataclasses.dataclass(frozen=True)
class CourseConflict:
    """A course rule that institution defaults and bounds would break."""

    course: Course
    competency: Competency | None
    field: str  # the policy field at fault, e.g. ``levels.intermediate.threshold``
    message: str

    @property
    def text(self) -> str:
        name = f"course {self.course.title or self.course.context_id!r} (id {self.course.id})"
        where = f"{name}, {self.competency.key}" if self.competency is not None else name
        return f"{where}: {self.field}: {self.message}"


def course_conflicts(
    session: Session, defaults: parse.Layer, limits: bounds_mod.Bounds
) -> list[CourseConflict]:
    """Every course rule that new institution defaults and bounds would break.

    A change that breaks a course's rules would stop its evaluations (and its pages) until
    someone fixes the course, so it is refused before it is stored.
    """
    found: list[CourseConflict] = []

    def check(layers: list[parse.Layer], course: Course, comp: Competency | None) -> None:
        try:
            bounds_mod.check(parse.compose(*layers), limits)
        except AssessmentError as exc:
            found.append(CourseConflict(course, comp, exc.field, exc.message))

    for course in repo.courses_with_rules(session):
        assert course.id is not None
        course_layer = _layer(repo.latest_version(session, repo.course_scope(course.id)))
        linked = repo.course_competencies(session, course.id)
        if not linked:
            check([defaults, course_layer], course, None)
        for comp in linked:
            assert comp.id is not None
            override = _layer(
                repo.latest_version(session, repo.competency_scope(course.id, comp.id))
            )
            check([defaults, course_layer, override, {"competency": comp.key}], course, comp)
    return found


def _layer(row: PolicyVersion | None) -> parse.Layer:
    return {} if row is None else parse.read_layer(row.document)


def _checked(layers: Sequence[parse.Layer], limits: bounds_mod.Bounds, *, prefix: str) -> Policy:
    try:
        policy = parse.compose(*layers)
        bounds_mod.check(policy, limits)
    except AssessmentError as exc:
        raise _bad(exc, prefix=prefix) from None
    return policy


def save_course_override(
    session: Session, *, course_id: int, document: dict[str, Any], author: str, note: str = ""
) -> PolicyVersion:
    """Store a new version of a course's override (it applies to all its competencies).

    Raises:
        BadInput: a malformed field, or the result leaves the institution bounds (each
            violation named).
    """
    _, defaults, limits = institution_layers(session)
    try:
        layer = parse.read_layer(document)
    except AssessmentError as exc:
        raise _bad(exc, prefix="document") from None
    _checked([defaults, layer], limits, prefix="document")
    for linked in repo.course_competencies(session, course_id):
        assert linked.id is not None
        override = _layer(repo.latest_version(session, repo.competency_scope(course_id, linked.id)))
        _checked([defaults, layer, override], limits, prefix=f"competencies.{linked.key}")
    return _new_version(
        session,
        scope="course",
        scope_key=repo.course_scope(course_id),
        course_id=course_id,
        document=document,
        author=author,
        note=note,
    )


def save_competency_override(
    session: Session,
    *,
    course_id: int,
    competency_row: Competency,
    document: dict[str, Any],
    author: str,
    note: str = "",
) -> PolicyVersion:
    """Store a new version of a course and competency override (and attach the competency).

    Raises:
        BadInput: a malformed field, or the result leaves the institution bounds.
    """
    _, defaults, limits = institution_layers(session)
    assert competency_row.id is not None
    course = _layer(repo.latest_version(session, repo.course_scope(course_id)))
    try:
        layer = parse.read_layer(document)
    except AssessmentError as exc:
        raise _bad(exc, prefix="document") from None
    if layer.get("competency", competency_row.key) != competency_row.key:
        raise BadInput(f"document.competency: this is the policy for {competency_row.key!r}")
    _checked([defaults, course, layer], limits, prefix="document")
    attach(session, course_id=course_id, competency_row=competency_row)
    return _new_version(
        session,
        scope="course_competency",
        scope_key=repo.competency_scope(course_id, competency_row.id),
        course_id=course_id,
        competency_id=competency_row.id,
        document=document,
        author=author,
        note=note,
    )


def _layers(
    session: Session, course_id: int, competency_rows: Sequence[Competency]
) -> tuple[PolicyVersion, PolicyVersion | None, list[PolicyVersion | None]]:
    """The latest institution, course and course-competency policy versions, in one query."""
    keys = [repo.competency_scope(course_id, c.id or 0) for c in competency_rows]
    latest = repo.latest_versions(session, [repo.INSTITUTION, repo.course_scope(course_id), *keys])
    if repo.INSTITUTION not in latest:
        institution_layers(session)  # raises NotFound with its hint
    return (
        latest[repo.INSTITUTION],
        latest.get(repo.course_scope(course_id)),
        [latest.get(k) for k in keys],
    )


def effective(
    session: Session, *, course_id: int, competency_row: Competency
) -> tuple[Policy, EffectivePolicy]:
    """The policy in force for a course and competency, numbered.

    A composed policy not seen before for this pair gets the next number; the same rules
    always get the same number, so a decision's ``policy_version`` identifies its rules.
    The typed policy is built once per set of layer documents and once per numbered
    version in this process (``_composed``, ``_versioned``), not per evaluation: a
    worker evaluating a course batch by batch reads the layers and the number, and gets
    the same ``Policy`` value back.
    Numbering writes: call it in a write transaction (pages that only show the rules use
    ``in_force``).

    Raises:
        NotFound: no institution policy yet.
        BadInput: the layers no longer fit the institution bounds (the administrator
            changed them); the message names the field to fix.
    """
    return effective_all(session, course_id=course_id, competency_rows=[competency_row])[0]


def effective_all(
    session: Session, *, course_id: int, competency_rows: Sequence[Competency]
) -> list[tuple[Policy, EffectivePolicy]]:
    """``effective`` for each of these competencies of a course, reading the layers and
    the numbered versions in two queries (a worker's batch)."""
    if not competency_rows:
        return []
    inst_row, course_row, comp_rows = _layers(session, course_id, competency_rows)
    composed = [
        _composed(inst_row, course_row, comp_row, c.key)
        for c, comp_row in zip(competency_rows, comp_rows, strict=True)
    ]
    numbered = repo.effective_by_hashes(session, course_id, [h for h, _ in composed])
    out = []
    for comp, comp_row, (policy_hash, document) in zip(
        competency_rows, comp_rows, composed, strict=True
    ):
        assert comp.id is not None
        row = numbered.get((comp.id, policy_hash))
        if row is None:
            layer_versions = {"institution": inst_row.version}
            if course_row is not None:
                layer_versions["course"] = course_row.version
            if comp_row is not None:
                layer_versions["course_competency"] = comp_row.version
            fresh = EffectivePolicy(
                course_id=course_id,
                competency_id=comp.id,
                version=repo.last_effective_version(session, course_id, comp.id) + 1,
                policy_hash=policy_hash,
                document=dict(document),
                layers=layer_versions,
            )
            try:
                with session.begin_nested():
                    session.add(fresh)
                row = fresh
            except IntegrityError:
                # Another evaluation (a second worker) numbered the same rules first: use its row.
                row = repo.effective_by_hash(session, course_id, comp.id, policy_hash)
                if row is None:
                    raise
        out.append((_versioned(row), row))
    return out


# Built once per input in this process: the composed rules of a set of layer documents
# (keyed by the documents themselves, so a key can never name other rules), and the typed
# policy of a numbered version (keyed by its rules' hash and number, and its document).
_composed_cache: dict[bytes, tuple[str, dict[str, Any]]] = {}
_versioned_cache: dict[bytes, Policy] = {}
_CACHE_SIZE = 1024


def _remember(cache: dict[bytes, Any], key: bytes, value: Any) -> None:
    if len(cache) >= _CACHE_SIZE:
        cache.pop(next(iter(cache)))  # the oldest entry (dicts keep insertion order)
    cache[key] = value


def _composed(
    inst_row: PolicyVersion,
    course_row: PolicyVersion | None,
    comp_row: PolicyVersion | None,
    competency_key: str,
) -> tuple[str, dict[str, Any]]:
    """The rules' hash and stored document (without its number) of these layers."""
    key = orjson.dumps(
        [
            inst_row.document,
            inst_row.bounds or {},
            None if course_row is None else course_row.document,
            None if comp_row is None else comp_row.document,
            competency_key,
        ],
        option=orjson.OPT_SORT_KEYS,
    )
    hit = _composed_cache.get(key)
    if hit is not None:
        return hit
    layers = [
        parse.read_layer(inst_row.document),
        _layer(course_row),
        _layer(comp_row),
        {"competency": competency_key},
    ]
    limits = bounds_mod.read_bounds(inst_row.bounds or {})
    policy = _checked(layers, limits, prefix=f"policy for {competency_key}")
    document = parse.policy_to_dict(policy)
    del document["version"]  # the number is assigned per course and competency
    value = (canonical.policy_hash(policy), document)
    _remember(_composed_cache, key, value)
    return value


def _versioned(row: EffectivePolicy) -> Policy:
    """The typed policy of a numbered effective policy row (rows are never changed)."""
    key = orjson.dumps([row.policy_hash, row.version, row.document], option=orjson.OPT_SORT_KEYS)
    hit = _versioned_cache.get(key)
    if hit is None:
        hit = parse.read_policy(row.document | {"version": row.version})
        _remember(_versioned_cache, key, hit)
    return hit


def in_force(session: Session, *, course_id: int, competency_row: Competency) -> Policy:
    """The policy in force for a course and competency, as ``effective`` composes and checks
    it, but writing nothing: for pages and previews, which read in a read transaction. (On
    SQLite a read transaction that then writes fails at once when another connection, such
    as the worker's sync, committed since it began.) Rules not numbered yet show the number
    the next evaluation will give them.

    Raises: as ``effective``.
    """
    assert competency_row.id is not None
    inst_row, course_row, [comp_row] = _layers(session, course_id, [competency_row])
    policy_hash, document = _composed(inst_row, course_row, comp_row, competency_row.key)
    row = repo.effective_by_hash(session, course_id, competency_row.id, policy_hash)
    if row is not None:
        return _versioned(row)
    version = repo.last_effective_version(session, course_id, competency_row.id) + 1
    return parse.read_policy(document | {"version": version})


def stored(session: Session, *, course_id: int, comp: Competency) -> Policy | None:
    """The course and competency's stored rules composed without the bounds check (what the
    setup page shows while they are outside the bounds), or None if they do not compose."""
    assert comp.id is not None
    row = repo.latest_version(session, repo.INSTITUTION)
    course = _layer(repo.latest_version(session, repo.course_scope(course_id)))
    override = _layer(repo.latest_version(session, repo.competency_scope(course_id, comp.id)))
    try:
        return parse.compose(_layer(row), course, override, {"competency": comp.key})
    except AssessmentError:
        return None


def explain(session: Session, *, decision_id: int) -> dict[str, Any]:
    """A stored decision with the exact policy it was made with.

    Raises:
        NotFound: no such decision.
    """
    row = session.get(Decision, decision_id)
    if row is None:
        raise NotFound(f"no decision {decision_id}")
    policy_row = session.get(EffectivePolicy, row.effective_policy_id)
    assert policy_row is not None
    return {
        "id": row.id,
        "level": row.level,
        "evaluated_at": canonical.iso(row.evaluated_at),
        "policy_version": row.policy_version,
        "policy_hash": row.policy_hash,
        "evidence_hash": row.evidence_hash,
        "policy": policy_row.document,
        "policy_layers": policy_row.layers,
        "decision": row.reasons,
    }


# --- import and export ------------------------------------------------------------------


def export_institution(session: Session) -> dict[str, Any]:
    """The institution defaults and bounds as a policy file."""
    row, _, _ = institution_layers(session)
    return {"defaults": row.document, "bounds": row.bounds or {}}


def export_course(session: Session, *, course_id: int) -> dict[str, Any]:
    """A course's policies as one file that ``microcred evaluate`` reads: institution
    defaults and bounds, the course override and each competency's override."""
    doc = export_institution(session)
    course_row = repo.latest_version(session, repo.course_scope(course_id))
    if course_row is not None:
        doc["course"] = course_row.document
    policies: dict[str, Any] = {}
    for linked in repo.course_competencies(session, course_id):
        assert linked.id is not None
        row = repo.latest_version(session, repo.competency_scope(course_id, linked.id))
        policies[linked.key] = {} if row is None else row.document
    doc["policies"] = policies
    return doc


def _load(text: str, fmt: str, source: str) -> files.Loaded:
    try:
        return files.load_text(text, source, fmt=fmt)
    except files.FileError as exc:
        raise BadInput(str(exc), code="invalid_file") from None


def import_institution(
    session: Session, *, text: str, fmt: str = "", author: str, note: str = ""
) -> PolicyVersion:
    """Import institution defaults and bounds from a JSON or YAML policy file.

    Raises:
        BadInput: the file or a field is invalid (with its line).
    """
    loaded = _load(text, fmt, "institution policy")
    data = loaded.data
    if not isinstance(data, dict) or "defaults" not in data:
        raise BadInput("institution policy: give 'defaults' (and 'bounds')", code="invalid_file")
    extra = sorted(set(data) - {"defaults", "bounds"})
    if extra:
        raise BadInput(
            str(loaded.error(extra[0], "an institution file holds 'defaults' and 'bounds' only")),
            code="invalid_file",
        )
    try:
        policyfile.read_policy_file(
            {"defaults": data["defaults"], "bounds": data.get("bounds") or {}}
        )
    except AssessmentError as exc:
        raise BadInput(str(loaded.error(exc.field, exc.message)), code="invalid_policy") from None
    return save_institution(
        session,
        defaults=data["defaults"],
        bounds=data.get("bounds") or {},
        author=author,
        note=note,
    )


_CANONICAL: dict[str, Callable[[Any], dict[str, Any]]] = {
    "defaults": lambda doc: parse.layer_to_dict(parse.read_layer(doc, "defaults")),
    "bounds": lambda doc: bounds_mod.bounds_to_dict(bounds_mod.read_bounds(doc, "bounds")),
}


def _leaves(doc: Any, path: str = "") -> dict[str, Any]:
    """A document's values by dotted path (``levels.intermediate.threshold``)."""
    if not isinstance(doc, dict) or not doc:
        return {path.removesuffix("."): doc}
    return {k: v for key, sub in doc.items() for k, v in _leaves(sub, f"{path}{key}.").items()}


def import_course(
    session: Session, *, course_id: int, text: str, fmt: str = "", author: str, note: str = ""
) -> list[PolicyVersion]:
    """Import a course's override and competency overrides from a policy file (the shape
    ``export_course`` writes). Institution defaults and bounds in the file must equal the
    current ones: an instructor's import never changes them.

    Raises:
        BadInput: the file or a field is invalid (with its line), a competency is not in
            the catalogue, or the file's institution part differs from the current one.
    """
    loaded = _load(text, fmt, "course policy")
    data = loaded.data
    if not isinstance(data, dict):
        raise BadInput("course policy: must be a mapping with 'course' and/or 'policies'")
    current = export_institution(session)
    checked = {**current, **{k: v for k, v in data.items() if k not in ("defaults", "bounds")}}
    try:
        for part in [p for p in _CANONICAL if p in data]:  # the rules, not how they are spelt
            ours, theirs = (_leaves(_CANONICAL[part](doc)) for doc in (current[part], data[part]))
            if differs := "; ".join(
                f"{k} is {theirs.get(k, 'not set')} in the file, {ours.get(k, 'not set')} in force"
                for k in sorted(ours.keys() | theirs.keys())
                if (k in ours, ours.get(k)) != (k in theirs, theirs.get(k))
            ):
                raise PolicyError(
                    part,
                    f"differs from the institution's: {differs}; only an administrator "
                    "changes it (import it as the institution policy)",
                )
        policyfile.read_policy_file(checked)
    except AssessmentError as exc:
        raise BadInput(str(loaded.error(exc.field, exc.message)), code="invalid_policy") from None
    saved: list[PolicyVersion] = []
    if "course" in data:
        saved.append(
            save_course_override(
                session,
                course_id=course_id,
                document=data["course"] or {},
                author=author,
                note=note,
            )
        )
    policies = data.get("policies") or {}
    if not isinstance(policies, dict):
        raise BadInput(str(loaded.error("policies", "must map competency keys to overrides")))
    for key, document in policies.items():
        row = repo.competency_by_key(session, str(key))
        if row is None:
            raise BadInput(
                str(loaded.error(f"policies.{key}", f"no competency {key!r} in the catalogue")),
                code="invalid_policy",
            )
        saved.append(
            save_competency_override(
                session,
                course_id=course_id,
                competency_row=row,
                document=document or {},
                author=author,
                note=note,
            )
        )
    return saved
