"""Evaluation: ``evaluate_course`` (some learners of a course), ``preview_course`` (no
writes), and what a decision does to a learner's awards, stacked credentials included."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import defer
from sqlmodel import Session, col, func, select

import service
from service import audit, evaluation
from service.assessment import canonical, engine, parse, stack
from service.assessment.types import (
    AssessmentError,
    Evidence,
    Level,
    Policy,
    StackDecision,
    StackPolicy,
    percent,
)
from service.assessment.types import Decision as EngineDecision
from service.db import engine as db_engine
from service.db.models import (
    Award,
    Competency,
    Course,
    CourseSetup,
    Credential,
    Decision,
    EffectivePolicy,
    Person,
)
from service.errors import NotFound
from service.flows.issuing import _held, _issue, _line, _revoke
from service.flows.mapping import item_key, item_label, to_engine
from service.flows.setup_store import course_setup
from service.issuer import inputs as issuer_inputs
from service.issuer import service as issuer_service
from service.policies import repository as policies_repo
from service.policies import service as policies
from service.settings import Settings
from service.sources import store


@dataclass
class Summary:
    """What an evaluation run did."""

    learners: int = 0
    decisions: int = 0
    stored: int = 0
    unchanged: int = 0
    issued: int = 0
    upgraded: int = 0
    pending: int = 0
    flagged: int = 0
    revoked: int = 0
    blocked: int = 0  # a level reached again that a person's revocation keeps from re-award
    queued: int = 0  # learners left to the workers (evaluation_job)
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Row:
    """One learner and competency in the preview: the decision and what the learner holds."""

    person: Person
    competency: Competency
    decision: EngineDecision | None
    held: Award | None
    pending: Award | None
    problem: str = ""
    # A revocation by a person that keeps this level (or a lower one) from being re-awarded.
    blocked: Award | None = None

    @property
    def blocked_text(self) -> str:
        """Why no credential is issued although the rules give a level: a person revoked it
        (docs/awarding.md)."""
        if self.blocked is None or self.held is not None:
            return ""
        level = self.blocked.level.capitalize()
        when = self.blocked.updated_at.strftime("%d %b %Y")
        return (
            f"No credential: {level} was revoked on {when} "
            f"({self.blocked.review or 'no reason given'}). Re-evaluating does not issue "
            f"{level} or a lower level again; a higher level is issued when the evidence "
            "reaches it. Allow re-award to issue what the evidence shows."
        )

    @property
    def failed(self) -> list[str]:
        return [] if self.decision is None else [r.reason for r in self.decision.failed]

    @property
    def gap_text(self) -> str:
        """What is missing for the next level, in words: "For Advanced: <each failed rule>"."""
        if self.decision is None or self.decision.gap is None:
            return ""
        reasons = "; ".join(r.reason for r in self.decision.gap.missing)
        return f"For {self.decision.gap.level.label}: {reasons}" if reasons else ""

    @property
    def gap_short(self) -> str:
        """One line: how far the score is from the next level, else its first missing rule."""
        if self.decision is None or self.decision.gap is None:
            return ""
        gap = self.decision.gap
        if gap.score_needed is not None and gap.score_needed > 0:
            # Rounded up to the hundredth: a gap is never shown smaller than it is.
            needed = math.ceil(gap.score_needed * 10000 - 1e-6) / 10000
            return f"{percent(needed)} short of {gap.level.label}"
        if gap.missing:
            # The first clause says it ("Advanced needs a supervised sitting"); details follow.
            return gap.missing[0].reason.split(";")[0].split(":")[0]
        return ""


def _rank(level_key: str) -> int:
    # Competency levels by their order; a stack's single level ("awarded") ranks above all.
    return int(Level[level_key.upper()]) if level_key.upper() in Level.__members__ else 99


def _blocks(block: Award | None, level_key: str) -> bool:
    return block is not None and _rank(level_key) <= _rank(block.level)


def course_learners(
    session: Session, *, course_id: int, person_ids: Sequence[int] | None = None
) -> list[Person]:
    """The course's learners (``evaluation.course_learner_ids``; of ``person_ids`` only,
    when given: evaluating one learner reads that learner, not the course)."""
    ids = evaluation.course_learner_ids(session, course_id=course_id, person_ids=person_ids)
    if not ids:
        return []
    return list(
        session.exec(select(Person).where(col(Person.id).in_(ids)).order_by(col(Person.id)))
    )


def _evidence_for(
    records: Iterable[store.EvidenceRecord], comp: Competency, policy: Policy
) -> list[Evidence]:
    out = []
    for r in records:
        key = item_key(r)
        if key not in policy.labels:
            continue
        label = policy.labels[key] if policy.labels[key] != key else item_label(r)
        ev = to_engine(r, competency=comp.key, label=label)
        if ev is not None:
            out.append(ev)
    return out


def preview_course(session: Session, *, course_id: int, now: dt.datetime) -> list[Row]:
    """Who would reach which level now and why, without storing anything."""
    # the rules in force without numbering them: a preview reads, it never writes
    plans = [
        (comp, policies.in_force(session, course_id=course_id, competency_row=comp))
        for comp in policies_repo.course_competencies(session, course_id)
    ]
    by_person = _evidence_by_person(session, course_id=course_id, person_ids=None)
    known = _known(session, course_id=course_id, person_ids=None)
    rows: list[Row] = []
    for person in course_learners(session, course_id=course_id):
        assert person.id is not None
        for comp, policy in plans:
            line = (person.id, _line(comp))
            held, pending = _held(known.current.get(line, []))
            evidence = _evidence_for(by_person.get(person.id, []), comp, policy)
            decision, problem = None, ""
            try:
                decision = engine.evaluate(evidence, policy, now, learner=str(person.id))
            except AssessmentError as exc:
                problem = str(exc)
            rows.append(Row(person, comp, decision, held, pending, problem, known.blocks.get(line)))
    return rows


@dataclass
class _Known:
    """What ``evaluate_course`` reads of its learners' ledgers in three queries, not three
    per learner and competency: the latest decision per competency, the issued and pending
    awards per line, and re-award blocks. Each line is acted on once per evaluation, so
    the copy stays true while it runs."""

    decisions: dict[tuple[int, int], Decision]
    current: dict[tuple[int, str], list[Award]]
    blocks: dict[tuple[int, str], Award]


def _known(session: Session, *, course_id: int, person_ids: Sequence[int] | None) -> _Known:
    newest = (
        select(func.max(col(Decision.id)))
        .where(Decision.course_id == course_id)
        .group_by(col(Decision.person_id), col(Decision.competency_id))
    )
    # a decision's reasons (a large JSON) are read only for one that issues again
    decisions_q = select(Decision).options(defer(Decision.reasons))  # type: ignore[arg-type]
    current_q = (
        select(Award)
        .where(Award.course_id == course_id, col(Award.state).in_(("issued", "pending_approval")))
        .order_by(col(Award.id))
    )
    if person_ids is not None:
        newest = newest.where(col(Decision.person_id).in_(person_ids))
        current_q = current_q.where(col(Award.person_id).in_(person_ids))
    decisions_q = decisions_q.where(col(Decision.id).in_(newest))
    current: dict[tuple[int, str], list[Award]] = {}
    for award in session.exec(current_q):
        current.setdefault((award.person_id, award.line_key), []).append(award)
    # Revoked awards that block re-award (by a person) are few: the course's, in one query.
    # Per line the highest level wins (ties: the latest): it bounds what may be re-awarded.
    blocked_q = select(Award).where(
        Award.course_id == course_id,
        Award.state == "revoked",
        col(Award.reaward_blocked).is_(True),
    )
    blocks = {
        (a.person_id, a.line_key): a
        for a in sorted(session.exec(blocked_q), key=lambda a: (_rank(a.level), a.id or 0))
    }
    return _Known(
        decisions={(d.person_id, d.competency_id): d for d in session.exec(decisions_q)},
        current=current,
        blocks=blocks,
    )


def evaluate_course(
    session: Session,
    *,
    settings: Settings,
    course_id: int,
    now: dt.datetime,
    actor: str,
    person_ids: Sequence[int],
) -> Summary:
    """Evaluate these learners of a course and act on the decisions (the evaluation job's
    work: ``evaluation_queue``, which locked their jobs, so no other evaluation of them runs
    beside this one).

    A decision that reaches a level above what the learner holds issues a credential and
    queues its deliveries (or waits for approval); a lower one flags the held credential
    for review or revokes it, as the course says. Unchanged evidence and rules store and
    issue nothing new. The learners' evaluation jobs are left with nothing due.
    """
    if session.get(Course, course_id) is None:
        raise NotFound(f"no course {course_id}")
    setup = course_setup(session, course_id=course_id, create=True)
    session.flush()
    comps = policies_repo.course_competencies(session, course_id)
    found = policies.effective_all(session, course_id=course_id, competency_rows=comps)
    plans = [(comp, policy, row) for comp, (policy, row) in zip(comps, found, strict=True)]
    people = course_learners(session, course_id=course_id, person_ids=person_ids)
    summary = Summary(learners=len(people))
    ids = [p.id or 0 for p in people]
    # read before the results: a change committed meanwhile makes the next digest differ
    seen = evaluation.inputs(session, course_id=course_id, person_ids=ids, salt=_engine_code())
    last = evaluation.last_inputs(session, course_id=course_id, person_ids=ids)
    known = _known(session, course_id=course_id, person_ids=person_ids)
    run = _Run(settings, setup, now, actor, summary, known)
    same = {p for p in ids if _unchanged(run, plans, p, seen[p], last.get(p))}
    by_person = _evidence_by_person(
        session, course_id=course_id, person_ids=[p for p in ids if p not in same]
    )
    acts = [
        _standing(run, person, plans)
        if person.id in same
        else [
            act
            for comp, policy, eff in plans
            if (act := _decide(run, person, comp, policy, eff, by_person.get(person.id or 0, [])))
        ]
        for person in people
    ]
    _act_on(session, run, people, acts)
    digests = {p: i.digest for p, i in seen.items()}
    evaluation.finish(session, course_id=course_id, person_ids=person_ids, now=now, seen=digests)
    session.flush()
    return summary


def _act_on(
    session: Session,
    run: _Run,
    people: Sequence[Person],
    acts: Sequence[Sequence[_Act]],
) -> None:
    """The batch's new decisions in one INSERT (their ids are the awards' references), then
    its awards, outbox and audit rows in one INSERT per table (db.engine.batched_adds)."""
    acts = _store_decisions(session, acts)
    with db_engine.batched_adds(session):
        for person, lines in zip(people, acts, strict=True):
            for act in lines:
                _apply(session, act)
            if run.setup.stacks:
                db_engine.write_held(session)  # _stacks reads the awards just made
                _stacks(session, run, person)


def _store_decisions(session: Session, acts: Sequence[Sequence[_Act]]) -> list[list[_Act]]:
    """The batch's new decisions in one INSERT of plain values (no model instance and ORM
    flush each); the acts again, each new one with its stored row (id included)."""
    new = [a.values for line in acts for a in line if a.values is not None]
    ids = iter(db_engine.insert_ids(session, Decision, new))
    return [[_stored(a, ids) for a in line] for line in acts]


def _stored(act: _Act, ids: Iterator[int]) -> _Act:
    if act.values is None:
        return act
    row = Decision.model_construct(id=next(ids), **act.values)
    return dataclasses.replace(act, decision_row=row, values=None)


def _evidence_by_person(
    session: Session, *, course_id: int, person_ids: Sequence[int] | None
) -> dict[int, list[store.EvidenceRecord]]:
    """The evidence records of these learners (None: the course's) by person id, in one
    query."""
    by_person: dict[int, list[store.EvidenceRecord]] = {}
    for r in store.list_evidence(session, course_id=course_id, person_ids=person_ids):
        by_person.setdefault(r.person_id, []).append(r)
    return by_person


@dataclass(frozen=True)
class _Run:
    """What every decision of one ``evaluate_course`` shares."""

    settings: Settings
    setup: CourseSetup
    now: dt.datetime
    actor: str
    summary: Summary
    known: _Known


@dataclass(frozen=True)
class _Act:
    """A decision on one learner and competency, to act on."""

    run: _Run
    person: Person
    comp: Competency
    target: Level
    decision_row: Decision  # stored, or new (no id) with its values until _store_decisions
    values: dict[str, Any] | None = None

    @property
    def line(self) -> tuple[int, str]:
        return (self.person.id or 0, _line(self.comp))


@functools.cache
def _engine_code() -> str:
    """A digest of the code that turns stored results into decisions (the engine, the
    mapping, this module): a release that changes it runs the engine again for everyone."""
    here = Path(__file__).resolve()
    files = sorted(Path(engine.__file__).resolve().parent.glob("*.py"))
    try:
        code = b"".join(f.read_bytes() for f in [*files, here, here.with_name("mapping.py")])
    except OSError:  # pragma: no cover - installed without sources
        code = service.__version__.encode()
    return hashlib.sha256(code).hexdigest()


def _unchanged(
    run: _Run,
    plans: Sequence[tuple[Competency, Policy, EffectivePolicy]],
    person_id: int,
    seen: evaluation.Inputs,
    last: tuple[str, dt.datetime | None] | None,
) -> bool:
    """Whether the learner's decisions stand without running the engine: their last
    evaluation read the same results and events (``seen``) with the same rules, none of
    them time-dependent (no recency window, no result dated past that evaluation)."""
    if last is None or last[0] != seen.digest or last[1] is None:
        return False
    if seen.latest is not None and seen.latest > last[1]:
        return False
    for comp, policy, eff in plans:
        stored = run.known.decisions.get((person_id, comp.id or 0))
        if policy.recency_days is not None or stored is None:
            return False
        if stored.policy_hash != eff.policy_hash:
            return False
    return True


def _standing(
    run: _Run, person: Person, plans: Sequence[tuple[Competency, Policy, EffectivePolicy]]
) -> list[_Act]:
    """The learner's stored decisions, acted on as if the engine had given them again."""
    acts = []
    for comp, _, _ in plans:
        stored = run.known.decisions[(person.id or 0, comp.id or 0)]
        acts.append(_Act(run, person, comp, Level[stored.level.upper()], stored))
    run.summary.decisions += len(acts)
    run.summary.unchanged += len(acts)
    return acts


def _decide(
    run: _Run,
    person: Person,
    comp: Competency,
    policy: Policy,
    eff: EffectivePolicy,
    records: Sequence[store.EvidenceRecord],
) -> _Act | None:
    """The learner's decision for the competency: the stored one when evidence, rules and
    level are unchanged, else a new row (not added yet)."""
    assert person.id is not None and comp.id is not None
    summary = run.summary
    evidence = _evidence_for(records, comp, policy)
    try:
        decision = engine.evaluate(evidence, policy, run.now, learner=str(person.id))
    except AssessmentError as exc:
        summary.problems.append(f"{person.name or person.sub} / {comp.key}: {exc}")
        return None
    summary.decisions += 1
    last = run.known.decisions.get((person.id, comp.id))
    evidence_hash = canonical.evidence_hash(evidence)
    if (
        last is not None
        and last.policy_hash == eff.policy_hash
        and last.evidence_hash == evidence_hash
        and last.level == decision.level.key
    ):
        summary.unchanged += 1
        return _Act(run, person, comp, decision.level, last)
    values = policies_repo.decision_values(
        decision=decision,
        evidence_hash=evidence_hash,
        person_id=person.id,
        course_id=run.setup.course_id,
        competency_row=comp,
        effective_row=eff,
    )
    summary.stored += 1
    return _Act(run, person, comp, decision.level, Decision.model_construct(**values), values)


def _apply(session: Session, act: _Act) -> None:
    """Turn a decision into award changes (DESIGN.md "Award")."""
    held, pending = _held(act.run.known.current.get(act.line, []))
    held_level = Level[held.level.upper()] if held is not None else Level.NONE
    target, now = act.target, act.run.now
    if pending is not None:
        if target > held_level:
            if pending.level != target.key:
                pending.level, pending.decision_id, pending.updated_at = (
                    target.key,
                    act.decision_row.id,
                    now,
                )
                session.add(pending)
            return
        pending.state, pending.updated_at = "withdrawn", now
        session.add(pending)
    if target > held_level:
        _award_higher(session, act, held)
    elif held is None:
        return
    elif target < held_level:
        _award_lower(session, act, held)
    elif held.review:
        held.review, held.updated_at = "", now  # the evidence supports the level again
        session.add(held)


def _award_higher(session: Session, act: _Act, held: Award | None) -> None:
    """A level above what the learner holds: blocked by a revocation, pending approval, or
    issued."""
    run = act.run
    if _blocks(run.known.blocks.get(act.line), act.target.key):
        # A person revoked this level (or a higher one): the same evidence does not bring
        # it back (docs/awarding.md); the instructor page says so and offers to lift it.
        run.summary.blocked += 1
        return
    if run.setup.approval_required:
        db_engine.add(
            session,
            Award(
                course_id=run.setup.course_id,
                person_id=act.line[0],
                competency_id=act.comp.id,
                line_key=_line(act.comp),
                level=act.target.key,
                state="pending_approval",
                decision_id=act.decision_row.id,
                created_at=run.now,
                updated_at=run.now,
            ),
        )
        run.summary.pending += 1
        return
    _issue_for(session, act, previous=held)
    if held is not None:
        run.summary.upgraded += 1
    else:
        run.summary.issued += 1


def _issue_for(session: Session, act: _Act, *, previous: Award | None) -> None:
    run = act.run
    _issue(
        session,
        settings=run.settings,
        setup=run.setup,
        person=act.person,
        comp=act.comp,
        level=act.target,
        decision_row=act.decision_row,
        previous=previous,
        now=run.now,
        actor=run.actor,
    )


def _award_lower(session: Session, act: _Act, held: Award) -> None:
    """A level below the held credential: revoke it and issue the lower one, or flag it for
    review, as the course's award rules say."""
    run, target = act.run, act.target
    held_level = Level[held.level.upper()]
    if run.setup.on_lower == "revoke":
        reason = f"A re-evaluation gives {target.label}, below {held_level.label}."
        _revoke(
            session,
            settings=run.settings,
            award=held,
            reason=reason,
            actor=run.actor,
            now=run.now,
            by_person=False,
        )
        run.summary.revoked += 1
        if target > Level.NONE:
            _issue_for(session, act, previous=None)
            run.summary.issued += 1
        return
    review = (
        f"A later evaluation gives {target.label}; this credential says {held_level.label}. "
        "Review it: keep it, or revoke it with a reason."
    )
    if held.review != review:
        held.review, held.updated_at = review, run.now
        session.add(held)
        audit.record(
            session,
            actor=run.actor,
            action="award.flagged",
            subject=f"credential:{held.credential_uuid}",
            decision=act.decision_row.id,
            level=target.key,
            held=held.level,
        )
        run.summary.flagged += 1


def _stacks(session: Session, run: _Run, person: Person) -> None:
    """Issue the stacked credentials the learner's issued competency credentials now earn."""
    assert person.id is not None
    setup, now, summary = run.setup, run.now, run.summary
    issued = session.exec(
        select(Award).where(
            Award.course_id == setup.course_id,
            Award.person_id == person.id,
            Award.state == "issued",
            col(Award.line_key).startswith("competency:"),
        )
    ).all()
    held = {a.line_key.removeprefix("competency:"): Level[a.level.upper()] for a in issued}
    by_key = {a.line_key.removeprefix("competency:"): a for a in issued}
    for doc in setup.stacks:
        try:
            stack_policy = parse.read_stack_policy(doc)
        except AssessmentError as exc:
            summary.problems.append(f"stack {doc.get('name')}: {exc}")
            continue
        result = stack.evaluate_stack(held, stack_policy)
        line = (person.id, f"stack:{stack_policy.name}")
        current = run.known.current.setdefault(line, [])
        if not result.awarded or _held(current)[0] is not None:
            continue
        if line in run.known.blocks:
            summary.blocked += 1  # revoked by a person: not re-issued until lifted
            continue
        credential = issuer_service.issue(
            session,
            settings=run.settings,
            award=issuer_inputs.AwardInput(
                learner=issuer_inputs.Learner(
                    lti_user_id=person.sub,
                    email=person.email or None,
                    name=person.name or None,
                    person_id=person.id,
                ),
                template=_stack_template(stack_policy, result, run.settings),
                level_key="awarded",
                awarded_at=now,
            ),
            now=now,
            actor=run.actor,
            parts=_stack_parts(session, stack_policy, by_key),
            audit_scope=audit.Scope(course_id=setup.course_id),
        )
        award = Award(
            course_id=setup.course_id,
            person_id=person.id,
            line_key=line[1],
            level="awarded",
            state="issued",
            credential_uuid=credential.uuid,
            delivery_key=credential.uuid,
            created_at=now,
            updated_at=now,
        )
        session.add(award)
        current.append(award)  # a second stack of the same name sees it
        summary.issued += 1
    session.flush()


def _stack_parts(
    session: Session, stack_policy: StackPolicy, by_key: dict[str, Award]
) -> list[dict[str, Any]]:
    """The documents of the part credentials a stack requires, where issued."""
    parts = []
    for req in stack_policy.requires:
        part = by_key.get(req.competency)
        if part is not None and part.credential_uuid:
            cred = session.exec(
                select(Credential).where(Credential.uuid == part.credential_uuid)
            ).one()
            parts.append(cred.document)
    return parts


def _stack_template(
    stack_policy: StackPolicy, result: StackDecision, settings: Settings
) -> issuer_inputs.LevelTemplate:
    """The stacked credential's template: its name, the stack's reason, the EU elements."""
    return issuer_inputs.LevelTemplate(
        key=f"stack-{stack_policy.name.lower().replace(' ', '-')}"[:200],
        competency_name=stack_policy.name,
        description=result.reason,
        criteria_narrative=result.reason,
        levels=(issuer_inputs.ScaleLevel("awarded", "Awarded"),),
        eu=issuer_inputs.EuElements(
            learning_outcomes=tuple(r.reason for r in result.rules),
            assessment_type="The part credentials it stacks",
            participation_form="Online, in the institution's learning platform",
            quality_assurance=f"Internal quality assurance of {settings.issuer_name}",
            integration_stackability="stackable",
        ),
    )
