"""Hostile credentials for the verifier's limits (security review H1), for tests and bench.

Each one is what an attacker can post to ``/verify`` for free: an OB 3.0 credential from a
``did:key`` issuer (any ``did:key`` resolves offline, so verification goes on to
canonicalise) with a proof whose signature is 64 random bytes — the canonicalisation runs
before the signature is compared, so it costs the same as a real signature.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from service.issuer import dataintegrity, multibase

VECTOR = Path(__file__).parent / "vectors/1edtech-ob3/vector.json"


def base_credential() -> dict[str, Any]:
    """The 1EdTech OB 3.0 example credential, unsigned."""
    doc: dict[str, Any] = json.loads(VECTOR.read_text())["credential"]
    return doc


def linked_nodes(n: int, *, first: int = 0) -> list[dict[str, Any]]:
    """``n`` blank nodes that all link to each other the same way (a complete graph): their
    first-degree hashes are equal, so RDFC-1.0 tries every ordering of them, recursively."""
    ids = [f"_:n{first + i}" for i in range(n)]
    return [{"id": me, "alignment": [{"id": other} for other in ids if other != me]} for me in ids]


def with_fake_proof(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with a ``did:key`` issuer and a proof whose signature is random bytes."""
    key = Ed25519PrivateKey.generate()
    mb = multibase.encode_multikey_ed25519(key.public_key().public_bytes_raw())
    out = copy.deepcopy(doc)
    out["issuer"] = {**out["issuer"], "id": f"did:key:{mb}"}
    proof = dataintegrity.proof_config(
        context=None, verification_method=f"did:key:{mb}#{mb}", created="2010-01-01T19:23:24Z"
    )
    del proof["@context"]
    proof["proofValue"] = multibase.encode_base58btc(os.urandom(64))
    out["proof"] = [proof]
    return out


def poison_graph(n: int) -> dict[str, Any]:
    """The review's finding: a 2 KB credential whose subject holds ``n`` mutually linked
    blank nodes (n = 8 cost 48 s of CPU before the limits)."""
    doc = base_credential()
    doc["credentialSubject"]["alignment"] = linked_nodes(n)
    return with_fake_proof(doc)


def many_poison_graphs(groups: int, n: int) -> dict[str, Any]:
    """``groups`` separate poison graphs of ``n`` nodes each in one credential."""
    doc = base_credential()
    doc["credentialSubject"]["alignment"] = [
        node for g in range(groups) for node in linked_nodes(n, first=g * n)
    ]
    return with_fake_proof(doc)


def many_statements(count: int) -> dict[str, Any]:
    """A credential with ``count`` extra, distinct statements (a large but simple dataset)."""
    doc = base_credential()
    doc["credentialSubject"]["alignment"] = [
        {"type": ["Alignment"], "targetName": f"skill {i}", "targetUrl": f"https://s.test/{i}"}
        for i in range(count // 4)
    ]
    return with_fake_proof(doc)


def wide_tree(branch: int, depth: int, *, ids: bool = False) -> dict[str, Any]:
    """A credential whose subject nests ``branch``-wide alignment lists ``depth`` deep:
    many objects, none of them alike, in lists short enough to merge cheaply."""

    def level(d: int, path: str) -> list[dict[str, Any]]:
        out = []
        for i in range(branch):
            node: dict[str, Any] = {"type": ["Alignment"], "targetName": f"{path}.{i}"}
            if ids:
                node["id"] = f"urn:x:{path}.{i}"
            if d > 1:
                node["alignment"] = level(d - 1, f"{path}.{i}")
            out.append(node)
        return out

    doc = base_credential()
    doc["credentialSubject"]["alignment"] = level(depth, "n")
    return with_fake_proof(doc)
