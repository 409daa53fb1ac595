"""Who the course's learners are (``evaluation.course_learner_ids``) once the roster has
removed someone: the course page, the queue and the evaluation agree on it."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlmodel import select

from service import outbound
from service.db.engine import session as db_session
from service.db.models import Award, Enrolment, Evidence, EvidenceRevision, Person
from service.db.types import utcnow
from service.flows import syncing
from service.lti.services import Member
from tests.flows.conftest import Live, evaluate, launch, pull

pytestmark = pytest.mark.db


def _person(live: Live, sub: str) -> Person:
    with db_session(live.engine) as s:
        return s.exec(select(Person).where(Person.sub == sub)).one()


def _roster_without(live: Live, sub: str, *, status: str = "") -> None:
    """A roster sync whose NRPS membership no longer has ``sub`` (unenrolled in the LMS, or
    a concluded Canvas enrolment), or has them with ``status`` (Inactive: suspended)."""
    members = [
        Member(m.user_id, m.roles, status if m.user_id == sub else "Active", m.name)
        for m in live.apps.lms.state.platform.course.members
        if m.user_id != sub or status
    ]
    with db_session(live.engine, write=True) as s:
        syncing.apply_roster(s, course_id=live.course_id, members=members, now=utcnow())
        s.commit()
        row = s.exec(select(Enrolment).where(Enrolment.person_id == _person(live, sub).id)).one()
        assert row.status == (status.lower() or "removed")


def _listed(page: str) -> int:
    found = re.search(r"(\d+) learners? \u00d7", page)
    assert found, page[:2000]
    return int(found.group(1))


def test_a_removed_learner_without_results_is_neither_listed_nor_queued(live: Live) -> None:
    pull(live)  # Ingrid (u-learn-5) is in the roster but has no results
    tab = launch(live, "u-instr-1")
    csrf = re.findall(r'name="csrf" value="([0-9a-f]{64})"', tab.get("/app/course").text)[0]
    assert "Ingrid Larsen" in tab.get("/app/course").text
    _roster_without(live, "u-learn-5")
    page = tab.get("/app/course").text
    assert "Ingrid Larsen" not in page
    # Re-evaluate queues the learners the page lists, and says how many: not Ingrid too
    # (she was queued, counted as waiting, and evaluated as no one).
    done = tab.post("/app/course/reevaluate", {}, csrf=csrf)
    assert done.status_code == 303, done.text
    assert tab.get("/app/pending").json()["evaluations"] == _listed(page)
    said = parse_qs(urlsplit(done.headers["location"]).query)  # "Re-evaluating {n} learners"
    assert said["done"] == ["queued"] and said["n"] == [str(_listed(page))]


def test_a_removed_learner_with_results_still_gets_the_credentials_they_earn(
    live: Live,
) -> None:
    # The pull that brings Lucas's results also finds him gone from the roster (Canvas drops
    # a concluded enrolment from NRPS): his results still count, as on the course page.
    with outbound.client(outbound.policy(live.settings), timeout=30.0) as http:
        syncing.run_due_syncs(live.engine, settings=live.settings, http=http, worker="test")
    _roster_without(live, "u-learn-2")
    evaluate(live)
    lucas = _person(live, "u-learn-2")
    with db_session(live.engine) as s:
        issued = s.exec(
            select(Award.line_key).where(Award.person_id == lucas.id, Award.state == "issued")
        ).all()
    assert "competency:data-investigation" in issued
    assert "Lucas" in launch(live, "u-instr-1").get("/app/course").text


def test_an_inactive_learner_stays_a_learner_of_the_course(live: Live) -> None:
    pull(live)
    # NRPS Inactive (a suspended or ended enrolment): grades still come, after a term ends.
    _roster_without(live, "u-learn-5", status="Inactive")
    assert "Ingrid Larsen" in launch(live, "u-instr-1").get("/app/course").text


def test_a_removed_learner_without_results_who_holds_credentials_is_listed_and_queued(
    live: Live,
) -> None:
    pull(live)  # Lucas (u-learn-2) earns his credentials
    lucas = _person(live, "u-learn-2")
    with db_session(live.engine, write=True) as s:
        held = s.exec(select(Award).where(Award.person_id == lucas.id)).all()
        assert held and {a.state for a in held} == {"issued"}
        # His results went (deleted in the LMS, or the credentials came from an import),
        # then the roster removed him: his credentials stay.
        for row in s.exec(select(Evidence).where(Evidence.person_id == lucas.id)):
            for rev in s.exec(
                select(EvidenceRevision).where(EvidenceRevision.evidence_id == row.id)
            ):
                s.delete(rev)
            s.flush()
            s.delete(row)
        s.commit()
    _roster_without(live, "u-learn-2")
    tab = launch(live, "u-instr-1")
    page = tab.get("/app/course").text
    # He is listed, marked, and his credentials can be revoked on the page (they were
    # reachable only by the command line or the API).
    row = page[page.index("Lucas") :]
    row = row[: row.index("</tr>")]
    assert "Removed from roster" in row
    lines = [a for a in held if a.line_key.startswith("competency:")]
    assert lines and all(f'action="/app/course/awards/{a.id}/revoke"' in row for a in lines)
    assert page.count("Removed from roster") == 1  # Ingrid is still enrolled
    # Re-evaluate queues the learners the page lists, Lucas too: his evaluation of no
    # results flags his credentials for review (the course's default rule).
    csrf = re.findall(r'name="csrf" value="([0-9a-f]{64})"', page)[0]
    done = tab.post("/app/course/reevaluate", {}, csrf=csrf)
    assert done.status_code == 303, done.text
    assert tab.get("/app/pending").json()["evaluations"] == _listed(page)
    evaluate(live)
    with db_session(live.engine) as s:
        flagged = [s.get(Award, a.id) for a in lines]
    assert {(a.state, bool(a.review)) for a in flagged if a} == {("issued", True)}
    form = {"reason": "Left the programme before the assessment", "confirm": "yes"}
    revoked = tab.post(f"/app/course/awards/{lines[0].id}/revoke", form, csrf=csrf)
    assert revoked.status_code == 303, revoked.text
