"""Build unsigned Open Badges 3.0 credentials (OpenBadgeCredential, VC 2.0 envelope).

Field mapping of the EU micro-credential elements (Council Recommendation 2022/C 243/02,
Annex I; reference/credentials.md §5.3):

====  ===============================  ==================================================
 #    element                           where it goes
====  ===============================  ==================================================
 1    identification of the learner    credentialSubject.identifier (ltiUserId; salted
                                        sha256 of the email; the name when known)
 2    title                             achievement.name and the credential name
 3    country/region of the issuer      issuer.address.addressCountryCode / addressRegion
 4    awarding body                     issuer (Profile, otherIdentifier)
 5    date of issuing                   validFrom, awardedDate
 6    learning outcomes                 achievement.criteria.narrative, alignment[],
                                        achievement.learningOutcome (ext)
 7    notional workload                 achievement.creditsAvailable and ectsCredits (ext),
                                        notionalWorkloadHours (ext)
 8    level (EQF)                       alignment (targetType ext:EQF), eqfLevel (ext)
 9    type of assessment                achievement.assessmentType (ext)
 10   form of participation             achievement.participationForm (ext)
 11   quality assurance                 achievement.qualityAssurance (ext)
 o    prerequisites                     achievement.prerequisites (ext)
 o    supervision and ID verification   credentialSubject.supervisionVerification (ext)
 o    grade achieved                    credentialSubject.result[].value
 o    integration / stackability        achievement.integrationStackability (ext),
                                        credentialSubject.hasPart (ext, stacked credentials)
 o    further information               achievement.furtherInformation (ext)
====  ===============================  ==================================================

"(ext)" terms are defined by microcred's context ``microcred-eu-v1.jsonld``
(``contexts.py``); signing refuses any term no context defines.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from service.errors import BadInput
from service.issuer import contexts
from service.issuer.inputs import (
    SUPERVISION_LABELS,
    Alignment,
    AwardInput,
    EuElements,
    EvidenceItem,
    IssuerProfile,
    Learner,
    LevelTemplate,
    ScaleLevel,
)

__all__ = [
    "OB_SCHEMA_URL",
    "achievement_id",
    "build_achievement",
    "build_credential",
    "credential_contexts",
    "identity_hash",
    "issuer_profile",
    "xsd_datetime",
]

OB_SCHEMA_URL = (
    "https://purl.imsglobal.org/spec/ob/v3p0/schema/json/ob_v3p0_achievementcredential_schema.json"
)
EQF_CONCEPT = "http://data.europa.eu/snb/eqf/{level}"


def xsd_datetime(value: dt.datetime) -> str:
    """UTC ``YYYY-MM-DDTHH:MM:SSZ`` (OB 3.0 DateTimeZ; whole seconds)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime")
    return value.astimezone(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def identity_hash(value: str, salt: str) -> str:
    """OB IdentityHash ``sha256$<hex>`` of ``value + salt`` (OB 3.0 §B.1.10 IdentityObject)."""
    return "sha256$" + hashlib.sha256((value + salt).encode("utf-8")).hexdigest()


def credential_contexts(base_url: str) -> list[str]:
    """VC 2.0 first, OB 3.0.3 second (OB 3.0 §B.1.1), then the extensions we use."""
    return [
        contexts.VC_V2,
        contexts.OB_V3,
        contexts.OB_EXTENSIONS,
        contexts.eu_context_url(base_url),
    ]


def achievement_id(base_url: str, template_key: str, level_key: str) -> str:
    """The URL id of the Achievement for one level of a competency."""
    return f"{base_url.rstrip('/')}/achievements/{template_key}/{level_key}"


def _present(**fields: Any) -> dict[str, Any]:
    """The fields that have a value, in order: an optional property is left out, never
    written empty or null."""
    return {name: value for name, value in fields.items() if value}


def issuer_profile(profile: IssuerProfile, issuer_id: str) -> dict[str, Any]:
    """The OB 3.0 Profile of the awarding body (inline in credentials, and at /issuer)."""
    doc: dict[str, Any] = {
        "id": issuer_id,
        "type": ["Profile"],
        "name": profile.name,
        "url": profile.url,
        **_present(description=profile.description, email=profile.email),
    }
    if profile.image_url:
        doc["image"] = {"id": profile.image_url, "type": "Image", "caption": profile.name}
    address: dict[str, Any] = {"type": ["Address"], "addressCountryCode": profile.country_code}
    if profile.region:
        address["addressRegion"] = profile.region
    doc["address"] = address
    if profile.other_identifiers:
        doc["otherIdentifier"] = [
            {"type": "IdentifierEntry", "identifier": ident, "identifierType": kind}
            for ident, kind in profile.other_identifiers
        ]
    return doc


def _alignment(a: Alignment) -> dict[str, Any]:
    return {
        "type": ["Alignment"],
        "targetName": a.target_name,
        "targetUrl": a.target_url,
        **_present(
            targetType=a.target_type,
            targetCode=a.target_code,
            targetDescription=a.target_description,
            targetFramework=a.target_framework,
        ),
    }


def _level_ref(ach_id: str, level_key: str) -> str:
    return f"{ach_id}#level-{level_key}"


def _criterion_ref(ach_id: str, criterion_key: str, level_key: str | None = None) -> str:
    base = f"{ach_id}#criterion-{criterion_key}"
    return base if level_key is None else f"{base}-level-{level_key}"


def build_achievement(template: LevelTemplate, level_key: str, *, base_url: str) -> dict[str, Any]:
    """The OB 3.0 Achievement for one level of a competency (OB 3.0 §B.1.2 Achievement).

    Raises:
        BadInput: ``level_key`` is not a level of the template.
    """
    try:
        level = template.level(level_key)
    except KeyError:
        known = ", ".join(lv.key for lv in template.levels)
        raise BadInput(f"level {level_key!r} is not one of {known}") from None
    ach_id = achievement_id(base_url, template.key, level.key)
    eu = template.eu
    narrative = template.criteria_narrative
    if level.description:
        narrative += f"\n\n**{level.name}**: {level.description}"
    criteria: dict[str, Any] = {"narrative": narrative}
    if template.criteria_url:
        criteria["id"] = template.criteria_url
    ach: dict[str, Any] = {
        "id": ach_id,
        "type": ["Achievement"],
        "achievementType": template.achievement_type,
        "name": f"{template.competency_name} ({level.name})",
        "description": template.description,
        "criteria": criteria,
        "inLanguage": template.language,
    }
    if template.image_url:
        ach["image"] = {"id": template.image_url, "type": "Image", "caption": ach["name"]}
    alignments = _alignments(template)
    if alignments:
        ach["alignment"] = alignments
    ach["resultDescription"] = _result_descriptions(template, level, ach_id)
    if eu.ects_credits is not None:
        ach["creditsAvailable"] = eu.ects_credits
        ach["ectsCredits"] = eu.ects_credits
    ach.update(
        _present(fieldOfStudy=eu.field_of_study, tag=list(template.tags), version=template.version)
    )
    _add_eu_elements(ach, eu)
    return ach


def _alignments(template: LevelTemplate) -> list[dict[str, Any]]:
    """The template's alignments, and the EQF level as one."""
    eu = template.eu
    alignments = [_alignment(a) for a in template.alignments]
    if eu.eqf_level is not None:
        alignments.append(
            {
                "type": ["Alignment"],
                "targetType": "ext:EQF",
                "targetName": f"EQF level {eu.eqf_level}",
                "targetCode": str(eu.eqf_level),
                "targetFramework": "European Qualifications Framework",
                "targetUrl": EQF_CONCEPT.format(level=eu.eqf_level),
            }
        )
    return alignments


def _result_descriptions(
    template: LevelTemplate, level: ScaleLevel, ach_id: str
) -> list[dict[str, Any]]:
    """The competency level scale, then one description per rubric criterion."""
    # No ``allowedValue``: ``rubricCriterionLevel`` already lists the levels low to high,
    # and the identical RDF lists it would add to every description force RDFC-1.0 into
    # its slow n-degree hashing (measured in bench/sign.py).
    descriptions = [
        {
            "id": f"{ach_id}#level-scale",
            "type": ["ResultDescription"],
            "name": f"{template.competency_name}: competency level",
            "resultType": "RubricCriterionLevel",
            "requiredLevel": _level_ref(ach_id, level.key),
            "rubricCriterionLevel": [
                _rubric_level(_level_ref(ach_id, lv.key), lv) for lv in template.levels
            ],
        }
    ]
    for crit in template.rubric_criteria:
        crit_id = _criterion_ref(ach_id, crit.key)
        descriptions.append(
            {
                "id": crit_id,
                "type": ["ResultDescription"],
                "name": crit.name,
                "resultType": "RubricCriterionLevel",
                "alignment": [
                    {
                        "type": ["Alignment"],
                        "targetType": "CFRubricCriterion",
                        "targetName": crit.name,
                        "targetUrl": crit.url or crit_id,
                        **({"targetDescription": crit.description} if crit.description else {}),
                    }
                ],
                "rubricCriterionLevel": [
                    _rubric_level(_criterion_ref(ach_id, crit.key, lv.key), lv)
                    for lv in crit.levels
                ],
            }
        )
    return descriptions


def _rubric_level(level_id: str, level: ScaleLevel) -> dict[str, Any]:
    return {
        "id": level_id,
        "type": ["RubricCriterionLevel"],
        "name": level.name,
        "level": level.key,
        **_present(description=level.description),
    }


def _add_eu_elements(ach: dict[str, Any], eu: EuElements) -> None:
    """EU elements without an OB 3.0 field (microcred-eu-v1 context)."""
    ach["learningOutcome"] = list(eu.learning_outcomes)
    if eu.workload_hours is not None:
        ach["notionalWorkloadHours"] = eu.workload_hours
    if eu.eqf_level is not None:
        ach["eqfLevel"] = eu.eqf_level
    ach["assessmentType"] = eu.assessment_type
    ach["participationForm"] = eu.participation_form
    ach["qualityAssurance"] = eu.quality_assurance
    if eu.prerequisites:
        ach["prerequisites"] = eu.prerequisites
    ach["integrationStackability"] = eu.integration_stackability
    if eu.further_information:
        ach["furtherInformation"] = eu.further_information


def _results(award: AwardInput, ach_id: str) -> list[dict[str, Any]]:
    """The achieved level, each rubric criterion's level, and a grade the level does not say.

    Raises:
        BadInput: a criterion or its level is not in the template.
    """
    template = award.template
    level = template.level(award.level_key)
    results: list[dict[str, Any]] = [
        {
            "type": ["Result"],
            "resultDescription": f"{ach_id}#level-scale",
            "achievedLevel": _level_ref(ach_id, level.key),
            "value": level.name,
        }
    ]
    crit_by_key = {c.key: c for c in template.rubric_criteria}
    for crit_key, lvl_key in sorted(award.criterion_levels.items()):
        crit = crit_by_key.get(crit_key)
        if crit is None or lvl_key not in {lv.key for lv in crit.levels}:
            raise BadInput(
                f"rubric criterion {crit_key!r} / level {lvl_key!r} is not in the template"
            )
        results.append(
            {
                "type": ["Result"],
                "resultDescription": _criterion_ref(ach_id, crit_key),
                "achievedLevel": _criterion_ref(ach_id, crit_key, lvl_key),
            }
        )
    if award.grade and award.grade != level.name:  # the level's Result already says it
        results.append({"type": ["Result"], "value": award.grade})
    return results


def _identity(kind: str, value: str, *, salt: str | None = None) -> dict[str, Any]:
    """An IdentityObject (OB 3.0 §B.1.10); hashed when it carries its ``salt``."""
    doc = {"type": "IdentityObject", "identityType": kind, "hashed": salt is not None}
    doc["identityHash"] = value
    return doc if salt is None else {**doc, "salt": salt}


def _identifiers(learner: Learner, salt: str) -> list[dict[str, Any]]:
    ids = [_identity("ltiUserId", learner.lti_user_id)]
    if learner.email:
        # Never the plaintext address; case-folded so a verifier can match it (OB 3.0 §B.1.10).
        email_hash = identity_hash(learner.email.strip().lower(), salt)
        ids.append(_identity("emailAddress", email_hash, salt=salt))
    if learner.name:
        ids.append(_identity("name", learner.name))
    return ids


def _evidence(items: Sequence[EvidenceItem]) -> list[dict[str, Any]]:
    return [
        {
            "type": ["Evidence"],
            "name": item.name,
            **_present(
                id=item.url,
                description=item.description,
                narrative=item.narrative,
                genre=item.genre,
            ),
        }
        for item in items
    ]


def build_credential(
    *,
    credential_id: str,
    award: AwardInput,
    issuer: IssuerProfile,
    issuer_id: str,
    base_url: str,
    valid_from: dt.datetime,
    salt: str,
    status: Mapping[str, Any] | None = None,
    parts: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The unsigned OpenBadgeCredential for one award.

    Args:
        credential_id: the credential's URL (``{base}/credentials/{uuid}``).
        award: learner, competency template, level, evidence, dates.
        issuer: the awarding body's profile.
        issuer_id: the issuer DID that controls the signing keys.
        base_url: the deployment's public URL (achievement ids, EU context URL).
        valid_from: when the credential becomes valid (the issue time; never future).
        salt: random per-credential salt for the email hash.
        status: the ``BitstringStatusListEntry``, when the credential is revocable.
        parts: signed part credentials this one stacks (EU optional element
            "stackability"; which parts suffice is the assessment rule's): each appears as
            an evidence entry pointing at it and in ``credentialSubject.hasPart``.

    Returns:
        The credential as compacted JSON-LD without a proof.

    Raises:
        BadInput: a part from another issuer, or a part of another learner.
    """
    evidence = (*award.evidence, *_part_evidence(parts, award.learner, issuer_id))
    template = award.template
    achievement = build_achievement(template, award.level_key, base_url=base_url)
    ach_id = achievement["id"]
    results = _results(award, ach_id)
    subject: dict[str, Any] = {
        "type": ["AchievementSubject"],
        "identifier": _identifiers(award.learner, salt),
        "achievement": achievement,
        "result": results,
    }
    if template.eu.ects_credits is not None:
        subject["creditsEarned"] = template.eu.ects_credits
    if award.supervision:
        subject["supervisionVerification"] = SUPERVISION_LABELS[award.supervision]
    valid_until = award.valid_until
    if valid_until is None and template.valid_for_days:
        valid_until = valid_from + dt.timedelta(days=template.valid_for_days)
    if valid_until is not None and valid_until <= valid_from:
        raise BadInput("validUntil must be after validFrom")
    cred: dict[str, Any] = {
        "@context": credential_contexts(base_url),
        "id": credential_id,
        "type": ["VerifiableCredential", "OpenBadgeCredential"],
        "name": achievement["name"],
        "description": template.description,
        "issuer": issuer_profile(issuer, issuer_id),
        "validFrom": xsd_datetime(valid_from),
    }
    if valid_until is not None:
        cred["validUntil"] = xsd_datetime(valid_until)
    cred["awardedDate"] = xsd_datetime(award.awarded_at)
    # No credential-level ``image``: it would be the achievement's image node again, and
    # JSON-LD merges nodes with one id, so one copy could be edited without the signature
    # noticing the difference (the tamper tests check every field).
    cred["credentialSubject"] = subject
    if evidence:
        cred["evidence"] = _evidence(evidence)
    cred["credentialSchema"] = [{"id": OB_SCHEMA_URL, "type": "1EdTechJsonSchemaValidator2019"}]
    if status is not None:
        cred["credentialStatus"] = dict(status)
    if parts:
        subject["hasPart"] = [str(part["id"]) for part in parts]
    return cred


def _lti_user_id(credential: Mapping[str, Any]) -> str | None:
    for ident in credential.get("credentialSubject", {}).get("identifier", []):
        if isinstance(ident, dict) and ident.get("identityType") == "ltiUserId":
            value = ident.get("identityHash")
            return str(value) if value is not None else None
    return None


def _part_evidence(
    parts: Sequence[Mapping[str, Any]], learner: Learner, issuer_id: str
) -> tuple[EvidenceItem, ...]:
    """An evidence entry per part credential (the parts' own achievements say they are
    stackable).

    Raises:
        BadInput: a part from another issuer, or a part of another learner.
    """
    evidence = []
    for part in parts:
        part_issuer = part.get("issuer")
        part_issuer_id = part_issuer.get("id") if isinstance(part_issuer, dict) else part_issuer
        if part_issuer_id != issuer_id:
            raise BadInput(f"part {part.get('id')} was issued by {part_issuer_id}, not {issuer_id}")
        if _lti_user_id(part) != learner.lti_user_id:
            raise BadInput(f"part {part.get('id')} was awarded to another learner")
        ach = part.get("credentialSubject", {}).get("achievement", {})
        evidence.append(
            EvidenceItem(
                name=str(ach.get("name") or part.get("name") or "Part credential"),
                description="A credential this one stacks.",
                url=str(part["id"]),
                genre="Credential",
            )
        )
    return tuple(evidence)
