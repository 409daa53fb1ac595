"""Data Integrity proofs with the ``eddsa-rdfc-2022`` cryptosuite (W3C vc-di-eddsa).

Algorithm (vc-di-eddsa §3.2.4-3.2.6): canonicalize the unsecured document and the proof
configuration (the proof without ``proofValue``, carrying the document's ``@context``)
with RDFC-1.0; ``hashData = SHA-256(canonical proof config) || SHA-256(canonical
document)``; sign ``hashData`` with Ed25519 (RFC 8032); ``proofValue`` is base58btc
multibase of the 64-byte signature.

The proof configuration hash depends only on the contexts, key, creation time and
purpose, so it is cached: a burst of credentials signed in the same second with the same
key canonicalizes it once.

A credential carries its proofs as a one-element JSON array: the OB 3.0 JSON Schema types
``proof`` as an array, the VC 2.0 data model and JSON-LD treat one object and a
one-element array the same (same RDF), the 1EdTech validator reads either form
(``W3CVCHolder.getProofs``) and DCC verifier-core accepts both.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from service.issuer import canon, limits, multibase
from service.issuer.contexts import DocumentLoader

__all__ = [
    "CRYPTOSUITE",
    "PROOF_TYPE",
    "Hasher",
    "ProofError",
    "hash_data",
    "proof_config",
    "proofs_of",
    "sign",
    "verify",
]

PROOF_TYPE = "DataIntegrityProof"
CRYPTOSUITE = "eddsa-rdfc-2022"


Hasher = Callable[[Mapping[str, Any], Mapping[str, Any]], bytes]  # (document, config)


class ProofError(Exception):
    """The proof is malformed or does not verify; the message says why."""


def proofs_of(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The proofs of a secured document, whether given as one object or an array."""
    proof = document.get("proof")
    if proof is None:
        return []
    items = proof if isinstance(proof, list) else [proof]
    if not all(isinstance(p, dict) for p in items):
        raise ProofError("proof must be an object or an array of objects")
    return list(items)


def unsecured(document: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``document`` without its ``proof``."""
    return {k: v for k, v in document.items() if k != "proof"}


def proof_config(*, context: Any, verification_method: str, created: str) -> dict[str, Any]:
    """The proof options of vc-di-eddsa §3.2.1 (everything but ``proofValue``)."""
    return {
        "@context": context,
        "type": PROOF_TYPE,
        "cryptosuite": CRYPTOSUITE,
        "created": created,
        "verificationMethod": verification_method,
        "proofPurpose": "assertionMethod",
    }


@functools.lru_cache(maxsize=256)
def _config_hash(config_json: str, loader: DocumentLoader, bounds: limits.Limits) -> bytes:
    return hashlib.sha256(
        canon.canonicalize(json.loads(config_json), loader, bounds=bounds).encode("utf-8")
    ).digest()


def hash_data(
    document: Mapping[str, Any],
    config: Mapping[str, Any],
    loader: DocumentLoader,
    *,
    bounds: limits.Limits = limits.DEFAULT,
    shapes: bool = False,
) -> bytes:
    """``SHA-256(canon(config)) || SHA-256(canon(document))`` (vc-di-eddsa §3.2.5).

    ``shapes``: reuse the RDF of earlier documents of the same shape (the issuer signing
    its own credentials; ``canon.canonicalize``). The bytes are the same either way.

    Raises:
        limits.LimitExceeded: either one is too large or complex to canonicalize.
    """
    config_key = json.dumps(config, sort_keys=True, separators=(",", ":"))
    config_hash = _config_hash(config_key, loader, bounds)
    canonical = canon.canonicalize(document, loader, bounds=bounds, shapes=shapes)
    return config_hash + hashlib.sha256(canonical.encode("utf-8")).digest()


def sign(
    document: Mapping[str, Any],
    *,
    key: Ed25519PrivateKey,
    verification_method: str,
    created: str,
    loader: DocumentLoader,
) -> dict[str, Any]:
    """Return a copy of ``document`` secured with an ``eddsa-rdfc-2022`` proof.

    Args:
        document: the unsecured credential (compacted JSON-LD, no ``proof``).
        key: the issuer's Ed25519 private key.
        verification_method: the Multikey id (``did:web:…#z6Mk…``).
        created: XSD dateTime of the proof (``YYYY-MM-DDTHH:MM:SSZ``).
        loader: the offline document loader.

    Returns:
        The secured document with ``proof`` as a one-element array.

    Raises:
        canon.UndefinedTermError: the document uses an undefined term.
    """
    body = unsecured(document)
    config = proof_config(
        context=body.get("@context"), verification_method=verification_method, created=created
    )
    signature = key.sign(hash_data(body, config, loader, shapes=True))
    proof = {k: v for k, v in config.items() if k != "@context"}
    proof["proofValue"] = multibase.encode_base58btc(signature)
    return {**body, "proof": [proof]}


def verify(
    document: Mapping[str, Any],
    proof: Mapping[str, Any],
    *,
    public_key: bytes,
    loader: DocumentLoader,
    bounds: limits.Limits = limits.DEFAULT,
    hasher: Hasher | None = None,
) -> None:
    """Check one ``eddsa-rdfc-2022`` proof of ``document`` (vc-di-eddsa §3.2.2).

    ``hasher`` computes :func:`hash_data` elsewhere (the service's verifier processes);
    by default it runs here with ``loader`` and ``bounds``.

    Raises:
        ProofError: the proof is malformed or the signature does not match.
        canon.UndefinedTermError: the document uses an undefined term.
        limits.LimitExceeded: the document is too large or complex to canonicalize.
    """
    if proof.get("type") != PROOF_TYPE or proof.get("cryptosuite") != CRYPTOSUITE:
        raise ProofError(
            f"proof type {proof.get('type')!r} / cryptosuite {proof.get('cryptosuite')!r} "
            f"is not {PROOF_TYPE} / {CRYPTOSUITE}"
        )
    value = proof.get("proofValue")
    if not isinstance(value, str):
        raise ProofError("proof has no proofValue")
    try:
        signature = multibase.decode_base58btc(value)
    except multibase.MultibaseError as exc:
        raise ProofError(f"proofValue is not base58btc multibase: {exc}") from None
    if len(signature) != 64:
        raise ProofError("proofValue is not a 64-byte Ed25519 signature")
    body = unsecured(document)
    config = {k: v for k, v in proof.items() if k != "proofValue"}
    config["@context"] = body.get("@context")
    if hasher is None:
        data = hash_data(body, config, loader, bounds=bounds)
    else:
        data = hasher(body, config)
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except InvalidSignature:
        raise ProofError("the signature does not match the document") from None
    except ValueError as exc:
        raise ProofError(f"unusable public key: {exc}") from None
