"""Realistic OB 3.0 credentials and verification reports for previewing the credential page.

Used by the development-only preview routes (``/_preview/credentials/{scenario}``), the
page tests and the screenshot script. The documents follow credentials.md §1.14 and the
EU mapping of §5.3; their proofs are shaped like real ones but are not real signatures,
and the reports are written by hand to show each verdict. Real pages get documents from
the issuer and reports from its verifier.
"""

from __future__ import annotations

import hashlib
from typing import Any

from service.issuer.types import Check, VerificationReport

__all__ = ["SCENARIOS", "sample"]

ISSUER_DID = "did:web:credentials.uni-example.eu"

LEARNER_EMAIL = "ada.lovelace@student.uni-example.eu"
_SALT = "q8s7Hk2LmN4pR6tV9xZ1bC3d"
# OB 3.0 IdentityHash: sha256 of the identifier with the salt appended (credentials.md §1.6).
_EMAIL_HASH = "sha256$" + hashlib.sha256((LEARNER_EMAIL + _SALT).encode()).hexdigest()

# Each level's rubric description; its id is the scale's URL with the level as fragment.
_LEVELS = {
    "beginning": "Applies the methods to prepared data with guidance; rubric average of at "
    "least 50 %.",
    "intermediate": "Works independently on realistic data; rubric average of at least 70 % "
    "and no criterion below 50 %.",
    "advanced": "Chooses and justifies methods, validates models rigorously; rubric average "
    "of at least 85 % in a supervised, identity-verified sitting.",
}
_SCALE = "https://credentials.uni-example.eu/levels/data-analysis"


def _document(level: str, *, valid_from: str, valid_until: str | None) -> dict[str, Any]:
    level_name = level.capitalize()
    doc: dict[str, Any] = {
        "@context": [
            "https://www.w3.org/ns/credentials/v2",
            "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json",
            "https://credentials.uni-example.eu/contexts/microcred-eu-v1.json",
        ],
        "id": "urn:uuid:3f0c8a52-6d1e-4a8b-9a57-2b8f0e4c1d7a",
        "type": ["VerifiableCredential", "OpenBadgeCredential"],
        "name": f"Applied Data Analysis with Python — {level_name}",
        "issuer": {
            "id": ISSUER_DID,
            "type": ["Profile"],
            "name": "University of Leuvenstad",
            "url": "https://www.uni-example.eu",
            "email": "micro-credentials@uni-example.eu",
            "address": {
                "type": ["Address"],
                "addressCountry": "Belgium",
                "addressCountryCode": "BE",
                "addressRegion": "Flanders",
                "addressLocality": "Leuvenstad",
            },
            "otherIdentifier": [
                {
                    "type": ["IdentifierEntry"],
                    "identifier": "BE-HEI-0123",
                    "identifierType": "identifier",
                }
            ],
        },
        "validFrom": valid_from,
        "awardedDate": valid_from,
        "credentialSubject": {
            "type": ["AchievementSubject"],
            "identifier": [
                {
                    "type": "IdentityObject",
                    "identityType": "emailAddress",
                    "hashed": True,
                    "identityHash": _EMAIL_HASH,
                    "salt": _SALT,
                },
                {
                    "type": "IdentityObject",
                    "identityType": "ltiUserId",
                    "hashed": False,
                    "identityHash": "b8f1c7e2-5a4d-4f3e-9c1b-7d6e5f4a3b2c",
                },
            ],
            "achievement": {
                "id": f"https://credentials.uni-example.eu/achievements/data-analysis/{level}",
                "type": ["Achievement"],
                "achievementType": "MicroCredential",
                "name": "Applied Data Analysis with Python",
                "description": (
                    "Cleaning, exploring and modelling real-world tabular data with Python "
                    "(pandas, scikit-learn), and communicating the results to non-specialists. "
                    "Part of the *Data Literacy for Professionals* programme."
                ),
                "criteria": {
                    "id": "https://www.uni-example.eu/micro-credentials/data-analysis/criteria",
                    "narrative": (
                        "Awarded at the level reached in the course's rubric-assessed project "
                        "and two proctored quizzes:\n\n"
                        "- **Data preparation**: import, clean and document a messy data set.\n"
                        "- **Exploratory analysis**: choose suitable summaries and plots.\n"
                        "- **Modelling**: fit and validate a regression or classification model.\n"
                        "- **Communication**: a two-page report a manager can act on."
                    ),
                },
                "creditsAvailable": 3,
                "fieldOfStudy": "Statistics and data science",
                "inLanguage": "en",
                "alignment": [
                    {
                        "type": ["Alignment"],
                        "targetName": "Analyse data using statistical methods",
                        "targetUrl": "http://data.europa.eu/esco/skill/"
                        "b9d2ad9b-8d1b-4cc8-a6c7-1b5ec4a1e4f2",
                        "targetFramework": "ESCO",
                        "targetType": "ext:ESCOSkill",
                    },
                    {
                        "type": ["Alignment"],
                        "targetName": "Python (computer programming)",
                        "targetUrl": "http://data.europa.eu/esco/skill/"
                        "ccd0a1d9-afda-43d9-b901-96344886e14d",
                        "targetFramework": "ESCO",
                        "targetType": "ext:ESCOSkill",
                    },
                    {
                        "type": ["Alignment"],
                        "targetName": "EQF level 6",
                        "targetUrl": "http://data.europa.eu/snb/eqf/6",
                        "targetCode": "6",
                        "targetFramework": "European Qualifications Framework",
                        "targetType": "ext:EQF",
                    },
                    {
                        "type": ["Alignment"],
                        "targetName": "Internal QA of the Faculty of Science, accredited by "
                        "NVAO (institutional review 2024)",
                        "targetUrl": "https://www.nvao.net/en",
                        "targetType": "ext:QualityAssurance",
                    },
                ],
                "resultDescription": [
                    {
                        "id": _SCALE,
                        "type": ["ResultDescription"],
                        "name": "Competency level",
                        "resultType": "RubricCriterionLevel",
                        "allowedValue": ["Beginning", "Intermediate", "Advanced"],
                        "rubricCriterionLevel": [
                            {
                                "id": f"{_SCALE}#{key}",
                                "type": ["RubricCriterionLevel"],
                                "name": key.capitalize(),
                                "description": text,
                                "level": str(rank),
                            }
                            for rank, (key, text) in enumerate(_LEVELS.items(), start=1)
                        ],
                    }
                ],
                "ECTS": 3,
                "notionalWorkload": "PT75H",
                "learningOutcomes": [
                    "Prepare and document a data set for analysis",
                    "Select and interpret descriptive statistics and visualisations",
                    "Fit, validate and explain a predictive model",
                ],
                "assessmentType": "Rubric-assessed project and two proctored online quizzes",
                "participationType": "Online, self-paced with weekly live sessions",
                "prerequisites": "Basic programming in any language; secondary-school mathematics",
                "stackability": "Stackable towards the Data Literacy for Professionals "
                "certificate (15 ECTS)",
                "furtherInformation": "https://www.uni-example.eu/micro-credentials/data-analysis",
            },
            "result": [
                {
                    "type": ["Result"],
                    "resultDescription": _SCALE,
                    "achievedLevel": f"{_SCALE}#{level}",
                    "value": level_name,
                }
            ],
            "supervisionType": "supervised-online-verified"
            if level == "advanced"
            else "authenticated",
            "creditsEarned": 3,
        },
        "evidence": [
            {
                "id": "https://moodle.uni-example.eu/mod/assign/view.php?id=4182",
                "type": ["Evidence"],
                "name": "Final project (rubric)",
                "narrative": "Rubric-assessed analysis of municipal energy-use data.",
            }
        ],
        "credentialSchema": [
            {
                "id": "https://purl.imsglobal.org/spec/ob/v3p0/schema/json/"
                "ob_v3p0_achievementcredential_schema.json",
                "type": "1EdTechJsonSchemaValidator2019",
            }
        ],
        "credentialStatus": {
            "id": "https://credentials.uni-example.eu/status/1#94567",
            "type": "BitstringStatusListEntry",
            "statusPurpose": "revocation",
            "statusListIndex": "94567",
            "statusListCredential": "https://credentials.uni-example.eu/status/1",
        },
        "proof": [
            {
                "type": "DataIntegrityProof",
                "cryptosuite": "eddsa-rdfc-2022",
                "created": valid_from,
                "verificationMethod": f"{ISSUER_DID}#key-1",
                "proofPurpose": "assertionMethod",
                "proofValue": "z3FXQjecWufY46yg5abdVZsXqLhxhueuSoZgNSARiKBk9czhSePTFehP8c3PGfb6a2"
                "2gkfUKiJJzUmW3hCBv2iVFz",
            }
        ],
    }
    if valid_until:
        doc["validUntil"] = valid_until
    return doc


def _report(doc: dict[str, Any], **failed: str) -> VerificationReport:
    passed = {
        "format": "An Open Badges 3.0 credential with an embedded Data Integrity proof.",
        "contexts": "Every property is defined by the bundled JSON-LD contexts.",
        "schema": "The credential matches the Open Badges 3.0 JSON Schema.",
        "proof": "The eddsa-rdfc-2022 signature is valid.",
        "issuer_key": f"The signing key is published in the issuer's DID document ({ISSUER_DID}).",
        "status": "The credential is not revoked (status list checked just now).",
        "dates": "The credential is within its validity period.",
    }
    checks = tuple(
        Check(name, name not in failed, failed.get(name, detail)) for name, detail in passed.items()
    )
    return VerificationReport(
        valid=all(c.ok for c in checks),
        checks=checks,
        format="ldp",
        credential_id=doc["id"],
        issuer=ISSUER_DID,
        credential=doc,
    )


# scenario: level, validFrom, validUntil, the learner's display name, the failed checks
_SCENARIOS: dict[str, tuple[str, str, str | None, str, dict[str, str]]] = {
    "valid": ("intermediate", "2026-11-20T14:03:00Z", "2029-11-20T14:03:00Z", "Ada Lovelace", {}),
    "revoked": (
        "advanced",
        "2026-06-12T09:30:00Z",
        "2029-06-12T09:30:00Z",
        "Grace Hopper",
        {
            "status": "The issuer revoked this credential on 2 October 2026 "
            "(reason: grade corrected after appeal)."
        },
    ),
    "expired": (
        "beginning",
        "2023-09-01T08:00:00Z",
        "2025-09-01T08:00:00Z",
        "Alan Turing",
        {"dates": "The credential expired on 2025-09-01 (validUntil)."},
    ),
    "invalid": (
        "advanced",
        "2026-11-20T14:03:00Z",
        None,
        "Unknown holder",
        {"proof": "The signature does not match the document: it was changed after signing."},
    ),
    "hostile": (
        "intermediate",
        "2026-11-20T14:03:00Z",
        "2029-11-20T14:03:00Z",
        "ada@example.org",
        {},
    ),
}
SCENARIOS = tuple(_SCENARIOS)


def sample(scenario: str) -> tuple[dict[str, Any], VerificationReport, str]:
    """``(document, report, learner display name)`` for one scenario of :data:`SCENARIOS`.

    Raises:
        KeyError: unknown scenario.
    """
    level, valid_from, valid_until, learner, failed = _SCENARIOS[scenario]
    doc = _document(level, valid_from=valid_from, valid_until=valid_until)
    if scenario == "invalid":
        doc["credentialSubject"]["result"][0]["value"] = "Advanced"
    if scenario == "hostile":
        evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
        ach = doc["credentialSubject"]["achievement"]
        ach["name"] = evil
        ach["description"] = evil + " [click](javascript:alert(2))"
        ach["criteria"]["narrative"] = evil
        ach["criteria"]["id"] = "javascript:alert(3)"
        ach["alignment"][0]["targetUrl"] = "javascript:alert(4)"
        ach["alignment"][0]["targetName"] = evil
        doc["issuer"]["name"] = evil
        doc["issuer"]["url"] = "javascript:alert(5)"
        doc["id"] = 'urn:uuid:"><script>alert(6)</script>'
    return doc, _report(doc, **failed), learner
