"""VC-JWT payload assembly: the OB 3.0 claims spliced in front of the credential's JSON."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from service import jws
from service.issuer import vcjwt

CREDENTIAL: dict[str, Any] = {
    "@context": ["https://www.w3.org/ns/credentials/v2"],
    "id": "urn:uuid:6a1b",
    "type": ["VerifiableCredential", "OpenBadgeCredential"],
    "issuer": {"id": "did:web:tool.example", "name": "Zoë's University"},
    "validFrom": "2026-11-29T02:00:00Z",
    "validUntil": "2027-11-29T02:00:00Z",
    "credentialSubject": {"id": "mailto:learner@example.org", "achievement": {"id": "a:1"}},
}


@pytest.fixture(scope="module")
def key() -> jws.PrivateKey:
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return jws.load_private_key(pem, kid="https://tool.example/issuer/keys/1", alg="ES256")


def _payload_pairs(token: str) -> list[tuple[str, Any]]:
    segment = token.split(".")[1]
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    pairs: list[tuple[str, Any]] = json.loads(raw, object_pairs_hook=lambda p: p)
    return pairs


def test_payload_is_the_credential_and_its_claims_once_each(key: jws.PrivateKey) -> None:
    token = vcjwt.encode(CREDENTIAL, key)
    pairs = _payload_pairs(token)
    names = [name for name, _ in pairs]
    assert len(names) == len(set(names)), "a member appears twice"
    claims = vcjwt.verify_signature(token, [key.public])
    nbf = 1795917600  # 2026-11-29T02:00:00Z
    assert claims == CREDENTIAL | {
        "iss": "did:web:tool.example",
        "jti": "urn:uuid:6a1b",
        "nbf": nbf,
        "iat": nbf,
        "exp": nbf + 365 * 86400,
        "sub": "mailto:learner@example.org",
    }
    assert vcjwt.claims_mismatch(claims) == []


def test_a_credential_member_named_like_a_claim_is_replaced_not_repeated(
    key: jws.PrivateKey,
) -> None:
    odd = CREDENTIAL | {"iss": "https://elsewhere.example", "sub": 7}
    token = vcjwt.encode(odd, key)
    names = [name for name, _ in _payload_pairs(token)]
    assert names.count("iss") == 1 and names.count("sub") == 1
    claims = vcjwt.verify_signature(token, [key.public])
    assert claims["iss"] == "did:web:tool.example"
    assert claims["sub"] == "mailto:learner@example.org"


def test_a_credential_that_is_not_json_is_refused(key: jws.PrivateKey) -> None:
    with pytest.raises(vcjwt.VcJwtError, match="cannot serialise"):
        vcjwt.encode(CREDENTIAL | {"evidence": {1, 2}}, key)
