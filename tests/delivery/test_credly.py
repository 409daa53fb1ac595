"""Credly delivery against the fake Credly process, one injected fault at a time.

Every test checks what someone would notice: badges at Credly (none lost, none doubled),
no request before its Retry-After, and the failure visible on the attempt rows.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import select

from service.db.engine import session as db_session
from service.db.models import DeliveryAttempt, OutboxMessage
from service.delivery import awards, outbox, repositories
from service.delivery.providers.credly import CredlyConnector
from service.delivery.worker import Worker
from tests import factories
from tests.delivery.conftest import (
    ScaledClock,
    credly_repo,
    drain,
    enqueue_many,
    snapshot,
    statuses,
)
from tests.delivery.fakes import FakeCredly
from tests.timing import HANG

_WORKERS: list[Worker] = []

# Seconds the worker waits for an answer from the fake. Its "timeout" faults hang far longer
# (HANG); every other answer must come within this, which on a loaded CI host 0.5 s was not.
CLIENT_TIMEOUT = 5.0


def make_worker(engine: Engine, clock: ScaledClock, **kw: Any) -> Worker:
    connector = CredlyConnector(httpx.Client(timeout=CLIENT_TIMEOUT), clock=clock)
    w = Worker(
        engine,
        [connector],
        clock=clock,
        # a lease of HANG real seconds: on the scaled clock a slow host's slow attempt must
        # not outlive its lease (600 virtual seconds were 6 real ones)
        lease_seconds=kw.pop("lease_seconds", HANG * max(clock.factor, 1)),
        threads=kw.pop("threads", 4),
        batch=kw.pop("batch", 8),
        **kw,
    )
    _WORKERS.append(w)
    return w


@pytest.fixture(autouse=True)
def _close_workers() -> Iterator[None]:
    yield
    while _WORKERS:
        _WORKERS.pop().close()


def live_per_earner(fake: FakeCredly) -> Counter[str]:
    return Counter(b["issuer_earner_id"] for b in fake.state()["badges"] if b["state"] != "revoked")


def attempts(engine: Engine) -> list[DeliveryAttempt]:
    with db_session(engine) as s:
        return list(s.exec(select(DeliveryAttempt).order_by(DeliveryAttempt.id)).all())


@pytest.fixture
def clock(fake: FakeCredly) -> ScaledClock:
    c = ScaledClock(factor=100)
    fake.configure(clock=c.as_config())
    return c


def test_issue_sends_documented_fields(
    engine: Engine, fake: FakeCredly, clock: ScaledClock
) -> None:
    credly_repo(engine, fake)
    enqueue_many(engine, 1)
    worker = make_worker(engine, clock)
    drain(worker, engine)
    [badge] = fake.state()["badges"]
    assert badge["badge_template"]["id"] == "tmpl-b"
    assert badge["recipient_email"] == "learner0@example.edu"
    assert badge["issuer_earner_id"] == "00000000-0000-4000-8000-000000000000:beginning"
    assert badge["issued_at"] == "2026-11-28 12:00:00 +0000"
    assert badge["evidence"][0]["url"] == "https://tool.test/credentials/0"
    with db_session(engine) as s:
        row = s.exec(select(OutboxMessage)).one()
    assert row.status == "delivered" and row.result["badge_id"] == badge["id"]
    [a] = attempts(engine)
    assert a.outcome == "delivered" and a.response_status == 201
    assert "POST /v1/organizations/org-1/badges (issue) -> 201" in a.request_summary
    assert "test-org-token" not in a.request_summary
    assert a.response_excerpt == ""  # a success body repeats the learner's data: not kept


@pytest.mark.parametrize(
    "outcome", ["500", "500_applied", "timeout", "timeout_applied", "reset", "reset_applied"]
)
def test_one_fault_then_exactly_one_badge(
    engine: Engine, fake: FakeCredly, clock: ScaledClock, outcome: str
) -> None:
    credly_repo(engine, fake)
    fake.configure(script=[{"outcome": outcome}])
    enqueue_many(engine, 1)
    drain(make_worker(engine, clock), engine)
    assert list(live_per_earner(fake).values()) == [1]
    first, last = attempts(engine)[0], attempts(engine)[-1]
    assert first.outcome in ("retry", "uncertain") and first.error_detail
    assert last.outcome == "delivered"
    if outcome.startswith("500"):
        assert first.response_status == 500 and "Internal server error" in first.response_excerpt
    if outcome.endswith("_applied"):
        # The effect happened: the retry found it by checking, and sent no second POST.
        assert "(check)" in last.request_summary and "(issue)" not in last.request_summary


def test_429_retry_after_is_honoured(engine: Engine, fake: FakeCredly, clock: ScaledClock) -> None:
    credly_repo(engine, fake)
    fake.configure(
        script=[{"outcome": "429", "retry_after": 120}, {"outcome": "429", "retry_after": 30}]
    )
    enqueue_many(engine, 1)
    drain(make_worker(engine, clock), engine)
    st = fake.state()
    assert st["violations"] == []
    posts = [r for r in st["requests"] if r["method"] == "POST"]
    assert [p["outcome"] for p in posts] == ["429", "429", "ok"]
    assert posts[1]["t"] - posts[0]["t"] >= 120 and posts[2]["t"] - posts[1]["t"] >= 30
    a = attempts(engine)
    assert a[0].error_code == "rate_limited" and a[0].retry_after_seconds == 120


def test_duplicate_refusal_is_success_after_reconciling(
    engine: Engine, fake: FakeCredly, clock: ScaledClock
) -> None:
    fake.configure(templates={"tmpl-b": {"allow_duplicates": False}})
    credly_repo(engine, fake)
    enqueue_many(engine, 1)
    worker = make_worker(engine, clock)
    drain(worker, engine)
    with db_session(engine, write=True) as s:
        rid = s.exec(select(OutboxMessage)).one().id
        assert rid is not None
        outbox.redeliver(s, rid)  # the administrator re-sends: Credly refuses a duplicate
        s.commit()
    # Redelivery checks first; make the check miss by scripting nothing and force a POST:
    with db_session(engine, write=True) as s:
        row = s.get(OutboxMessage, rid)
        assert row is not None
        row.uncertain = False
        s.add(row)
        s.commit()
    drain(worker, engine)
    assert list(live_per_earner(fake).values()) == [1]
    last = attempts(engine)[-1]
    assert last.outcome == "delivered" and "-> 422" in last.request_summary
    with db_session(engine) as s:
        assert s.get(OutboxMessage, rid).result["found"] is True  # type: ignore[union-attr]


def test_duplicate_of_someone_elses_badge_is_a_visible_dead_letter(
    engine: Engine, fake: FakeCredly, clock: ScaledClock
) -> None:
    fake.configure(templates={"tmpl-b": {"allow_duplicates": False}})
    rid = credly_repo(engine, fake)
    with db_session(engine, write=True) as s:
        # Same e-mail and template, different credential (earner id): Credly refuses.
        awards.enqueue_issue(s, snapshot=snapshot(1, recipient_email="same@example.edu"))
        awards.enqueue_issue(
            s, snapshot=snapshot(2, recipient_email="same@example.edu"), repository_ids=[rid]
        )
        s.commit()
    drain(make_worker(engine, clock), engine)
    assert statuses(engine) == {"delivered": 1, "dead": 1}
    with db_session(engine) as s:
        dead = s.exec(select(OutboxMessage).where(OutboxMessage.status == "dead")).one()
    assert "already holds this template" in (dead.last_error or "")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"secret": "wrong-token"}, "repository update ID --new-secret"),
        ({"config": {"templates": {"py:beginning": "no-such-template"}}}, "not active"),
        ({"config": {"templates": {}}}, "no Credly badge template"),
    ],
)
def test_final_errors_dead_letter_after_one_attempt(
    engine: Engine, fake: FakeCredly, clock: ScaledClock, change: dict[str, Any], reason: str
) -> None:
    credly_repo(engine, fake, **change)
    enqueue_many(engine, 1)
    drain(make_worker(engine, clock), engine)
    [a] = attempts(engine)
    assert a.outcome == "dead" and reason in (a.error_detail or "")
    with db_session(engine) as s:
        row = s.exec(select(OutboxMessage)).one()
    assert row.status == "dead" and row.attempts == 1 and reason in (row.last_error or "")
    assert fake.state()["badges"] == []


def test_retryable_errors_dead_letter_when_attempts_run_out(
    engine: Engine, fake: FakeCredly, clock: ScaledClock
) -> None:
    credly_repo(engine, fake)
    fake.configure(script=[{"outcome": "500"}] * 3)
    enqueue_many(engine, 1)
    with db_session(engine, write=True) as s:
        s.exec(select(OutboxMessage)).one().max_attempts = 3
        s.commit()
    drain(make_worker(engine, clock), engine)
    assert [a.outcome for a in attempts(engine)] == ["uncertain", "uncertain", "dead"]
    with db_session(engine, write=True) as s:
        outbox.retry(s, s.exec(select(OutboxMessage)).one().uuid)
        s.commit()
    drain(make_worker(engine, clock), engine)
    assert list(live_per_earner(fake).values()) == [1]


def test_revoke_and_upgrade_reach_credly(
    engine: Engine, fake: FakeCredly, clock: ScaledClock
) -> None:
    credly_repo(engine, fake)
    enqueue_many(engine, 2)
    worker = make_worker(engine, clock)
    drain(worker, engine)
    with db_session(engine, write=True) as s:
        awards.propagate_upgrade(s, snapshot=snapshot(0, level="advanced"))
        awards.propagate_revocation(s, snapshot(1).credential_id, "Grade corrected")
        s.commit()
    drain(worker, engine)
    badges = fake.state()["badges"]
    by = {(b["issuer_earner_id"].split(":")[0][-1], b["badge_template"]["id"]): b for b in badges}
    assert by[("0", "tmpl-b")]["state"] == "revoked"
    assert by[("0", "tmpl-a")]["state"] == "pending"
    assert by[("1", "tmpl-b")]["state"] == "revoked"
    assert by[("1", "tmpl-b")]["revoke_reason"] == "Grade corrected"
    assert len(badges) == 3


def test_fake_detects_a_request_sent_before_retry_after(fake: FakeCredly) -> None:
    # The "0 requests before Retry-After" figures rest on this detector: prove it fires.
    fake.configure(script=[{"outcome": "429", "retry_after": 60}])
    body = {
        "recipient_email": "a@example.edu",
        "badge_template_id": "tmpl-b",
        "issued_at": "2026-11-28 12:00:00 +0000",
        "issued_to_first_name": "A",
        "issued_to_last_name": "B",
        "issuer_earner_id": "e-1",
    }
    with httpx.Client(auth=("test-org-token", "")) as c:
        url = f"{fake.base_url}/organizations/org-1/badges"
        assert c.post(url, json=body).status_code == 429
        assert c.post(url, json=body).status_code == 201  # too early
    [v] = fake.state()["violations"]
    assert v["earner"] == "e-1" and v["method"] == "POST"


def test_worker_does_not_send_when_its_lease_is_about_to_expire(
    engine: Engine, fake: FakeCredly, clock: ScaledClock
) -> None:
    credly_repo(engine, fake)
    enqueue_many(engine, 1)
    # A margin longer than the lease: every request would start too late to finish in time.
    worker = make_worker(engine, clock, lease_seconds=600, lease_margin=601)
    worker.run_once()
    assert fake.state()["requests"] == []
    [a] = attempts(engine)
    assert a.outcome == "retry" and "lease" in (a.error_detail or "")


def test_unexpected_answer_is_treated_as_uncertain_and_checked(engine: Engine) -> None:
    # A proxy answers HTML after Credly applied the request; the next attempt checks first.
    now = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
    badges: list[dict[str, Any]] = []
    seen: list[str] = []

    def credly(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        if request.method == "POST":
            data = json.loads(request.content)
            badges.append(
                {
                    "id": "b1",
                    "state": "pending",
                    "badge_template": {"id": data["badge_template_id"]},
                    "issuer_earner_id": data["issuer_earner_id"],
                }
            )
            return httpx.Response(200, text="<html>Bad gateway page</html>")
        return httpx.Response(200, json={"data": badges, "metadata": {"next_page_url": None}})

    with db_session(engine, write=True) as s:
        factories.competency(s, "py")
        repositories.create(
            s,
            kind="credly",
            name="C",
            secret="t",
            config={
                "organization_id": "o",
                "environment": "sandbox",
                "templates": {"py:beginning": "T"},
            },
        )
        awards.enqueue_issue(s, snapshot=snapshot(1), now=now)
        s.commit()
    w = Worker(
        engine,
        [CredlyConnector(httpx.Client(transport=httpx.MockTransport(credly)), clock=lambda: now)],
        clock=lambda: now,
    )
    _WORKERS.append(w)
    w.run_once()
    with db_session(engine, write=True) as s:
        row = s.exec(select(OutboxMessage)).one()
        assert row.status == "pending" and row.uncertain
        assert row.last_error == (
            "unexpected_answer: Credly answered HTML (status 200), not JSON: is the base URL right?"
        )
        row.due_at = now
        s.commit()
    w.run_once()
    assert seen == ["POST", "GET"] and len(badges) == 1
    assert statuses(engine) == {"delivered": 1}


@pytest.fixture
def still(fake: FakeCredly) -> ScaledClock:
    """Virtual time that moves only when the test moves it: the pause a 429 sets must still
    hold at each step however slowly the host runs (on the scaled clock its 300 s were 3 real
    seconds)."""
    c = ScaledClock(factor=0)
    fake.configure(clock=c.as_config())
    return c


def _after_the_pause(fake: FakeCredly, clock: ScaledClock) -> None:
    clock.advance(301)
    fake.configure(clock=clock.as_config())


def _org_posts(fake: FakeCredly, org: str) -> list[dict[str, Any]]:
    return [
        r
        for r in fake.state()["requests"]
        if r["method"] == "POST" and f"/organizations/{org}/" in r["path"]
    ]


def _two_orgs(engine: Engine, fake: FakeCredly, clock: ScaledClock) -> tuple[int, int]:
    fake.configure(org_limits=True, script=[{"outcome": "429", "retry_after": 300}])
    a = credly_repo(engine, fake, name="Credly A")
    b = credly_repo(engine, fake, name="Credly B", config={"organization_id": "org-2"})
    with db_session(engine, write=True) as s:
        # Two rows to organisation A (the first gets the 429), one to organisation B.
        for i, repo in enumerate((a, a, b)):
            awards.enqueue_issue(s, snapshot=snapshot(i), repository_ids=[repo], now=clock())
        s.commit()
    return a, b


def test_a_429_pauses_the_repository_for_the_other_threads_of_the_worker(
    engine: Engine, fake: FakeCredly, still: ScaledClock
) -> None:
    _two_orgs(engine, fake, still)
    # One claim takes all three rows; the second row to A is not sent after A's 429.
    worker = make_worker(engine, still, threads=1, batch=3)
    assert worker.run_once() == 3
    assert [p["outcome"] for p in _org_posts(fake, "org-1")] == ["429"]
    assert [p["outcome"] for p in _org_posts(fake, "org-2")] == ["ok"]
    assert worker.run_once() == 0  # paused
    _after_the_pause(fake, still)
    drain(worker, engine)
    st = fake.state()
    assert st["violations"] == []
    first, *rest = _org_posts(fake, "org-1")
    assert len(rest) == 2 and all(p["t"] - first["t"] >= 300 for p in rest)
    assert statuses(engine) == {"delivered": 3}


def test_a_429_pauses_the_repository_for_every_worker(
    engine: Engine, fake: FakeCredly, still: ScaledClock
) -> None:
    a, _b = _two_orgs(engine, fake, still)
    w1 = make_worker(engine, still, threads=1, batch=1)
    w2 = make_worker(engine, still, threads=1, batch=1)  # another process: no shared memory
    assert w1.run_once() == 1  # organisation A answers 429, Retry-After 300 s
    with db_session(engine) as s:
        repo = repositories.get(s, a)
        assert repo.paused_until is not None and "429" in repo.paused_reason
    assert w2.run_once() == 1  # the row to B; A's second row waits for the pause
    assert w2.run_once() == 0 and w1.run_once() == 0
    assert [p["outcome"] for p in _org_posts(fake, "org-1")] == ["429"]
    assert [p["outcome"] for p in _org_posts(fake, "org-2")] == ["ok"]
    _after_the_pause(fake, still)
    drain(w2, engine)
    assert fake.state()["violations"] == []
    assert statuses(engine) == {"delivered": 3}


def _badges_of(fake: FakeCredly, cid: str) -> dict[str, dict[str, Any]]:
    return {
        b["badge_template"]["id"]: b
        for b in fake.state()["badges"]
        if b["issuer_earner_id"].startswith(cid)
    }


def test_an_upgrade_revokes_the_old_badge_by_its_id_whatever_the_list_looks_like(
    engine: Engine, fake: FakeCredly, clock: ScaledClock
) -> None:
    # Credly's list names the template in another field than the issue answer does.
    fake.configure(template_field="flat")
    credly_repo(engine, fake)
    enqueue_many(engine, 1)
    worker = make_worker(engine, clock)
    drain(worker, engine)
    cid = snapshot(0).credential_id
    old_id = _badges_of(fake, cid)["tmpl-b"]["id"]
    with db_session(engine, write=True) as s:
        awards.propagate_upgrade(s, snapshot=snapshot(0, level="advanced"))
        s.commit()
    drain(worker, engine)
    badges = _badges_of(fake, cid)
    assert badges["tmpl-b"]["state"] == "revoked" and badges["tmpl-a"]["state"] == "pending"
    assert live_per_earner(fake) == {f"{cid}:advanced": 1}  # the learner holds only the new one
    puts = [r["path"] for r in fake.state()["requests"] if r["method"] == "PUT"]
    assert puts == [f"/v1/organizations/org-1/badges/{old_id}/revoke"]
    with db_session(engine) as s:
        replace = OutboxMessage.kind == "credly.replace_badge"
        row = s.exec(select(OutboxMessage).where(replace)).one()
    assert row.status == "delivered" and row.result["revoked"] == [old_id]


def test_a_revocation_that_revokes_nothing_is_a_dead_letter_that_says_what_to_do(
    engine: Engine, fake: FakeCredly, clock: ScaledClock
) -> None:
    rid = credly_repo(engine, fake)
    cid = snapshot(0).credential_id
    with db_session(engine, write=True) as s:
        awards.enqueue_issue(s, snapshot=snapshot(0))
        row = s.exec(select(OutboxMessage)).one()
        # Its outcome was never learned (say, it timed out, then ran out of attempts).
        row.status, row.uncertain = "dead", True
        s.add(row)
        [revoke] = awards.propagate_revocation(s, cid, "Awarded in error")
        s.commit()
        assert revoke.repository_id == rid
    drain(make_worker(engine, clock), engine)
    with db_session(engine) as s:
        revoke_row = s.get(OutboxMessage, revoke.id)
    assert revoke_row is not None and revoke_row.status == "dead"
    assert "nothing was revoked on Credly" in (revoke_row.last_error or "")
    assert "microcred outbox cancel" in (revoke_row.last_error or "")


def test_a_revoke_by_id_that_credly_does_not_know_is_not_delivered(
    engine: Engine, fake: FakeCredly, clock: ScaledClock
) -> None:
    credly_repo(engine, fake)
    enqueue_many(engine, 1)
    worker = make_worker(engine, clock)
    drain(worker, engine)
    fake.reset()  # the badge was deleted in Credly meanwhile
    fake.configure(token="test-org-token", templates={"tmpl-b": {}}, clock=clock.as_config())
    with db_session(engine, write=True) as s:
        [revoke] = awards.propagate_revocation(s, snapshot(0).credential_id, "Awarded in error")
        s.commit()
    drain(worker, engine)
    with db_session(engine) as s:
        row = s.get(OutboxMessage, revoke.id)
    assert row is not None and row.status == "dead"
    assert "Credly has no badge" in (row.last_error or "")
