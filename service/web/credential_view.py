"""The credential page's view model: what the page shows, read from an OB 3.0 credential
document and its verification report (docs/credential-page.md)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from markdown_it import MarkdownIt
from markupsafe import Markup

from service.issuer.types import VerificationReport

# Images are off: a credential must not make the page load third-party (tracking) pixels.
_MD = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).disable(
    "image"
)
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def _markdown(text: Any) -> Markup | None:
    if not isinstance(text, str) or not text.strip():
        return None
    # html=False escapes raw HTML; markdown-it's validateLink drops javascript:/vbscript:/data:
    return Markup(_MD.render(text))  # noqa: S704 - output of a sanitising renderer


def _text(value: Any) -> str | None:
    """A display string from a plain value, a language map or a labelled object."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int | float):
        return f"{value:g}"
    if isinstance(value, dict):
        for key in ("name", "prefLabel", "label", "targetName", "title", "@value", "value"):
            if key in value:
                return _text(value[key])
        for key in ("en", "en-GB", "en-US"):
            if key in value:
                return _text(value[key])
        if "id" in value:
            return _text(value["id"])
        return None
    if isinstance(value, list):
        parts = [p for p in (_text(v) for v in value) if p]
        return "; ".join(parts) or None
    return None


def _safe_url(value: Any) -> str | None:
    """Only absolute http(s) URLs are ever used as links or image sources."""
    if not isinstance(value, str):
        return None
    parts = urlsplit(value.strip())
    if parts.scheme in ("http", "https") and parts.netloc:
        return value.strip()
    return None


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _date(value: datetime | None) -> str | None:
    return f"{value.day} {value:%B %Y}" if value else None


_DURATION = re.compile(r"^P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?)?$")


def _hours(value: Any) -> str | None:
    """Notional workload: a number of hours or an ISO 8601 duration (``PT25H``)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:g} hours"
    if isinstance(value, str):
        m = _DURATION.match(value.strip())
        if m and any(m.groups()):
            days, hours, minutes = (float(g) if g else 0.0 for g in m.groups())
            total = days * 24 + hours + minutes / 60
            return f"{total:g} hours"
        return value.strip() or None
    return _text(value)


def _lookup(sources: Iterable[dict[str, Any]], names: Iterable[str]) -> Any:
    """First value of any alias in any source; ``prefix:name`` keys match ``name`` too."""
    wanted = [n.lower() for n in names]
    for source in sources:
        keyed = {k.split(":")[-1].lower(): v for k, v in source.items() if isinstance(k, str)}
        for name in wanted:
            if name in keyed and keyed[name] not in (None, "", []):
                return keyed[name]
    return None


@dataclass(frozen=True)
class Row:
    """One labelled fact on the page; ``value`` is escaped text, ``href`` a safe link."""

    label: str
    value: str
    href: str | None = None


@dataclass(frozen=True)
class LevelItem:
    name: str
    description: str | None
    reached: bool
    current: bool


@dataclass(frozen=True)
class AlignmentItem:
    name: str
    href: str | None
    framework: str | None
    code: str | None


@dataclass(frozen=True)
class CheckItem:
    name: str
    label: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Status:
    """The headline verdict. ``kind`` drives colour and wording."""

    kind: Literal["valid", "revoked", "expired", "not_yet_valid", "invalid"]
    title: str
    summary: str


@dataclass
class CredentialView:
    """Everything the template shows, already extracted and made safe to print."""

    title: str
    credential_id: str
    description: Markup | None
    criteria: Markup | None
    criteria_url: str | None
    achievement_type: str | None
    level: str | None
    level_rank: int
    levels: list[LevelItem]
    scale_name: str | None
    alignments: list[AlignmentItem]
    learner: str | None
    recipient_note: str | None
    recipient_hash: str | None
    recipient_salt: str | None
    issuer_name: str
    issuer_url: str | None
    issuer_location: str | None
    issuer_ids: list[Row]
    issued: str | None
    valid_from: str | None
    valid_until: str | None
    eu_rows: list[Row]
    evidence: list[Row]
    status: Status
    checks: list[CheckItem]
    image_alt: str
    language: str | None
    issued_at: datetime | None = None
    expires_at: datetime | None = None


_CHECK_LABELS = {
    "proof": "Signature",
    "issuer_key": "Issuer key",
    "status": "Revocation status",
    "dates": "Validity dates",
    "schema": "Open Badges 3.0 schema",
    "contexts": "JSON-LD contexts",
    "format": "Format",
}


def _status(report: VerificationReport, now: datetime, valid_until: datetime | None) -> Status:
    """The headline: revoked and expired win over other failures because they are what a
    verifier most needs to see; a report is the authority, dates only refine wording."""
    failed = {c.name: c for c in report.checks if not c.ok}
    status_check = failed.get("status")
    if status_check and re.search(r"revoked|suspended", status_check.detail, re.I):
        return Status(
            "revoked",
            "Revoked",
            f"The issuer has revoked this credential. It is no longer valid. {status_check.detail}",
        )
    dates = failed.get("dates")
    if dates is not None:
        if valid_until is not None and valid_until <= now:
            return Status(
                "expired",
                "Expired",
                f"This credential expired on {_date(valid_until)}. It was issued as shown below.",
            )
        if re.search(r"not yet|future", dates.detail, re.I):
            return Status("not_yet_valid", "Not yet valid", dates.detail)
        return Status("expired", "Expired", dates.detail)
    if report.valid and report.checks and not failed:  # no checks run proves nothing
        return Status(
            "valid",
            "Verified",
            "The signature, the issuer's key, the revocation status and the validity dates "
            "all check out.",
        )
    reasons = " ".join(c.detail for c in failed.values()) or "Verification did not succeed."
    return Status(
        "invalid",
        "Not valid",
        f"This credential could not be verified. {reasons} The details below are what the "
        "document claims; the issuer's signature does not confirm them.",
    )


def _kind_label(value: Any) -> str | None:
    """``MicroCredential`` → ``Micro-credential``; ``ext:FooBar`` → ``Foo bar``."""
    text = _text(value)
    if not text:
        return None
    text = text.removeprefix("ext:")
    if text == "MicroCredential":
        return "Micro-credential"
    words = re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+", text)
    return " ".join(words).capitalize() if words else text


def _levels(
    achievement: dict[str, Any], results: list[Any]
) -> tuple[str | None, int, list[LevelItem], str | None]:
    achieved_ids = {
        r.get("achievedLevel") for r in results if isinstance(r, dict) and r.get("achievedLevel")
    }
    for rd in _as_list(achievement.get("resultDescription")):
        if not isinstance(rd, dict):
            continue
        levels = [lv for lv in _as_list(rd.get("rubricCriterionLevel")) if isinstance(lv, dict)]
        if not levels:
            continue
        current = next((i for i, lv in enumerate(levels) if lv.get("id") in achieved_ids), None)
        if current is None:
            continue
        items = [
            LevelItem(
                name=_text(lv.get("name")) or f"Level {i + 1}",
                description=_text(lv.get("description")),
                reached=i <= current,
                current=i == current,
            )
            for i, lv in enumerate(levels)
        ]
        return items[current].name, current + 1, items, _text(rd.get("name"))
    return None, 1, [], None


def _alignments(achievement: dict[str, Any]) -> list[AlignmentItem]:
    items = []
    for a in _as_list(achievement.get("alignment")):
        if not isinstance(a, dict):
            continue
        kind = a.get("targetType") if isinstance(a.get("targetType"), str) else None
        if kind in ("ext:EQF", "ext:QualityAssurance", "ext:ISCEDF"):
            continue  # shown among the EU elements instead
        name = _text(a.get("targetName"))
        if not name:
            continue
        items.append(
            AlignmentItem(
                name=name,
                href=_safe_url(a.get("targetUrl")),
                framework=_text(a.get("targetFramework")),
                code=_text(a.get("targetCode")),
            )
        )
    return items


def _alignment_of(achievement: dict[str, Any], target_type: str) -> dict[str, Any] | None:
    for a in _as_list(achievement.get("alignment")):
        if isinstance(a, dict) and a.get("targetType") == target_type:
            return a
    return None


_SUPERVISION_WORDS = {
    "unsupervised": "Unsupervised, no identity verification",
    "authenticated": "Unsupervised, no identity verification (signed in through the LMS)",
    "supervised": "Supervised, no identity verification",
    "supervised-online-verified": "Supervised online, with identity verification",
    "supervised-onsite-verified": "Supervised on site, with identity verification",
}


_IDENTITY_WORDS = {
    "emailAddress": "email address",
    "ltiUserId": "LMS user account",
    "ltiPlatformId": "LMS platform",
    "sourcedId": "student record id",
    "studentId": "student number",
}


def _learner_identification(subject: dict[str, Any], learner: str | None) -> str | None:
    """Annex I element 1, described without revealing identifiers: how the learner is
    identified (kinds only, never the values)."""
    kinds: list[str] = []
    for ident in _as_list(subject.get("identifier")):
        if isinstance(ident, dict) and isinstance(ident.get("identityType"), str):
            kind: str = ident["identityType"]
            word = _IDENTITY_WORDS.get(kind, kind)
            kinds.append(f"{word} (hashed)" if ident.get("hashed") else word)
    if isinstance(subject.get("id"), str):
        kinds.append("holder DID" if subject["id"].startswith("did:") else "holder URL")
    how = "Identified by " + ", ".join(dict.fromkeys(kinds)) if kinds else None
    return "; ".join(p for p in (learner, how) if p) or None


def _extension_sources(
    doc: dict[str, Any], achievement: dict[str, Any], subject: dict[str, Any]
) -> list[dict[str, Any]]:
    """Where EU elements may sit: the achievement, the subject, the document, and their
    ``eu*`` / ``*micro*`` extension objects."""
    ext_sources = [achievement, subject, doc]
    for src in list(ext_sources):
        for key, value in src.items():
            if isinstance(value, dict) and re.search(r"^eu|micro", str(key), re.I):
                ext_sources.append(value)
    return ext_sources


def _awarding_body(issuer: dict[str, Any], subject: dict[str, Any]) -> str | None:
    """The issuer's name, with the assessing body when another one assessed."""
    body = _text(issuer.get("name"))
    source = _obj(subject.get("source"))
    if source and _text(source.get("name")) and _text(source.get("name")) != body:
        body = f"{body} (assessed by {_text(source.get('name'))})" if body else None
    return body


def _workload(achievement: dict[str, Any], ext_sources: list[dict[str, Any]]) -> str | None:
    """ECTS credits and notional workload hours, as the document states them."""
    credits = achievement.get("creditsAvailable")
    ects = _lookup(ext_sources, ["ECTS", "ects", "creditPoint", "creditPoints"])
    workload = _lookup(
        ext_sources,
        ["notionalWorkload", "workload", "timeInvestment", "studyLoad", "volumeOfLearning"],
    )
    parts = []
    if _text(ects) or isinstance(credits, int | float):
        parts.append(f"{_text(ects) or _text(credits)} ECTS")
    if workload is not None:
        parts.append(_hours(workload) or "")
    return " · ".join(p for p in parts if p) or None


def _supervision(ext_sources: list[dict[str, Any]]) -> str | None:
    """The supervision and identity verification, in words."""
    supervision = _lookup(
        ext_sources, ["supervisionType", "supervisionAndIdentityVerification", "supervision"]
    )
    supervision_text = _text(supervision)
    if supervision_text:
        supervision_text = _SUPERVISION_WORDS.get(supervision_text, supervision_text)
        checked = _lookup(ext_sources, ["identityChecked"])
        if isinstance(checked, bool) and "identity" not in supervision_text.lower():
            supervision_text += ", identity verified" if checked else ", identity not verified"
    return supervision_text


def _eu_rows(
    doc: dict[str, Any],
    achievement: dict[str, Any],
    subject: dict[str, Any],
    level: str | None,
    learner: str | None,
) -> list[Row]:
    """The Annex I elements present in the document, in the Recommendation's order."""
    issuer = _obj(doc.get("issuer"))
    ext_sources = _extension_sources(doc, achievement, subject)
    rows: list[Row] = []

    def add(label: str, value: str | None, href: str | None = None) -> None:
        if value:
            rows.append(Row(label, value, href))

    add("Identification of the learner", _learner_identification(subject, learner))
    add("Title", _text(achievement.get("name")) or _text(doc.get("name")))
    address = _obj(issuer.get("address"))
    if address:
        country = _text(address.get("addressCountry")) or _text(address.get("addressCountryCode"))
        region = _text(address.get("addressRegion"))
        add("Country / region", ", ".join(p for p in (country, region) if p) or None)
    add("Awarding body", _awarding_body(issuer, subject), _safe_url(issuer.get("url")))
    issued = _parse_time(doc.get("awardedDate")) or _parse_time(doc.get("validFrom"))
    add("Date of issuing", _date(issued))
    outcomes = _lookup(ext_sources, ["learningOutcomes", "learningOutcome"])
    if isinstance(outcomes, list):
        add("Learning outcomes", "; ".join(t for t in (_text(o) for o in outcomes) if t))
    else:
        add("Learning outcomes", _text(outcomes))
    add("Notional workload", _workload(achievement, ext_sources))
    eqf = _alignment_of(achievement, "ext:EQF")
    eqf_value = _text(eqf.get("targetCode")) if eqf else _text(_lookup(ext_sources, ["eqfLevel"]))
    if eqf_value:
        add(
            "EQF level",
            eqf_value if not eqf_value.isdigit() else f"Level {eqf_value}",
            _safe_url(eqf.get("targetUrl")) if eqf else None,
        )
    add("Type of assessment", _text(_lookup(ext_sources, ["assessmentType", "typeOfAssessment"])))
    add(
        "Form of participation",
        _text(
            _lookup(ext_sources, ["participationType", "participationForm", "formOfParticipation"])
        ),
    )
    qa = _alignment_of(achievement, "ext:QualityAssurance")
    if qa:
        add("Quality assurance", _text(qa.get("targetName")), _safe_url(qa.get("targetUrl")))
    else:
        add("Quality assurance", _text(_lookup(ext_sources, ["qualityAssurance"])))
    add("Prerequisites", _text(_lookup(ext_sources, ["prerequisites", "entryRequirement"])))
    add("Supervision and identity verification", _supervision(ext_sources))
    grades = [_text(r.get("value")) for r in _as_list(subject.get("result")) if isinstance(r, dict)]
    grade = "; ".join(dict.fromkeys(g for g in grades if g)) or level
    add("Grade achieved", grade)
    add(
        "Integration / stackability",
        _text(_lookup(ext_sources, ["stackability", "integrationStackability", "integration"])),
    )
    further = _lookup(ext_sources, ["furtherInformation", "additionalInformation"])
    add("Further information", _text(further), _safe_url(further))
    return rows


_BCP47 = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


def _language(value: Any) -> str | None:
    """The achievement's language (BCP 47) for a ``lang`` attribute (WCAG 3.1.2)."""
    return value if isinstance(value, str) and _BCP47.match(value) else None


def _issuer_ids(issuer: dict[str, Any]) -> list[Row]:
    """Identifiers a verifier can cross-check: the issuer's id (DID or URL) and others."""
    rows = []
    for other in _as_list(issuer.get("otherIdentifier")):
        if isinstance(other, dict) and _text(other.get("identifier")):
            kind = _text(other.get("identifierType")) or "identifier"
            label = "Institution ID" if kind == "identifier" else kind
            rows.append(Row(label, _text(other.get("identifier")) or ""))
    if _text(issuer.get("id")):
        rows.append(Row("Issuer ID", _text(issuer.get("id")) or ""))
    return rows


def _recipient(subject: dict[str, Any], learner_name: str | None) -> tuple[str | None, ...]:
    # The name the credential itself publishes: OB 3.0 carries it as an unhashed "name"
    # identifier (what microcred writes), or as the subject's name.
    published = next(
        (
            _text(i.get("identityHash"))
            for i in _as_list(subject.get("identifier"))
            if isinstance(i, dict) and i.get("identityType") == "name" and not i.get("hashed")
        ),
        None,
    )
    name = learner_name or _text(subject.get("name")) or published
    if name and _EMAIL.search(name):
        name = None  # never print an email address, even if one slipped into a name field
    note = None
    digest = salt = None
    for ident in _as_list(subject.get("identifier")):
        if not isinstance(ident, dict):
            continue
        kind = _text(ident.get("identityType")) or "identifier"
        if ident.get("hashed") and isinstance(ident.get("identityHash"), str):
            if kind == "emailAddress":
                digest, salt = ident["identityHash"], _text(ident.get("salt")) or ""
                note = "Issued to an email address, stored only as a salted hash."
        elif kind == "emailAddress":
            note = "Issued to an email address (not shown here)."
    if note is None and isinstance(subject.get("id"), str):
        note = "Issued to a holder identified by a DID or URL."
    return name, note, digest, salt


def _issuer_location(issuer_obj: dict[str, Any]) -> str:
    """The issuer's locality and country, as the address gives them ("" without)."""
    address = _obj(issuer_obj.get("address"))
    return ", ".join(
        p
        for p in (
            _text(address.get("addressLocality")),
            _text(address.get("addressCountry")) or _text(address.get("addressCountryCode")),
        )
        if p
    )


def _evidence_rows(document: dict[str, Any]) -> list[Row]:
    """The document's evidence entries: name, narrative, link."""
    return [
        Row(
            _text(e.get("name")) or "Evidence",
            _text(e.get("narrative")) or _text(e.get("description")) or "",
            _safe_url(e.get("id")),
        )
        for e in _as_list(document.get("evidence"))
        if isinstance(e, dict)
    ]


def view_model(
    document: dict[str, Any],
    report: VerificationReport,
    *,
    now: datetime,
    learner_name: str | None = None,
) -> CredentialView:
    """Extract what the page shows from a credential document and its verification report."""
    subject = _obj(document.get("credentialSubject"))
    achievement = _obj(subject.get("achievement"))
    issuer = document.get("issuer")
    issuer_obj: dict[str, Any] = issuer if isinstance(issuer, dict) else {"id": issuer}
    results = _as_list(subject.get("result"))
    level, rank, levels, scale = _levels(achievement, results)
    valid_from = _parse_time(document.get("validFrom"))
    valid_until = _parse_time(document.get("validUntil"))
    issued = _parse_time(document.get("awardedDate")) or valid_from
    name, note, digest, salt = _recipient(subject, learner_name)
    title = _text(achievement.get("name")) or _text(document.get("name")) or "Credential"
    location = _issuer_location(issuer_obj)
    image = _obj(achievement.get("image"))
    alt = _text(image.get("caption")) or (
        f"{title} badge, {level} level" if level else f"{title} badge"
    )
    criteria = _obj(achievement.get("criteria"))
    return CredentialView(
        title=title,
        credential_id=_text(document.get("id")) or "",
        description=_markdown(achievement.get("description") or document.get("description")),
        criteria=_markdown(criteria.get("narrative")),
        criteria_url=_safe_url(criteria.get("id")),
        achievement_type=_kind_label(achievement.get("achievementType")),
        level=level,
        level_rank=rank,
        levels=levels,
        scale_name=scale,
        alignments=_alignments(achievement),
        learner=name,
        recipient_note=note,
        recipient_hash=digest,
        recipient_salt=salt,
        issuer_name=_text(issuer_obj.get("name")) or _text(issuer_obj.get("id")) or "Unknown",
        issuer_url=_safe_url(issuer_obj.get("url")),
        issuer_location=location or None,
        issuer_ids=_issuer_ids(issuer_obj),
        issued=_date(issued),
        valid_from=_date(valid_from),
        valid_until=_date(valid_until),
        eu_rows=_eu_rows(document, achievement, subject, level, name),
        evidence=_evidence_rows(document),
        status=_status(report, now, valid_until),
        checks=[
            CheckItem(c.name, _CHECK_LABELS.get(c.name, c.name.replace("_", " ")), c.ok, c.detail)
            for c in report.checks
        ],
        image_alt=alt,
        language=_language(achievement.get("inLanguage")),
        issued_at=issued,
        expires_at=valid_until,
    )


def view_model_title(document: dict[str, Any]) -> str:
    achievement = _obj(_obj(document.get("credentialSubject")).get("achievement"))
    return _text(achievement.get("name")) or _text(document.get("name")) or "credential"
