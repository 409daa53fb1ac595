"""Benchmark: credentials signed per second, per proof type, against floors and the JS reference.

Run from the repository root: ``python bench/sign.py [--n 300]``. One process, one core,
no database (signing only: build the credential, canonicalize, sign). In the same run:

- eddsa-rdfc-2022: build + RDFC-1.0 canonicalization + Ed25519 (``dataintegrity.sign``);
- VC-JWT ES256 / RS256: ``vcjwt.encode`` of the signed credential (through ``service.jws``)
  from its serialised bytes, which the issuer writes once for the stored document and the
  token's payload; also timed serialising the dict again;
- floors: the same count of raw Ed25519 signatures (64-byte hashData) and raw ES256 / RS256
  signatures of the same JWS signing input, with cryptography only (no JSON-LD, no JOSE);
- JS reference: ``@digitalbazaar/vc`` + ``eddsa-rdfc-2022-cryptosuite`` signing the same
  credentials with the same contexts through a local document loader (``bench/js``,
  installed with npm into ``bench/.work/``). Its first proof values must equal ours (Ed25519
  is deterministic, so equal proofs mean equal canonical forms).
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from service import jws
from service.issuer import build, contexts, dataintegrity, multibase, statuslist, vcjwt
from tests.issuer import samples

BASE = "https://tool.example"
HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"
SEED = bytes(range(32))
CREATED = "2026-11-28T12:00:00Z"


def _build(award: Any, *, key: str, salt: int, index: int) -> dict[str, Any]:
    """One unsigned credential of the benchmark's sample issuer."""
    return build.build_credential(
        credential_id=f"{BASE}/credentials/{key}",
        award=award,
        issuer=samples.issuer_profile(),
        issuer_id="did:web:tool.example",
        base_url=BASE,
        valid_from=samples.NOW,
        salt=f"{salt:032x}",
        status=statuslist.entry(f"{BASE}/status/1", index),
    )


def _credentials(n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        award = samples.award(
            learner=samples.learner(lti_user_id=f"user-{i}", email=f"learner{i}@example.org")
        )
        out.append(_build(award, key=f"{i:08d}", salt=i, index=1000 + i))
    return out


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds else float("inf")


class _Clock:
    """Wall time and this process's CPU time: on a shared machine the CPU time is the
    fair "one core" figure, the wall time shows what the load left us."""

    def __enter__(self) -> _Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


class _Split:
    """Sums of CPU and wall time over many short timed sections (same fields as _Clock)."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def time(self, fn: Any, *args: Any) -> Any:
        w, c = time.perf_counter(), time.process_time()
        out = fn(*args)
        self.cpu += time.process_time() - c
        self.wall += time.perf_counter() - w
        return out


def _pem(key: Any) -> bytes:
    data: bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return data


def bench_python(n: int) -> dict[str, Any]:
    key = Ed25519PrivateKey.from_private_bytes(SEED)
    mb = multibase.encode_multikey_ed25519(key.public_key().public_bytes_raw())
    vm = f"did:web:tool.example#{mb}"
    loader = contexts.loader_for(BASE)
    creds = _credentials(n)
    warm = _credentials(5)

    t0 = time.perf_counter()
    dataintegrity.sign(warm[0], key=key, verification_method=vm, created=CREATED, loader=loader)
    cold = time.perf_counter() - t0
    for c in warm[1:]:
        dataintegrity.sign(c, key=key, verification_method=vm, created=CREATED, loader=loader)

    # eddsa-rdfc-2022 including building the document from the input dataclasses
    awards = [samples.award(learner=samples.learner(lti_user_id=f"u{i}")) for i in range(n)]
    signed = []
    with _Clock() as t_eddsa:
        for i, award in enumerate(awards):
            doc = _build(award, key=f"{i:08d}", salt=i, index=1000 + i)
            signed.append(
                dataintegrity.sign(
                    doc, key=key, verification_method=vm, created=CREATED, loader=loader
                )
            )

    # the same credentials as the JS reference gets (proof values compared below)
    same = [
        dataintegrity.sign(c, key=key, verification_method=vm, created=CREATED, loader=loader)
        for c in creds[:3]
    ]

    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    es = jws.load_private_key(_pem(ec_key), kid=f"{BASE}/issuer/keys/es", alg="ES256")
    rs = jws.load_private_key(_pem(rsa_key), kid=f"{BASE}/issuer/keys/rs", alg="RS256")
    for k in (es, rs):
        vcjwt.encode(signed[0], k)
    # As the issuer makes them (service/issuer/service.py): each credential is serialised
    # once, and those bytes are both the stored document and the VC-JWT's payload, so the
    # token itself costs the claims, base64url and the signature. A batch of stored
    # credentials has those bytes too. "own JSON" also times serialising the dict again.
    bodies = [orjson.dumps(doc) for doc in signed]
    with _Clock() as t_es:
        tokens = [
            vcjwt.encode(doc, es, serialized=body) for doc, body in zip(signed, bodies, strict=True)
        ]
    with _Clock() as t_es_own:
        for doc in signed:
            vcjwt.encode(doc, es)
    with _Clock() as t_rs:
        for doc, body in zip(signed, bodies, strict=True):
            vcjwt.encode(doc, rs, serialized=body)

    # VC-JWT in issue order, as service/issuer/service.py runs it: each credential is built
    # and gets its Data Integrity proof, is serialised, then gets its VC-JWT.
    # Canonicalization evicts OpenSSL's P-256 tables from the CPU caches, so an ES256
    # signature right after it costs about twice one in a tight loop; the floor is therefore
    # timed in the same position: credentials alternate between a timed VC-JWT and a timed
    # raw ES256 signature of the previous credential's signing input (same size).
    t_es_issue, f_es_issue, t_own_issue = _Split(), _Split(), _Split()
    ecdsa = ec.ECDSA(hashes.SHA256())
    previous = b""
    for i, award in enumerate(awards + awards + awards):
        doc = dataintegrity.sign(
            _build(award, key=f"i{i:08d}", salt=i + n, index=5000 + i),
            key=key,
            verification_method=vm,
            created=CREATED,
            loader=loader,
        )
        if i % 3 == 0:
            body = orjson.dumps(doc)  # the stored document's bytes
            token = t_es_issue.time(functools.partial(vcjwt.encode, serialized=body), doc, es)
            previous = token.rsplit(".", 1)[0].encode()
        elif i % 3 == 1:
            f_es_issue.time(ec_key.sign, previous, ecdsa)
        else:
            t_own_issue.time(vcjwt.encode, doc, es)

    # floors: raw signatures of the same byte strings, cryptography only
    hash_inputs = [bytes(64)] * n
    with _Clock() as f_ed:
        for data in hash_inputs:
            key.sign(data)
    signing_inputs = [t.rsplit(".", 1)[0].encode() for t in tokens]
    with _Clock() as f_es:
        for data in signing_inputs:
            ec_key.sign(data, ec.ECDSA(hashes.SHA256()))
    with _Clock() as f_rs:
        for data in signing_inputs:
            rsa_key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    return {
        "n": n,
        "eddsa_cold_ms": cold * 1000,
        "clocks": {
            "eddsa": t_eddsa,
            "jwt_es256": t_es,
            "jwt_es256_own": t_es_own,
            "jwt_rs256": t_rs,
            "floor_ed25519": f_ed,
            "floor_es256": f_es,
            "floor_rs256": f_rs,
            "jwt_es256_issue": t_es_issue,
            "floor_es256_issue": f_es_issue,
            "jwt_es256_own_issue": t_own_issue,
        },
        "credential_bytes": len(json.dumps(signed[0])),
        "jwt_bytes": len(tokens[0]),
        "proof_values": [d["proof"][0]["proofValue"] for d in same],
        "public_key": mb,
        "credentials_for_js": creds,
        "verification_method": vm,
    }


def bench_js(py: dict[str, Any]) -> dict[str, Any] | None:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        print("JS reference skipped: node/npm not found", file=sys.stderr)
        return None
    WORK.mkdir(exist_ok=True)
    shutil.copy(HERE / "js" / "package.json", WORK / "package.json")
    shutil.copy(HERE / "js" / "sign.mjs", WORK / "sign.mjs")
    if not (WORK / "node_modules" / "@digitalbazaar" / "vc").is_dir():
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--silent"],
            cwd=WORK,
            check=True,
            timeout=600,
        )
    ctx = {
        url: json.loads(json.dumps(contexts.loader_for(BASE)(url, None)["document"]))
        for url in build.credential_contexts(BASE)
    }
    payload = {
        "contexts": ctx,
        "credentials": py["credentials_for_js"],
        "seedHex": SEED.hex(),
        "verificationMethod": py["verification_method"],
        "created": CREATED,
        "warmup": 5,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(payload, fh)
        path = fh.name
    try:
        out = subprocess.run(
            [node, "sign.mjs", path],
            cwd=WORK,
            check=True,
            timeout=900,
            capture_output=True,
            text=True,
        )
    finally:
        Path(path).unlink()
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=300, help="credentials per measurement")
    parser.add_argument("--no-js", action="store_true", help="skip the JS reference")
    args = parser.parse_args()
    py = bench_python(args.n)
    js = None if args.no_js else bench_js(py)

    print(
        f"bench/sign.py  n={py['n']}  {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC  "
        f"python {sys.version.split()[0]}"
    )
    print(f"credential: {py['credential_bytes']} bytes JSON, VC-JWT {py['jwt_bytes']} bytes")
    print(f"first eddsa-rdfc-2022 signature (cold contexts): {py['eddsa_cold_ms']:.1f} ms")
    n = py["n"]
    c = py["clocks"]
    cpu = {k: _rate(n, v.cpu) for k, v in c.items()}
    wall = {k: _rate(n, v.wall) for k, v in c.items()}
    labels = {
        "eddsa": "eddsa-rdfc-2022 (build + canon + sign)",
        "floor_ed25519": "floor: raw Ed25519 signatures",
        "jwt_es256": "VC-JWT ES256, batch of stored credentials",
        "jwt_es256_own": "  the same, serialising each dict again",
        "floor_es256": "floor: raw ES256 signatures",
        "jwt_es256_issue": "VC-JWT ES256 in issue order (after its proof)",
        "jwt_es256_own_issue": "  the same, serialising the dict again",
        "floor_es256_issue": "floor: raw ES256, timed the same way",
        "jwt_rs256": "VC-JWT RS256 (3072-bit)",
        "floor_rs256": "floor: raw RS256 signatures",
    }
    print(f"  {'':<50} {'per CPU-s':>10} {'per wall-s':>11} {'CPU ms each':>12}")
    for k, label in labels.items():
        print(f"  {label:<50} {cpu[k]:>10.1f} {wall[k]:>11.1f} {1000 / cpu[k]:>12.3f}")
    if js:
        js_cpu = js["n"] / js["cpuSeconds"]
        print(
            f"  {'JS reference @digitalbazaar/vc eddsa-rdfc-2022':<50} {js_cpu:>10.1f} "
            f"{js['perSecond']:>11.1f} {1000 / js_cpu:>12.3f}"
        )
    print("ratios (CPU time):")
    if js:
        js_cpu = js["n"] / js["cpuSeconds"]
        print(
            f"  eddsa-rdfc-2022 speed python / JS reference    {cpu['eddsa'] / js_cpu:6.2f}x"
            "  (target >= 1.0)"
        )
        same = js["proofValues"] == py["proof_values"]
        print(f"  identical proofValues python vs JS (3 credentials): {same}")
    print(
        f"  eddsa-rdfc-2022 cost / raw Ed25519 cost        "
        f"{cpu['floor_ed25519'] / cpu['eddsa']:6.1f}x"
    )
    print(
        f"  VC-JWT ES256 cost / raw ES256 cost, issue order "
        f"{cpu['floor_es256_issue'] / cpu['jwt_es256_issue']:5.2f}x  (target <= 1.5)"
    )
    print(
        f"  VC-JWT ES256 cost / raw ES256 cost, batch      "
        f"{cpu['floor_es256'] / cpu['jwt_es256']:6.2f}x  (300 stored credentials back to back)"
    )
    print(
        f"  the same with the dict serialised again: issue order "
        f"{cpu['floor_es256_issue'] / cpu['jwt_es256_own_issue']:.2f}x, "
        f"batch {cpu['floor_es256'] / cpu['jwt_es256_own']:.2f}x"
    )
    print(
        f"  VC-JWT RS256 cost / raw RS256 cost             "
        f"{cpu['floor_rs256'] / cpu['jwt_rs256']:6.2f}x"
    )
    print(f"  eddsa-rdfc-2022 credentials per CPU-second     {cpu['eddsa']:6.0f}   (target >= 200)")


if __name__ == "__main__":
    main()
