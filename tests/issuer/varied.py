"""Varied issuer inputs from a seed: the golden credentials and the canonicalisation
differential test draw from them.

Names and texts mix ASCII with unicode (accents, CJK, emoji, combining marks, right-to-left
text, quotes, backslashes, tabs and newlines), levels and criterion levels vary, evidence
counts run from none to several, and the optional EU elements and template fields are
present or absent. The same seed always gives the same inputs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from service import jws
from service.issuer import keys, multibase, statuslist
from service.issuer.inputs import (
    Alignment,
    AwardInput,
    EuElements,
    EvidenceItem,
    IssuerProfile,
    Learner,
    LevelTemplate,
    RubricCriterion,
    ScaleLevel,
)
from tests.issuer import samples

BASE = "https://tool.example"
ISSUER_DID = "did:web:tool.example"
NOW = samples.NOW

_PIECES = (
    "Ada",
    "Zoë",
    "José María",
    "Łukasz",
    "Ærøskøbing",
    "李小龍",
    "山田 太郎",
    "Мария",
    "محمد",
    "שלום",
    "e\u0301",  # combining acute accent
    "🎓",
    "👩🏽‍🔬",
    'quote "x"',
    "back\\slash",
    "tab\there",
    "line\nbreak",
    "O'Brien",
    "<b>&amp;</b>",
    "\u00a0nbsp",
    "\u200bzero-width",
    "\U0001d518\U0001d52b\U0001d526\U0001d520\U0001d52c\U0001d521\U0001d522",  # Fraktur "Unicode"
    "x" * 40,
)
_GENRES = (None, "Rubric", "Quiz", "Assignment", "Portfolio")
_SUPERVISION = (
    None,
    "unsupervised",
    "authenticated",
    "supervised",
    "supervised-online-verified",
    "supervised-onsite-verified",
)


def _text(rng: random.Random, words: int = 3) -> str:
    return " ".join(rng.choice(_PIECES) for _ in range(rng.randint(1, words)))


def _maybe(rng: random.Random, value: Any) -> Any:
    return value if rng.random() < 0.6 else None


def _levels(rng: random.Random) -> tuple[ScaleLevel, ...]:
    n = rng.randint(2, 5)
    return tuple(
        ScaleLevel(
            f"l{i}", f"Level {i} {_text(rng, 1)}", _text(rng, 2) if rng.random() < 0.7 else ""
        )
        for i in range(n)
    )


def template(rng: random.Random, index: int) -> LevelTemplate:
    """A competency template with a random selection of the optional fields."""
    levels = _levels(rng)
    eu = EuElements(
        learning_outcomes=tuple(_text(rng, 5) for _ in range(rng.randint(1, 4))),
        assessment_type=_text(rng, 2),
        participation_form=rng.choice(("online", "onsite", "blended")),
        quality_assurance=_text(rng, 3),
        ects_credits=_maybe(rng, rng.choice((1.0, 2.5, 3.0, 6.0))),
        workload_hours=_maybe(rng, rng.choice((25.0, 42.5, 84.0))),
        eqf_level=_maybe(rng, rng.randint(1, 8)),
        field_of_study=_maybe(rng, _text(rng, 2)),
        prerequisites=_maybe(rng, _text(rng, 3)),
        integration_stackability=rng.choice(("stand-alone", "stackable")),
        further_information=_maybe(rng, f"https://university.example/more/{index}"),
    )
    alignments = tuple(
        Alignment(
            target_name=_text(rng, 2),
            target_url=f"http://data.europa.eu/esco/skill/{index}-{i}",
            target_type=rng.choice(("ext:ESCOSkill", "ceasn:Competency", None)),
            target_code=_maybe(rng, f"C{i}"),
            target_description=_maybe(rng, _text(rng, 3)),
            target_framework=_maybe(rng, "ESCO"),
        )
        for i in range(rng.randint(0, 3))
    )
    criteria = tuple(
        RubricCriterion(
            f"crit{i}",
            _text(rng, 2),
            _levels(rng),
            _text(rng, 3) if rng.random() < 0.5 else "",
            _maybe(rng, f"https://university.example/rubric/{index}/{i}"),
        )
        for i in range(rng.randint(0, 3))
    )
    return LevelTemplate(
        key=f"comp-{index}",
        competency_name=_text(rng, 3),
        description=_text(rng, 6),
        criteria_narrative=_text(rng, 6),
        levels=levels,
        eu=eu,
        alignments=alignments,
        rubric_criteria=criteria,
        image_url=_maybe(rng, f"https://university.example/badges/{index}.png"),
        criteria_url=_maybe(rng, f"https://university.example/criteria/{index}"),
        tags=tuple(_text(rng, 1) for _ in range(rng.randint(0, 3))),
        version=_maybe(rng, f"2026.{index}"),
        valid_for_days=_maybe(rng, rng.choice((365, 1095))),
        language=rng.choice(("en", "nl", "de")),
    )


def issuer(rng: random.Random) -> IssuerProfile:
    """The awarding body, with or without its optional fields."""
    return dataclasses.replace(
        samples.issuer_profile(),
        name=_text(rng, 3),
        region=_maybe(rng, _text(rng, 1)),
        email=_maybe(rng, "badges@university.example"),
        description=_maybe(rng, _text(rng, 4)),
        image_url=_maybe(rng, "https://university.example/logo.png"),
        other_identifiers=(("999999999", "ext:EU-PIC"),) if rng.random() < 0.6 else (),
    )


def award(rng: random.Random, tmpl: LevelTemplate, index: int) -> AwardInput:
    """An award of ``tmpl`` to a random learner at a random level."""
    evidence = tuple(
        EvidenceItem(
            name=_text(rng, 3),
            description=_text(rng, 3) if rng.random() < 0.7 else "",
            narrative=_maybe(rng, _text(rng, 5)),
            url=_maybe(rng, f"https://lms.example/mod/assign/view.php?id={index}{i}"),
            genre=rng.choice(_GENRES),
        )
        for i in range(rng.choice((0, 1, 2, 2, 3, 5)))
    )
    criterion_levels = {
        c.key: rng.choice(c.levels).key for c in tmpl.rubric_criteria if rng.random() < 0.8
    }
    level = rng.choice(tmpl.levels)
    grade = rng.choice((None, "A", "B+", "17/20", level.name, _text(rng, 1)))
    learner = Learner(
        lti_user_id=f"user-{index}-{rng.randrange(10**6)}",
        email=_maybe(rng, f"Learner.{index}@Example.org"),
        name=_maybe(rng, _text(rng, 2)),
    )
    return AwardInput(
        learner=learner,
        template=tmpl,
        level_key=level.key,
        awarded_at=NOW - dt.timedelta(minutes=rng.randint(1, 10**5)),
        evidence=evidence,
        supervision=rng.choice(_SUPERVISION),
        grade=grade,
        criterion_levels=criterion_levels,
        valid_until=NOW + dt.timedelta(days=rng.randint(20, 2000)) if rng.random() < 0.2 else None,
    )


def cases(seed: int, n: int) -> list[dict[str, Any]]:
    """``n`` keyword sets for ``build.build_credential`` (a few templates, many awards)."""
    rng = random.Random(seed)
    templates = [template(rng, i) for i in range(max(1, n // 4))]
    issuers = [issuer(rng) for _ in range(3)]
    out = []
    for i in range(n):
        tmpl = rng.choice(templates)
        out.append(
            {
                "credential_id": f"{BASE}/credentials/{seed:04d}-{i:06d}",
                "award": award(rng, tmpl, i),
                "issuer": rng.choice(issuers),
                "issuer_id": ISSUER_DID,
                "base_url": BASE,
                "valid_from": NOW + dt.timedelta(seconds=rng.randint(0, 10**6)),
                "salt": f"{rng.getrandbits(128):032x}",
                "status": statuslist.entry(
                    f"{BASE}/status/{rng.randint(1, 9)}", rng.randrange(10**5)
                ),
            }
        )
    return out


def keyring() -> keys.Keyring:
    """Fixed keys: the Ed25519 key of seed 0..31 and a fixed ES256 key."""
    ed = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    public = ed.public_key().public_bytes_raw()
    ed_key = keys.Ed25519Key(
        row_id=1,
        multibase=multibase.encode_multikey_ed25519(public),
        private=ed,
    )
    es = ec.derive_private_key(0x18_18_18_18_18_18, ec.SECP256R1())
    pem = es.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    jwt_key = jws.load_private_key(pem, kid=keys.key_url(BASE, "es256-golden"), alg="ES256")
    return keys.Keyring(
        base_url=BASE,
        did=ISSUER_DID,
        ed25519=(ed_key,),
        jwt=(jwt_key.public,),
        jwt_names={jwt_key.kid: "es256-golden"},
        signing_key=ed_key,
        jwt_signing_key=jwt_key,
    )
