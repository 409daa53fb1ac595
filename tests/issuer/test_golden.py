"""Not a byte changed: issued credentials equal the golden ones made before the signing
path was optimised.

With fixed keys, a fixed clock and fixed salts, each varied input (``varied.cases``, plus the
sample award and a stacked credential) is built and signed as ``service.issue`` does it
(``service._signed``: the eddsa-rdfc-2022 proof and the schema check, then the VC-JWT from the
serialised bytes). ``golden/credentials.json`` holds, per case, the proofValue (Ed25519 is
deterministic: equal values mean equal canonical forms), the SHA-256 of the stored document's
bytes and the SHA-256 of the VC-JWT's signing input (ES256 signatures are randomised, so the
signature is verified instead of compared). The file was written by this module's
``python -m tests.issuer.test_golden`` from main before the change.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from service.issuer import build, keys, service, statuslist, vcjwt
from tests.issuer import samples, varied

GOLDEN = Path(__file__).parent / "golden" / "credentials.json"
SEED = 18
COUNT = 60
BASE = varied.BASE


def _cases() -> list[tuple[str, dict[str, Any]]]:
    out = [(f"varied-{i}", case) for i, case in enumerate(varied.cases(SEED, COUNT))]
    sample = {
        "credential_id": f"{BASE}/credentials/sample",
        "award": samples.award(),
        "issuer": samples.issuer_profile(),
        "issuer_id": varied.ISSUER_DID,
        "base_url": BASE,
        "valid_from": samples.NOW,
        "salt": "00" * 16,
        "status": statuslist.entry(f"{BASE}/status/1", 4242),
    }
    out.append(("sample", sample))
    return out


def _issued(ring: keys.Keyring, name: str, case: dict[str, Any]) -> dict[str, Any]:
    """What ``service.issue`` stores for one case: the document's bytes and the VC-JWT."""
    assert ring.jwt_signing_key is not None
    now: dt.datetime = case["valid_from"]
    doc = build.build_credential(**case)
    signed = service._signed(doc, ring, base=BASE, now=now)
    body = orjson.dumps(signed)
    token = vcjwt.encode(signed, ring.jwt_signing_key, serialized=body)
    claims = vcjwt.verify_signature(token, [ring.jwt_signing_key.public])
    assert vcjwt.credential_of(claims) == json.loads(body)
    signing_input = token.rsplit(".", 1)[0].encode()
    return {
        "case": name,
        "proofValue": signed["proof"][0]["proofValue"],
        "document_sha256": hashlib.sha256(body).hexdigest(),
        "jwt_signing_input_sha256": hashlib.sha256(signing_input).hexdigest(),
        "bytes": len(body),
    }


def _stacked(ring: keys.Keyring) -> dict[str, Any]:
    """A stacked credential over two issued parts of the sample learner."""
    assert ring.jwt_signing_key is not None
    parts = []
    for i, level in enumerate(("beginning", "advanced")):
        case = {
            "credential_id": f"{BASE}/credentials/part-{i}",
            "award": samples.award(level_key=level),
            "issuer": samples.issuer_profile(),
            "issuer_id": varied.ISSUER_DID,
            "base_url": BASE,
            "valid_from": samples.NOW,
            "salt": f"{i:032x}",
            "status": statuslist.entry(f"{BASE}/status/1", 10 + i),
        }
        parts.append(
            service._signed(build.build_credential(**case), ring, base=BASE, now=samples.NOW)
        )
    doc = build.build_credential(
        credential_id=f"{BASE}/credentials/stacked",
        award=samples.award(level_key="advanced"),
        parts=parts,
        issuer=samples.issuer_profile(),
        issuer_id=varied.ISSUER_DID,
        base_url=BASE,
        valid_from=samples.NOW,
        salt="ab" * 16,
        status=statuslist.entry(f"{BASE}/status/1", 77),
    )
    signed = service._signed(doc, ring, base=BASE, now=samples.NOW)
    body = orjson.dumps(signed)
    token = vcjwt.encode(signed, ring.jwt_signing_key, serialized=body)
    vcjwt.verify_signature(token, [ring.jwt_signing_key.public])
    return {
        "case": "stacked",
        "proofValue": signed["proof"][0]["proofValue"],
        "document_sha256": hashlib.sha256(body).hexdigest(),
        "jwt_signing_input_sha256": hashlib.sha256(token.rsplit(".", 1)[0].encode()).hexdigest(),
        "bytes": len(body),
    }


def _all() -> list[dict[str, Any]]:
    ring = varied.keyring()
    return [_issued(ring, name, case) for name, case in _cases()] + [_stacked(ring)]


@pytest.fixture(scope="module")
def golden() -> dict[str, dict[str, Any]]:
    return {entry["case"]: entry for entry in json.loads(GOLDEN.read_text())}


def test_golden_file_covers_the_cases(golden: dict[str, dict[str, Any]]) -> None:
    assert len(golden) == COUNT + 2
    # the cases are varied: no two credentials share their bytes
    assert len({e["document_sha256"] for e in golden.values()}) == len(golden)


def test_issued_bytes_equal_the_golden_ones(golden: dict[str, dict[str, Any]]) -> None:
    now = _all()
    assert [e["case"] for e in now] == list(golden)
    for entry in now:
        assert entry == golden[entry["case"]], entry["case"]


if __name__ == "__main__":
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(_all(), indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {GOLDEN}")
