"""Bundled data is pinned, and issuing and verifying never touch the network."""

from __future__ import annotations

import hashlib
import socket
from importlib import resources
from typing import Any

import pytest
from sqlalchemy import Engine

from service.db.engine import session
from service.issuer import contexts, service, vcjwt
from service.settings import Settings
from tests.issuer import samples

PINNED = {
    "ob_v3p0_achievementcredential_schema.json": (
        "859e405b592d93c3261fe899362f4128801140d4d20c01502a066b3540483d95"
    ),
    "contexts/credentials-v2.jsonld": (
        "59955ced6697d61e03f2b2556febe5308ab16842846f5b586d7f1f7adec92734"
    ),
    "contexts/ob-v3p0-3.0.3.json": (
        "3d34f4d4ef1bce691106e63798beb5e7b862ba841423f5ee1e53ab7ddf3bca84"
    ),
    "contexts/ob-v3p0-extensions.json": (
        "146f85aa16effd7ca1da8056eb443f53ce1eca8a34186cb062832c0a97d889c3"
    ),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_bundled_copies_are_the_pinned_ones(name: str) -> None:
    data = resources.files("service.issuer").joinpath("data", name).read_bytes()
    assert hashlib.sha256(data).hexdigest() == PINNED[name]


def test_loader_refuses_unknown_urls() -> None:
    loader = contexts.loader_for("https://tool.test")
    with pytest.raises(Exception, match="not bundled"):
        loader("https://example.org/evil-context.json", None)
    assert loader(contexts.eu_context_url("https://tool.test"), None)["document"]["@context"]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_issue_and_verify_with_the_network_cut(
    no_network: None, engine: Engine, settings: Settings
) -> None:
    with session(engine, write=True) as s:
        row = service.issue(s, settings=settings, award=samples.award(), now=samples.NOW, actor="t")
        s.commit()
    with session(engine) as s:
        for form in (row.document, row.jwt):
            assert form is not None
            report = service.verify_input(s, settings, form, now=samples.NOW)
            assert report.valid, report.reasons


def test_rs256_jwt_when_configured(engine: Engine, settings: Settings) -> None:
    rs = settings.model_copy(update={"issuer_jwt_algorithm": "RS256"})
    with session(engine, write=True) as s:
        row = service.issue(s, settings=rs, award=samples.award(), now=samples.NOW, actor="t")
        s.commit()
    assert row.jwt is not None
    from service import jws

    assert jws.unverified_header(row.jwt)["alg"] == "RS256"
    with session(engine) as s:
        assert service.verify_input(s, rs, row.jwt, now=samples.NOW).valid
    claims_ok = vcjwt.claims_mismatch(
        {**row.document, "iss": "did:web:tool.test", "jti": row.document["id"], "nbf": 0}
    )
    assert claims_ok == ["nbf does not equal validFrom", "exp does not equal validUntil"]


def test_other_deployments_eu_context_is_the_bundled_v1() -> None:
    loader = contexts.loader_for("https://tool.test")
    other = loader(
        "https://other-university.example/microcred/contexts/microcred-eu-v1.jsonld", None
    )
    assert other["document"] == contexts.bundled_context("microcred-eu-v1.jsonld")
    with pytest.raises(Exception, match="not bundled"):
        loader("http://other.example/contexts/microcred-eu-v1.jsonld", None)


def test_the_stored_document_and_the_jwt_payload_are_one_serialisation(
    engine: Engine, settings: Settings
) -> None:
    """The issuer serialises a credential once: the row stores those bytes and the VC-JWT
    carries them; the row object keeps the dict, and nothing is written twice."""
    import base64
    import json

    from sqlalchemy import event, text

    from service.db.models import Credential

    updates: list[str] = []

    def listener(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.lstrip().upper().startswith("UPDATE CREDENTIAL"):
            updates.append(statement)

    event.listen(engine, "before_cursor_execute", listener)
    try:
        with session(engine, write=True) as s:
            row = service.issue(
                s, settings=settings, award=samples.award(), now=samples.NOW, actor="t"
            )
            assert isinstance(row.document, dict) and row.document["proof"]
            s.commit()
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert updates == []
    with session(engine) as s:
        stored = s.execute(
            text("SELECT document FROM credential WHERE uuid = :u"), {"u": row.uuid}
        ).scalar_one()
        reread = s.get(Credential, row.id)
    stored_doc = stored if isinstance(stored, dict) else json.loads(stored)
    assert reread is not None and reread.document == row.document == stored_doc
    assert row.jwt is not None
    segment = row.jwt.split(".")[1]
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    payload = json.loads(raw)
    assert {k: v for k, v in payload.items() if k in stored_doc} == stored_doc
    if isinstance(stored, str):  # SQLite keeps the text: the very bytes the token carries
        assert raw.endswith(stored.encode()[1:])
