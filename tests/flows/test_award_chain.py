"""The chain the product exists for, over real HTTP: a learner's LTI launch from the demo
LMS -> sync over Moodle web services -> evaluate -> credential issued and verifiable ->
outbox rows written with it; then idempotence, upgrade, a lower decision, delivery."""

from __future__ import annotations

import re
import threading

import httpx
import pytest
from sqlmodel import Session, func, select

from service import evaluation
from service.db.engine import session as db_session
from service.db.models import Award, Credential, Decision, OutboxMessage, Person
from service.db.types import utcnow
from service.delivery import errors as delivery_errors
from service.delivery.outbox import AttemptRecord
from service.delivery.worker import Worker, build_connectors
from service.flows import evaluating, evaluation_queue, gradebook, revoking, syncing, wiring
from service.issuer import service as issuer_service
from tests.flows.conftest import Live, Tab, evaluate, launch, pull
from tests.timing import HANG

pytestmark = pytest.mark.db

INVESTIGATION = ["11/1", "11/2", "21"]  # the demo mapping (Moodle course module / criterion)


def _person(live: Live, sub: str) -> Person:
    with db_session(live.engine) as s:
        return s.exec(select(Person).where(Person.sub == sub)).one()


def _awards(live: Live, sub: str) -> dict[str, list[Award]]:
    person = _person(live, sub)
    out: dict[str, list[Award]] = {}
    with db_session(live.engine) as s:
        for a in s.exec(select(Award).where(Award.person_id == person.id).order_by(Award.id)):
            out.setdefault(a.line_key, []).append(a)
    return out


def _count(live: Live, model: type) -> int:
    with db_session(live.engine) as s:
        return int(s.exec(select(func.count()).select_from(model)).one())


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert found, page[:1000]
    return found.group(1)


def _sync(live: Live, tab: Tab, csrf: str) -> None:
    """Sync from LMS asks the worker for a pull; the worker's sync job then runs it."""
    assert tab.post("/app/course/sync", {}, csrf=csrf).status_code == 303
    assert [o.error for o in pull(live)] == [""]


def _act(live: Live, tab: Tab, path: str, csrf: str) -> None:
    """An instructor's button: the request only queues the learners; the worker's
    evaluation job then evaluates and awards them."""
    assert tab.post(path, {}, csrf=csrf).status_code == 303
    evaluate(live)


def _instructor(live: Live) -> tuple[Tab, str]:
    tab = launch(live, "u-instr-1")
    page = tab.get("/app/course")
    assert page.status_code == 200
    return tab, _csrf(page.text)


def test_learner_launch_syncs_evaluates_issues_and_shows_the_credential(live: Live) -> None:
    tab = launch(live, "u-learn-2")  # Lucas: intermediate in both competencies
    # The launch awarded nothing itself: it queued a pull and Lucas's evaluation, and his
    # page says so and asks /app/pending until the worker is done.
    assert _awards(live, "u-learn-2") == {}
    waiting = tab.get("/app/me")
    assert 'data-testid="pending"' in waiting.text and "/static/pending.js" in waiting.text
    assert tab.get("/app/pending").json() == {"pending": True, "evaluations": 1, "sync": True}
    pull(live)  # the worker pulls, then evaluates and awards
    assert tab.get("/app/pending").json() == {"pending": False, "evaluations": 0, "sync": False}
    awards = _awards(live, "u-learn-2")
    [award] = awards["competency:data-investigation"]
    assert (award.level, award.state) == ("intermediate", "issued")
    assert {a.level for a in awards["competency:data-communication"]} == {"intermediate"}
    assert [a.state for a in awards["stack:Data literacy"]] == ["issued"]
    with db_session(live.engine) as s:
        decision = s.get(Decision, award.decision_id)
        assert decision is not None and decision.level == "intermediate"
        assert decision.policy_version >= 1 and len(decision.evidence_hash) == 64
        used = {u["item"] for u in decision.reasons["used"]}
        assert used == {"11/1", "11/2", "21"}  # rubric criteria and the quiz, via Moodle WS
        cred = s.exec(select(Credential).where(Credential.uuid == award.credential_uuid)).one()
        report = issuer_service.verify_input(s, live.settings, cred.document, now=utcnow())
        assert report.valid, report
        subject = cred.document["credentialSubject"]
        assert subject["achievement"]["name"] == "Investigating with data (Intermediate)"
        rows = s.exec(
            select(OutboxMessage).where(OutboxMessage.credential_id == award.delivery_key)
        ).all()
        assert {r.kind for r in rows} == {"webhook.credential_issued", "ags.post_score"}
        ags = next(r for r in rows if r.kind == "ags.post_score").payload["ags"]
        assert ags["user_id"] == "u-learn-2" and ags["score"] == 2 and ags["maximum"] == 3

    landing = tab.get("/app")  # where the launch lands: the learner's page
    assert landing.status_code == 200 and "Your micro-credentials" in landing.text
    page = tab.get("/app/me")
    assert page.status_code == 200 and 'data-testid="pending"' not in page.text
    assert "Investigating with data (Intermediate)" in page.text
    assert f"/credentials/{award.credential_uuid}" in page.text
    assert "For Advanced" in page.text  # what is missing, in words
    public = tab.http.get(f"/credentials/{award.credential_uuid}")
    assert public.status_code == 200 and "Investigating with data" in public.text
    download = tab.get(f"/app/me/credentials/{award.credential_uuid}/credential.json")
    assert download.status_code == 200 and download.json()["id"] == cred.document["id"]
    assert download.headers["content-type"] == "application/vc+ld+json"
    named = f'attachment; filename="credential-{cred.uuid}'
    assert download.headers["content-disposition"] == f'{named}.json"'
    assert "no-store" in download.headers["cache-control"]
    jwt = tab.get(f"/app/me/credentials/{award.credential_uuid}/credential.jwt")
    assert jwt.status_code == 200 and cred.jwt is not None and jwt.text == cred.jwt
    assert jwt.headers["content-type"] == "application/vc+jwt"
    assert jwt.headers["content-disposition"] == f'{named}.jwt"'
    assert "no-store" in jwt.headers["cache-control"]
    # the badge image, baked with the credential, is one click away on the learner's page
    png = f"/credentials/{award.credential_uuid}/badge.png"
    assert f'href="{png}" download' in page.text
    image = tab.http.get(png)
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")


def test_a_stacked_credential_revoked_by_a_person_waits_for_re_award_to_be_allowed(
    live: Live,
) -> None:
    launch(live, "u-learn-2")
    pull(live)
    [stacked] = _awards(live, "u-learn-2")["stack:Data literacy"]
    assert stacked.id is not None
    now = utcnow()

    def reevaluate() -> evaluating.Summary:
        with db_session(live.engine, write=True) as s:
            evaluation.enqueue(s, course_id=live.course_id, reason="test")
            s.commit()
        return evaluate(live)

    with db_session(live.engine, write=True) as s:
        revoking.revoke_award(
            s,
            settings=live.settings,
            course_id=live.course_id,
            award_id=stacked.id,
            reason="awarded in error",
            actor="test",
            now=now,
        )
        s.commit()
    summary = reevaluate()
    assert (summary.blocked, summary.issued) == (1, 0)
    assert [a.state for a in _awards(live, "u-learn-2")["stack:Data literacy"]] == ["revoked"]
    with db_session(live.engine, write=True) as s:
        revoking.allow_reaward(
            s, course_id=live.course_id, award_id=stacked.id, actor="test", now=now
        )
        s.commit()
    summary = reevaluate()
    assert (summary.blocked, summary.issued) == (0, 1)
    stacks = _awards(live, "u-learn-2")["stack:Data literacy"]
    assert [a.state for a in stacks] == ["revoked", "issued"]


def test_a_level_that_requires_a_supervised_sitting_says_so_in_the_credential(
    live: Live,
) -> None:
    # The demo's Advanced needs a supervised sitting; Amara reaches it in data-investigation
    # on her quiz sat on site with an identity check, while her rubric work was unsupervised:
    # the credential claims the sitting the level rests on, not the unsupervised work.
    launch(live, "u-learn-1")
    pull(live)
    [award] = _awards(live, "u-learn-1")["competency:data-investigation"]
    assert award.level == "advanced"
    with db_session(live.engine) as s:
        cred = s.exec(select(Credential).where(Credential.uuid == award.credential_uuid)).one()
    subject = cred.document["credentialSubject"]
    assert subject["supervisionVerification"] == "supervised onsite with identity verification"
    assert [r.get("value") for r in subject["result"]] == ["Advanced"]  # one grade, once
    page = launch(live, "u-learn-1").http.get(f"/credentials/{award.credential_uuid}").text
    assert "supervised onsite with identity verification" in page
    assert "Advanced; Advanced" not in page


def test_instructor_page_says_when_results_were_never_pulled(live: Live) -> None:
    tab, csrf = _instructor(live)
    assert "Results have not been pulled from the LMS yet" in tab.get("/app/course").text
    _sync(live, tab, csrf)
    page = tab.get("/app/course").text
    assert "not been pulled" not in page and "Results last pulled from the LMS" in page


def test_credential_and_its_delivery_rows_commit_or_vanish_together(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    course_id = live.course_id
    pull = syncing.fetch_course(live.engine, course_id=course_id)
    with db_session(live.engine, write=True) as s:
        syncing.store_fetched(s, pull=pull, now=utcnow(), actor="test")
        evaluation.enqueue(s, course_id=course_id, reason="test")
        s.commit()
    before = (_count(live, Credential), _count(live, OutboxMessage), _count(live, Award))
    signed: list[int] = []

    def crash(session: Session, **_: object) -> None:
        # the worker's last step before its commit: what the batch signed, then a crash
        signed.append(session.exec(select(func.count()).select_from(Credential)).one())
        raise RuntimeError("a crash before the commit")

    with monkeypatch.context() as m:
        m.setattr(evaluation_queue, "_stamp_evaluated", crash)
        evaluate(live)
    assert signed and max(signed) > before[0]
    assert (_count(live, Credential), _count(live, OutboxMessage), _count(live, Award)) == before
    with db_session(live.engine, write=True) as s:
        evaluation.enqueue(s, course_id=course_id, reason="test")  # the failed jobs: due now
        s.commit()
    evaluate(live)
    with db_session(live.engine) as s:
        for award in s.exec(select(Award).where(Award.state == "issued")):
            kinds = s.exec(
                select(OutboxMessage.kind).where(OutboxMessage.credential_id == award.delivery_key)
            ).all()
            if award.line_key.startswith("competency:"):
                assert "webhook.credential_issued" in kinds, award


def test_re_evaluating_unchanged_evidence_issues_nothing_new(live: Live) -> None:
    tab, csrf = _instructor(live)
    _sync(live, tab, csrf)  # the worker evaluates the learners whose results arrived ...
    _act(live, tab, "/app/course/reevaluate", csrf)  # ... all
    counts = (_count(live, Credential), _count(live, OutboxMessage), _count(live, Decision))
    assert counts[0] > 0
    for _ in range(2):
        again = tab.post("/app/course/reevaluate", {}, csrf=csrf)
        assert again.status_code == 303
        _sync(live, tab, csrf)
    assert (_count(live, Credential), _count(live, OutboxMessage), _count(live, Decision)) == (
        counts
    )


def test_a_higher_level_issues_a_new_credential_and_upgrades_the_deliveries(live: Live) -> None:
    tab, csrf = _instructor(live)
    _sync(live, tab, csrf)
    [old] = _awards(live, "u-learn-2")["competency:data-investigation"]
    assert old.level == "intermediate"
    # Advanced at 75% (the institution allows 75-95%) ...
    saved = tab.post(
        "/app/setup/competencies/data-investigation",
        {"items": INVESTIGATION, "threshold_advanced": "75"},
        csrf=csrf,
    )
    assert saved.status_code == 303, saved.text
    evaluate(live)  # the worker evaluates what the request queued
    # ... needs a supervised sitting: the instructor attests Lucas's statistics quiz.
    lucas = _person(live, "u-learn-2")
    attested = tab.post(
        "/app/course/attest",
        {"person_id": str(lucas.id), "item_id": "21", "level": "supervised", "note": "room B"},
        csrf=csrf,
    )
    assert attested.status_code == 303, attested.text
    evaluate(live)  # the worker evaluates what the request queued
    line = _awards(live, "u-learn-2")["competency:data-investigation"]
    assert [(a.level, a.state) for a in line] == [
        ("intermediate", "superseded"),
        ("advanced", "issued"),
    ]
    new = line[-1]
    assert new.credential_uuid != old.credential_uuid and new.delivery_key == old.delivery_key
    with db_session(live.engine) as s:
        rows = s.exec(
            select(OutboxMessage).where(OutboxMessage.credential_id == old.delivery_key)
        ).all()
        states = {(r.kind, r.payload.get("level"), r.status) for r in rows}
        # Nothing had gone out yet: the old level's rows are cancelled, the new level queued.
        assert states == {
            ("webhook.credential_issued", "intermediate", "cancelled"),
            ("ags.post_score", "intermediate", "cancelled"),
            ("webhook.credential_issued", "advanced", "pending"),
            ("ags.post_score", "advanced", "pending"),
        }
        old_cred = s.exec(select(Credential).where(Credential.uuid == old.credential_uuid)).one()
        assert not old_cred.revoked  # holding Advanced does not unmake Intermediate


def test_a_lower_decision_flags_for_review_and_revokes_only_when_told(live: Live) -> None:
    tab, csrf = _instructor(live)
    _sync(live, tab, csrf)
    [held] = _awards(live, "u-learn-3")["competency:data-investigation"]  # Sofia, 68%
    assert held.level == "intermediate"
    raised = tab.post(
        "/app/setup/competencies/data-investigation",
        {"items": INVESTIGATION, "threshold_intermediate": "75%"},
        csrf=csrf,
    )
    assert raised.status_code == 303, raised.text
    # the save evaluated nothing: it queued the course's learners, and the pages say so
    assert _awards(live, "u-learn-3")["competency:data-investigation"] == [held]
    pending = tab.get("/app/pending").json()
    assert pending["pending"] and pending["evaluations"] >= 4
    for path in ("/app/course", "/app/setup"):
        assert "wait for their evaluation" in tab.get(path).text
    evaluate(live)  # the worker evaluates what the request queued
    assert not tab.get("/app/pending").json()["pending"]
    assert "wait for their evaluation" not in tab.get("/app/course").text
    [flagged] = _awards(live, "u-learn-3")["competency:data-investigation"]
    assert flagged.state == "issued" and "Beginning" in flagged.review
    page = tab.get("/app/course")
    assert "Review" in page.text and "A later evaluation gives Beginning" in page.text
    # The course now says "revoke": the credential goes, the lower level is issued.
    rules = tab.post("/app/setup/rules", {"on_lower": "revoke"}, csrf=csrf)
    assert rules.status_code == 303
    evaluate(live)  # the worker evaluates what the request queued
    _act(live, tab, "/app/course/reevaluate", csrf)
    line = _awards(live, "u-learn-3")["competency:data-investigation"]
    assert [(a.level, a.state) for a in line] == [
        ("intermediate", "revoked"),
        ("beginning", "issued"),
    ]
    with db_session(live.engine) as s:
        cred = s.exec(select(Credential).where(Credential.uuid == line[0].credential_uuid)).one()
        assert cred.revoked and "Beginning" in (cred.revocation_reason or "")
        statuses = s.exec(
            select(OutboxMessage.status).where(OutboxMessage.credential_id == line[0].delivery_key)
        ).all()
        assert set(statuses) == {"cancelled"}  # never sent, so nothing to take back


def test_thresholds_outside_the_institution_bounds_are_refused_with_the_reason(
    live: Live,
) -> None:
    tab, csrf = _instructor(live)
    page = tab.post(
        "/app/setup/competencies/data-investigation",
        {"items": INVESTIGATION, "threshold_advanced": "96"},
        csrf=csrf,
    )
    assert page.status_code == 422
    assert "Investigating with data: Advanced threshold: " in page.text
    assert "95%" in page.text  # the bound it broke
    assert "<script" not in page.text.split("</head>")[1]


def test_thresholds_are_read_as_the_hint_says(live: Live) -> None:
    tab, csrf = _instructor(live)
    saved = tab.post(
        "/app/setup/competencies/data-investigation",
        {"items": INVESTIGATION, "threshold_intermediate": "0.7"},
        csrf=csrf,
    )
    assert saved.status_code == 303, saved.text
    evaluate(live)  # the worker evaluates what the request queued
    assert 'name="threshold_intermediate" value="70%"' in tab.get("/app/setup").text
    bad = tab.post(
        "/app/setup/competencies/data-investigation",
        {"items": INVESTIGATION, "threshold_intermediate": "seventy"},
        csrf=csrf,
    )
    assert bad.status_code == 422
    assert (
        "Intermediate threshold: must be a percentage such as 70% or 0.7, not &#39;seventy&#39;"
        in bad.text
    )
    assert "seventy%" not in bad.text


def test_a_gap_is_rounded_up_never_shown_smaller() -> None:
    from types import SimpleNamespace
    from typing import Any, cast

    from service.assessment.types import Gap, Level

    decision: Any = SimpleNamespace(gap=Gap(Level.ADVANCED, (), 0.0666666))
    row = evaluating.Row(cast(Any, None), cast(Any, None), decision, None, None)
    assert row.gap_short == "6.67% short of Advanced"
    decision.gap = Gap(Level.ADVANCED, (), 0.05)
    assert row.gap_short == "5% short of Advanced"


def test_rules_left_outside_the_bounds_keep_their_mapping_on_the_setup_page(
    live: Live,
) -> None:
    tab, csrf = _instructor(live)
    saved = tab.post(
        "/app/setup/competencies/data-investigation",
        {"items": INVESTIGATION, "threshold_intermediate": "70"},
        csrf=csrf,
    )
    assert saved.status_code == 303, saved.text
    evaluate(live)  # the worker evaluates what the request queued
    # Bounds that no longer fit the course, stored as an older release could have stored
    # them (the institution import refuses them now).
    from service.db.models import PolicyVersion
    from service.demo import seed
    from service.policies import repository as policies_repo

    narrowed = {
        **seed.INSTITUTION_BOUNDS,
        "levels": {
            **seed.INSTITUTION_BOUNDS["levels"],
            "intermediate": {"threshold": {"min": "55%", "max": "66%"}},
        },
    }
    with db_session(live.engine) as s:
        latest = policies_repo.latest_version(s, policies_repo.INSTITUTION)
        assert latest is not None
        s.add(
            PolicyVersion(
                scope="institution",
                scope_key=policies_repo.INSTITUTION,
                version=latest.version + 1,
                document=latest.document,
                bounds=narrowed,
                author="legacy",
            )
        )
        s.commit()
    page = tab.get("/app/setup")
    assert page.status_code == 200
    assert "66%" in page.text  # the problem is shown ...
    for item in INVESTIGATION:  # ... and the mapping and thresholds are still there
        assert f'value="{item}" checked' in page.text
    assert 'name="threshold_intermediate" value="70%"' in page.text
    # Saving one threshold that fits keeps every mapped item.
    fixed = tab.post(
        "/app/setup/competencies/data-investigation",
        {"items": INVESTIGATION, "threshold_intermediate": "65"},
        csrf=csrf,
    )
    assert fixed.status_code == 303, fixed.text
    with db_session(live.engine) as s:
        comp = policies_repo.competency_by_key(s, "data-investigation")
        assert comp is not None
        mapped = [
            c
            for c in wiring.course_competencies(s, course_id=live.course_id)
            if c.competency.key == comp.key
        ]
    assert mapped[0].problem == ""
    assert set(mapped[0].items) == set(INVESTIGATION)


def test_approval_holds_the_credential_until_the_instructor_approves(live: Live) -> None:
    tab, csrf = _instructor(live)
    assert tab.post("/app/setup/rules", {"approval_required": "on"}, csrf=csrf).status_code == 303
    _sync(live, tab, csrf)
    [pending] = _awards(live, "u-learn-2")["competency:data-investigation"]
    assert pending.state == "pending_approval" and pending.credential_uuid is None
    approved = tab.post(f"/app/course/awards/{pending.id}/approve", {}, csrf=csrf)
    assert approved.status_code == 303
    line = _awards(live, "u-learn-2")["competency:data-investigation"]
    assert [a.state for a in line] == ["approved", "issued"]
    assert line[-1].approved_by.startswith("person:")


def test_the_worker_delivers_to_the_gradebook_and_the_webhook(live: Live) -> None:
    launch(live, "u-learn-1")  # Amara
    pull(live)
    import httpx

    with httpx.Client(timeout=30) as http:
        worker = Worker(
            live.engine,
            build_connectors(live.engine, ags_poster=gradebook.ags_poster(live.engine, http)),
            threads=1,
            batch=20,
        )
        try:
            for _ in range(5):
                if worker.run_once() == 0:
                    break
        finally:
            worker.close()
    with db_session(live.engine) as s:
        rows = s.exec(select(OutboxMessage)).all()
        assert rows and all(r.status == "delivered" for r in rows), [
            (r.kind, r.status, r.last_error) for r in rows
        ]
    platform = live.apps.lms.state.platform
    scores = [
        (item.label, score.user_id, score.score_given)
        for item in platform.state.line_items()
        for score in platform.state.scores(item.id)
    ]
    assert ("Investigating with data (competency level)", "u-learn-1", 3.0) in scores


def test_results_pushed_to_the_api_are_queued_and_awarded_by_the_worker(live: Live) -> None:
    from service import apitoken

    with db_session(live.engine, write=True) as s:
        _row, token = apitoken.create(
            s, name="proctor", scopes=["evidence:write"], actor="test", now=utcnow()
        )
        s.commit()
    learner = {"sub": "u-learn-5"}  # Ingrid: no results in the LMS
    body = {
        "course_id": live.course_id,
        "results": [
            {"learner": learner, "kind": "quiz", "item_id": "21", "score": 18, "max_score": 20},
            {
                "learner": learner,
                "kind": "rubric_criterion",
                "item_id": "11",
                "criterion_id": "1",
                "score": 3,
                "max_score": 4,
            },
            {
                "learner": learner,
                "kind": "rubric_criterion",
                "item_id": "11",
                "criterion_id": "2",
                "score": 3,
                "max_score": 4,
            },
        ],
    }
    import httpx

    with httpx.Client(base_url=live.tool_url, timeout=60) as http:
        answer = http.post("/api/evidence", json=body, headers={"authorization": f"Bearer {token}"})
    assert answer.status_code < 300, answer.text
    # the answer means stored and queued: the award is the worker's
    assert "competency:data-investigation" not in _awards(live, "u-learn-5")
    with db_session(live.engine) as s:
        assert evaluation_queue.courses_with_new_evidence(s) == []
    evaluate(live)
    [award] = _awards(live, "u-learn-5")["competency:data-investigation"]
    assert (award.level, award.state) == ("intermediate", "issued")


def test_a_failing_lms_gives_a_clear_message_and_writes_nothing(live: Live) -> None:
    from service.db.models import Evidence, SourceConnection

    with db_session(live.engine, write=True) as s:
        conn = s.exec(select(SourceConnection)).one()
        conn.access_token = "wrong-token"
        s.add(conn)
        s.commit()
    tab, csrf = _instructor(live)
    assert tab.post("/app/course/sync", {}, csrf=csrf).status_code == 303
    [outcome] = pull(live)
    assert "Moodle rejected the web service token (invalidtoken)" in outcome.error
    assert _count(live, Evidence) == 0 and _count(live, Credential) == 0
    page = tab.get("/app/course").text  # the health line says what failed and what to do
    assert "Moodle rejected the web service token (invalidtoken)" in page
    assert "Create a new token for the service user" in page


def test_concurrent_evaluations_of_a_course_issue_each_credential_once(live: Live) -> None:
    import threading

    fetched = syncing.fetch_course(live.engine, course_id=live.course_id)
    with db_session(live.engine, write=True) as s:
        syncing.store_fetched(s, pull=fetched, now=utcnow(), actor="test")
        evaluation.enqueue(s, course_id=live.course_id, reason="test")
        s.commit()
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def run() -> None:
        # three worker steps at once, a learner each, on the course's shared rows (its
        # rules, stacks and setup); a failed job would be given back and issue nothing
        try:
            start.wait(timeout=HANG)
            while evaluation_queue.run_evaluation_jobs(
                live.engine, settings=live.settings, actor="t", limit=1
            )[0]:
                pass
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=HANG)
    assert not errors, errors
    with db_session(live.engine) as s:
        issued = s.exec(select(Award.person_id, Award.line_key).where(Award.state == "issued"))
        lines = list(issued)
    assert len(lines) == len(set(lines)) == 9  # 6 competency levels + 3 stacks, once each


class _MeetBeforeCreating(httpx.BaseTransport):
    """The real LMS on loopback, except that each search for a competency's line item
    waits until ``parties`` deliveries have searched: all of them find none, as when the
    first scores of a course are written at the same moment."""

    def __init__(self, parties: int) -> None:
        self._inner = httpx.HTTPTransport()
        self._barrier = threading.Barrier(parties, timeout=HANG)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        searching = (
            request.method == "GET"
            and request.url.path.endswith("/line_items")
            and "resource_id" in request.url.params
        )
        response = self._inner.handle_request(request)
        if searching:
            response.read()
            self._barrier.wait()
        return response

    def close(self) -> None:
        self._inner.close()


def test_concurrent_first_scores_create_one_gradebook_column(live: Live) -> None:
    launch(live, "u-learn-1")
    pull(live)  # the worker awards every learner with results (Amara, Lucas, Sofia)
    with db_session(live.engine) as s:
        rows = [
            r
            for r in s.exec(select(OutboxMessage).where(OutboxMessage.kind == "ags.post_score"))
            if r.payload["ags"]["resource_id"] == "microcred:data-investigation"
            and r.payload["ags"]["user_id"] in ("u-learn-1", "u-learn-2")
        ]
    assert len(rows) == 2
    label = "Investigating with data (competency level)"
    with httpx.Client(transport=_MeetBeforeCreating(2), timeout=HANG) as http:
        poster = gradebook.ags_poster(live.engine, http)
        outcomes: list[BaseException | None] = [None, None]

        def deliver(i: int) -> None:
            try:
                poster(rows[i].payload, AttemptRecord(started_at=utcnow()))
            except BaseException as exc:  # the row's outcome, recorded by the worker
                outcomes[i] = exc

        threads = [threading.Thread(target=deliver, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=HANG)
        # One delivery created the column; the other waited and is retried (as the worker
        # retries a not-ready row) once it exists.
        waited = [i for i, o in enumerate(outcomes) if o is not None]
        assert all(isinstance(outcomes[i], delivery_errors.NotReady) for i in waited)
        for i in waited:
            poster(rows[i].payload, AttemptRecord(started_at=utcnow()))
    platform = live.apps.lms.state.platform
    [column] = [item for item in platform.state.line_items() if item.label == label]
    assert {sc.user_id for sc in platform.state.scores(column.id)} == {"u-learn-1", "u-learn-2"}


def _issue_rows(live: Live) -> int:
    with db_session(live.engine) as s:
        kinds = s.exec(select(OutboxMessage.kind)).all()
    return sum(1 for k in kinds if not k.endswith("revoked") and k != "credly.revoke_badge")


def test_a_revoked_credential_stays_revoked_when_the_course_is_re_evaluated(live: Live) -> None:
    tab, csrf = _instructor(live)
    _sync(live, tab, csrf)
    [held] = _awards(live, "u-learn-2")["competency:data-investigation"]
    revoked = tab.post(
        f"/app/course/awards/{held.id}/revoke",
        {"reason": "Awarded in error", "confirm": "yes"},
        csrf=csrf,
    )
    assert revoked.status_code == 303, revoked.text
    credentials, issue_rows = _count(live, Credential), _issue_rows(live)
    for _ in range(2):
        _act(live, tab, "/app/course/reevaluate", csrf)
    # Same evidence, same level: no new credential, nothing delivered again.
    line = _awards(live, "u-learn-2")["competency:data-investigation"]
    assert [(a.level, a.state) for a in line] == [("intermediate", "revoked")]
    assert (_count(live, Credential), _issue_rows(live)) == (credentials, issue_rows)
    page = tab.get("/app/course").text
    assert "No credential: Intermediate was revoked on" in page
    assert "Awarded in error" in page and "Allow re-award" in page
    # The instructor lifts the block: the evidence's level is issued again.
    allowed = tab.post(f"/app/course/awards/{held.id}/allow", {}, csrf=csrf)
    assert allowed.status_code == 303, allowed.text
    evaluate(live)  # the worker evaluates what the request queued
    line = _awards(live, "u-learn-2")["competency:data-investigation"]
    assert [(a.level, a.state) for a in line] == [
        ("intermediate", "revoked"),
        ("intermediate", "issued"),
    ]
    assert "No credential: Intermediate was revoked" not in tab.get("/app/course").text


def test_revoke_is_a_visible_action_that_asks_for_confirmation(live: Live) -> None:
    tab, csrf = _instructor(live)
    assert tab.post("/app/course/sync", {}, csrf=csrf).status_code == 303
    pull(live)  # the worker pulls what Sync from LMS queued, and awards
    [held] = _awards(live, "u-learn-2")["competency:data-investigation"]
    page = tab.get("/app/course").text
    action = f'action="/app/course/awards/{held.id}/revoke"'
    assert action in page
    # Not hidden inside a "Why" fold-out: its own "Revoke…" disclosure, reason and tick.
    cell = page[: page.index(action)]
    assert cell.rindex("<summary>Revoke&hellip;</summary>") > cell.rfind("<summary>Why")
    form = page[page.index(action) : page.index("</form>", page.index(action))]
    assert 'name="reason"' in form and "required" in form and 'name="confirm"' in form
    unconfirmed = tab.post(
        f"/app/course/awards/{held.id}/revoke", {"reason": "Awarded in error"}, csrf=csrf
    )
    assert unconfirmed.status_code == 422 and "not revoked" in unconfirmed.text
    assert [a.state for a in _awards(live, "u-learn-2")["competency:data-investigation"]] == [
        "issued"
    ]


def test_a_revocation_does_not_hold_back_a_higher_level(live: Live) -> None:
    tab, csrf = _instructor(live)
    _sync(live, tab, csrf)
    [held] = _awards(live, "u-learn-2")["competency:data-investigation"]
    assert (
        tab.post(
            f"/app/course/awards/{held.id}/revoke",
            {"reason": "Quiz retaken", "confirm": "yes"},
            csrf=csrf,
        ).status_code
        == 303
    )
    saved = tab.post(
        "/app/setup/competencies/data-investigation",
        {"items": INVESTIGATION, "threshold_advanced": "75"},
        csrf=csrf,
    )
    assert saved.status_code == 303, saved.text
    evaluate(live)  # the worker evaluates what the request queued
    lucas = _person(live, "u-learn-2")
    attested = tab.post(
        "/app/course/attest",
        {"person_id": str(lucas.id), "item_id": "21", "level": "supervised", "note": "room B"},
        csrf=csrf,
    )
    assert attested.status_code == 303, attested.text
    evaluate(live)  # the worker evaluates what the request queued
    line = _awards(live, "u-learn-2")["competency:data-investigation"]
    assert [(a.level, a.state) for a in line] == [
        ("intermediate", "revoked"),
        ("advanced", "issued"),
    ]


def test_an_instructor_creates_a_competency_on_the_setup_page(live: Live) -> None:
    tab, csrf = _instructor(live)
    setup = tab.get("/app/setup").text
    assert 'action="/app/setup/new-competency"' in setup
    made = tab.post(
        "/app/setup/new-competency",
        {
            "name": "Data Cleaning & Tidying",
            "description": "Turning raw data into tidy tables.",
            "beginning": "removes duplicates with guidance",
            "intermediate": "",
            "advanced": "designs a repeatable cleaning pipeline",
        },
        csrf=csrf,
    )
    assert made.status_code == 303, made.text
    page = tab.get("/app/setup").text
    # In the course at once, ready to be mapped.
    assert "Data Cleaning &amp; Tidying" in page
    assert 'action="/app/setup/competencies/data-cleaning-tidying"' in page
    from service.policies import service as policies

    with db_session(live.engine) as s:
        comp = policies.competency(s, "data-cleaning-tidying")
        assert comp.level_descriptions == {
            "beginning": "removes duplicates with guidance",
            "advanced": "designs a repeatable cleaning pipeline",
        }
    again = tab.post("/app/setup/new-competency", {"name": "Data cleaning: tidying"}, csrf=csrf)
    assert again.status_code == 303
    assert 'action="/app/setup/competencies/data-cleaning-tidying-2"' in tab.get("/app/setup").text
    nameless = tab.post("/app/setup/new-competency", {"name": "  "}, csrf=csrf)
    assert nameless.status_code == 422 and "give the competency a name" in nameless.text


def test_a_score_reads_the_same_in_the_cell_the_progress_and_the_reasons(live: Live) -> None:
    tab, csrf = _instructor(live)
    assert tab.post("/app/course/sync", {}, csrf=csrf).status_code == 303
    pull(live)  # the worker pulls what Sync from LMS queued, and awards
    learner = launch(live, "u-learn-3").get("/app/me").text
    instructor = tab.get("/app/course").text
    # Sofia's investigation score is 68.333…%: the reasons say 68.33%, so does every page.
    assert "yours is 68.33%" in learner and "score 68.33%" in learner
    assert '<span class="meta">68.33%</span>' in instructor
    assert "68.3%" not in learner + instructor
