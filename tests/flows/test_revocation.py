"""A revocation is one act wherever it is asked for (the instructor page, ``microcred
credential revoke``, the API), also for a credential that is no longer its line's issued
one: a superseded credential is revoked, its learner told why, and nothing is sent to the
repositories (they hold the higher level); one already revoked is refused, nothing flipped
or sent twice."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest
from sqlmodel import select

from service.db.engine import session as db_session
from service.db.models import Award, Credential, OutboxMessage, Person, StatusList
from service.db.types import utcnow
from service.issuer import service as issuer_service
from tests.flows.conftest import Live, Tab, evaluate, launch, pull

pytestmark = pytest.mark.db

INVESTIGATION = ["11/1", "11/2", "21"]  # the demo mapping (Moodle course module / criterion)
LINE = "competency:data-investigation"
SOFIA = "u-learn-3"


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert found, page[:1000]
    return found.group(1)


def _line(live: Live, sub: str = "u-learn-2") -> list[Award]:
    with db_session(live.engine) as s:
        lucas = s.exec(select(Person).where(Person.sub == sub)).one()
        query = select(Award).where(Award.person_id == lucas.id, Award.line_key == LINE)
        return list(s.exec(query.order_by(Award.id)))


def _sent(live: Live) -> set[tuple[int | None, str, str]]:
    """Every delivery row and its state, and the status lists' bits."""
    with db_session(live.engine) as s:
        rows = {(r.id, r.kind, r.status) for r in s.exec(select(OutboxMessage))}
        bits = {(sl.id, "bits", sl.bits) for sl in s.exec(select(StatusList))}
    return rows | bits


def _lists(live: Live) -> list[object]:
    with db_session(live.engine) as s:
        return [sl.document for sl in s.exec(select(StatusList).order_by(StatusList.id))]


def _upgraded(live: Live) -> tuple[Tab, str, Award, Award]:
    """Lucas's Intermediate superseded by Advanced (an instructor raises the threshold and
    attests his supervised sitting), the instructor's page as it was before."""
    tab = launch(live, "u-instr-1")
    csrf = _csrf(tab.get("/app/course").text)
    assert tab.post("/app/course/sync", {}, csrf=csrf).status_code == 303
    pull(live)
    [old] = _line(live)
    assert f'action="/app/course/awards/{old.id}/revoke"' in tab.get("/app/course").text
    saved = tab.post(
        "/app/setup/competencies/data-investigation",
        {"items": INVESTIGATION, "threshold_advanced": "75"},
        csrf=csrf,
    )
    assert saved.status_code == 303, saved.text
    evaluate(live)
    lucas = _line(live)[0].person_id
    attested = tab.post(
        "/app/course/attest",
        {"person_id": str(lucas), "item_id": "21", "level": "supervised", "note": "room B"},
        csrf=csrf,
    )
    assert attested.status_code == 303, attested.text
    evaluate(live)
    old, new = _line(live)
    assert [(a.level, a.state) for a in (old, new)] == [
        ("intermediate", "superseded"),
        ("advanced", "issued"),
    ]
    return tab, csrf, old, new


def _valid(live: Live, uuid: str | None) -> bool:
    with db_session(live.engine) as s:
        cred = s.exec(select(Credential).where(Credential.uuid == uuid)).one()
        return issuer_service.verify_input(s, live.settings, cred.document, now=utcnow()).valid


def test_a_superseded_credential_revoked_by_its_id_tells_the_learner_and_sends_nothing(
    live: Live, api_headers: Callable[..., dict[str, str]]
) -> None:
    _, _, old, new = _upgraded(live)
    before = _sent(live)
    reason = "The statistics quiz was sat by someone else"
    with httpx.Client(base_url=live.tool_url, headers=api_headers("credentials:write")) as api:
        done = api.post(f"/api/credentials/{old.credential_uuid}/revoke", json={"reason": reason})
        assert done.status_code == 200 and done.json()["revoked"] is True, done.text
        after = _sent(live)
        again = api.post(f"/api/credentials/{old.credential_uuid}/revoke", json={"reason": "x"})
        assert again.status_code == 409 and "already revoked" in again.text, again.text
    assert _sent(live) == after  # nothing flipped or sent twice
    # The repositories hold the line's Advanced badge, which stays: nothing sent or stopped.
    assert {r for r in after if r[1] != "bits"} == {r for r in before if r[1] != "bits"}
    assert not _valid(live, old.credential_uuid) and _valid(live, new.credential_uuid)
    # Lucas's page says so, with the reason (it said "Replaced by a higher level").
    page = launch(live, "u-learn-2").get("/app/me").text
    card = page[page.index("<strong>Investigating with data (Intermediate)</strong>") :]
    card = card[: card.index("</p>", card.index('class="sub"'))]
    assert "Revoked" in card and reason in card and "Replaced" not in card
    assert [(a.level, a.state, a.reaward_blocked) for a in _line(live)] == [
        ("intermediate", "revoked", True),  # a person's revocation, as on the instructor page
        ("advanced", "issued", False),
    ]


def test_an_instructor_page_older_than_an_upgrade_revokes_the_credential_it_showed(
    live: Live,
) -> None:
    tab, csrf, old, new = _upgraded(live)
    before = _sent(live)
    form = {"reason": "Awarded in error", "confirm": "yes"}
    done = tab.post(f"/app/course/awards/{old.id}/revoke", form, csrf=csrf)
    # It was refused as "award N is superseded, not an issued credential".
    assert done.status_code == 303, done.text
    after = _sent(live)
    assert {r for r in after if r[1] != "bits"} == {r for r in before if r[1] != "bits"}
    assert not _valid(live, old.credential_uuid) and _valid(live, new.credential_uuid)
    assert [a.state for a in _line(live)] == ["revoked", "issued"]
    again = tab.post(f"/app/course/awards/{old.id}/revoke", form, csrf=csrf)
    assert again.status_code == 409 and "already revoked" in again.text, again.text[:500]
    assert _sent(live) == after
    # The Advanced credential the page now shows, once the webhook receiver has it, is
    # revoked there too.
    with db_session(live.engine, write=True) as s:
        issued = select(OutboxMessage).where(
            OutboxMessage.credential_id == new.delivery_key,
            OutboxMessage.kind == "webhook.credential_issued",
            OutboxMessage.status == "pending",
        )
        for row in s.exec(issued):
            row.status = "delivered"
            s.add(row)
        s.commit()
    assert tab.post(f"/app/course/awards/{new.id}/revoke", form, csrf=csrf).status_code == 303
    with db_session(live.engine) as s:
        kinds = s.exec(
            select(OutboxMessage.kind).where(OutboxMessage.credential_id == new.delivery_key)
        ).all()
    assert kinds.count("webhook.credential_revoked") == 1
    assert [a.state for a in _line(live)] == ["revoked", "revoked"]


def test_a_person_revokes_a_credential_the_rule_revoked_to_block_its_re_award(
    live: Live, api_headers: Callable[..., dict[str, str]]
) -> None:
    tab = launch(live, "u-instr-1")
    csrf = _csrf(tab.get("/app/course").text)
    assert tab.post("/app/course/sync", {}, csrf=csrf).status_code == 303
    pull(live)
    assert tab.post("/app/setup/rules", {"on_lower": "revoke"}, csrf=csrf).status_code == 303
    raised = {"items": INVESTIGATION, "threshold_intermediate": "75%"}
    assert (
        tab.post("/app/setup/competencies/data-investigation", raised, csrf=csrf).status_code == 303
    )
    evaluate(live)  # Sofia (68%) falls to Beginning: the rule revokes her Intermediate
    old, lower = _line(live, SOFIA)
    assert (old.level, old.state, old.reaward_blocked, lower.state) == (
        "intermediate",
        "revoked",
        False,
        "issued",
    )
    before = _sent(live)
    lists = _lists(live)
    # The instructor learns why the results fell and revokes the Intermediate in their own
    # name, so that it is not issued again when the threshold goes back. It was refused as
    # "already revoked" (409).
    reason = "Copied the statistics quiz"
    form = {"reason": reason, "confirm": "yes"}
    done = tab.post(f"/app/course/awards/{old.id}/revoke", form, csrf=csrf)
    assert done.status_code == 303, done.text[:500]
    assert _sent(live) == before  # no bit flipped again, nothing sent again
    assert _lists(live) == lists  # nor the status list signed again
    old = _line(live, SOFIA)[0]
    assert (old.state, old.reaward_blocked, old.review) == ("revoked", True, reason)
    with httpx.Client(base_url=live.tool_url, headers=api_headers("credentials:write")) as api:
        again = api.post(f"/api/credentials/{old.credential_uuid}/revoke", json={"reason": "x"})
        assert again.status_code == 409 and "already revoked" in again.text, again.text
    assert _sent(live) == before
    # Sofia's page gives the person's reason, and the Intermediate is not issued again.
    page = launch(live, SOFIA).get("/app/me").text
    card = page[page.index("<strong>Investigating with data (Intermediate)</strong>") :]
    card = card[: card.index("</p>", card.index('class="sub"'))]
    assert "Revoked" in card and reason in card and "A re-evaluation gives" not in card
    back = {"items": INVESTIGATION, "threshold_intermediate": "60%"}
    assert (
        tab.post("/app/setup/competencies/data-investigation", back, csrf=csrf).status_code == 303
    )
    evaluate(live)
    assert [(a.level, a.state) for a in _line(live, SOFIA)] == [
        ("intermediate", "revoked"),
        ("beginning", "issued"),
    ]
