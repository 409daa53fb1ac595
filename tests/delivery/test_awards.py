"""Enqueue with the award, consent, revocation and upgrade propagation, e-mail mismatches."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from service.db.engine import session as db_session
from service.db.models import OutboxMessage
from service.delivery import awards, outbox, repositories, status
from service.errors import BadInput, Conflict
from tests.delivery.conftest import snapshot

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


def _repos(s: Session, *, consent: str = "automatic") -> dict[str, int]:
    out = {}
    out["credly"] = repositories.create(
        s,
        kind="credly",
        name="Credly",
        secret="tok",
        consent_policy=consent,
        config={"organization_id": "o", "environment": "sandbox"},
    ).id
    out["badgr"] = repositories.create(
        s,
        kind="badgr",
        name="Canvas Credentials",
        secret="pw",
        consent_policy=consent,
        config={"region": "test", "username": "u"},
    ).id
    out["webhook"] = repositories.create(
        s, kind="webhook", name="HR system", secret="whsec", config={"url": "https://hr.test/h"}
    ).id
    out["ags"] = repositories.create(s, kind="ags", name="Gradebook", config={}).id
    return out  # type: ignore[return-value]


def _rows(s: Session, cid: str) -> list[OutboxMessage]:
    return list(
        s.exec(
            select(OutboxMessage)
            .where(OutboxMessage.credential_id == cid)
            .order_by(OutboxMessage.id)  # type: ignore[arg-type]
        ).all()
    )


def test_rows_commit_or_roll_back_with_the_award(engine: Engine) -> None:
    with db_session(engine, write=True) as s:
        _repos(s)
        s.commit()
    with db_session(engine, write=True) as s:
        awards.enqueue_issue(s, snapshot=snapshot(1, ags={"lineitem": "x"}))
        # the caller fails before committing: nothing is left behind
    with db_session(engine) as s:
        assert _rows(s, snapshot(1).credential_id) == []
    with db_session(engine, write=True) as s:
        rows = awards.enqueue_issue(s, snapshot=snapshot(1, ags={"lineitem": "x"}))
        again = awards.enqueue_issue(s, snapshot=snapshot(1, ags={"lineitem": "x"}))
        s.commit()
    assert sorted(r.kind for r in rows) == [
        "ags.post_score",
        "badgr.issue_assertion",
        "credly.issue_badge",
        "webhook.credential_issued",
    ]
    assert [r.id for r in again] == [r.id for r in rows]  # idempotent: same keys, same rows
    assert {r.status for r in rows} == {"pending"}


def test_consent_holds_third_party_rows_until_the_learner_agrees(engine: Engine) -> None:
    cid = snapshot(2).credential_id
    with db_session(engine, write=True) as s:
        ids = _repos(s, consent="ask")
        awards.enqueue_issue(s, snapshot=snapshot(2))
        s.commit()
    with db_session(engine, write=True) as s:
        by_kind = {r.kind: r.status for r in _rows(s, cid)}
        assert by_kind == {
            "credly.issue_badge": "held",
            "badgr.issue_assertion": "held",
            "webhook.credential_issued": "pending",  # our own systems: no consent needed
        }
        dests = {d.kind: d for d in status.destinations(s, credential_id=cid)}
        assert dests["credly"].state == "waiting_for_consent" and dests["credly"].consent == "asked"
        awards.set_consent(s, credential_id=cid, repository_id=ids["credly"], granted=True)
        awards.set_consent(s, credential_id=cid, repository_id=ids["badgr"], granted=False)
        s.commit()
    with db_session(engine) as s:
        by_kind = {r.kind: r.status for r in _rows(s, cid)}
        assert by_kind["credly.issue_badge"] == "pending"
        assert by_kind["badgr.issue_assertion"] == "cancelled"
        dests = {d.kind: d for d in status.destinations(s, credential_id=cid)}
        assert dests["credly"].consent == "granted" and dests["credly"].state == "queued"
        assert dests["badgr"].consent == "refused" and dests["badgr"].state == "cancelled"


def _deliver(s: Session, cid: str, kind: str) -> OutboxMessage:
    row = next(r for r in _rows(s, cid) if r.kind == kind)
    row.status, row.delivered_at = "delivered", NOW
    s.add(row)
    s.flush()
    return row


def test_revocation_reaches_every_repository_that_got_it(engine: Engine) -> None:
    cid = snapshot(3).credential_id
    with db_session(engine, write=True) as s:
        _repos(s)
        awards.enqueue_issue(s, snapshot=snapshot(3, ags={"lineitem": "x"}))
        issued = _deliver(s, cid, "credly.issue_badge")
        issued.result = {"badge_id": "credly-badge-3", "state": "pending"}
        s.add(issued)
        _deliver(s, cid, "webhook.credential_issued")
        # badgr never went out: its row is cancelled and nothing is revoked there
        rows = awards.propagate_revocation(s, cid, "Academic misconduct")
        s.commit()
    assert sorted(r.kind for r in rows) == ["credly.revoke_badge", "webhook.credential_revoked"]
    credly_revoke = next(r for r in rows if r.kind == "credly.revoke_badge")
    # The revoke acts on the badge id Credly gave when it was issued.
    assert credly_revoke.payload["targets"] == [
        {
            "issuer_earner_id": f"{cid}:beginning",
            "competency": "py",
            "level": "beginning",
            "recipient_email": "learner3@example.edu",
            "badge_id": "credly-badge-3",
            "outbox_id": issued.id,
        }
    ]
    with db_session(engine) as s:
        by_kind = {r.kind: r.status for r in _rows(s, cid)}
    assert by_kind["badgr.issue_assertion"] == "cancelled"
    with db_session(engine, write=True) as s, pytest.raises(BadInput):
        awards.propagate_revocation(s, cid, " ")


def test_revocation_waits_for_a_row_in_flight(engine: Engine) -> None:
    cid = snapshot(4).credential_id
    with db_session(engine, write=True) as s:
        _repos(s)
        awards.enqueue_issue(s, snapshot=snapshot(4), now=NOW)
        s.commit()
    [job] = outbox.claim(engine, kinds=["credly.issue_badge"], now=NOW, lease_seconds=60)
    with db_session(engine, write=True) as s:
        [rev, *_] = [
            r
            for r in awards.propagate_revocation(s, cid, "x", now=NOW)
            if r.kind == "credly.revoke_badge"
        ]
        s.commit()
    assert rev.depends_on_id == job.id
    # The revoke row is not claimable until the issue attempt finishes.
    assert outbox.claim(engine, kinds=["credly.revoke_badge"], now=NOW) == []
    done = outbox.Outcome(job, outbox.AttemptRecord(NOW), NOW, result={"badge_id": "b"})
    outbox.finish_many(engine, [done])
    [claimed] = outbox.claim(engine, kinds=["credly.revoke_badge"], now=NOW)
    assert claimed.id == rev.id
    # Queued before the issue's answer, it still revokes the badge Credly created, by id.
    assert claimed.payload["targets"][0]["badge_id"] == "b"


def test_upgrade_replaces_delivered_and_swaps_undelivered(engine: Engine) -> None:
    c5, c6 = snapshot(5).credential_id, snapshot(6).credential_id
    with db_session(engine, write=True) as s:
        _repos(s)
        awards.enqueue_issue(s, snapshot=snapshot(5, ags={"l": 1}))
        awards.enqueue_issue(s, snapshot=snapshot(6))
        for kind in ("credly.issue_badge", "badgr.issue_assertion", "webhook.credential_issued"):
            _deliver(s, c5, kind)
        up5 = awards.propagate_upgrade(s, snapshot=snapshot(5, level="advanced", ags={"l": 1}))
        up6 = awards.propagate_upgrade(s, snapshot=snapshot(6, level="advanced"))
        s.commit()
    assert sorted(r.kind for r in up5) == [
        "ags.post_score",
        "badgr.issue_assertion",
        "badgr.revoke_assertion",
        "credly.replace_badge",
        "webhook.credential_upgraded",
    ]
    replace = next(r for r in up5 if r.kind == "credly.replace_badge")
    assert replace.payload["level"] == "advanced"
    assert replace.payload["issuer_earner_id"] == f"{c5}:advanced"
    assert replace.payload["replaces"][0]["issuer_earner_id"] == f"{c5}:beginning"
    # Nothing of credential 6 went out: old rows cancelled, plain issues for the new level.
    assert sorted(r.kind for r in up6) == [
        "badgr.issue_assertion",
        "credly.issue_badge",
        "webhook.credential_issued",
    ]
    with db_session(engine) as s:
        old6 = [r for r in _rows(s, c6) if r.payload["level"] == "beginning"]
    assert {r.status for r in old6} == {"cancelled"}
    # The same upgrade again (a re-evaluation) changes nothing.
    with db_session(engine, write=True) as s:
        again = awards.propagate_upgrade(s, snapshot=snapshot(6, level="advanced"))
        s.commit()
    assert sorted(r.id for r in again) == sorted(r.id for r in up6)
    assert {r.status for r in again} == {"pending"}


def test_email_change_after_delivery_is_shown_and_can_be_resent(engine: Engine) -> None:
    cid = snapshot(7).credential_id
    with db_session(engine, write=True) as s:
        _repos(s)
        awards.enqueue_issue(s, snapshot=snapshot(7, person_id=42))
        _deliver(s, cid, "credly.issue_badge")
        assert status.detect_email_change(s, person_id=42, new_email="LEARNER7@example.edu") == []
        found = status.detect_email_change(s, person_id=42, new_email="ada@new.example")
        again = status.detect_email_change(s, person_id=42, new_email="ada@new.example")
        s.commit()
    assert len(found) == 1 and [m.id for m in again] == [found[0].id]
    assert found[0].delivered_email == "learner7@example.edu"
    with db_session(engine, write=True) as s:
        [m] = status.list_mismatches(s)
        row = status.resend_mismatch(s, mismatch_id=m.id)  # type: ignore[arg-type]
        s.commit()
    assert row.kind == "credly.issue_badge" and row.status == "pending"
    assert row.payload["recipient_email"] == "ada@new.example"
    assert row.payload["issuer_earner_id"].startswith(f"{cid}:beginning:")
    with db_session(engine, write=True) as s:
        assert status.list_mismatches(s) == []
        with pytest.raises(Conflict):
            status.resend_mismatch(s, mismatch_id=m.id)  # type: ignore[arg-type]


def test_admin_actions_respect_state_and_leases(engine: Engine) -> None:
    with db_session(engine, write=True) as s:
        _repos(s)
        awards.enqueue_issue(s, snapshot=snapshot(8), now=NOW)
        s.commit()
    [job] = outbox.claim(engine, kinds=["credly.issue_badge"], now=NOW)
    with db_session(engine, write=True) as s, pytest.raises(Conflict, match="being delivered"):
        outbox.cancel(s, job.id, now=NOW)
    with db_session(engine, write=True) as s, pytest.raises(Conflict, match="pending"):
        outbox.redeliver(s, job.id, now=NOW + dt.timedelta(hours=1))
    # After the lease expires the row is claimable again and marked uncertain.
    [again] = outbox.claim(engine, kinds=["credly.issue_badge"], now=NOW + dt.timedelta(hours=1))
    assert again.id == job.id and again.uncertain and again.attempt == 2


def test_token_expiry_warning_14_days_ahead(engine: Engine) -> None:
    with db_session(engine, write=True) as s:
        repo = repositories.create(
            s,
            kind="credly",
            name="Credly",
            secret="tok",
            now=NOW,
            config={"organization_id": "o", "environment": "production"},
        )
        s.commit()
    assert repo.secret_expires_at == NOW + dt.timedelta(days=180)
    with db_session(engine) as s:
        assert repositories.token_warnings(s, now=NOW + dt.timedelta(days=165)) == []
        [w] = repositories.token_warnings(s, now=NOW + dt.timedelta(days=167))
        assert "expires on 2027-05-27 (13 days)" in w.message
        [w] = repositories.token_warnings(s, now=NOW + dt.timedelta(days=181))
        assert "expired" in w.message
    # The token is stored encrypted.
    with engine.connect() as conn:
        raw = conn.exec_driver_sql("SELECT secret FROM delivery_repository").scalar_one()
    assert raw.startswith("v1.") and "tok" not in raw
