"""The one seam for python-jose: JWS/JWT signing and verification with fixed rules.

Rules (reference/security.md §2.2), held here for every caller:

1. ``verify`` always passes an explicit ``algorithms`` allow-list, asymmetric only
   (RS256, ES256); ``none`` and HMAC are never accepted, so the algorithm-confusion CVEs
   (CVE-2024-33663 and its DER variant) cannot apply.
2. Keys are key objects built once (``load_private_key``, ``public_key_from_jwk``); no PEM is
   parsed per call (bench/README.md, Sign).
3. The verification key is chosen by ``kid`` from a trusted set the caller supplies;
   ``jku``/``x5u``/``jwk`` headers are ignored.
4. ``exp`` and ``iat`` are required; audience and issuer are compared exactly; an ``aud``
   list with any untrusted member is rejected (LTI Security Framework 5.1.3).

Errors: every failure raises ``TokenError`` (a ``ServiceError``, HTTP 401) with the reason.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
import pybase64
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from jose import jwk, jws
from jose.backends import ECKey, RSAKey
from jose.exceptions import JOSEError

from service.errors import ServiceError

__all__ = [
    "ALLOWED_ALGORITHMS",
    "PrivateKey",
    "PublicKey",
    "TokenError",
    "load_private_key",
    "new_rsa_pem",
    "public_key_from_jwk",
    "sign",
    "sign_payload",
    "thumbprinted",
    "unverified_header",
    "verify",
]

ALLOWED_ALGORITHMS = frozenset({"RS256", "ES256"})

# Rule 2 of the module docstring: fail at import if jose fell back to pure-Python backends.
assert RSAKey.__name__ == "CryptographyRSAKey", "python-jose must use the cryptography backend"
assert ECKey.__name__ == "CryptographyECKey", "python-jose must use the cryptography backend"


class TokenError(ServiceError):
    code = "invalid_token"
    status_code = 401
    title = "The token is not valid"


@dataclass(frozen=True)
class PublicKey:
    kid: str
    alg: str
    key: Any = field(repr=False)  # a jose Key object
    jwk: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PrivateKey:
    kid: str
    alg: str
    public: PublicKey = field(repr=False)
    # a cryptography key object: ``sign`` calls it directly, without python-jose's key
    # object around the same OpenSSL call (bench/README.md, Sign)
    crypto: Any = field(repr=False)


_KEY_TYPES = {"RS256": rsa.RSAPrivateKey, "ES256": ec.EllipticCurvePrivateKey}


def load_private_key(pem: str | bytes, *, kid: str, alg: str) -> PrivateKey:
    """Parse a PEM private key once and keep the key objects for signing."""
    if alg not in ALLOWED_ALGORITHMS:
        raise TokenError(f"algorithm {alg} is not allowed")
    data = pem.encode() if isinstance(pem, str) else pem
    crypto_key = serialization.load_pem_private_key(data, password=None)
    curve = getattr(crypto_key, "curve", None)
    if not isinstance(crypto_key, _KEY_TYPES[alg]) or (curve and curve.name != "secp256r1"):
        raise TokenError(f"unsupported key type for {alg}")
    public_key = jwk.construct(crypto_key, alg).public_key()
    pub_jwk = {**public_key.to_dict(), "kid": kid, "use": "sig"}
    public = PublicKey(kid=kid, alg=alg, key=public_key, jwk=pub_jwk)
    return PrivateKey(kid=kid, alg=alg, public=public, crypto=crypto_key)


def new_rsa_pem() -> str:
    """A new RSA-2048 private key as PKCS#8 PEM (an RS256 key: the LTI tool's, the demo
    platform's)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem.decode()


def thumbprinted(pem: str | bytes) -> PrivateKey:
    """The RS256 key of ``pem`` with the RFC 7638 thumbprint of its public key as ``kid``."""
    key = load_private_key(pem, kid="", alg="RS256")
    # RFC 7638 §3.2: the required members only, sorted, no whitespace.
    required = json.dumps({k: key.public.jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"))
    digest = hashlib.sha256(required.encode()).digest()
    kid = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    public = replace(key.public, kid=kid, jwk=key.public.jwk | {"kid": kid})
    return replace(key, kid=kid, public=public)


def public_key_from_jwk(data: Mapping[str, Any], *, default_alg: str = "RS256") -> PublicKey:
    """Build a verification key from a JWK (only RSA and P-256 EC keys are accepted)."""
    alg = str(data.get("alg") or default_alg)
    if alg not in ALLOWED_ALGORITHMS:
        raise TokenError(f"key algorithm {alg} is not allowed")
    kty = data.get("kty")
    if (alg == "RS256" and kty != "RSA") or (alg == "ES256" and kty != "EC"):
        raise TokenError(f"key type {kty} does not match algorithm {alg}")
    try:
        key = jwk.construct(dict(data), alg)
    except JOSEError as exc:
        raise TokenError(f"unusable key: {exc}") from exc
    return PublicKey(kid=str(data.get("kid", "")), alg=alg, key=key, jwk=dict(data))


def _b64url(data: bytes) -> bytes:
    # pybase64 (SIMD), a tenth of the standard library's time (bench/README.md, Sign).
    return pybase64.urlsafe_b64encode(data).rstrip(b"=")


@functools.lru_cache(maxsize=64)
def _encoded_header(kid: str, alg: str, extra: tuple[tuple[str, Any], ...]) -> bytes:
    header: dict[str, Any] = {"typ": "JWT", "kid": kid, **dict(extra), "alg": alg}
    return _b64url(orjson.dumps(header, option=orjson.OPT_SORT_KEYS))


_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_PKCS1_SHA256 = (padding.PKCS1v15(), hashes.SHA256())


def _signature(key: PrivateKey, signing_input: bytes) -> bytes:
    """The JWS signature (RFC 7518 §3.3, §3.4: ES256 as R || S, 32 bytes each)."""
    if key.alg == "ES256":
        r, s = decode_dss_signature(key.crypto.sign(signing_input, _ECDSA_SHA256))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    rsa_signature: bytes = key.crypto.sign(signing_input, *_PKCS1_SHA256)
    return rsa_signature


def sign(
    claims: Mapping[str, Any], key: PrivateKey, *, headers: Mapping[str, Any] | None = None
) -> str:
    """Sign ``claims`` as a compact JWS with ``key`` (its ``kid`` goes in the header).

    The JOSE header is python-jose's (``typ: JWT``, sorted keys; ``alg`` always the key's).
    JSON, base64url and the signature are done here with orjson, pybase64 and the key's
    cryptography object: for a credential-sized payload the standard library's JSON and
    base64 took longer than the ES256 signature itself (bench/README.md, Sign).
    """
    try:
        payload = orjson.dumps(claims)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise TokenError(f"cannot sign: {exc}") from exc
    return sign_payload(payload, key, headers=headers)


def sign_payload(
    payload: bytes, key: PrivateKey, *, headers: Mapping[str, Any] | None = None
) -> str:
    """Sign a JSON payload that is already serialised (see ``sign``; the caller vouches
    that ``payload`` is one JSON object)."""
    header = _encoded_header(key.kid, key.alg, tuple(sorted(headers.items())) if headers else ())
    signing_input = header + b"." + _b64url(payload)
    return (signing_input + b"." + _b64url(_signature(key, signing_input))).decode("ascii")


def unverified_header(token: str) -> dict[str, Any]:
    try:
        header: dict[str, Any] = jws.get_unverified_header(token)
    except JOSEError as exc:
        raise TokenError(f"malformed token: {exc}") from exc
    return header


def verify(
    token: str,
    keys: Iterable[PublicKey],
    *,
    algorithms: Iterable[str],
    audience: str | None = None,
    issuer: str | None = None,
    leeway: int = 0,
    now: float | None = None,
    require: Iterable[str] = ("exp", "iat"),
    max_age: int | None = None,
) -> dict[str, Any]:
    """Verify signature and registered claims; return the claims.

    Args:
        token: compact JWS.
        keys: the trusted keys; the one whose ``kid`` matches the header is used.
        algorithms: allow-list (subset of RS256, ES256). Required, never inferred.
        audience: when given, ``aud`` must equal it or be a list containing only it.
        issuer: when given, ``iss`` must equal it.
        leeway: seconds of clock skew allowed for ``exp``/``iat``/``nbf``.
        now: the current time (seconds), for tests.
        require: claims that must be present.
        max_age: when given, ``iat`` may be at most this many seconds old.
    """
    allowed = set(algorithms)
    if not allowed or not allowed <= ALLOWED_ALGORITHMS:
        raise TokenError(f"algorithms must be a non-empty subset of {sorted(ALLOWED_ALGORITHMS)}")
    header = unverified_header(token)
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in allowed:  # a list or object is not hashable
        raise TokenError(f"algorithm {str(alg)[:40]!r} is not allowed")
    kid = header.get("kid")
    candidates = [k for k in keys if k.alg == alg and (kid is None or k.kid == kid)]
    if not candidates:
        raise TokenError(f"no trusted key with kid {kid!r}", code="unknown_kid")
    payload: bytes | None = None
    for candidate in candidates:
        try:
            payload = jws.verify(token, candidate.key, algorithms=[alg])
            break
        except JOSEError:
            continue
    if payload is None:
        raise TokenError("signature does not verify")
    try:
        claims = json.loads(payload)
    except ValueError as exc:
        raise TokenError("payload is not JSON") from exc
    if not isinstance(claims, dict):
        raise TokenError("payload is not a JSON object")
    _check_claims(
        claims,
        audience=audience,
        issuer=issuer,
        leeway=leeway,
        now=time.time() if now is None else now,
        require=require,
        max_age=max_age,
    )
    return claims


def _check_claims(
    claims: dict[str, Any],
    *,
    audience: str | None,
    issuer: str | None,
    leeway: int,
    now: float,
    require: Iterable[str],
    max_age: int | None,
) -> None:
    for name in require:
        if name not in claims:
            raise TokenError(f"claim {name!r} is missing")
    for name in ("exp", "iat", "nbf"):
        if name in claims and not isinstance(claims[name], int | float):
            raise TokenError(f"claim {name!r} is not a number")
    if "exp" in claims and now > claims["exp"] + leeway:
        raise TokenError("token has expired", code="token_expired")
    if "nbf" in claims and now + leeway < claims["nbf"]:
        raise TokenError("token is not valid yet")
    if "iat" in claims:
        if claims["iat"] > now + leeway:
            raise TokenError("token was issued in the future (check clocks)")
        if max_age is not None and now - claims["iat"] > max_age + leeway:
            raise TokenError("token is too old")
    if issuer is not None and claims.get("iss") != issuer:
        raise TokenError("issuer does not match")
    if audience is not None:
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if audience not in auds:
            raise TokenError("audience does not match")
        if any(a != audience for a in auds):
            raise TokenError("audience lists an untrusted party")
