"""Issuer identity and signing keys: did:web, Multikey, JWKS, rotation.

The issuer is ``did:web`` of the deployment's base URL (did-method-web §3.2), so the
credential's ``issuer.id`` equals the controller of every key (the 1EdTech validator
requires it). Keys:

- Ed25519 for ``eddsa-rdfc-2022`` proofs; verification method ``{did}#{publicKeyMultibase}``
  (the 1EdTech validator reads the key from the fragment without a fetch; DID resolvers
  find the same id in the DID document).
- ES256 (default) or RS256 for VC-JWT; ``kid`` = ``{base}/issuer/keys/{name}``, a URL that
  returns the single JWK (OB 3.0 §8.2.3 and the 1EdTech validator), also listed in the
  JWKS at ``/.well-known/jwks.json`` and in the DID document.

Rotation retires the active keys from signing and adds new ones; retired keys are never
deleted or unpublished (reference/security.md §3.5), so earlier credentials stay
verifiable. Private keys are stored encrypted (``EncryptedText``) and parsed once per
process: the keyring cache keeps parsed key objects by key row id.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlmodel import Session, col, select

from service import jws
from service.db.models import IssuerKey
from service.db.types import utcnow
from service.errors import BadInput
from service.issuer import multibase

__all__ = [
    "JWT_ALGORITHMS",
    "Ed25519Key",
    "Keyring",
    "did_document",
    "did_web",
    "did_web_url",
    "ensure_keys",
    "generate",
    "jwks",
    "key_url",
    "load_keyring",
    "rotate",
]

JWT_ALGORITHMS = ("ES256", "RS256")
ALGORITHMS = ("Ed25519", *JWT_ALGORITHMS)
KEYS_PATH = "/issuer/keys/"


def did_web(base_url: str) -> str:
    """``did:web`` of a base URL: host (port as ``%3A``) then path segments joined by ``:``."""
    parts = urlsplit(base_url.rstrip("/"))
    if not parts.hostname:
        raise BadInput(f"base URL {base_url!r} has no host")
    host = parts.hostname + (f"%3A{parts.port}" if parts.port else "")
    segments = [quote(unquote(s), safe="") for s in parts.path.split("/") if s]
    return ":".join(["did:web", host, *segments])


def did_web_url(did: str) -> str:
    """Where a did:web document lives (did-method-web §3.2 Read)."""
    if not did.startswith("did:web:"):
        raise BadInput(f"{did} is not a did:web")
    host, *segments = did[len("did:web:") :].split(":")
    path = "/".join(unquote(s) for s in segments)
    base = "https://" + unquote(host)
    return f"{base}/{path}/did.json" if path else f"{base}/.well-known/did.json"


def key_url(base_url: str, name: str) -> str:
    """The URL a VC-JWT ``kid`` names; it returns that single JWK."""
    return base_url.rstrip("/") + KEYS_PATH + name


@dataclass(frozen=True)
class Ed25519Key:
    """An Ed25519 issuer key; ``private`` is set only for the active one."""

    row_id: int
    multibase: str
    private: Ed25519PrivateKey | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Keyring:
    """Every issuer key of one deployment; the active ones can sign."""

    base_url: str
    did: str
    ed25519: tuple[Ed25519Key, ...]
    jwt: tuple[jws.PublicKey, ...]
    jwt_names: dict[str, str]  # kid URL -> short name
    signing_key: Ed25519Key | None
    jwt_signing_key: jws.PrivateKey | None = field(repr=False)
    jwt_key_row: dict[str, int] = field(default_factory=dict)  # kid URL -> row id

    def verification_method(self, key: Ed25519Key) -> str:
        return f"{self.did}#{key.multibase}"

    def jwk(self, name: str) -> dict[str, Any] | None:
        url = key_url(self.base_url, name)
        for key in self.jwt:
            if key.kid == url:
                return dict(key.jwk)
        return None


def _pem(key: Any) -> str:
    data: bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return data.decode()


def generate(session: Session, *, algorithm: str, base_url: str) -> IssuerKey:
    """Create a new active key of ``algorithm`` (Ed25519, ES256 or RS256) and add it.

    Raises:
        BadInput: unknown algorithm.
    """
    stamp = utcnow().strftime("%Y%m%d")
    name = f"{algorithm.lower()}-{stamp}-{secrets.token_hex(4)}"
    if algorithm == "Ed25519":
        private = Ed25519PrivateKey.generate()
        raw = private.public_key().public_bytes_raw()
        mb = multibase.encode_multikey_ed25519(raw)
        jwk = {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": multibase.encode_base64url(raw)[1:],
            "kid": mb,
        }
        row = IssuerKey(
            kid=name,
            algorithm=algorithm,
            private_pem=_pem(private),
            public_jwk=jwk,
            public_multibase=mb,
        )
    elif algorithm in JWT_ALGORITHMS:
        pkey: Any = (
            ec.generate_private_key(ec.SECP256R1())
            if algorithm == "ES256"
            else rsa.generate_private_key(public_exponent=65537, key_size=3072)
        )
        pem = _pem(pkey)
        loaded = jws.load_private_key(pem, kid=key_url(base_url, name), alg=algorithm)
        row = IssuerKey(
            kid=name, algorithm=algorithm, private_pem=pem, public_jwk=loaded.public.jwk
        )
    else:
        raise BadInput(f"unknown key algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)}")
    session.add(row)
    session.flush()
    return row


def ensure_keys(session: Session, *, base_url: str, jwt_algorithm: str) -> None:
    """Create the active Ed25519 key and the active JWT key if they do not exist yet."""
    for algorithm in ("Ed25519", jwt_algorithm):
        exists = session.exec(
            select(IssuerKey.id).where(IssuerKey.algorithm == algorithm, col(IssuerKey.active))
        ).first()
        if exists is None:
            generate(session, algorithm=algorithm, base_url=base_url)


def rotate(
    session: Session, *, base_url: str, algorithms: tuple[str, ...], now: dt.datetime
) -> list[IssuerKey]:
    """Retire the active keys of ``algorithms`` from signing and create new ones.

    Retired keys stay published, so credentials they signed keep verifying.
    """
    for algorithm in algorithms:
        if algorithm not in ALGORITHMS:
            raise BadInput(f"unknown key algorithm {algorithm!r}")
    new = []
    for algorithm in algorithms:
        for row in session.exec(
            select(IssuerKey).where(IssuerKey.algorithm == algorithm, col(IssuerKey.active))
        ):
            row.active = False
            row.retired_at = now
            session.add(row)
        new.append(generate(session, algorithm=algorithm, base_url=base_url))
    session.flush()
    return new


# Parsed keys by (database URL, row id, random key name): decrypted and parsed once.
_parsed: dict[tuple[str, int, str], Any] = {}
_parsed_lock = threading.Lock()


def _parse(db: str, row: IssuerKey, base_url: str) -> Any:
    assert row.id is not None
    cache_key = (db, row.id, row.kid)
    with _parsed_lock:
        hit = _parsed.get(cache_key)
    if hit is not None:
        return hit
    if row.algorithm == "Ed25519":
        private = serialization.load_pem_private_key(row.private_pem.encode(), password=None)
        assert isinstance(private, Ed25519PrivateKey)
        parsed: Any = private
    else:
        parsed = jws.load_private_key(
            row.private_pem, kid=key_url(base_url, row.kid), alg=row.algorithm
        )
    with _parsed_lock:
        _parsed[cache_key] = parsed
    return parsed


def load_keyring(session: Session, *, base_url: str, jwt_algorithm: str = "ES256") -> Keyring:
    """All issuer keys, with the active ones ready to sign (parsed once per process)."""
    bind = session.get_bind()
    db = str(getattr(bind, "url", id(bind)))
    rows = session.exec(select(IssuerKey).order_by(col(IssuerKey.id))).all()
    ed_keys: list[Ed25519Key] = []
    jwt_keys: list[jws.PublicKey] = []
    names: dict[str, str] = {}
    rows_by_kid: dict[str, int] = {}
    signing: Ed25519Key | None = None
    jwt_signing: jws.PrivateKey | None = None
    for row in rows:
        assert row.id is not None
        if row.algorithm == "Ed25519":
            private = _parse(db, row, base_url) if row.active else None
            key = Ed25519Key(row.id, multibase=row.public_multibase or "", private=private)
            ed_keys.append(key)
            if row.active:
                signing = key
        else:
            url = key_url(base_url, row.kid)
            jwk = {**row.public_jwk, "kid": url}
            jwt_keys.append(jws.public_key_from_jwk(jwk, default_alg=row.algorithm))
            names[url] = row.kid
            rows_by_kid[url] = row.id
            if row.active and row.algorithm == jwt_algorithm:
                jwt_signing = _parse(db, row, base_url)
    return Keyring(
        base_url=base_url.rstrip("/"),
        did=did_web(base_url),
        ed25519=tuple(ed_keys),
        jwt=tuple(jwt_keys),
        jwt_names=names,
        signing_key=signing,
        jwt_signing_key=jwt_signing,
        jwt_key_row=rows_by_kid,
    )


def jwks(keyring: Keyring) -> dict[str, Any]:
    """The JWK Set of every VC-JWT key, active and retired (RFC 7517 §5)."""
    return {"keys": [dict(k.jwk) for k in keyring.jwt]}


def did_document(keyring: Keyring) -> dict[str, Any]:
    """The did:web DID document: every key ever used, all usable for assertions."""
    did = keyring.did
    methods: list[dict[str, Any]] = [
        {
            "id": keyring.verification_method(k),
            "type": "Multikey",
            "controller": did,
            "publicKeyMultibase": k.multibase,
        }
        for k in keyring.ed25519
    ]
    for k in keyring.jwt:
        public_jwk = {n: v for n, v in k.jwk.items() if n in ("kty", "crv", "x", "y", "n", "e")}
        methods.append(
            {
                "id": f"{did}#{keyring.jwt_names[k.kid]}",
                "type": "JsonWebKey",
                "controller": did,
                "publicKeyJwk": public_jwk,
            }
        )
    return {
        "@context": [
            "https://www.w3.org/ns/did/v1",
            "https://w3id.org/security/multikey/v1",
            "https://w3id.org/security/jwk/v1",
        ],
        "id": did,
        "verificationMethod": methods,
        "assertionMethod": [m["id"] for m in methods],
    }
