"""Canvas Credentials (Badgr v2) through a fake at the transport, signed webhooks, and the
AGS write-back with an injected poster."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import select

from service.db.engine import session as db_session
from service.db.models import DeliveryAttempt, DeliveryPause, DeliveryRepository, OutboxMessage
from service.delivery import awards, repositories
from service.delivery.errors import ConnectorError, RateLimited, ServerError
from service.delivery.outbox import AttemptRecord
from service.delivery.providers import webhook
from service.delivery.providers.ags import AgsConnector
from service.delivery.providers.badgr import BadgrConnector
from service.delivery.providers.webhook import WebhookConnector
from service.delivery.types import RepositoryConfig
from service.delivery.worker import Worker, build_connectors
from tests import factories
from tests.delivery.conftest import snapshot, statuses, unfinished

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


def clock() -> dt.datetime:
    return NOW


class FakeBadgr:
    """Badgr v2 shapes (reference/credentials.md §4.2): /o/token, assertions, revoke."""

    def __init__(self) -> None:
        self.assertions: list[dict[str, Any]] = []
        self.tokens: dict[str, str] = {}  # access -> "valid" | "expired"
        self.grants: list[str] = []
        self.fail_next_issue: str | None = None
        self.requests: list[str] = []
        # The list shows recipients hashed only (no plaintextIdentity), as for an
        # assertion issued with ``hashed: true`` elsewhere: a lookup by e-mail finds nothing.
        self.list_hashed = False
        self.badge_classes = {"BC1", "BC2"}  # the badge classes the account may issue

    def _token(self) -> dict[str, Any]:
        access, refresh = uuid.uuid4().hex, uuid.uuid4().hex
        self.tokens[access] = "valid"
        return {
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": 86400,
            "token_type": "Bearer",
            "scope": "rw:issuer",
        }

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.requests.append(f"{request.method} {path}")
        if path == "/o/token":
            form = dict(x.split("=", 1) for x in request.content.decode().split("&"))
            self.grants.append(form["grant_type"])
            if form["grant_type"] == "password" and form.get("password") != "pw":
                return httpx.Response(400, json={"error": "invalid_grant"})
            return httpx.Response(200, json=self._token())
        auth = request.headers.get("authorization", "")
        if self.tokens.get(auth.removeprefix("Bearer ")) != "valid":
            return httpx.Response(
                401, json={"detail": "Authentication credentials were not provided."}
            )
        if path.count("/") == 3 and path.startswith("/v2/badgeclasses/"):
            bc = path.split("/")[3]
            if request.method != "GET" or bc not in self.badge_classes:
                return httpx.Response(404, json={"status": {"success": False}})
            return httpx.Response(
                200, json={"status": {"success": True}, "result": [{"entityId": bc}]}
            )
        if path.startswith("/v2/badgeclasses/") and path.endswith("/assertions"):
            bc = path.split("/")[3]
            if request.method == "GET":
                who = request.url.params.get("recipient")
                found = [
                    a
                    for a in self.assertions
                    if a["badgeclass"] == bc and a["recipient"]["plaintextIdentity"] == who
                ]
                if self.list_hashed:
                    found = [
                        a | {"recipient": {"identity": "sha256$" + uuid.uuid4().hex}} for a in found
                    ]
                return httpx.Response(200, json={"status": {"success": True}, "result": found})
            body = json.loads(request.content)
            if not body.get("evidence") or not (
                body["evidence"][0].get("url") or body["evidence"][0].get("narrative")
            ):
                return httpx.Response(
                    400, json={"status": {"success": False, "description": "evidence required"}}
                )
            email = body["recipient"]["identity"]
            dup = any(
                a["badgeclass"] == bc
                and a["recipient"]["plaintextIdentity"] == email
                and not a["revoked"]
                for a in self.assertions
            )
            if dup and body.get("allowDuplicateAwards") is False:
                return httpx.Response(
                    400,
                    json={
                        "status": {
                            "success": False,
                            "description": "A previous award of this badge already exists "
                            "for this recipient.",
                        }
                    },
                )
            a = {
                "entityId": uuid.uuid4().hex[:22],
                "badgeclass": bc,
                "revoked": False,
                "recipient": {"plaintextIdentity": email, "type": "email", "hashed": True},
                "issuedOn": body["issuedOn"],
                "evidence": body["evidence"],
            }
            self.assertions.append(a)
            if self.fail_next_issue == "500_applied":
                self.fail_next_issue = None
                return httpx.Response(502, json={"status": {"success": False}})
            return httpx.Response(201, json={"status": {"success": True}, "result": [a]})
        if path.startswith("/v2/assertions/") and request.method == "DELETE":
            eid = path.split("/")[3]
            body = json.loads(request.content)
            if not body.get("revocation_reason"):
                return httpx.Response(400, json={"status": {"description": "reason required"}})
            for a in self.assertions:
                if a["entityId"] == eid and a["revoked"]:
                    return httpx.Response(
                        400, json={"status": {"description": "Assertion is already revoked."}}
                    )
                if a["entityId"] == eid:
                    a["revoked"] = True
                    a["revocationReason"] = body["revocation_reason"]
                    return httpx.Response(200, json={"status": {"success": True}, "result": []})
            return httpx.Response(404, json={"status": {"success": False}})
        if path.startswith("/v2/assertions/") and request.method == "GET":
            eid = path.split("/")[3]
            found = [a for a in self.assertions if a["entityId"] == eid]
            if not found:
                return httpx.Response(404, json={"status": {"success": False}})
            return httpx.Response(200, json={"status": {"success": True}, "result": found})
        return httpx.Response(404)


def _setup(engine: Engine) -> int:
    with db_session(engine, write=True) as s:
        factories.competency(s, "py")
        repo = repositories.create(
            s,
            kind="badgr",
            name="Canvas Credentials",
            secret="pw",
            config={
                "region": "test",
                "username": "admin@uni.test",
                "badge_classes": {"py:beginning": "BC1", "py:advanced": "BC3"},
            },
        )
        s.commit()
        assert repo.id is not None
        return repo.id


def _worker(engine: Engine, badgr: FakeBadgr) -> Worker:
    saved: dict[int, Any] = {}

    def save(rid: int, tok: Any) -> None:
        saved[rid] = tok
        with db_session(engine, write=True) as s:
            repo = s.get(DeliveryRepository, rid)
            assert repo is not None
            repo.access_token, repo.refresh_token = tok.access, tok.refresh
            repo.access_token_expires_at = tok.expires_at
            s.commit()

    conn = BadgrConnector(
        httpx.Client(transport=httpx.MockTransport(badgr)), clock=clock, save_tokens=save
    )
    return Worker(engine, [conn], clock=clock, threads=2)


def _drain(worker: Worker, engine: Engine) -> None:
    for _ in range(50):
        if not unfinished(engine):
            return
        worker.run_once()
    raise AssertionError(statuses(engine))


def test_badgr_issue_with_evidence_refresh_and_revoke(engine: Engine) -> None:
    _setup(engine)
    badgr = FakeBadgr()
    worker = _worker(engine, badgr)
    with db_session(engine, write=True) as s:
        awards.enqueue_issue(s, snapshot=snapshot(1), now=NOW)
        s.commit()
    _drain(worker, engine)
    [a] = badgr.assertions
    assert (
        a["badgeclass"] == "BC1" and a["recipient"]["plaintextIdentity"] == "learner1@example.edu"
    )
    assert a["evidence"][0]["url"] == "https://tool.test/credentials/1"
    assert badgr.grants == ["password"]
    with engine.connect() as c:  # tokens persisted encrypted
        raw = c.exec_driver_sql("SELECT access_token FROM delivery_repository").scalar_one()
    assert raw.startswith("v1.")
    # The access token expires server-side: the worker refreshes once and goes on.
    for k in badgr.tokens:
        badgr.tokens[k] = "expired"
    worker.close()
    worker = _worker(engine, badgr)  # a fresh process: tokens come from the database
    with db_session(engine, write=True) as s:
        for r in s.exec(select(OutboxMessage)).all():
            r.status, r.delivered_at = "delivered", NOW
        awards.propagate_revocation(s, snapshot(1).credential_id, "Grade corrected", now=NOW)
        s.commit()
    _drain(worker, engine)
    worker.close()
    assert badgr.grants == ["password", "refresh_token"]
    assert a["revoked"] and a["revocationReason"] == "Grade corrected"


def test_badgr_uncertain_attempt_is_checked_not_duplicated(engine: Engine) -> None:
    _setup(engine)
    badgr = FakeBadgr()
    badgr.fail_next_issue = "500_applied"
    worker = _worker(engine, badgr)
    with db_session(engine, write=True) as s:
        awards.enqueue_issue(s, snapshot=snapshot(2), now=NOW)
        s.commit()
    worker.run_once()
    with db_session(engine, write=True) as s:
        row = s.exec(select(OutboxMessage)).one()
        assert row.uncertain and row.status == "pending"
        row.due_at = NOW
        s.commit()
    _drain(worker, engine)
    worker.close()
    assert len(badgr.assertions) == 1
    with db_session(engine) as s:
        assert s.exec(select(OutboxMessage)).one().result["found"] is True


def _issued(engine: Engine, badgr: FakeBadgr, i: int = 3) -> tuple[Worker, dict[str, Any]]:
    _setup(engine)
    worker = _worker(engine, badgr)
    with db_session(engine, write=True) as s:
        awards.enqueue_issue(s, snapshot=snapshot(i), now=NOW)
        s.commit()
    _drain(worker, engine)
    [a] = badgr.assertions
    return worker, a


def _row(engine: Engine, row_id: int | None) -> OutboxMessage:
    with db_session(engine) as s:
        row = s.get(OutboxMessage, row_id)
        assert row is not None
        return row


def test_badgr_upgrade_revokes_the_old_assertion_by_its_id_whatever_the_list_looks_like(
    engine: Engine,
) -> None:
    badgr = FakeBadgr()
    worker, old = _issued(engine, badgr)
    badgr.list_hashed = True  # a lookup by e-mail would find nothing
    badgr.requests.clear()
    with db_session(engine, write=True) as s:
        rows = awards.propagate_upgrade(s, snapshot=snapshot(3, level="advanced"), now=NOW)
        s.commit()
        [revoke] = [r for r in rows if r.kind == "badgr.revoke_assertion"]
    _drain(worker, engine)
    worker.close()
    assert old["revoked"] and old["revocationReason"] == "Replaced by a higher level"
    assert f"DELETE /v2/assertions/{old['entityId']}" in badgr.requests
    assert "GET /v2/badgeclasses/BC1/assertions" not in badgr.requests
    row = _row(engine, revoke.id)
    assert row.status == "delivered" and row.result["revoked"] == [old["entityId"]]
    new = [a for a in badgr.assertions if a["badgeclass"] == "BC3"]
    assert len(new) == 1 and not new[0]["revoked"]


def test_badgr_revoke_retried_after_a_lost_answer_is_delivered_once(engine: Engine) -> None:
    badgr = FakeBadgr()
    worker, a = _issued(engine, badgr)
    a["revoked"] = True  # an earlier attempt revoked it; its answer was lost
    with db_session(engine, write=True) as s:
        [revoke] = awards.propagate_revocation(s, snapshot(3).credential_id, "Wrong", now=NOW)
        s.commit()
    _drain(worker, engine)
    worker.close()
    row = _row(engine, revoke.id)
    assert row.status == "delivered" and row.result["revoked"] == [a["entityId"]]


def test_badgr_revoke_without_a_stored_id_falls_back_to_the_lookup(engine: Engine) -> None:
    badgr = FakeBadgr()
    worker, a = _issued(engine, badgr)
    with db_session(engine, write=True) as s:
        issued = s.exec(select(OutboxMessage)).one()
        issued.result = {}  # delivered by a version that kept no assertion id
        s.add(issued)
        [revoke] = awards.propagate_revocation(s, snapshot(3).credential_id, "Wrong", now=NOW)
        s.commit()
    _drain(worker, engine)
    worker.close()
    assert a["revoked"]
    assert "GET /v2/badgeclasses/BC1/assertions" in badgr.requests
    row = _row(engine, revoke.id)
    assert row.status == "delivered" and row.result["revoked"] == [a["entityId"]]


def test_badgr_revocation_that_revokes_nothing_is_a_dead_letter_that_says_what_to_do(
    engine: Engine,
) -> None:
    _setup(engine)
    badgr = FakeBadgr()
    with db_session(engine, write=True) as s:
        awards.enqueue_issue(s, snapshot=snapshot(4), now=NOW)
        row = s.exec(select(OutboxMessage)).one()
        # Its outcome was never learned (it timed out, then ran out of attempts).
        row.status, row.uncertain = "dead", True
        s.add(row)
        [revoke] = awards.propagate_revocation(s, snapshot(4).credential_id, "Wrong", now=NOW)
        s.commit()
    worker = _worker(engine, badgr)
    _drain(worker, engine)
    worker.close()
    row = _row(engine, revoke.id)
    assert row.status == "dead"
    assert "nothing was revoked on Canvas Credentials" in (row.last_error or "")
    assert "microcred outbox cancel" in (row.last_error or "")


def test_badgr_revoke_by_an_id_badgr_does_not_know_is_not_delivered(engine: Engine) -> None:
    badgr = FakeBadgr()
    worker, a = _issued(engine, badgr)
    badgr.assertions.clear()  # deleted in Canvas Credentials meanwhile
    with db_session(engine, write=True) as s:
        [revoke] = awards.propagate_revocation(s, snapshot(3).credential_id, "Wrong", now=NOW)
        s.commit()
    _drain(worker, engine)
    worker.close()
    row = _row(engine, revoke.id)
    assert row.status == "dead"
    assert f"Canvas Credentials has no assertion {a['entityId']}" in (row.last_error or "")


def test_webhook_is_signed_and_verifiable(engine: Engine) -> None:
    got: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        got.append(request)
        return httpx.Response(500 if len(got) == 1 else 204)

    with db_session(engine, write=True) as s:
        repositories.create(
            s,
            kind="webhook",
            name="HR",
            secret="whsec_test",
            config={"url": "https://hr.test/hooks"},
        )
        awards.enqueue_issue(s, snapshot=snapshot(3), now=NOW)
        s.commit()
    conn = WebhookConnector(httpx.Client(transport=httpx.MockTransport(receiver)), clock=clock)
    worker = Worker(engine, [conn], clock=clock)
    worker.run_once()
    with db_session(engine, write=True) as s:
        s.exec(select(OutboxMessage)).one().due_at = NOW
        s.commit()
    worker.run_once()
    worker.close()
    assert statuses(engine) == {"delivered": 1}
    first, second = got
    for req in got:
        sig = req.headers["microcred-signature"]
        assert webhook.verify("whsec_test", sig, req.content, now=int(NOW.timestamp()))
        assert not webhook.verify("other", sig, req.content, now=int(NOW.timestamp()))
        assert not webhook.verify("whsec_test", sig, req.content + b" ", now=int(NOW.timestamp()))
        assert not webhook.verify("whsec_test", sig, req.content, now=int(NOW.timestamp()) + 301)
    # The event id is the same on the retry, so receivers can de-duplicate.
    assert first.headers["microcred-event-id"] == second.headers["microcred-event-id"]
    body = json.loads(second.content)
    assert body["type"] == "credential.issued" and body["data"]["level"] == "beginning"


def test_ags_write_back_goes_through_the_injected_poster(engine: Engine) -> None:
    posted: list[dict[str, Any]] = []

    def poster(payload: dict[str, Any], record: AttemptRecord) -> dict[str, Any]:
        record.note("POST lineitem/scores")
        if not posted:
            posted.append({})
            raise ServerError("LMS answered 503", status=503)
        posted.append(payload)
        return {"ok": True}

    with db_session(engine, write=True) as s:
        repositories.create(s, kind="ags", name="Gradebook", config={})
        awards.enqueue_issue(
            s, snapshot=snapshot(4, ags={"lineitem": "https://lms/li/1", "user": "sub-4"}), now=NOW
        )
        s.commit()
    # Without a poster the standard worker does not claim gradebook rows at all.
    plain = Worker(engine, build_connectors(engine, clock=clock), clock=clock)
    assert plain.run_once() == 0
    plain.close()
    worker = Worker(engine, [AgsConnector(poster)], clock=clock)
    worker.run_once()
    with db_session(engine, write=True) as s:
        s.exec(select(OutboxMessage)).one().due_at = NOW
        s.commit()
    worker.run_once()
    worker.close()
    assert posted[-1]["ags"] == {"lineitem": "https://lms/li/1", "user": "sub-4"}
    with db_session(engine) as s:
        tries = s.exec(select(DeliveryAttempt).order_by(DeliveryAttempt.id)).all()  # type: ignore[arg-type]
    assert [t.outcome for t in tries] == ["retry", "delivered"]
    assert tries[0].response_status == 503


def _two_lms(engine: Engine) -> tuple[int, list[int]]:
    """Gradebook rows to two LMS platforms: learners 5 and 6 on platform 1, 7 on 2."""
    with db_session(engine, write=True) as s:
        repo = repositories.create(s, kind="ags", name="Gradebook", config={})
        assert repo.id is not None
        for i, platform in ((5, 1), (6, 1), (7, 2)):
            ags = {"platform_id": platform, "lineitem": f"https://lms{platform}/li/1"}
            awards.enqueue_issue(s, snapshot=snapshot(i, ags=ags | {"user": f"sub-{i}"}), now=NOW)
        s.commit()
        return repo.id, [r.id or 0 for r in s.exec(select(OutboxMessage)).all()]


def _limited_poster(sent: list[str]) -> Any:
    def poster(payload: dict[str, Any], record: AttemptRecord) -> dict[str, Any]:
        sent.append(payload["ags"]["user"])
        if len(sent) == 1:  # platform 1's gradebook answers the first score with a 429
            raise RateLimited("LMS answered 429", status=429, retry_after=300)
        return {"ok": True}

    return poster


def test_a_429_from_one_lms_pauses_only_that_lms_for_every_worker(engine: Engine) -> None:
    repo_id, _ = _two_lms(engine)
    sent: list[str] = []
    poster = _limited_poster(sent)
    w1 = Worker(engine, [AgsConnector(poster)], clock=clock, threads=1, batch=1)
    w2 = Worker(engine, [AgsConnector(poster)], clock=clock, threads=1, batch=1)
    assert w1.run_once() == 1 and sent == ["sub-5"]  # platform 1: 429, Retry-After 300 s
    assert w2.run_once() == 1  # platform 2's score goes on
    assert w2.run_once() == 0 and w1.run_once() == 0  # platform 1's second score waits
    w1.close()
    w2.close()
    assert sent == ["sub-5", "sub-7"]
    with db_session(engine) as s:
        repo = repositories.get(s, repo_id)
        assert repo.paused_until is None  # the gradebook of platform 2 is not paused
        [pause] = s.exec(select(DeliveryPause)).all()
    assert pause.scope == "platform:1" and pause.paused_until == NOW + dt.timedelta(seconds=300)
    assert "429" in pause.paused_reason


def test_a_429_from_one_lms_does_not_stop_the_worker_sending_to_another(engine: Engine) -> None:
    _two_lms(engine)
    sent: list[str] = []
    worker = Worker(engine, [AgsConnector(_limited_poster(sent))], clock=clock, threads=1, batch=3)
    assert worker.run_once() == 3  # one claim holds all three rows
    worker.close()
    assert sent == ["sub-5", "sub-7"]  # not platform 1's second score
    assert statuses(engine) == {"pending": 2, "delivered": 1}


@pytest.mark.parametrize("secret", [None])
def test_webhook_without_secret_is_a_dead_letter(engine: Engine, secret: str | None) -> None:
    with db_session(engine, write=True) as s:
        repositories.create(
            s, kind="webhook", name="HR", secret=secret, config={"url": "https://hr.test/hooks"}
        )
        awards.enqueue_issue(s, snapshot=snapshot(5), now=NOW)
        s.commit()
    worker = Worker(engine, [WebhookConnector(httpx.Client(), clock=clock)], clock=clock)
    worker.run_once()
    worker.close()
    with db_session(engine) as s:
        row = s.exec(select(OutboxMessage)).one()
    assert row.status == "dead" and "no signing secret" in (row.last_error or "")


def test_receiver_snippet_in_docs_verifies_our_signatures() -> None:
    import re
    import time
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "webhooks.md").read_text()
    [snippet] = re.findall(r"Python:\n\n```python\n(.*?)```", doc, flags=re.S)
    ns: dict[str, Any] = {}
    exec(snippet, ns)  # our own documentation
    body = b'{"id":"e1","type":"credential.issued"}'
    t = int(time.time())
    header = f"t={t},v1={webhook.sign('whsec', t, body)}"
    assert ns["verify"]("whsec", header, body) is True
    assert ns["verify"]("whsec", header, body + b"x") is False
    assert ns["verify"]("other", header, body) is False


def test_webhook_connection_test_sends_a_signed_ping_and_reports_a_refusal() -> None:
    got: list[httpx.Request] = []
    answer = [204]

    def receiver(request: httpx.Request) -> httpx.Response:
        got.append(request)
        return httpx.Response(answer[0])

    repo = RepositoryConfig(
        id=1,
        kind="webhook",
        name="HR",
        config={"url": "https://hr.test/hooks"},
        secret="whsec_test",
    )
    conn = WebhookConnector(httpx.Client(transport=httpx.MockTransport(receiver)), clock=clock)
    assert conn.ping(repo) == 204
    [req] = got
    assert req.headers["microcred-event-type"] == "ping"
    assert json.loads(req.content)["type"] == "ping"
    signature = req.headers["microcred-signature"]
    assert webhook.verify("whsec_test", signature, req.content, now=int(NOW.timestamp()))
    answer[0] = 401
    with pytest.raises(ConnectorError, match="401"):
        conn.ping(repo)
    conn.close()


def test_a_connection_test_takes_a_token_and_reads_each_mapped_badge_class(
    engine: Engine,
) -> None:
    repo_id = _setup(engine)
    with db_session(engine) as s:
        repo = repositories.snapshots(s, [repo_id])[repo_id]
    badgr = FakeBadgr()
    conn = BadgrConnector(httpx.Client(transport=httpx.MockTransport(badgr)), clock=clock)
    count, problems = conn.check_connection(repo)
    assert badgr.requests == [
        "POST /o/token",
        "GET /v2/badgeclasses/BC3",  # py:advanced
        "GET /v2/badgeclasses/BC1",  # py:beginning
    ]  # nothing but a token and reads
    assert count == 2 and problems == [
        "py:advanced: badge class BC3 is not one this account can issue "
        "(Canvas Credentials answered 404)"
    ]
    wrong = dataclasses.replace(repo, secret="not-the-password")
    with pytest.raises(ConnectorError) as err:
        BadgrConnector(
            httpx.Client(transport=httpx.MockTransport(badgr)), clock=clock
        ).check_connection(wrong)
    assert err.value.status == 400 and "token" in err.value.detail
