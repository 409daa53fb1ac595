"""The evidence store on the real database: matching, idempotency, history, events."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, event
from sqlmodel import select

from service.db.engine import session
from service.db.models import AuditEvent, Evidence, EvidenceRevision, ImportRun
from service.sources import csvimport, store
from service.sources.types import (
    Asserter,
    LearnerRef,
    Result,
    RubricLevel,
    SourceKind,
    Verification,
    VerificationEvent,
)
from tests.sources.helpers import NOW, World, history, world

HEADER = "sub,email,lms_user_id,kind,item_id,criterion_id,score,max_score,attempt\n"


def run_csv(engine: Engine, w: World, body: str, mode: csvimport.Mode = "all"):  # type: ignore[no-untyped-def]
    with session(engine, write=True) as s:
        report = csvimport.import_csv(
            s, course_id=w.course_id, data=(HEADER + body).encode(), mode=mode, now=NOW
        )
        if mode != "dry_run":
            s.commit()
    return report


def evidence_rows(engine: Engine) -> list[Evidence]:
    with session(engine) as s:
        return list(s.exec(select(Evidence).order_by(Evidence.id)).all())  # type: ignore[arg-type]


def test_reimporting_the_same_file_changes_nothing(engine: Engine) -> None:
    w = world(engine)
    body = "u-ada,,,quiz,cm7,,8,10,1\n42,,,quiz,cm7,,5,10,1\n"
    first = run_csv(engine, w, body)
    assert (first.new, first.updated, first.unchanged, first.applied) == (2, 0, 0, True)
    second = run_csv(engine, w, body)
    assert (second.new, second.updated, second.unchanged) == (0, 0, 2)
    rows = evidence_rows(engine)
    assert len(rows) == 2
    assert {r.person_id for r in rows} == {w.ada, w.bob}
    assert all(r.version == 1 for r in rows)


def test_a_changed_score_updates_and_keeps_the_previous_value(engine: Engine) -> None:
    w = world(engine)
    run_csv(engine, w, "u-ada,,,quiz,cm7,,8,10,1\n")
    report = run_csv(engine, w, "u-ada,,,quiz,cm7,,9.5,10,1\n")
    assert (report.new, report.updated) == (0, 1)
    [row] = evidence_rows(engine)
    assert row.score == 9.5 and row.version == 2
    with session(engine) as s:
        revs = history(s, evidence_id=row.id or 0)
    assert [(r.version, r.values["score"]) for r in revs] == [(1, 8.0), (2, 9.5)]
    # A second attempt is a separate result, not an overwrite.
    report = run_csv(engine, w, "u-ada,,,quiz,cm7,,4,10,2\n")
    assert report.new == 1
    assert len(evidence_rows(engine)) == 2


def test_learners_match_by_sub_email_or_linked_lms_id(engine: Engine) -> None:
    w = world(engine)
    with session(engine, write=True) as s:
        store.link_person(s, platform_id=w.platform_id, lms_user_id="9001", person_id=w.ada)
        s.commit()
    report = run_csv(
        engine,
        w,
        ",ADA@example.EDU,,quiz,e1,,1,2,1\n"  # email, case-insensitive
        ",,9001,quiz,l1,,1,2,1\n"  # Canvas-style id through person_link
        ",,42,quiz,m1,,1,2,1\n"  # Moodle user id equals the LTI sub
        ",,777,quiz,x1,,1,2,1\n",  # nobody
        mode="partial",
    )
    assert report.new == 3
    [p] = report.rejected
    assert p.where == "line 5" and p.field == "learner"
    assert "lms_user_id=777" in p.reason and "launch the tool once" in p.reason
    rows = evidence_rows(engine)
    assert {(r.item_id, r.person_id) for r in rows} == {
        ("e1", w.ada),
        ("l1", w.ada),
        ("m1", w.bob),
    }


def test_all_or_nothing_writes_nothing_but_records_the_attempt(engine: Engine) -> None:
    w = world(engine)
    report = run_csv(engine, w, "u-ada,,,quiz,cm7,,8,10,1\nu-ada,,,quiz,cm8,,80,10,1\n")
    assert not report.applied
    assert report.new == 1  # what would have happened
    assert [(p.where, p.field) for p in report.rejected] == [("line 3", "score")]
    assert evidence_rows(engine) == []
    with session(engine) as s:
        [run] = s.exec(select(ImportRun)).all()
    assert run.status == "rejected" and run.rejected == 1
    assert run.problems[0]["where"] == "line 3"


def test_dry_run_reports_exact_counts_and_writes_nothing(engine: Engine) -> None:
    w = world(engine)
    run_csv(engine, w, "u-ada,,,quiz,cm7,,8,10,1\n")
    report = run_csv(engine, w, "u-ada,,,quiz,cm7,,8,10,1\n42,,,quiz,cm7,,3,10,1\n", mode="dry_run")
    assert (report.new, report.unchanged, report.applied) == (1, 1, False)
    assert report.import_run_id is None
    assert len(evidence_rows(engine)) == 1


def test_duplicate_rows_in_one_file_are_rejected_not_doubled(engine: Engine) -> None:
    w = world(engine)
    # Same learner by two identifiers, same item and attempt.
    report = run_csv(
        engine, w, "u-ada,,,quiz,cm7,,8,10,1\n,ada@example.edu,,quiz,cm7,,9,10,1\n", "partial"
    )
    assert report.new == 1
    [p] = report.rejected
    assert p.where == "line 3" and "already given at line 2" in p.reason
    [row] = evidence_rows(engine)
    assert row.score == 8


def test_rubric_level_and_scale_round_trip(engine: Engine) -> None:
    w = world(engine)
    scale = (("L1", "Not yet", 0.0), ("L2", "Developing", 1.0), ("L3", "Proficient", 2.0))
    result = Result(
        origin="moodle:1",
        kind=SourceKind.RUBRIC_CRITERION,
        learner=LearnerRef(sub="u-ada"),
        item_id="cm9",
        item_title="Essay",
        criterion_id="c1",
        criterion_title="Argument",
        level=RubricLevel("L2", "Developing", 1.0, scale),
        graded_at=dt.datetime(2026, 11, 3, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    )
    with session(engine, write=True) as s:
        run = ImportRun(kind="sync", status="running")
        s.add(run)
        store.apply(
            s, course_id=w.course_id, results=[("r", result)], run=run, keep="always", now=NOW
        )
        s.commit()
    with session(engine) as s:
        [rec] = store.list_evidence(s, course_id=w.course_id)
        again = store.apply(
            s,
            course_id=w.course_id,
            results=[("r", result)],
            run=ImportRun(kind="sync", status="running"),
            keep="always",
            now=NOW,
        )
    assert again.unchanged == 1  # aware datetimes in another zone compare equal
    assert rec.level_scale == scale
    assert (rec.level_id, rec.level_points) == ("L2", 1.0)
    assert rec.graded_at == dt.datetime(2026, 11, 3, 6, 0, tzinfo=dt.UTC)
    assert rec.verification is Verification.AUTHENTICATED


def test_verification_events_raise_the_effective_level_of_their_sitting(engine: Engine) -> None:
    w = world(engine)
    run_csv(engine, w, "u-ada,,,quiz,exam,,8,10,1\nu-ada,,,quiz,exam,,9,10,2\n")

    def post(level: Verification, attempt: int | None) -> None:
        ev = VerificationEvent(
            origin="push:proctor",
            learner=LearnerRef(sub="u-ada"),
            item_id="exam",
            attempt=attempt,
            sitting_id="S-1",
            level=level,
            asserted_by=Asserter.PROCTORING,
            occurred_at=NOW,
        )
        with session(engine, write=True) as s:
            run = ImportRun(kind="push", status="running")
            s.add(run)
            store.apply(
                s,
                course_id=w.course_id,
                results=[],
                events=[("e", ev)],
                run=run,
                keep="always",
                now=NOW,
            )
            s.commit()

    post(Verification.SUPERVISED_ONSITE_VERIFIED, 2)
    post(Verification.SUPERVISED_ONSITE_VERIFIED, 2)  # idempotent
    with session(engine) as s:
        recs = {r.attempt: r for r in store.list_evidence(s, course_id=w.course_id)}
        from service.db.models import VerificationEvent as Row

        assert len(s.exec(select(Row)).all()) == 1
    assert recs[1].verification is Verification.UNSUPERVISED  # other attempt untouched
    assert recs[2].verification is Verification.SUPERVISED_ONSITE_VERIFIED
    assert "verification event" in recs[2].verification_basis
    # A corrected statement replaces the level, and the old one stays in the audit log.
    post(Verification.SUPERVISED, 2)
    with session(engine) as s:
        recs = {r.attempt: r for r in store.list_evidence(s, course_id=w.course_id)}
        [audit] = s.exec(select(AuditEvent)).all()
    assert recs[2].verification is Verification.SUPERVISED
    assert audit.detail["previous"]["level"] == "supervised-onsite-verified"


def test_unknown_course_is_a_clear_error(engine: Engine) -> None:
    from service.errors import NotFound

    with session(engine, write=True) as s, pytest.raises(NotFound, match="course 999"):
        csvimport.import_csv(s, course_id=999, data=HEADER.encode(), now=NOW)


def test_revisions_are_written_for_every_version(engine: Engine) -> None:
    w = world(engine)
    for score in (1, 2, 2, 3):
        run_csv(engine, w, f"u-ada,,,quiz,cm7,,{score},10,1\n")
    with session(engine) as s:
        [evidence_id] = {r.evidence_id for r in s.exec(select(EvidenceRevision)).all()}
        revs = history(s, evidence_id=evidence_id)
    assert [r.version for r in revs] == [1, 2, 3]


def test_concurrent_imports_of_the_same_file_never_duplicate(engine: Engine) -> None:
    """Eight imports of one file at once: every result stored once, no import fails."""
    import threading

    w = world(engine)
    body = "".join(f"u-ada,,,quiz,q{i},,{i % 10},10,1\n42,,,quiz,q{i},,1,10,1\n" for i in range(20))
    errors: list[BaseException] = []

    def work() -> None:
        try:
            run_csv(engine, w, body)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = evidence_rows(engine)
    assert len(rows) == 40
    assert all(r.version == 1 for r in rows)


def test_a_verification_event_posted_before_its_result_still_applies(engine: Engine) -> None:
    w = world(engine)
    ev = VerificationEvent(
        origin="push:idcheck",
        learner=LearnerRef(email="bob@example.edu"),
        item_id="exam",
        level=Verification.SUPERVISED_ONLINE_VERIFIED,
        asserted_by=Asserter.PROCTORING,
        occurred_at=NOW,
    )
    with session(engine, write=True) as s:
        run = ImportRun(kind="push", status="running")
        s.add(run)
        store.apply(
            s,
            course_id=w.course_id,
            results=[],
            events=[("e", ev)],
            run=run,
            keep="always",
            now=NOW,
        )
        s.commit()
    run_csv(engine, w, "42,,,quiz,exam,,8,10,1\n42,,,quiz,other,,8,10,1\n")
    with session(engine) as s:
        recs = {r.item_id: r for r in store.list_evidence(s, course_id=w.course_id)}
    assert recs["exam"].verification is Verification.SUPERVISED_ONLINE_VERIFIED
    assert recs["other"].verification is Verification.UNSUPERVISED  # other items untouched


def _evidence_writes(engine: Engine) -> tuple[list[str], Callable[..., None]]:
    """The INSERT and UPDATE statements sent for evidence rows while the listener is on."""
    seen: list[str] = []

    def note(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        head = statement.lstrip().upper()
        if head.startswith(("INSERT", "UPDATE")) and " EVIDENCE" in head:
            seen.append(head.split("(")[0].strip())

    event.listen(engine, "before_cursor_execute", note)
    return seen, note


def test_a_dry_run_and_a_rejected_file_only_count_they_write_no_evidence(engine: Engine) -> None:
    w = world(engine)
    run_csv(engine, w, "u-ada,,,quiz,cm7,,8,10,1\n")
    seen, note = _evidence_writes(engine)
    try:
        dry = run_csv(engine, w, "u-ada,,,quiz,cm7,,9,10,1\n42,,,quiz,cm7,,3,10,1\n", "dry_run")
        bad = run_csv(engine, w, "u-ada,,,quiz,cm7,,9,10,1\n42,,,quiz,cm7,,30,10,1\n")
    finally:
        event.remove(engine, "before_cursor_execute", note)
    assert (dry.new, dry.updated, dry.unchanged, dry.applied) == (1, 1, 0, False)
    assert (bad.updated, bad.applied, len(bad.rejected)) == (1, False, 1)
    assert seen == []  # not written, then undone: never written
    [row] = evidence_rows(engine)
    assert row.score == 8 and row.version == 1


def test_a_changed_row_the_session_holds_reads_its_new_values(engine: Engine) -> None:
    w = world(engine)
    run_csv(engine, w, "u-ada,,,quiz,cm7,,8,10,1\n")
    with session(engine, write=True) as s:
        [held] = s.exec(select(Evidence)).all()
        assert held.score == 8
        data = (HEADER + "u-ada,,,quiz,cm7,,9,10,1\n").encode()
        report = csvimport.import_csv(s, course_id=w.course_id, data=data, now=NOW)
        assert report.updated == 1
        assert (held.score, held.version) == (9, 2)
        [again] = store.list_evidence(s, course_id=w.course_id)
        assert (again.score, again.version) == (9, 2)


def test_some_learners_results_are_the_course_list_of_those_learners(engine: Engine) -> None:
    w = world(engine)
    run_csv(engine, w, "u-ada,,,quiz,q2,,8,10,1\n42,,,quiz,q1,,5,10,1\nu-ada,,,quiz,q1,,7,10,2\n")
    with session(engine) as s:
        course = store.list_evidence(s, course_id=w.course_id)
        ada = store.list_evidence(s, course_id=w.course_id, person_ids=[w.ada])
        both = store.list_evidence(s, course_id=w.course_id, person_ids=[w.bob, w.ada, 10**6])
        nobody = store.list_evidence(s, course_id=w.course_id, person_ids=[])
    assert [(r.person_id, r.id) for r in course] == sorted((r.person_id, r.id) for r in course)
    assert len(course) == 3
    assert ada == [r for r in course if r.person_id == w.ada]
    assert both == course and nobody == []
