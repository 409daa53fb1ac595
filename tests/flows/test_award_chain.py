"""Launch -> sync from the LMS -> evaluate -> credential issued and verifiable -> outbox."""

from __future__ import annotations

from sqlmodel import select

from service.db.engine import session as db_session
from service.db.models import Award, Credential, OutboxMessage, Person
from service.db.types import utcnow
from service.issuer import service as issuer_service
from tests.flows.conftest import Live, launch


def _person(live: Live, sub: str) -> Person:
    with db_session(live.engine) as s:
        row = s.exec(select(Person).where(Person.sub == sub)).one()
    return row


def test_learner_launch_syncs_evaluates_and_issues(live: Live) -> None:
    tab = launch(live, "u-learn-2")
    lucas = _person(live, "u-learn-2")
    with db_session(live.engine) as s:
        awards = s.exec(select(Award).where(Award.person_id == lucas.id)).all()
        assert {(a.line_key, a.level, a.state) for a in awards} >= {
            ("competency:data-investigation", "intermediate", "issued"),
        }
        award = next(a for a in awards if a.line_key == "competency:data-investigation")
        cred = s.exec(select(Credential).where(Credential.uuid == award.credential_uuid)).one()
        report = issuer_service.verify_input(s, live.settings, cred.document, now=utcnow())
        assert report.valid, report
        rows = s.exec(
            select(OutboxMessage).where(OutboxMessage.credential_id == award.delivery_key)
        ).all()
        assert {r.kind for r in rows} == {"webhook.credential_issued", "ags.post_score"}
    landing = tab.get("/app")
    assert landing.status_code == 303 and "/app/me" in landing.headers["location"]
    page = tab.get("/app/me")
    assert page.status_code == 200
    assert "Investigating with data (Intermediate)" in page.text
    assert f"/credentials/{award.credential_uuid}" in page.text
    public = tab.http.get(f"/credentials/{award.credential_uuid}")
    assert public.status_code == 200 and "Investigating with data (Intermediate)" in public.text
