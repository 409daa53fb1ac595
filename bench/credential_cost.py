"""Benchmark: the issuer's CPU cost of one credential, by step, with a profile.

Run from the repository root: ``python bench/credential_cost.py [--n 300] [--shape course]
[--profile 25]``. One process, no database: what ``service.issue`` does between the status
entry and the row — build the OB 3.0 AchievementCredential from the award, sign it with
eddsa-rdfc-2022 (``service._signed``: RDFC-1.0 canonicalisation, Ed25519, then the OB 3.0
JSON Schema check), serialise it once (``orjson``) and sign those bytes as a VC-JWT (ES256).

Shapes: ``course`` is what ``bench/course.py``'s workers issue (``flows.issuing._template``:
three levels, the EU elements a policy gives, three evidence items, no rubric criteria);
``sample`` is tests/issuer/samples.py's award (two rubric criteria, alignments, every EU
element). Every credential has its own learner, salt, id and status index; the achievement
and the issuer are the same for all of them, as in one course's burst.

Prints CPU milliseconds per credential (``time.process_time``: the fair figure on a shared
machine) for the whole and for each step, and with ``--profile N`` the top N functions of
a cProfile run by own time and by cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import os
import pstats
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from service import jws
from service.issuer import build, keys, multibase, service, statuslist, vcjwt
from service.issuer.inputs import (
    AwardInput,
    EuElements,
    EvidenceItem,
    IssuerProfile,
    Learner,
    LevelTemplate,
    ScaleLevel,
)
from tests.issuer import samples

BASE = "https://microcred.example.edu"
DID = "did:web:microcred.example.edu"
NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)


def _ring() -> keys.Keyring:
    ed = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    public = ed.public_key().public_bytes_raw()
    ed_key = keys.Ed25519Key(
        row_id=1,
        multibase=multibase.encode_multikey_ed25519(public),
        private=ed,
    )
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    jwt_key = jws.load_private_key(pem, kid=keys.key_url(BASE, "es"), alg="ES256")
    return keys.Keyring(
        base_url=BASE,
        did=DID,
        ed25519=(ed_key,),
        jwt=(jwt_key.public,),
        jwt_names={},
        signing_key=ed_key,
        jwt_signing_key=jwt_key,
    )


def _course_template(k: int) -> LevelTemplate:
    """As ``flows.issuing._template`` makes it for bench/course.py's competencies."""
    return LevelTemplate(
        key=f"comp-{k}",
        competency_name=f"Competency {k}",
        description=f"Competency {k}",
        criteria_narrative=(
            "The level is decided by the course's published rules from the learner's rubric "
            "and quiz results; the credential's evidence lists what counted."
        ),
        levels=(
            ScaleLevel("beginning", "Beginning"),
            ScaleLevel("intermediate", "Intermediate"),
            ScaleLevel("advanced", "Advanced"),
        ),
        eu=EuElements(
            learning_outcomes=(f"Competency {k}",),
            assessment_type=(
                "Rubric-scored work and quizzes in the course, combined by the published rules"
            ),
            participation_form="Online, in the institution's learning platform",
            quality_assurance=(
                "Internal quality assurance of microcred: every award records the rules "
                "(policy version) and the evidence it was made from"
            ),
            integration_stackability="stand-alone",
        ),
        image_url=f"{BASE}/badges/{k:064x}.png",
    )


def _awards(shape: str, n: int) -> list[AwardInput]:
    out = []
    for i in range(n):
        learner = Learner(
            lti_user_id=f"u{i}", email=f"u{i}@example.edu", name=f"Learner {i}", person_id=i + 1
        )
        if shape == "sample":
            out.append(samples.award(learner=learner))
            continue
        out.append(
            AwardInput(
                learner=learner,
                template=_course_template(i % 8),
                level_key=("beginning", "intermediate", "advanced")[i % 3],
                awarded_at=NOW,
                evidence=(
                    EvidenceItem(f"1{i % 8:02d}/1", f"Rated {1 + i % 4}", genre="Assessment"),
                    EvidenceItem(
                        f"2{i % 8:02d} (attempt 1)", f"Scored {i % 10:g} of 10", genre="Assessment"
                    ),
                    EvidenceItem(
                        f"2{i % 8:02d} (attempt 2)", f"Scored {i % 9:g} of 10", genre="Assessment"
                    ),
                ),
                supervision="authenticated",
            )
        )
    return out


def _issuer(shape: str) -> IssuerProfile:
    if shape == "sample":
        return samples.issuer_profile()
    return IssuerProfile(name="microcred", url=BASE, country_code="NL")


class Steps:
    """CPU seconds per step, summed over the credentials."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}

    def time(self, name: str, fn: Any, *args: Any, **kw: Any) -> Any:
        t = time.process_time()
        out = fn(*args, **kw)
        self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - t
        return out


def issue_all(
    awards: list[AwardInput], issuer: IssuerProfile, ring: keys.Keyring, steps: Steps | None
) -> list[str]:
    """Build, sign both ways and serialise each award (``service.issue`` without the rows)."""
    assert ring.jwt_signing_key is not None
    jwt_key = ring.jwt_signing_key
    tokens = []
    for i, award in enumerate(awards):
        kwargs = {
            "credential_id": f"{BASE}/credentials/{i:08x}-0000-4000-8000-000000000000",
            "award": award,
            "issuer": issuer,
            "issuer_id": DID,
            "base_url": BASE,
            "valid_from": NOW,
            "salt": f"{i * 7919:032x}",
            "status": statuslist.entry(f"{BASE}/status/1", 1000 + i),
        }
        if steps is None:
            doc = build.build_credential(**kwargs)
            signed = service._signed(doc, ring, base=BASE, now=NOW)
            body = orjson.dumps(signed)
            tokens.append(vcjwt.encode(signed, jwt_key, serialized=body))
            continue
        doc = steps.time("build", build.build_credential, **kwargs)
        signed = steps.time(
            "sign (eddsa-rdfc-2022 + schema)", service._signed, doc, ring, base=BASE, now=NOW
        )
        body = steps.time("serialise", orjson.dumps, signed)
        tokens.append(steps.time("VC-JWT ES256", vcjwt.encode, signed, jwt_key, serialized=body))
    return tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=300, help="credentials per measurement")
    parser.add_argument("--shape", choices=("course", "sample"), default="course")
    parser.add_argument("--profile", type=int, default=0, help="print the top N of a profile")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (best is kept)")
    args = parser.parse_args()
    ring = _ring()
    issuer = _issuer(args.shape)
    issue_all(_awards(args.shape, 20), issuer, ring, None)  # warm: contexts, caches
    awards = _awards(args.shape, args.n)
    best = float("inf")
    for _ in range(args.rounds):
        t = time.process_time()
        issue_all(awards, issuer, ring, None)
        best = min(best, time.process_time() - t)
    steps = Steps()
    issue_all(awards, issuer, ring, steps)
    print(
        f"bench/credential_cost.py  shape={args.shape}  n={args.n}  "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC  load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(
        f"per credential: {best / args.n * 1000:.3f} CPU ms "
        f"({args.n / best:.0f} credentials per CPU-second, best of {args.rounds})"
    )
    total = sum(steps.cpu.values())
    for name, cpu in steps.cpu.items():
        print(f"  {name:<36} {cpu / args.n * 1000:7.3f} ms  {cpu / total:6.1%}")
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        issue_all(awards, issuer, ring, None)
        prof.disable()
        for key in ("tottime", "cumulative"):
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats(key).print_stats(args.profile)
            lines = out.getvalue().splitlines()
            start = next(i for i, line in enumerate(lines) if "ncalls" in line)
            print(f"profile, top {args.profile} by {key} (n={args.n}):")
            for line in lines[start : start + args.profile + 1]:
                print("  " + line.replace(str(Path.cwd()) + "/", "")[:150])


if __name__ == "__main__":
    main()
