"""The python-jose seam: allow-listed algorithms, CVE regressions, claim rules."""

from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from service import jws

NOW = 1_800_000_000


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.fixture(scope="module")
def rsa_key() -> jws.PrivateKey:
    return jws.load_private_key(
        _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        kid="r1",
        alg="RS256",
    )


@pytest.fixture(scope="module")
def ec_key() -> jws.PrivateKey:
    return jws.load_private_key(
        _pem(ec.generate_private_key(ec.SECP256R1())), kid="e1", alg="ES256"
    )


def claims(**kw: object) -> dict[str, object]:
    return {"iss": "https://p", "aud": "tool", "iat": NOW, "exp": NOW + 60} | kw


@pytest.mark.parametrize("fixture", ["rsa_key", "ec_key"])
def test_round_trip(fixture: str, request: pytest.FixtureRequest) -> None:
    key: jws.PrivateKey = request.getfixturevalue(fixture)
    token = jws.sign(claims(), key)
    got = jws.verify(token, [key.public], algorithms=[key.alg], audience="tool", now=NOW)
    assert got["iss"] == "https://p"
    assert jws.unverified_header(token)["kid"] == key.kid


def test_public_jwk_rebuilds_a_working_key(ec_key: jws.PrivateKey) -> None:
    rebuilt = jws.public_key_from_jwk(ec_key.public.jwk)
    token = jws.sign(claims(), ec_key)
    assert jws.verify(token, [rebuilt], algorithms=["ES256"], now=NOW)["aud"] == "tool"


@pytest.mark.parametrize(
    ("key", "alg"),
    [
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), "ES256"),
        (ec.generate_private_key(ec.SECP256R1()), "RS256"),
        (ec.generate_private_key(ec.SECP384R1()), "ES256"),
    ],
)
def test_a_key_of_another_type_than_its_algorithm_is_a_token_error(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, alg: str
) -> None:
    with pytest.raises(jws.TokenError, match="unsupported key type"):
        jws.load_private_key(_pem(key), kid="k", alg=alg)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize("encoding", ["pem", "der", "openssh"])
def test_hs256_forged_with_the_public_key_is_rejected(
    rsa_key: jws.PrivateKey, encoding: str
) -> None:
    """CVE-2024-33663 and its DER variant: an HMAC token keyed with our public key."""
    pub = rsa_key.crypto.public_key()
    secret = {
        "pem": pub.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "der": pub.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "openssh": pub.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ),
    }[encoding]
    head = _b64(json.dumps({"alg": "HS256", "kid": "r1"}).encode())
    body = _b64(json.dumps(claims()).encode())
    sig = _b64(hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest())
    with pytest.raises(jws.TokenError, match="not allowed"):
        jws.verify(f"{head}.{body}.{sig}", [rsa_key.public], algorithms=["RS256"], now=NOW)


def test_alg_none_is_rejected(rsa_key: jws.PrivateKey) -> None:
    head = _b64(json.dumps({"alg": "none", "kid": "r1"}).encode())
    body = _b64(json.dumps(claims()).encode())
    with pytest.raises(jws.TokenError):
        jws.verify(f"{head}.{body}.", [rsa_key.public], algorithms=["RS256"], now=NOW)


def test_algorithms_are_required_and_asymmetric(rsa_key: jws.PrivateKey) -> None:
    token = jws.sign(claims(), rsa_key)
    for bad in ([], ["HS256"], ["RS256", "HS256"], ["none"]):
        with pytest.raises(jws.TokenError, match="subset"):
            jws.verify(token, [rsa_key.public], algorithms=bad, now=NOW)


def test_signature_by_another_key_is_rejected(rsa_key: jws.PrivateKey) -> None:
    other = jws.load_private_key(
        _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        kid="r1",
        alg="RS256",
    )
    with pytest.raises(jws.TokenError, match="signature"):
        jws.verify(jws.sign(claims(), other), [rsa_key.public], algorithms=["RS256"], now=NOW)


def test_unknown_kid_is_reported_as_such(rsa_key: jws.PrivateKey) -> None:
    token = jws.sign(claims(), rsa_key, headers={"kid": "elsewhere"})
    with pytest.raises(jws.TokenError) as err:
        jws.verify(token, [rsa_key.public], algorithms=["RS256"], now=NOW)
    assert err.value.code == "unknown_kid"


@pytest.mark.parametrize(
    ("changes", "leeway", "message"),
    [
        ({"exp": NOW - 1}, 0, "expired"),
        ({"iat": NOW + 3600}, 60, "future"),
        ({"aud": ["tool", "evil"]}, 0, "untrusted"),
        ({"aud": "other"}, 0, "audience"),
        ({"iss": "https://x"}, 0, "issuer"),
        ({"exp": None}, 0, "missing"),
    ],
)
def test_claim_rules(
    rsa_key: jws.PrivateKey, changes: dict[str, object], leeway: int, message: str
) -> None:
    c = {k: v for k, v in claims(**changes).items() if v is not None}
    with pytest.raises(jws.TokenError, match=message):
        jws.verify(
            jws.sign(c, rsa_key),
            [rsa_key.public],
            algorithms=["RS256"],
            audience="tool",
            issuer="https://p",
            leeway=leeway,
            now=NOW,
        )


def test_leeway_accepts_small_skew(rsa_key: jws.PrivateKey) -> None:
    token = jws.sign(claims(exp=NOW - 30), rsa_key)
    assert jws.verify(token, [rsa_key.public], algorithms=["RS256"], leeway=60, now=NOW)


def test_real_clock_is_used_by_default(rsa_key: jws.PrivateKey) -> None:
    now = int(time.time())
    token = jws.sign(claims(iat=now, exp=now + 60), rsa_key)
    assert jws.verify(token, [rsa_key.public], algorithms=["RS256"])


def test_only_the_seam_imports_jose_and_every_decode_names_algorithms() -> None:
    """AST scan: python-jose is imported by service/jws.py alone."""
    root = Path(__file__).parents[1] / "service"
    offenders = []
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "jose" or n.startswith("jose.") for n in names):
                offenders.append(str(path.relative_to(root)))
    assert sorted(set(offenders)) == ["jws.py"]


def _segments(token: str) -> list[bytes]:
    return [base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)) for s in token.split(".")]


def test_compact_form_is_python_joses_header_and_a_raw_p256_signature(
    ec_key: jws.PrivateKey,
) -> None:
    """sign() assembles the JWS itself (orjson, pybase64); pin it to the standard form."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    body = claims(name="Zoë — ☃", n=[1, 2.5, None, True])
    token = jws.sign(body, ec_key, headers={"typ": "JWT", "alg": "none"})
    header, payload, signature = _segments(token)
    assert "=" not in token and "+" not in token and "/" not in token
    # python-jose's header layout: sorted keys, no spaces; alg is always the key's own
    assert header == b'{"alg":"ES256","kid":"e1","typ":"JWT"}'
    assert json.loads(payload) == body
    assert len(signature) == 64  # JWA 3.4: R || S, not DER
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    signing_input = token.rsplit(".", 1)[0].encode()
    ec_key.crypto.public_key().verify(der, signing_input, ec.ECDSA(hashes.SHA256()))


def test_a_header_kid_override_is_kept_and_unserialisable_claims_are_a_token_error(
    rsa_key: jws.PrivateKey,
) -> None:
    token = jws.sign(claims(), rsa_key, headers={"kid": "elsewhere"})
    assert jws.unverified_header(token) == {"alg": "RS256", "kid": "elsewhere", "typ": "JWT"}
    with pytest.raises(jws.TokenError, match="cannot sign"):
        jws.sign(claims(when=object()), rsa_key)
