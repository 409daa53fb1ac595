"""Issuing and revoking one award's credential, and the award rows they read."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlmodel import Session

from service import audit
from service.assessment import parse
from service.assessment.types import Level, VerificationLevel
from service.db import engine as db_engine
from service.db.models import (
    Award,
    Competency,
    CompetencyLevelTemplate,
    CourseSetup,
    Credential,
    Decision,
    EffectivePolicy,
    Person,
)
from service.delivery import awards as delivery_awards
from service.errors import NotFound
from service.issuer import inputs as issuer_inputs
from service.issuer import service as issuer_service
from service.lti import services as lti_services
from service.policies import badge
from service.policies import repository as policies_repo
from service.settings import Settings


def _held(rows: Sequence[Award]) -> tuple[Award | None, Award | None]:
    issued = next((a for a in reversed(rows) if a.state == "issued"), None)
    pending = next((a for a in reversed(rows) if a.state == "pending_approval"), None)
    return issued, pending


def _line(comp: Competency) -> str:
    return f"competency:{comp.key}"


_LEVELS = (Level.BEGINNING, Level.INTERMEDIATE, Level.ADVANCED)


def _template(
    session: Session, settings: Settings, comp: Competency, level_key: str, *, stackable: bool
) -> issuer_inputs.LevelTemplate:
    assert comp.id is not None
    cache = db_engine.transaction_cache(session, "level_templates")
    # built once per competency (as it reads now), level and kind in a transaction: a worker
    # batch issues many credentials of each, and the template is frozen
    key = (
        level_key,
        stackable,
        comp.id,
        comp.key,
        comp.name,
        comp.description,
        comp.framework_url,
        comp.framework_code,
        comp.framework_name,
        comp.image_sha256,
        tuple(comp.level_descriptions.items()),
    )
    built = cache.get(key)
    if built is None:
        rows = cache.get(comp.id)
        if rows is None:
            rows = cache[comp.id] = {
                t.level: t for t in policies_repo.level_templates(session, comp.id)
            }
        built = cache[key] = _built_template(
            settings, comp, rows.get(level_key), level_key, stackable=stackable
        )
    assert isinstance(built, issuer_inputs.LevelTemplate)
    return built


def _built_template(
    settings: Settings,
    comp: Competency,
    t: CompetencyLevelTemplate | None,
    level_key: str,
    *,
    stackable: bool,
) -> issuer_inputs.LevelTemplate:
    outcome = comp.level_descriptions.get(level_key) or comp.description or comp.name
    eu = issuer_inputs.EuElements(
        learning_outcomes=(outcome,),
        assessment_type=(
            "Rubric-scored work and quizzes in the course, combined by the published rules"
        ),
        participation_form="Online, in the institution's learning platform",
        quality_assurance=(
            f"Internal quality assurance of {settings.issuer_name}: every award records the "
            "rules (policy version) and the evidence it was made from"
        ),
        ects_credits=t.ects_credits if t else None,
        workload_hours=t.workload_hours if t else None,
        eqf_level=t.eqf_level if t else None,
        field_of_study=(t.iscedf_code or None) if t else None,
        integration_stackability="stackable" if stackable else "stand-alone",
    )
    alignments: tuple[issuer_inputs.Alignment, ...] = ()
    if comp.framework_url:
        alignments = (
            issuer_inputs.Alignment(
                target_name=comp.name,
                target_url=comp.framework_url,
                target_code=comp.framework_code or None,
                target_framework=comp.framework_name or None,
            ),
        )
    return issuer_inputs.LevelTemplate(
        key=comp.key,
        competency_name=comp.name,
        description=(t.description if t and t.description else comp.description) or comp.name,
        criteria_narrative=(
            "The level is decided by the course's published rules from the learner's rubric "
            "and quiz results; the credential's evidence lists what counted."
        ),
        levels=tuple(
            issuer_inputs.ScaleLevel(lv.key, lv.label, comp.level_descriptions.get(lv.key, ""))
            for lv in _LEVELS
        ),
        eu=eu,
        alignments=alignments,
        language=t.language if t else "en",
        valid_for_days=t.validity_days if t else None,
        image_url=badge.image_url(settings.public_base_url, comp.image_sha256),
    )


def _evidence_items(reasons: dict[str, Any]) -> tuple[issuer_inputs.EvidenceItem, ...]:
    items = []
    for used in reasons.get("used", []):
        name = str(used.get("label") or used.get("item"))
        if used.get("attempt"):
            name += f" (attempt {used['attempt']})"
        if "rating" in used:
            text = f"Rated {used['rating']}"
        else:
            text = f"Scored {used.get('score', 0):g} of {used.get('max', 0):g}"
        items.append(issuer_inputs.EvidenceItem(name=name, description=text, genre="Assessment"))
    return tuple(items)


def _supervision(reasons: dict[str, Any], required: VerificationLevel) -> str | None:
    """What the credential can honestly claim: the weakest of the sittings the level rests
    on. A level that requires verified sittings is reached on those sittings alone (the
    engine's verification rule), so the weaker results that also counted do not lower it.
    """
    keys = {u.get("verification") for u in reasons.get("used", [])}
    known = [v for v in VerificationLevel if v.key in keys]
    accepted = [v for v in known if v >= required] or known
    return min(accepted).key if accepted else None


def _required_verification(
    session: Session, decision_row: Decision, level: Level
) -> VerificationLevel:
    """The verification the decision's rules ask for ``level``."""
    # Parsed once per transaction and rules version (a batch issues many credentials under
    # the same rules); effective policy rows are never changed.
    cache = db_engine.transaction_cache(session, "effective_policies")
    policy = cache.get(decision_row.effective_policy_id)
    if policy is None:
        row = session.get(EffectivePolicy, decision_row.effective_policy_id)
        if row is None:  # pragma: no cover - a decision always references its rules
            return VerificationLevel.UNSUPERVISED
        policy = parse.read_policy(row.document | {"version": row.version})
        cache[decision_row.effective_policy_id] = policy
    return next(
        (r.verification for lv, r in policy.ladder if lv == level), VerificationLevel.UNSUPERVISED
    )


def _issue(
    session: Session,
    *,
    settings: Settings,
    setup: CourseSetup,
    person: Person,
    comp: Competency,
    level: Level,
    decision_row: Decision,
    previous: Award | None,
    now: dt.datetime,
    actor: str,
    approved_by: str = "",
) -> Award | None:
    """Issue the level's credential and record its award and deliveries; the award row, or
    None inside a worker's batch (``db.engine.holding``: written with the batch's rows)."""
    assert person.id is not None
    reasons = decision_row.reasons
    supervision = _supervision(reasons, _required_verification(session, decision_row, level))
    award_input = issuer_inputs.AwardInput(
        learner=issuer_inputs.Learner(
            lti_user_id=person.sub,
            email=person.email or None,
            name=person.name or None,
            person_id=person.id,
        ),
        template=_template(
            session, settings, comp, level.key, stackable=_in_stack(setup, comp.key)
        ),
        level_key=level.key,
        awarded_at=now,
        evidence=_evidence_items(reasons),
        supervision=supervision,  # type: ignore[arg-type]
        grade=level.label,
    )
    # in a worker's batch the credential, award, outbox and audit rows are held as plain
    # values and written with the batch's (one INSERT per table, no model instances)
    holding = db_engine.holding(session)
    credential: Credential | issuer_service.Issued = (
        issuer_service.issue_held if holding else issuer_service.issue
    )(
        session,
        settings=settings,
        award=award_input,
        now=now,
        actor=actor,
        audit_scope=audit.Scope(course_id=setup.course_id),
    )
    delivery_key = previous.delivery_key if previous is not None else credential.uuid
    snapshot = _snapshot(
        session,
        setup=setup,
        person=person,
        comp=comp,
        level=level,
        credential=credential,
        settings=settings,
        delivery_key=delivery_key,
    )
    if previous is not None:
        previous.state, previous.updated_at = "superseded", now
        session.add(previous)
        delivery_awards.propagate_upgrade(session, snapshot=snapshot, now=now)
    else:
        # a first credential on this line: its delivery key is the new credential's uuid
        delivery_awards.enqueue_issue(session, snapshot=snapshot, now=now, new_credential=True)
    values = _award_values(
        setup, person, comp, level, credential.uuid, delivery_key, decision_row, approved_by, now
    )
    if holding:
        db_engine.add_values(session, Award, values)
        return None
    award = Award(**values)
    session.add(award)
    session.flush()
    return award


def _award_values(
    setup: CourseSetup,
    person: Person,
    comp: Competency,
    level: Level,
    credential_uuid: str,
    delivery_key: str,
    decision_row: Decision,
    approved_by: str,
    now: dt.datetime,
) -> dict[str, Any]:
    """The columns of an issued award's row."""
    return {
        "course_id": setup.course_id,
        "person_id": person.id,
        "competency_id": comp.id,
        "line_key": _line(comp),
        "level": level.key,
        "state": "issued",
        "credential_uuid": credential_uuid,
        "delivery_key": delivery_key,
        "decision_id": decision_row.id,
        "approved_by": approved_by,
        "created_at": now,
        "updated_at": now,
    }


def _in_stack(setup: CourseSetup, key: str) -> bool:
    return any(key == str(r.get("competency")) for s in setup.stacks for r in s.get("requires", []))


def _snapshot(
    session: Session,
    *,
    setup: CourseSetup,
    person: Person,
    comp: Competency,
    level: Level,
    credential: Credential | issuer_service.Issued,
    settings: Settings,
    delivery_key: str,
) -> delivery_awards.CredentialSnapshot:
    ags = None
    if setup.ags_lineitems_url and lti_services.AGS_LINEITEM in setup.ags_scopes:
        ags = {
            "platform_id": person.platform_id,
            "lineitems": setup.ags_lineitems_url,
            "resource_id": f"microcred:{comp.key}",
            "label": f"{comp.name} (competency level)",
            "user_id": person.sub,
            "score": int(level),
            "maximum": int(Level.ADVANCED),
            "comment": f"{level.label}: {issuer_service.credential_url(settings, credential.uuid)}",
        }
    return delivery_awards.CredentialSnapshot(
        credential_id=delivery_key,
        person_id=person.id,
        recipient_email=person.email or "",
        given_name=person.given_name or "",
        family_name=person.family_name or "",
        competency=comp.key,
        competency_name=comp.name,
        level=level.key,
        issued_at=credential.issued_at,
        credential_url=issuer_service.credential_url(settings, credential.uuid),
        expires_at=credential.valid_until,
        ags=ags,
    )


def _revoke(
    session: Session,
    *,
    settings: Settings,
    award: Award,
    reason: str,
    actor: str,
    now: dt.datetime,
    by_person: bool,
) -> Credential:
    """Revoke the award's credential: status list, revocation queued to every repository
    it reached (none for a superseded one: they hold the line's badge, a higher level), the
    ledger. A person's revocation blocks re-award (``evaluating._Known.blocks``), also as
    the reason of one the rule revoked (``again``: its bit and repositories as they are)."""
    assert award.credential_uuid is not None
    uuid, again = award.credential_uuid, award.state == "revoked" and not award.revoked_by
    credential = issuer_service.revoke(
        session, settings=settings, uuid=uuid, reason=reason, actor=actor, now=now, again=again
    )
    if award.state == "issued":
        delivery_awards.propagate_revocation(session, award.delivery_key, reason, now=now)
    award.state, award.review, award.updated_at = "revoked", reason, now
    award.reaward_blocked = by_person
    award.revoked_by = actor[:300] if by_person else ""
    session.add(award)
    return credential


def _course_award(session: Session, *, course_id: int, award_id: int) -> Award:
    award = session.get(Award, award_id)
    # Another course's award is "not found": a session may act on its own course only.
    if award is None or award.course_id != course_id:
        raise NotFound(f"no award {award_id} in this course")
    return award
