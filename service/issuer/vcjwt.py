"""VC-JWT: the second proof form, a compact JWS of the credential (OB 3.0 §8.2).

OB 3.0 profiles the JWT proof format (``ob_v3p0/integrity.md``): the JOSE header holds only
``alg``, ``kid`` (a URL that dereferences to the public JWK) and ``typ: "JWT"``; the payload
is the credential itself plus ``iss`` (issuer id), ``jti`` (credential id), ``nbf``
(validFrom), ``sub`` (credentialSubject.id, when present) and ``exp`` (validUntil, when
present). W3C VC-JOSE-COSE differs (``typ: vc+jwt``, no ``nbf``); microcred follows OB 3.0,
which the 1EdTech validator checks, and serves the token as ``application/vc+jwt``.

The payload is the credential *with* its Data Integrity proof: the embedded proof comes
first and the JWT wraps the proof-bearing credential (reference/credentials.md §1.9).
All JOSE work goes through ``service.jws`` (the python-jose seam).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from service import jws

__all__ = [
    "JWT_CLAIMS",
    "VcJwtError",
    "claims_mismatch",
    "encode",
    "issuer_id",
    "verify_signature",
]

JWT_CLAIMS = ("iss", "jti", "nbf", "sub", "exp", "iat")
# Dates are checked separately (and reported as their own check), so the signature step
# must not reject an expired or not-yet-valid token: a leeway beyond any real date.
_NO_TIME_CHECK = 2**40


class VcJwtError(Exception):
    """The token is malformed, its signature fails, or its claims contradict the credential."""


@functools.lru_cache(maxsize=256)  # credentials issued together share their validFrom
def _numeric(value: str) -> int:
    return int(dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())


def issuer_id(credential: Mapping[str, Any]) -> str | None:
    """The ``issuer`` id of a credential, whether the issuer is an object or a URL."""
    issuer = credential.get("issuer")
    value = issuer.get("id") if isinstance(issuer, Mapping) else issuer
    return value if isinstance(value, str) else None


def encode(
    credential: Mapping[str, Any], key: jws.PrivateKey, *, serialized: bytes | None = None
) -> str:
    """Sign ``credential`` as an OB 3.0 VC-JWT with ``key`` (ES256 or RS256).

    ``serialized``: the credential as ``orjson.dumps`` wrote it, when the caller has it
    already (the issuer stores the same bytes): the payload is then not serialised again.
    """
    claims: dict[str, Any] = {"iss": issuer_id(credential), "jti": credential["id"]}
    claims["nbf"] = claims["iat"] = _numeric(credential["validFrom"])
    subject = credential.get("credentialSubject")
    if isinstance(subject, Mapping) and isinstance(subject.get("id"), str):
        claims["sub"] = subject["id"]
    if isinstance(credential.get("validUntil"), str):
        claims["exp"] = _numeric(credential["validUntil"])
    if not credential.keys().isdisjoint(claims):  # not an OB credential's members; merge
        return jws.sign({**credential, **claims}, key)
    try:
        body = serialized if serialized is not None else orjson.dumps(credential)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise VcJwtError(f"cannot serialise the credential: {exc}") from exc
    # The claims spliced in front of the credential's members: one serialisation of the
    # credential, no copy of it (bench/README.md, Sign).
    # (``credential`` has members: "id" and "validFrom" were read above)
    return jws.sign_payload(orjson.dumps(claims)[:-1] + b"," + body[1:], key)


def verify_signature(token: str, keys: Iterable[jws.PublicKey]) -> dict[str, Any]:
    """The verified payload (signature only; dates are the caller's separate check).

    Raises:
        VcJwtError: bad header, unknown key, or a signature that does not verify.
    """
    header = jws.unverified_header(token)
    extra = set(header) - {"alg", "kid", "jwk", "typ"}
    if extra:
        raise VcJwtError(f"JOSE header has fields OB 3.0 forbids: {', '.join(sorted(extra))}")
    if header.get("typ", "JWT") != "JWT":
        raise VcJwtError(f"JOSE header typ is {header.get('typ')!r}, OB 3.0 requires 'JWT'")
    try:
        return jws.verify(
            token,
            keys,
            algorithms=sorted(jws.ALLOWED_ALGORITHMS),
            require=("iss", "jti", "nbf"),
            leeway=_NO_TIME_CHECK,
        )
    except jws.TokenError as exc:
        raise VcJwtError(exc.detail) from None


def claims_mismatch(claims: Mapping[str, Any]) -> list[str]:
    """How the JWT claims contradict the credential they carry (OB 3.0 §8.2.4.1)."""
    problems = []
    if claims.get("iss") != issuer_id(claims):
        problems.append("iss does not equal issuer.id")
    if claims.get("jti") != claims.get("id"):
        problems.append("jti does not equal the credential id")
    try:
        if claims.get("nbf") != _numeric(str(claims.get("validFrom"))):
            problems.append("nbf does not equal validFrom")
        if "validUntil" in claims and claims.get("exp") != _numeric(str(claims["validUntil"])):
            problems.append("exp does not equal validUntil")
    except ValueError:
        problems.append("validFrom / validUntil are not dates")
    subject = claims.get("credentialSubject")
    if isinstance(subject, Mapping) and "id" in subject and claims.get("sub") != subject["id"]:
        problems.append("sub does not equal credentialSubject.id")
    return problems


def credential_of(claims: Mapping[str, Any]) -> dict[str, Any]:
    """The credential inside a VC-JWT payload (registered claims removed)."""
    return {k: v for k, v in claims.items() if k not in JWT_CLAIMS}
