"""A learner's LMS e-mail changes after a badge went to a repository that keys earners by
e-mail: the roster sync records the mismatch, so the admin page can offer to re-send."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlmodel import select

from service.db.engine import session
from service.db.models import EmailMismatch, OutboxMessage
from service.flows import syncing
from service.lti import services as lti_services
from tests.sources.helpers import NOW, world

LEARNER = ["http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"]


def _delivered(engine: Engine, person_id: int, email: str, kind: str) -> None:
    with session(engine, write=True) as s:
        s.add(
            OutboxMessage(
                credential_id=f"urn:uuid:c-{kind}",
                person_id=person_id,
                kind=kind,
                idempotency_key=f"k-{kind}",
                payload={"recipient_email": email},
                status="delivered",
            )
        )
        s.commit()


def _roster(engine: Engine, course_id: int, email: str) -> None:
    member = lti_services.Member(user_id="42", roles=LEARNER, name="Bob", email=email)
    with session(engine, write=True) as s:
        syncing.apply_roster(s, course_id=course_id, members=[member], now=NOW)
        s.commit()


def _mismatches(engine: Engine) -> list[tuple[str, str]]:
    with session(engine) as s:
        rows = s.exec(select(EmailMismatch).order_by(EmailMismatch.id)).all()  # type: ignore[arg-type]
        return [(m.delivered_email, m.current_email) for m in rows]


def test_a_changed_email_in_the_roster_records_the_badges_under_the_old_address(
    engine: Engine,
) -> None:
    w = world(engine)
    _delivered(engine, w.bob, "bob@example.edu", "credly.issue_badge")
    _delivered(engine, w.bob, "bob@example.edu", "webhook.credential_issued")  # not by e-mail
    _roster(engine, w.course_id, "BOB@example.edu")  # same address, other case: nothing
    assert _mismatches(engine) == []
    _roster(engine, w.course_id, "robert@new.example")
    _roster(engine, w.course_id, "robert@new.example")  # the next sync adds nothing
    assert _mismatches(engine) == [("bob@example.edu", "robert@new.example")]
