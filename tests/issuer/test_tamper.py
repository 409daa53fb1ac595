"""Every field of an issued credential is covered: changing any one makes it invalid."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine

from service import jws
from service.db.engine import session
from service.issuer import canon, contexts, dataintegrity, multibase, service, verify
from service.settings import Settings
from tests.issuer import samples

NOW = samples.NOW + dt.timedelta(minutes=1)


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, (*path, i))
    else:
        yield path, node


def _changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    return str(value) + "x"


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    for p in path[:-1]:
        doc = doc[p]
    doc[path[-1]] = value


@pytest.fixture
def issued(engine: Engine, settings: Settings) -> Iterator[tuple[dict[str, Any], str, Any]]:
    with session(engine, write=True) as s:
        row = service.issue(s, settings=settings, award=samples.award(), now=samples.NOW, actor="t")
        s.commit()
    with session(engine) as s:
        resolver = service.resolver(s, settings)
        assert row.jwt is not None
        yield row.document, row.jwt, resolver


def test_every_field_change_invalidates(issued: tuple[dict[str, Any], str, Any]) -> None:
    doc, _, resolver = issued
    assert verify.verify(doc, resolver=resolver, now=NOW).valid
    leaves = list(_leaves(doc))
    assert len(leaves) > 100
    survivors = []
    for path, value in leaves:
        bad = copy.deepcopy(doc)
        _set(bad, path, _changed(value))
        report = verify.verify(bad, resolver=resolver, now=NOW)
        if report.valid:
            survivors.append(path)
    assert survivors == []


def test_every_field_removal_invalidates(issued: tuple[dict[str, Any], str, Any]) -> None:
    doc, _, resolver = issued
    survivors = []
    for path, _ in _leaves(doc):
        bad = copy.deepcopy(doc)
        parent = bad
        for p in path[:-1]:
            parent = parent[p]
        del parent[path[-1]]
        if verify.verify(bad, resolver=resolver, now=NOW).valid:
            survivors.append(path)
    assert survivors == []


def test_added_defined_or_undefined_field_invalidates(
    issued: tuple[dict[str, Any], str, Any],
) -> None:
    doc, _, resolver = issued
    for key, value in (("description", "extra"), ("notInAnyContext", "sneaky")):
        bad = copy.deepcopy(doc)
        bad["credentialSubject"]["achievement"]["assessmentType"] = "portfolio"
        bad["credentialSubject"][key] = value
        report = verify.verify(bad, resolver=resolver, now=NOW)
        assert not report.valid
        assert "proof" in [c.name for c in report.checks if not c.ok]


def test_jwt_payload_tamper_and_header_tamper(issued: tuple[dict[str, Any], str, Any]) -> None:
    _, token, resolver = issued
    assert verify.verify(token, resolver=resolver, now=NOW).valid
    header, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["name"] = "Something else"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    report = verify.verify(f"{header}.{forged}.{sig}", resolver=resolver, now=NOW)
    assert not report.valid and "signature" in report.reasons[0]
    hdr = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    hdr["alg"] = "HS256"
    h2 = base64.urlsafe_b64encode(json.dumps(hdr).encode()).rstrip(b"=").decode()
    assert not verify.verify(f"{h2}.{payload}.{sig}", resolver=resolver, now=NOW).valid


def test_wrong_key_is_named_as_such(issued: tuple[dict[str, Any], str, Any]) -> None:
    doc, _, resolver = issued
    # Re-signed by a stranger's key that claims to belong to our issuer.
    stranger = Ed25519PrivateKey.generate()
    mb = multibase.encode_multikey_ed25519(stranger.public_key().public_bytes_raw())
    forged = dataintegrity.sign(
        dataintegrity.unsecured(doc),
        key=stranger,
        verification_method=f"{doc['issuer']['id']}#{mb}",
        created=doc["proof"][0]["created"],
        loader=contexts.loader_for("https://tool.test"),
    )
    report = verify.verify(forged, resolver=resolver, now=NOW)
    assert not report.valid
    failed = {c.name: c.detail for c in report.checks if not c.ok}
    assert "not an assertion key" in failed["issuer_key"]
    # A did:key signature over a credential naming our issuer: controller mismatch.
    forged2 = dataintegrity.sign(
        dataintegrity.unsecured(doc),
        key=stranger,
        verification_method=f"did:key:{mb}#{mb}",
        created=doc["proof"][0]["created"],
        loader=contexts.loader_for("https://tool.test"),
    )
    report2 = verify.verify(forged2, resolver=resolver, now=NOW)
    assert "not by the issuer" in {c.name: c.detail for c in report2.checks}["issuer_key"]


def test_jwt_signed_by_unknown_key(issued: tuple[dict[str, Any], str, Any]) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    doc, token, resolver = issued
    kid = jws.unverified_header(token)["kid"]
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fake = jws.load_private_key(pem, kid=kid, alg="ES256")
    from service.issuer import vcjwt

    report = verify.verify(vcjwt.encode(doc, fake), resolver=resolver, now=NOW)
    assert not report.valid and "signature" in " ".join(report.reasons)


def test_memoised_canonicalization_equals_plain_pyld(
    issued: tuple[dict[str, Any], str, Any],
) -> None:
    from pyld import jsonld

    doc, _, _ = issued
    loader = contexts.loader_for("https://tool.test")
    plain = jsonld.normalize(
        dataintegrity.unsecured(doc),
        {"algorithm": "URDNA2015", "format": "application/n-quads", "documentLoader": loader},
    )
    for _ in range(2):  # second round runs entirely from the memo
        assert canon.canonicalize(dataintegrity.unsecured(doc), loader) == plain


@pytest.mark.parametrize("context", ["", "0", ["https://www.w3.org/ns/credentials/v2", ""]])
def test_an_unresolvable_context_iri_is_bad_input_not_a_crash(context: object) -> None:
    """pyld's IRI resolver raises a bare ValueError for an empty or relative context IRI
    (found by tests/issuer/test_verify_robust.py); it must reach the report as bad JSON-LD."""
    from service.errors import BadInput

    with pytest.raises(BadInput, match="not valid JSON-LD"):
        canon.canonicalize({"@context": context, "name": "x"}, contexts.loader_for("https://t"))
