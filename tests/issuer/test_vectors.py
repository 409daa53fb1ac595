"""The published eddsa-rdfc-2022 test vectors, reproduced byte for byte (vectors/README.md)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from service.issuer import canon, contexts, dataintegrity, multibase

HERE = Path(__file__).parent / "vectors"
W3C = HERE / "w3c-eddsa-rdfc-2022"
OB = HERE / "1edtech-ob3"
EXAMPLES_V2 = "https://www.w3.org/ns/credentials/examples/v2"


def _w3c_loader() -> contexts.DocumentLoader:
    extra = ((EXAMPLES_V2, (W3C / "examples-v2.jsonld").read_text()),)
    return contexts.loader_for("https://tool.test", extra)


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


def test_w3c_vector_canonical_forms_hashes_and_signature() -> None:
    loader = _w3c_loader()
    signed = _json(W3C / "signedDataInt.json")
    proof = signed["proof"]
    doc = dataintegrity.unsecured(signed)
    config = _json(W3C / "proofConfigDataInt.json")

    canon_doc = canon.canonicalize(doc, loader)
    canon_proof = canon.canonicalize(config, loader)
    assert canon_doc == (W3C / "canonDocDataInt.txt").read_text()
    assert canon_proof == (W3C / "proofCanonDataInt.txt").read_text()
    assert hashlib.sha256(canon_doc.encode()).hexdigest() == (
        (W3C / "docHashDataInt.txt").read_text().strip()
    )
    assert hashlib.sha256(canon_proof.encode()).hexdigest() == (
        (W3C / "proofHashDataInt.txt").read_text().strip()
    )
    data = dataintegrity.hash_data(doc, config, loader)
    assert data.hex() == (W3C / "combinedHashDataInt.txt").read_text().strip()

    keys = _json(W3C / "keyPair.json")
    seed = multibase.decode_base58btc(keys["privateKeyMultibase"])
    assert seed[:2] == b"\x80\x26"  # multicodec ed25519-priv 0x1300 as a varint
    key = Ed25519PrivateKey.from_private_bytes(seed[2:])
    public = key.public_key().public_bytes_raw()
    assert multibase.encode_multikey_ed25519(public) == keys["publicKeyMultibase"]

    resigned = dataintegrity.sign(
        doc,
        key=key,
        verification_method=proof["verificationMethod"],
        created=proof["created"],
        loader=loader,
    )
    new_proof = resigned["proof"][0]
    assert multibase.decode_base58btc(new_proof["proofValue"]).hex() == (
        (W3C / "sigHexDataInt.txt").read_text().strip()
    )
    assert new_proof["proofValue"] == (W3C / "sigBTC58DataInt.txt").read_text().strip()
    assert new_proof["proofValue"] == proof["proofValue"]
    dataintegrity.verify(signed, proof, public_key=public, loader=loader)


def test_1edtech_ob3_vector_reproduced_and_verifies() -> None:
    loader = contexts.loader_for("https://tool.test")
    vec = _json(OB / "vector.json")
    doc = vec["credential"]
    config = {"@context": doc["@context"], **vec["proofOptions"]}
    canon_doc = canon.canonicalize(doc, loader)
    canon_proof = canon.canonicalize(config, loader)
    assert canon_doc == (OB / "document-canon.txt").read_text()
    assert canon_proof == (OB / "proof-canon.txt").read_text()
    assert hashlib.sha256(canon_doc.encode()).hexdigest() == vec["documentHashHex"]
    assert hashlib.sha256(canon_proof.encode()).hexdigest() == vec["proofHashHex"]

    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(vec["privateKeyHex"])[:32])
    public = key.public_key().public_bytes_raw()
    assert public.hex() == vec["publicKeyHex"]
    assert multibase.encode_multikey_ed25519(public) == vec["publicKeyMultibase"]
    signed = dataintegrity.sign(
        doc,
        key=key,
        verification_method=vec["proofOptions"]["verificationMethod"],
        created=vec["proofOptions"]["created"],
        loader=loader,
    )
    proof = signed["proof"][0]
    assert multibase.decode_base58btc(proof["proofValue"]).hex() == vec["signatureHex"]
    assert proof["proofValue"] == vec["proofValue"]
    # The published proof (a single object, not an array) verifies as published.
    published = {**doc, "proof": {**vec["proofOptions"], "proofValue": vec["proofValue"]}}
    (only,) = dataintegrity.proofs_of(published)
    dataintegrity.verify(published, only, public_key=public, loader=loader)


def test_vector_with_one_changed_character_fails() -> None:
    loader = contexts.loader_for("https://tool.test")
    vec = _json(OB / "vector.json")
    doc = json.loads(json.dumps(vec["credential"]))
    doc["name"] = "Teamwork Badge!"
    proof = {**vec["proofOptions"], "proofValue": vec["proofValue"]}
    public = bytes.fromhex(vec["publicKeyHex"])
    with pytest.raises(dataintegrity.ProofError, match="does not match"):
        dataintegrity.verify(doc, proof, public_key=public, loader=loader)


def test_undefined_term_is_refused_not_dropped() -> None:
    loader = contexts.loader_for("https://tool.test")
    doc = json.loads((OB / "vector.json").read_text())["credential"]
    doc["credentialSubject"]["achievement"]["ectsCreditz"] = 5
    with pytest.raises(canon.UndefinedTermError, match="ectsCreditz"):
        canon.canonicalize(doc, loader)
    doc2 = json.loads((OB / "vector.json").read_text())["credential"]
    doc2["id"] = "credentials/3527"
    with pytest.raises(canon.UndefinedTermError, match="absolute IRI"):
        canon.canonicalize(doc2, loader)
