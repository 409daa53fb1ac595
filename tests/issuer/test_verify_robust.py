"""``verify`` answers every input with a report, never an exception (fuzzed)."""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.issuer import contexts, dataintegrity, verify
from service.issuer.types import VerificationReport
from tests.issuer import samples

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)

_OFFLINE = verify.Resolver(keyring=None, status_list=lambda url: None)
NOW = samples.NOW


def _credential() -> dict[str, Any]:
    data = json.loads(
        (
            __import__("pathlib").Path(__file__).parent / "vectors/1edtech-ob3/vector.json"
        ).read_text()
    )
    doc: dict[str, Any] = data["credential"]
    doc["proof"] = [{**data["proofOptions"], "proofValue": data["proofValue"]}]
    return doc


BASE = _credential()


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*path, i))
    return out


PATHS = [p for p in _paths(BASE) if p]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PATHS), JSON)
def test_any_value_anywhere_gives_a_report(path: tuple[Any, ...], value: Any) -> None:
    doc = copy.deepcopy(BASE)
    target = doc
    for p in path[:-1]:
        target = target[p]
    target[path[-1]] = value
    report = verify.verify(doc, resolver=_OFFLINE, now=NOW)
    assert isinstance(report, VerificationReport)
    assert not report.valid  # the 1EdTech example key is not bound to an issuer DID


@settings(max_examples=40, deadline=None)
@given(st.text(max_size=200) | st.binary(max_size=200))
def test_any_text_gives_a_report(data: str | bytes) -> None:
    report = verify.verify(data, resolver=_OFFLINE, now=NOW)
    assert not report.valid and report.checks


def test_deeply_nested_input_is_refused_cleanly() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    report = verify.verify(deep, resolver=_OFFLINE, now=NOW)
    assert not report.valid and report.format == "unknown"
    nested: dict[str, Any] = {"proof": []}
    cur = nested
    for _ in range(5000):
        cur["x"] = {}
        cur = cur["x"]
    assert not verify.verify(nested, resolver=_OFFLINE, now=NOW).valid


def test_did_key_issuer_verifies_offline() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from service.issuer import multibase

    key = Ed25519PrivateKey.generate()
    mb = multibase.encode_multikey_ed25519(key.public_key().public_bytes_raw())
    doc = dataintegrity.unsecured(copy.deepcopy(BASE))
    doc["issuer"]["id"] = f"did:key:{mb}"
    doc["credentialSchema"] = [
        {
            "id": "https://purl.imsglobal.org/spec/ob/v3p0/schema/json/"
            "ob_v3p0_achievementcredential_schema.json",
            "type": "1EdTechJsonSchemaValidator2019",
        }
    ]
    doc["@context"] = [*doc["@context"], contexts.OB_EXTENSIONS]
    signed = dataintegrity.sign(
        doc,
        key=key,
        verification_method=f"did:key:{mb}#{mb}",
        created="2010-01-01T19:23:24Z",
        loader=contexts.loader_for("https://x.test"),
    )
    report = verify.verify(signed, resolver=_OFFLINE, now=NOW + dt.timedelta(days=1))
    assert report.valid, report.reasons


def test_jws_with_absurd_header_is_refused_cleanly() -> None:
    import base64

    header = base64.urlsafe_b64encode(b"[" * 50_000 + b"]" * 50_000).rstrip(b"=").decode()
    report = verify.verify(f"{header}.e30.c2ln", resolver=_OFFLINE, now=NOW)
    assert not report.valid and report.format == "jwt"
