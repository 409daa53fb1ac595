"""Issue, verify, revoke and rotate against the real database."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from sqlalchemy import Engine
from sqlmodel import select

from service.db.engine import session
from service.db.models import AuditEvent, Credential, StatusList
from service.errors import BadInput, Conflict, NotFound
from service.issuer import repository, service, statuslist
from service.settings import Settings
from tests.issuer import samples

NOW = samples.NOW


def _issue(engine: Engine, settings: Settings, **kw: object) -> Credential:
    with session(engine, write=True) as s:
        row = service.issue(s, settings=settings, award=samples.award(**kw), now=NOW, actor="test")
        s.commit()
    return row


def _verify(engine: Engine, settings: Settings, data: object, now: dt.datetime = NOW):  # type: ignore[no-untyped-def]
    with session(engine) as s:
        return service.verify_input(s, settings, data, now=now + dt.timedelta(minutes=5))  # type: ignore[arg-type]


def test_issued_credential_verifies_in_both_forms(engine: Engine, settings: Settings) -> None:
    row = _issue(engine, settings)
    report = _verify(engine, settings, row.document)
    assert report.valid, report.reasons
    assert [c.name for c in report.checks] == [
        "format",
        "contexts",
        "proof",
        "issuer_key",
        "status",
        "dates",
        "schema",
    ]
    assert row.jwt is not None
    jwt_report = _verify(engine, settings, row.jwt)
    assert jwt_report.valid, jwt_report.reasons
    assert jwt_report.format == "jwt"
    doc = row.document
    assert doc["issuer"]["id"] == "did:web:tool.test"
    assert doc["proof"][0]["verificationMethod"].startswith("did:web:tool.test#z6Mk")
    assert "ada@example.org" not in str(doc).lower()


def test_revoke_and_unrevoke_round_trip(engine: Engine, settings: Settings) -> None:
    row = _issue(engine, settings)
    with session(engine, write=True) as s:
        service.revoke(
            s, settings=settings, uuid=row.uuid, reason="awarded in error", actor="test", now=NOW
        )
        s.commit()
    report = _verify(engine, settings, row.document)
    assert not report.valid
    assert any("revoked" in r for r in report.reasons), report.reasons
    with session(engine, write=True) as s:
        with pytest.raises(Conflict):
            service.revoke(s, settings=settings, uuid=row.uuid, reason="again", actor="t", now=NOW)
        service.unrevoke(
            s, settings=settings, uuid=row.uuid, reason="appeal upheld", actor="test", now=NOW
        )
        s.commit()
    assert _verify(engine, settings, row.document).valid
    with session(engine) as s:
        actions = [e.action for e in s.exec(select(AuditEvent).order_by(AuditEvent.id))]
    assert actions == ["credential.issued", "credential.revoked", "credential.unrevoked"]


def test_revoke_needs_reason_and_known_credential(engine: Engine, settings: Settings) -> None:
    row = _issue(engine, settings)
    with session(engine, write=True) as s:
        with pytest.raises(BadInput, match="reason"):
            service.revoke(s, settings=settings, uuid=row.uuid, reason=" ", actor="t", now=NOW)
        with pytest.raises(NotFound):
            service.revoke(s, settings=settings, uuid="nope", reason="x", actor="t", now=NOW)


def test_indexes_are_random_and_distinct(engine: Engine, settings: Settings) -> None:
    rows = [_issue(engine, settings) for _ in range(5)]
    indexes = {r.status_index for r in rows}
    assert len(indexes) == 5
    assert len({r.status_list_id for r in rows}) == 1
    assert indexes != set(range(min(indexes), min(indexes) + 5))


def test_one_transaction_gives_many_credentials_distinct_indexes(
    engine: Engine, settings: Settings
) -> None:
    # more credentials than one pool of free indexes holds (a worker's batch)
    with session(engine, write=True) as s:
        rows = [
            service.issue(s, settings=settings, award=samples.award(), now=NOW, actor="test")
            for _ in range(3 * service.POOL + 1)
        ]
        s.commit()
    assert len({(r.status_list_id, r.status_index) for r in rows}) == len(rows)
    assert len({r.status_list_id for r in rows}) == 1


def test_free_indexes_leave_out_the_taken_ones(engine: Engine, settings: Settings) -> None:
    row = _issue(engine, settings)
    taken = row.status_index
    others = [i for i in (taken - 2, taken - 1, taken + 1, taken + 2) if i >= 0]
    with session(engine, write=True) as s:
        free = repository.free_indexes(s, row.status_list_id, [taken, *others])
        assert repository.free_indexes(s, row.status_list_id, []) == []
    assert free == others


def test_key_rotation_keeps_old_credentials_verifiable(engine: Engine, settings: Settings) -> None:
    old = _issue(engine, settings)
    with session(engine, write=True) as s:
        service.rotate_keys(s, settings=settings, now=NOW, actor="test")
        s.commit()
    new = _issue(engine, settings)
    assert (
        old.document["proof"][0]["verificationMethod"]
        != (new.document["proof"][0]["verificationMethod"])
    )
    for row in (old, new):
        assert _verify(engine, settings, row.document).valid
        assert _verify(engine, settings, row.jwt).valid


def test_expired_credential_is_invalid_because_expired(engine: Engine, settings: Settings) -> None:
    row = _issue(engine, settings)
    later = NOW + dt.timedelta(days=4 * 365)
    report = _verify(engine, settings, row.document, now=later)
    assert not report.valid
    assert [c.name for c in report.checks if not c.ok] == ["dates"]
    assert "expired" in report.reasons[0]


def test_status_list_credential_is_signed_and_large(engine: Engine, settings: Settings) -> None:
    row = _issue(engine, settings)
    with session(engine) as s:
        doc, etag = service.status_list_response(s, row.status_list_id)
        report = service.verify.verify({**doc}, resolver=service.resolver(s, settings), now=NOW)
    bits = statuslist.decode_list(doc["credentialSubject"]["encodedList"])
    assert len(bits) * 8 >= 131072
    assert etag.startswith('"')
    # The list itself verifies (proof and key), though it is no OB credential (schema).
    assert {c.name for c in report.checks if c.ok} >= {"proof", "issuer_key"}


def test_tampered_copy_fails_proof(engine: Engine, settings: Settings) -> None:
    row = _issue(engine, settings)
    doc = copy.deepcopy(row.document)
    doc["credentialSubject"]["achievement"]["name"] = "Data analysis (Advanced)"
    report = _verify(engine, settings, doc)
    assert not report.valid and [c.name for c in report.checks if not c.ok] == ["proof"]


def test_private_keys_are_encrypted_at_rest(engine: Engine, settings: Settings) -> None:
    from sqlalchemy import text

    _issue(engine, settings)
    with engine.connect() as conn:
        stored = [r[0] for r in conn.execute(text("SELECT private_pem FROM issuer_key"))]
    assert len(stored) == 2
    assert all(v.startswith("v1.") and "PRIVATE KEY" not in v for v in stored)


def test_concurrent_issues_get_distinct_indexes(engine: Engine, settings: Settings) -> None:
    import threading

    _issue(engine, settings)  # keys and the first list exist before the race
    rows: list[Credential] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(3):
                rows.append(_issue(engine, settings))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert len({(r.status_list_id, r.status_index) for r in rows}) == 12
    with session(engine) as s:
        lists = s.exec(select(StatusList)).all()
        on_list = s.exec(select(Credential).where(Credential.status_list_id == lists[0].id)).all()
    assert len(lists) == 1 and len(on_list) == 13
    assert lists[0].allocated == 13  # every transaction's entries added, none lost


def _allocated(engine: Engine) -> dict[int, int]:
    with session(engine) as s:
        return {row.id: row.allocated for row in s.exec(select(StatusList)) if row.id}


def test_a_commit_adds_its_entries_to_the_list_and_a_rollback_none(
    engine: Engine, settings: Settings
) -> None:
    with session(engine, write=True) as s:
        for _ in range(3):
            service.issue(s, settings=settings, award=samples.award(), now=NOW, actor="t")
        s.commit()
    first = _allocated(engine)
    assert list(first.values()) == [3]
    with session(engine, write=True) as s:
        service.issue(s, settings=settings, award=samples.award(), now=NOW, actor="t")
        s.rollback()
    assert _allocated(engine) == first
    _issue(engine, settings)
    assert list(_allocated(engine).values()) == [4]


def test_a_list_at_its_limit_gives_no_more_entries(engine: Engine, settings: Settings) -> None:
    first = _issue(engine, settings)
    limit = int(settings.status_list_size * service.MAX_FILL)
    with session(engine, write=True) as s:
        listed = repository.status_list(s, first.status_list_id)
        assert listed is not None
        listed.allocated = limit - 2  # as if the list held that many credentials
        s.add(listed)
        s.commit()
    with session(engine, write=True) as s:
        rows = [
            service.issue(s, settings=settings, award=samples.award(), now=NOW, actor="t")
            for _ in range(3)
        ]
        s.commit()
    lists = [r.status_list_id for r in rows]
    assert lists[:2] == [first.status_list_id] * 2 and lists[2] != first.status_list_id
    assert _allocated(engine) == {first.status_list_id: limit, lists[2]: 1}


def test_free_indexes_leave_out_the_held_ones(engine: Engine, settings: Settings) -> None:
    row = _issue(engine, settings)
    taken = row.status_index
    others = [i for i in (1, 2, 3) if i != taken][:2]
    with session(engine, write=True) as s:
        free = repository.free_indexes(s, row.status_list_id, [others[0], taken, others[1]])
        s.rollback()
    assert free == others
