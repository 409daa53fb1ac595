"""Course wiring by the instructor: award rules, the course's LMS source, its competencies
and their levels."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, select

from service import audit, evaluation
from service.assessment.reading import fraction_doc
from service.assessment.types import Policy
from service.db.models import Competency, Course, CourseSetup, SourceConnection
from service.errors import BadInput, NotFound, ServiceError
from service.flows.setup_store import course_setup
from service.flows.syncing import request_sync
from service.lti import platforms as lti_platforms
from service.policies import institution
from service.policies import repository as policies_repo
from service.policies import service as policies
from service.sources import store, sync


def set_award_rules(
    session: Session,
    *,
    course_id: int,
    on_lower: str,
    approval_required: bool,
    actor: str,
    now: dt.datetime,
) -> CourseSetup:
    """What a lower decision does to a held credential, and whether awards need approval."""
    if on_lower not in ("flag", "revoke"):
        raise BadInput(f"on_lower: must be 'flag' or 'revoke', not {on_lower!r}")
    setup = course_setup(session, course_id=course_id, create=True)
    setup.on_lower, setup.approval_required, setup.updated_at = on_lower, approval_required, now
    session.add(setup)
    audit.record(
        session,
        actor=actor,
        action="course.award_rules_changed",
        subject=f"course:{course_id}",
        on_lower=on_lower,
        approval_required=approval_required,
    )
    session.flush()
    evaluation.enqueue(session, course_id=course_id, reason="award rules changed", now=now)
    return setup


def connect_source(
    session: Session,
    *,
    course_id: int,
    connection_id: int | None,
    lms_course_id: str,
    actor: str,
    now: dt.datetime,
    interval_seconds: int | None = None,
) -> CourseSetup:
    """Name the source connection (and the LMS's own course id) a course syncs from; the
    worker pulls it from now on (the first pull is due at once)."""
    if connection_id is not None and session.get(SourceConnection, connection_id) is None:
        raise NotFound(f"no source connection {connection_id}")
    if interval_seconds is not None and interval_seconds < 5:
        raise BadInput("interval: at least 5 seconds between pulls")
    if session.get(Course, course_id) is None:
        raise NotFound(f"no course {course_id}")
    setup = course_setup(session, course_id=course_id, create=True)
    setup.source_connection_id, setup.lms_course_id = connection_id, lms_course_id.strip()[:255]
    if interval_seconds is not None:
        setup.sync_interval_seconds = interval_seconds
    setup.updated_at = now
    session.add(setup)
    if connection_id is not None:
        request_sync(session, course_id=course_id, now=now)
    audit.record(
        session,
        actor=actor,
        action="course.source_connected",
        subject=f"course:{course_id}",
        source_connection=connection_id,
        lms_course_id=setup.lms_course_id,
    )
    session.flush()
    return setup


def connect_course(
    session: Session,
    *,
    course_id: int,
    kind: str,
    base_url: str,
    token: str,
    lms_course_id: str,
    actor: str,
    now: dt.datetime,
) -> CourseSetup:
    """Connect a course to its LMS data API from the instructor's page: the course's own
    connection (created, or updated in place), its token encrypted at rest. An empty
    ``token`` keeps the stored one (it is never shown back)."""
    if kind not in sync.KINDS:
        raise BadInput(f"kind: one of {', '.join(sync.KINDS)}, not {kind[:20]!r}")
    url = lti_platforms.check_url(base_url, what="LMS address").rstrip("/")
    lms_course_id = lms_course_id.strip()
    if not lms_course_id.isdigit():
        raise BadInput(
            f"LMS course id: a number, not {lms_course_id[:40]!r}",
            hint="Moodle: the id= in the course's address (course/view.php?id=…); Canvas: "
            "the number after /courses/ in the course's address.",
        )
    _course, platform_id = store.platform_of_course(session, course_id=course_id)
    name = f"course-{course_id}"
    row = session.exec(select(SourceConnection).where(SourceConnection.name == name)).first()
    if row is None:
        if not token.strip():
            raise BadInput(
                "token: required for a new connection",
                hint="Moodle: a web service token of the service user (docs/evidence-sources.md);"
                " Canvas: an access token of a teacher or admin.",
            )
        row = SourceConnection(name=name, kind=kind, base_url=url, access_token=token.strip())
    row.kind, row.base_url, row.platform_id, row.active = kind, url, platform_id, True
    if token.strip():
        row.access_token = token.strip()
    row.updated_at = now
    session.add(row)
    session.flush()
    return connect_source(
        session,
        course_id=course_id,
        connection_id=row.id,
        lms_course_id=lms_course_id,
        actor=actor,
        now=now,
    )


@dataclass(frozen=True)
class CompetencySetup:
    """One course competency as the instructor edits it."""

    competency: Competency
    policy: Policy | None  # the rules stored, even while ``problem`` says they do not fit
    problem: str
    thresholds: dict[str, str]  # level key -> "65%"
    verification: dict[str, str]  # level key -> verification key
    bounds: dict[str, str]  # level key -> "55% to 80%"
    items: tuple[str, ...]


def _bounds_text(doc: dict[str, Any]) -> dict[str, str]:
    out = {}
    for level, entry in (doc.get("levels") or {}).items():
        rng = (entry or {}).get("threshold") or {}
        low, high = rng.get("min"), rng.get("max")
        if low is not None and high is not None:
            out[str(level)] = f"{low} to {high}"
        elif low is not None:
            out[str(level)] = f"at least {low}"
        elif high is not None:
            out[str(level)] = f"at most {high}"
    return out


def course_competencies(session: Session, *, course_id: int) -> list[CompetencySetup]:
    """The course's competencies with their rules in force and the institution's bounds."""
    inst = policies_repo.latest_version(session, policies_repo.INSTITUTION)
    bounds = _bounds_text(inst.bounds or {}) if inst is not None else {}
    out = []
    for comp in policies_repo.course_competencies(session, course_id):
        problem = ""
        policy: Policy | None
        try:
            # never numbered here: the setup and learners pages read in a read transaction
            policy = policies.in_force(session, course_id=course_id, competency_row=comp)
        except ServiceError as exc:
            # Rules outside the bounds still show (and save back) what is stored: a form of
            # empty boxes would drop the whole mapping on the next save.
            problem, policy = exc.detail, policies.stored(session, course_id=course_id, comp=comp)
        if policy is None:
            out.append(CompetencySetup(comp, None, problem, {}, {}, bounds, ()))
            continue
        out.append(
            CompetencySetup(
                comp,
                policy,
                problem,
                {lv.key: str(fraction_doc(rule.threshold)) for lv, rule in policy.ladder},
                {lv.key: rule.verification.key for lv, rule in policy.ladder},
                bounds,
                tuple(m.item for m in policy.items),
            )
        )
    return out


def save_competency_setup(
    session: Session,
    *,
    course_id: int,
    competency_key: str,
    items: Sequence[tuple[str, str]],
    thresholds: dict[str, str],
    actor: str,
) -> int:
    """Store the instructor's mapping and thresholds as a new version of the course and
    competency override (checked against the institution bounds; errors name the field),
    and queue the evaluation of every learner of the course; returns how many."""
    comp = policies.competency(session, competency_key)
    assert comp.id is not None
    if policies_repo.course_link(session, course_id, comp.id) is None:
        raise NotFound(f"{competency_key!r} is not a competency of this course")
    latest = policies_repo.latest_version(
        session, policies_repo.competency_scope(course_id, comp.id)
    )
    document = dict(latest.document) if latest is not None else {}
    document["items"] = [{"item": key, "label": label} for key, label in items]
    levels = dict(document.get("levels") or {})
    for level, value in thresholds.items():
        if level not in ("beginning", "intermediate", "advanced"):
            raise BadInput(f"levels.{level}: not a level")
        threshold = institution.percent_text(value, f"{comp.name}: {level.capitalize()} threshold")
        if threshold is None:
            continue
        entry = levels.get(level)
        entry = dict(entry) if isinstance(entry, dict) else {}
        entry["threshold"] = threshold
        levels[level] = entry
    if levels:
        document["levels"] = levels
    try:
        policies.save_competency_override(
            session,
            course_id=course_id,
            competency_row=comp,
            document=document,
            author=actor,
            note="instructor page",
        )
    except BadInput as exc:
        # "document.levels.advanced.threshold: …" -> "Advanced threshold: …" for people.
        detail = re.sub(
            r"^(?:document|competencies\.[^.]+)\.levels\.(\w+)\.(\w+): ",
            lambda m: f"{m[1].capitalize()} {m[2]}: ",
            exc.detail,
        )
        raise BadInput(
            f"{comp.name}: {detail}",
            hint="Thresholds must stay inside the range your institution allows (shown next "
            "to each level) and rise from Beginning to Advanced.",
        ) from None
    audit.record(
        session,
        actor=actor,
        action="course.competency_setup_changed",
        subject=f"course:{course_id}",
        competency=competency_key,
    )
    # Number the new rules now, in this write transaction, so pages that read them later
    # find them and never have to write.
    policies.effective(session, course_id=course_id, competency_row=comp)
    return evaluation.enqueue(session, course_id=course_id, reason="mapping or thresholds changed")


def add_competency(session: Session, *, course_id: int, competency_key: str, actor: str) -> None:
    """Assess a catalogue competency in the course."""
    comp = policies.competency(session, competency_key)
    policies.attach(session, course_id=course_id, competency_row=comp)
    audit.record(
        session,
        actor=actor,
        action="course.competency_added",
        subject=f"course:{course_id}",
        competency=competency_key,
    )


def create_course_competency(
    session: Session,
    *,
    course_id: int,
    name: str,
    description: str,
    level_descriptions: dict[str, str],
    actor: str,
) -> Competency:
    """An instructor's new competency: added to the catalogue (its key made from the name)
    and assessed in the course at once. The level descriptions are what each level's
    credential says the learner can do (its criteria)."""
    name = name.strip()
    if not name:
        raise BadInput("name: give the competency a name, e.g. 'Data cleaning'")
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:90] or "competency"
    key = base
    n = 2
    while policies_repo.competency_by_key(session, key) is not None:
        key, n = f"{base}-{n}", n + 1
    comp = policies.create_competency(
        session,
        key=key,
        name=name,
        author=actor,
        description=description.strip(),
        level_descriptions={k: v.strip() for k, v in level_descriptions.items() if v.strip()},
    )
    add_competency(session, course_id=course_id, competency_key=key, actor=actor)
    return comp
