"""The evidence store: match learners, write results idempotently, keep every version.

Every way in (CSV, push API, LMS sync) goes through :func:`apply`, which

1. matches each result's learner to a ``person`` of the course's platform (LMS user id
   via ``person_link``, then LTI ``sub``, then a unique e-mail), rejecting the rest with
   a reason;
2. rejects a second record with the same natural key in one batch;
3. inserts new evidence, updates changed evidence (``version`` + 1, a new
   ``evidence_revision`` row) and leaves identical evidence alone;
4. records verification events the same way (idempotent per sitting).

It writes inside a SAVEPOINT, so the caller can keep the result, or undo it when the
all-or-nothing rule rejects the batch, and still report exact counts; results bound to be
undone (a dry run, an all-or-nothing batch with a rejected row) are only counted. Rows go
in as plain values, one statement per table. Nothing here commits: the route, CLI command
or worker iteration does.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import bindparam, func, update
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from service import audit
from service.db import engine as db_engine
from service.db.models import (
    Course,
    Deployment,
    Evidence,
    EvidenceRevision,
    ImportRun,
    Person,
    PersonLink,
)
from service.db.models import VerificationEvent as EventRow
from service.errors import NotFound
from service.sources.evidence import EvidenceRecord, list_evidence
from service.sources.types import (
    LearnerRef,
    Problem,
    Result,
    SyncReport,
    Verification,
    VerificationEvent,
)

__all__ = [
    "EvidenceRecord",
    "PersonResolver",
    "apply",
    "link_person",
    "list_evidence",
    "platform_of_course",
]

Outcome = Literal["new", "updated", "unchanged"]


def platform_of_course(session: Session, *, course_id: int) -> tuple[Course, int]:
    row = session.exec(
        select(Course, Deployment.platform_id)
        .join(Deployment, col(Deployment.id) == col(Course.deployment_id))
        .where(Course.id == course_id)
    ).first()
    if row is None:
        raise NotFound(f"course {course_id} does not exist")
    return row[0], row[1]


def link_person(session: Session, *, platform_id: int, lms_user_id: str, person_id: int) -> None:
    """Remember the LMS's own user id for a person (e.g. Canvas ``$Canvas.user.id``)."""
    row = session.exec(
        select(PersonLink).where(
            PersonLink.platform_id == platform_id, PersonLink.lms_user_id == lms_user_id
        )
    ).first()
    if row is None:
        session.add(
            PersonLink(platform_id=platform_id, lms_user_id=lms_user_id, person_id=person_id)
        )
    else:
        row.person_id = person_id
        session.add(row)
    session.flush()


class PersonResolver:
    """Matches :class:`LearnerRef` values to people of one platform, with a cache."""

    def __init__(self, session: Session, *, platform_id: int) -> None:
        self._session = session
        self._platform_id = platform_id
        self._cache: dict[LearnerRef, int | str] = {}

    def resolve(self, learner: LearnerRef) -> int | str:
        """The person id, or a sentence saying why no single person matches."""
        if learner not in self._cache:
            self._cache[learner] = self._lookup(learner)
        return self._cache[learner]

    def _lookup(self, learner: LearnerRef) -> int | str:
        s, pid = self._session, self._platform_id
        if learner.lms_user_id:
            link = s.exec(
                select(PersonLink.person_id).where(
                    PersonLink.platform_id == pid, PersonLink.lms_user_id == learner.lms_user_id
                )
            ).first()
            if link is not None:
                return link
        for sub in (learner.sub, learner.lms_user_id):
            if sub:
                found = s.exec(
                    select(Person.id).where(Person.platform_id == pid, Person.sub == sub)
                ).first()
                if found is not None:
                    return found
        if learner.email:
            ids = s.exec(
                select(Person.id).where(
                    Person.platform_id == pid,
                    func.lower(Person.email) == learner.email.strip().lower(),
                )
            ).all()
            if len(ids) == 1 and ids[0] is not None:
                return ids[0]
            if len(ids) > 1:
                return "the e-mail matches more than one person; identify the learner by sub"
        return (
            f"no learner of this platform matches ({learner.describe()}); the learner must "
            "launch the tool once or be in the synced roster"
        )


def _values(r: Result, verification: Verification) -> dict[str, Any]:
    """The stored, comparable values of a result (everything but the natural key)."""
    return {
        "item_title": r.item_title[:500],
        "criterion_title": r.criterion_title[:1000],
        "score": r.score,
        "max_score": r.max_score,
        "level_id": r.level.id if r.level else None,
        "level_name": r.level.name[:1000] if r.level else None,
        "level_points": r.level.points if r.level else None,
        "level_scale": [list(x) for x in r.level.scale] if r.level else [],
        "submitted_at": r.submitted_at,
        "graded_at": r.graded_at,
        "verification": verification.value,
        "asserted_by": r.asserted_by.value,
        "note": r.note[:1000],
    }


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in values.items()}


def _natural_key(row: Evidence) -> tuple[int, tuple[str, str, str, str, int]]:
    return row.person_id, (row.origin, row.source_kind, row.item_id, row.criterion_id, row.attempt)


_KEY_COLUMNS = ("person_id", "origin", "source_kind", "item_id", "criterion_id", "attempt")
_VALUE_COLUMNS = (  # _values' keys
    "item_title",
    "criterion_title",
    "score",
    "max_score",
    "level_id",
    "level_name",
    "level_points",
    "level_scale",
    "submitted_at",
    "graded_at",
    "verification",
    "asserted_by",
    "note",
)
# what the audit event of a removed result keeps
_REMOVED_LAST = tuple(k for k in _VALUE_COLUMNS if k not in ("level_scale", "note"))


@dataclass(frozen=True)
class _Stored:
    """An evidence row as the import compares it: id, version and the ``_values``."""

    id: int
    version: int
    values: dict[str, Any]


def _stored(
    session: Session, *, course_id: int, origins: Sequence[str]
) -> dict[tuple[int, tuple[str, str, str, str, int]], _Stored]:
    """The course's evidence of ``origins`` by natural key, as plain values (one read, no
    model instance per row)."""
    t = db_engine.table(Evidence)
    q = sa_select(
        t.c.id, t.c.version, *(t.c[k] for k in _KEY_COLUMNS), *(t.c[k] for k in _VALUE_COLUMNS)
    ).where(t.c.course_id == course_id, t.c.origin.in_(origins))
    out = {}
    for row in session.execute(q):
        person_id, *key = row[2:8]
        out[(person_id, tuple(key))] = _Stored(
            row[0], row[1], dict(zip(_VALUE_COLUMNS, row[8:], strict=True))
        )
    return out


@dataclass
class _Plan:
    """What a batch of results does to the stored evidence."""

    outcomes: list[Outcome] = field(default_factory=list)
    fresh: list[tuple[int, Result, dict[str, Any]]] = field(default_factory=list)
    changed: list[tuple[_Stored, dict[str, Any]]] = field(default_factory=list)


def _plan(session: Session, *, course_id: int, todo: Sequence[tuple[int, Result]]) -> _Plan:
    """Each result new, updated or unchanged against what is stored (nothing written)."""
    origins = sorted({r.origin for _, r in todo})
    stored = _stored(session, course_id=course_id, origins=origins)
    plan = _Plan()
    for person_id, result in todo:
        values = _values(result, result.verification)
        row = stored.get((person_id, result.key_parts()))
        if row is None:
            plan.fresh.append((person_id, result, values))
            plan.outcomes.append("new")
        elif row.values != values:
            plan.changed.append((row, values))
            plan.outcomes.append("updated")
        else:
            plan.outcomes.append("unchanged")
    return plan


def _write_all(
    session: Session,
    *,
    course_id: int,
    todo: Sequence[tuple[int, Result]],
    run_id: int | None,
    now: dt.datetime,
    write: bool = True,
) -> list[Outcome]:
    """Upsert many results with one read and one INSERT per table, as plain values (a
    course sync or a CSV file is thousands of rows); ``write=False`` only counts (a dry
    run). If a concurrent import inserted some of the same keys meanwhile, the batch is
    planned again, which turns those into updates."""
    if not todo:
        return []
    plan = _plan(session, course_id=course_id, todo=todo)
    if not write:
        return plan.outcomes
    while plan.fresh and not _insert_fresh(session, course_id, plan.fresh, run_id=run_id, now=now):
        # Someone else inserted some of these keys first (and committed: the INSERT waited
        # for them). The savepoint undid this batch's INSERT, so read again: each result
        # becomes new, updated or unchanged against what is there now.
        fresh = len(plan.fresh)
        plan = _plan(session, course_id=course_id, todo=todo)
        assert len(plan.fresh) < fresh, "the INSERT was refused, but no key was taken"
    _update_all(session, plan.changed, run_id=run_id, now=now)
    revisions = [(row.id, row.version + 1, values) for row, values in plan.changed]
    if plan.fresh:
        origins = sorted({r.origin for _, r, _ in plan.fresh})
        ids = _stored_ids(session, course_id=course_id, origins=origins)
        revisions[:0] = [(ids[(p, r.key_parts())], 1, values) for p, r, values in plan.fresh]
    with db_engine.batched_adds(session):
        for evidence_id, version, values in revisions:
            db_engine.add_values(
                session,
                EvidenceRevision,
                {
                    "evidence_id": evidence_id,
                    "version": version,
                    "values": _jsonable(values),
                    "import_run_id": run_id,
                    "recorded_at": now,
                },
            )
    return plan.outcomes


def _insert_fresh(
    session: Session,
    course_id: int,
    fresh: Sequence[tuple[int, Result, dict[str, Any]]],
    *,
    run_id: int | None,
    now: dt.datetime,
) -> bool:
    """The new rows in one INSERT inside a savepoint; False (nothing written) when a
    concurrent import inserted one of their keys first."""
    try:
        with session.begin_nested(), db_engine.batched_adds(session):
            for person_id, result, values in fresh:
                row = _new_values(course_id, person_id, result, values, run_id, now)
                db_engine.add_values(session, Evidence, row)
    except IntegrityError:
        return False
    return True


def _new_values(
    course_id: int,
    person_id: int,
    result: Result,
    values: dict[str, Any],
    run_id: int | None,
    now: dt.datetime,
) -> dict[str, Any]:
    """A new evidence row's columns."""
    return {
        "course_id": course_id,
        "person_id": person_id,
        "origin": result.origin,
        "source_kind": result.kind.value,
        "item_id": result.item_id,
        "criterion_id": result.criterion_id,
        "attempt": result.attempt,
        "import_run_id": run_id,
        "created_at": now,
        "updated_at": now,
        **values,
    }


def _update_all(
    session: Session,
    changed: Sequence[tuple[_Stored, dict[str, Any]]],
    *,
    run_id: int | None,
    now: dt.datetime,
) -> None:
    """The changed rows' next versions, one executemany UPDATE; a model instance of one of
    them that the session holds is expired, so it reads the new values."""
    if not changed:
        return
    t = db_engine.table(Evidence)
    columns: dict[str, Any] = {
        k: bindparam(f"v_{k}") for k in (*_VALUE_COLUMNS, "version", "import_run_id", "updated_at")
    }
    session.execute(
        update(t).where(t.c.id == bindparam("v_id")).values(columns),
        [
            {
                "v_id": row.id,
                "v_version": row.version + 1,
                "v_import_run_id": run_id,
                "v_updated_at": now,
                **{f"v_{k}": v for k, v in values.items()},
            }
            for row, values in changed
        ],
    )
    ids = {row.id for row, _ in changed}
    for obj in list(session.identity_map.values()):
        if isinstance(obj, Evidence) and obj.id in ids:
            session.expire(obj)


def _stored_ids(
    session: Session, *, course_id: int, origins: Sequence[str]
) -> dict[tuple[int, tuple[str, str, str, str, int]], int]:
    """The ids of the course's evidence of ``origins`` by natural key (rows just inserted)."""
    t = db_engine.table(Evidence)
    q = sa_select(t.c.id, *(t.c[k] for k in _KEY_COLUMNS)).where(
        t.c.course_id == course_id, t.c.origin.in_(origins)
    )
    return {(person_id, tuple(key)): id_ for id_, person_id, *key in session.execute(q)}


def _record_event(
    session: Session,
    *,
    course_id: int,
    person_id: int,
    event: VerificationEvent,
    run_id: int | None,
    now: dt.datetime,
) -> Outcome:
    attempt = event.attempt or 0
    row = session.exec(
        select(EventRow).where(
            EventRow.course_id == course_id,
            EventRow.person_id == person_id,
            EventRow.origin == event.origin,
            EventRow.item_id == event.item_id,
            EventRow.attempt == attempt,
            EventRow.sitting_id == event.sitting_id,
        )
    ).first()
    values: dict[str, Any] = {
        "level": event.level.value,
        "asserted_by": event.asserted_by.value,
        "occurred_at": event.occurred_at,
        "note": event.note[:1000],
    }
    if row is None:
        session.add(
            EventRow(
                course_id=course_id,
                person_id=person_id,
                origin=event.origin,
                item_id=event.item_id,
                attempt=attempt,
                sitting_id=event.sitting_id,
                import_run_id=run_id,
                created_at=now,
                updated_at=now,
                **values,
            )
        )
        session.flush()
        return "new"
    if {k: getattr(row, k) for k in values} == values:
        return "unchanged"
    # Keep the statement being replaced: a verification level is never silently lost.
    audit.record(
        session,
        actor=f"import-run:{run_id}",
        action="verification_event.changed",
        subject=f"verification_event:{row.id}",
        previous={k: _jsonable({k: getattr(row, k)})[k] for k in values},
    )
    for k, v in values.items():
        setattr(row, k, v)
    row.import_run_id, row.updated_at = run_id, now
    session.add(row)
    session.flush()
    return "updated"


def apply(
    session: Session,
    *,
    course_id: int,
    results: Sequence[tuple[str, Result]],
    events: Sequence[tuple[str, VerificationEvent]] = (),
    problems: Iterable[Problem] = (),
    run: ImportRun,
    keep: Literal["always", "if_valid", "never"],
    now: dt.datetime,
    remove_missing: str | None = None,
) -> SyncReport:
    """Write ``results`` and ``events`` (each tagged with where it came from) for a course.

    ``problems`` are the records the caller already rejected (parse errors). ``keep``:
    ``always`` writes the valid records even if some were rejected; ``if_valid`` writes
    only when nothing was rejected (all-or-nothing); ``never`` is a dry run. The report
    counts what was (or would have been) new, updated and unchanged either way, and
    ``run`` (already added by the caller) gets the counts and the problems.

    ``remove_missing`` (an origin, for a complete LMS pull): the course's results of that
    origin that ``results`` no longer contain were removed in the LMS; they are deleted,
    each with an audit event keeping its last values.
    """
    with session.no_autoflush:  # the caller's pending run must not reach the DB first
        _course, platform_id = platform_of_course(session, course_id=course_id)
    report = SyncReport(rejected=list(problems))
    resolver = PersonResolver(session, platform_id=platform_id)
    session.flush()  # the run row needs its id before the savepoint
    savepoint = session.begin_nested()
    seen, todo = _distinct_results(resolver, results, report)
    # Results that will be undone (a dry run, a rejected all-or-nothing batch) are only
    # counted: nothing is written for them.
    undone = keep == "never" or (keep == "if_valid" and bool(report.rejected))
    outcomes = _write_all(
        session, course_id=course_id, todo=todo, run_id=run.id, now=now, write=not undone
    )
    for (person_id, _result), outcome in zip(todo, outcomes, strict=True):
        setattr(report, outcome, getattr(report, outcome) + 1)
        if outcome != "unchanged":
            report.changed_people.add(person_id)
    if remove_missing is not None:
        _remove_missing(
            session,
            course_id=course_id,
            origin=remove_missing,
            keep=set(seen),
            run=run,
            report=report,
        )
    for where, event in events:
        person = resolver.resolve(event.learner)
        if isinstance(person, str):
            report.rejected.append(Problem(where, "learner", person))
            continue
        _record_event(
            session, course_id=course_id, person_id=person, event=event, run_id=run.id, now=now
        )
        report.events += 1
    keep_it = keep == "always" or (keep == "if_valid" and not report.rejected)
    if keep_it:
        savepoint.commit()
    else:
        savepoint.rollback()
    report.applied = keep_it
    report.rejected.sort(key=_where_order)
    _record_run(run, report, course_id=course_id, applied=keep_it, now=now)
    session.add(run)
    session.flush()
    # A dry run's run row is never committed; do not hand out its id.
    report.import_run_id = run.id if keep != "never" else None
    return report


def _distinct_results(
    resolver: PersonResolver, results: Sequence[tuple[str, Result]], report: SyncReport
) -> tuple[dict[tuple[int, tuple[str, str, str, str, int]], str], list[tuple[int, Result]]]:
    """The results to write, by resolved person; an unknown learner or a result given twice
    is added to ``report.rejected``. Also returns where each kept result came from."""
    seen: dict[tuple[int, tuple[str, str, str, str, int]], str] = {}
    todo: list[tuple[int, Result]] = []
    for where, result in results:
        person = resolver.resolve(result.learner)
        if isinstance(person, str):
            report.rejected.append(Problem(where, "learner", person))
            continue
        key = (person, result.key_parts())
        if key in seen:
            report.rejected.append(
                Problem(
                    where,
                    "item_id",
                    f"the same result (learner, item, criterion, attempt) is already "
                    f"given at {seen[key]}; keep one of them",
                )
            )
            continue
        seen[key] = where
        todo.append((person, result))
    return seen, todo


def _record_run(
    run: ImportRun, report: SyncReport, *, course_id: int, applied: bool, now: dt.datetime
) -> None:
    """The import run's counts, problems and outcome."""
    run.course_id = course_id
    run.new, run.updated, run.unchanged = report.new, report.updated, report.unchanged
    run.rejected = len(report.rejected)
    run.problems = [
        {"where": p.where, "field": p.field, "reason": p.reason} for p in report.rejected
    ]
    run.status = "applied" if applied else "rejected"
    run.finished_at = now


def _remove_missing(
    session: Session,
    *,
    course_id: int,
    origin: str,
    keep: set[tuple[int, tuple[str, str, str, str, int]]],
    run: ImportRun,
    report: SyncReport,
) -> None:
    rows = session.exec(
        select(Evidence).where(Evidence.course_id == course_id, Evidence.origin == origin)
    ).all()
    for row in rows:
        if _natural_key(row) in keep:
            continue
        assert row.id is not None
        audit.record(
            session,
            actor=f"import-run:{run.id}",
            action="evidence.removed",
            subject=f"evidence:{row.id}",
            course_id=course_id,
            person_id=row.person_id,
            key=list(_natural_key(row)[1]),
            last=_jsonable({k: getattr(row, k) for k in _REMOVED_LAST}),
            version=row.version,
            reason="no longer in the LMS",
        )
        for rev in session.exec(
            select(EvidenceRevision).where(EvidenceRevision.evidence_id == row.id)
        ).all():
            session.delete(rev)
        session.flush()
        session.delete(row)
        report.removed += 1
        report.changed_people.add(row.person_id)
    session.flush()


def _where_order(p: Problem) -> tuple[str, int, str]:
    # "line 10" after "line 9", "results[10]" after "results[9]"
    m = re.match(r"^(.*?)(\d+)\]?$", p.where)
    return (m.group(1), int(m.group(2)), p.field) if m else (p.where, 0, p.field)
