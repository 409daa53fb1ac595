"""The public credential page ``/credentials/{id}`` and its downloads.

:func:`render_credential_page` turns an OB 3.0 credential document plus a
:class:`~service.issuer.types.VerificationReport` into an accessible HTML page (WCAG 2.1 AA:
landmarks, one ``h1``, labelled controls, 4.5:1 text contrast, visible focus, no JavaScript
needed except for two conveniences: copying the credential and checking a recipient email).

:func:`make_router` serves the page with content negotiation (DESIGN.md) and the downloads
(JSON, JWT, baked PNG and SVG) from a loader the caller supplies, so the page does not depend
on how credentials are stored or verified.

What the page reads from the document, and where (credentials.md §5.3), is listed in
``docs/credential-page.md``. Strings from the document are always escaped; only ``http(s)``
URLs become links; Markdown (``description``, ``criteria.narrative``) is rendered with raw
HTML disabled.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote, urlencode, urlsplit

import segno
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from markdown_it import MarkdownIt
from markupsafe import Markup

from service.errors import NotFound
from service.issuer import badge_image, baking
from service.issuer.types import VerificationReport
from service.web.templating import render

log = logging.getLogger(__name__)

__all__ = [
    "CredentialBundle",
    "CredentialPageUrls",
    "CredentialView",
    "baked_badge",
    "credential_urls",
    "linkedin_add_url",
    "make_router",
    "render_credential_page",
    "view_model",
]

# --- URLs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CredentialPageUrls:
    """Where the page links to. ``wallet_request`` is the DCC exchange endpoint
    (``vc_request_url``) for the Learner Credential Wallet deep link; without it the page
    offers the copy/paste and URL routes into the wallet instead."""

    page: str
    json: str
    png: str
    svg: str
    jwt: str | None = None
    wallet_request: str | None = None
    wallet_issuer_did: str | None = None
    linkedin_organization_id: str | None = None
    ob2_assertion: str | None = None


def credential_urls(
    base_url: str, key: str, *, prefix: str = "/credentials", **extra: str | None
) -> CredentialPageUrls:
    """The URLs :func:`make_router` serves for the credential whose path key is ``key``."""
    root = f"{base_url.rstrip('/')}{prefix}/{quote(key, safe='')}"
    return CredentialPageUrls(
        page=root,
        json=f"{root}/credential.json",
        jwt=f"{root}/credential.jwt",
        png=f"{root}/badge.png",
        svg=f"{root}/badge.svg",
        **extra,
    )


# --- view model --------------------------------------------------------------------------

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


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _types(obj: Any) -> list[str]:
    if not isinstance(obj, dict):
        return []
    return [t for t in _as_list(obj.get("type")) if isinstance(t, str)]


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
    kind: str | None


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
    issuer_image: str | None
    issuer_location: str | None
    issuer_ids: list[Row]
    issued: str | None
    issued_iso: str | None
    valid_from: str | None
    valid_until: str | None
    valid_until_iso: str | None
    eu_rows: list[Row]
    evidence: list[Row]
    related: list[Row]
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
                kind=kind,
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


def _eu_rows(
    doc: dict[str, Any],
    achievement: dict[str, Any],
    subject: dict[str, Any],
    level: str | None,
    learner: str | None,
) -> list[Row]:
    """The Annex I elements present in the document, in the Recommendation's order."""
    issuer = doc.get("issuer") if isinstance(doc.get("issuer"), dict) else {}
    assert isinstance(issuer, dict)
    ext_sources = [achievement, subject, doc]
    for src in list(ext_sources):
        for key, value in src.items():
            if isinstance(value, dict) and re.search(r"^eu|micro", str(key), re.I):
                ext_sources.append(value)
    rows: list[Row] = []

    def add(label: str, value: str | None, href: str | None = None) -> None:
        if value:
            rows.append(Row(label, value, href))

    add("Identification of the learner", _learner_identification(subject, learner))
    add("Title", _text(achievement.get("name")) or _text(doc.get("name")))
    address = issuer.get("address") if isinstance(issuer.get("address"), dict) else None
    if address:
        country = _text(address.get("addressCountry")) or _text(address.get("addressCountryCode"))
        region = _text(address.get("addressRegion"))
        add("Country / region", ", ".join(p for p in (country, region) if p) or None)
    body = _text(issuer.get("name"))
    source = subject.get("source") if isinstance(subject.get("source"), dict) else None
    if source and _text(source.get("name")) and _text(source.get("name")) != body:
        body = f"{body} (assessed by {_text(source.get('name'))})" if body else None
    add("Awarding body", body, _safe_url(issuer.get("url")))
    issued = _parse_time(doc.get("awardedDate")) or _parse_time(doc.get("validFrom"))
    add("Date of issuing", _date(issued))
    outcomes = _lookup(ext_sources, ["learningOutcomes", "learningOutcome"])
    if isinstance(outcomes, list):
        add("Learning outcomes", "; ".join(t for t in (_text(o) for o in outcomes) if t))
    else:
        add("Learning outcomes", _text(outcomes))
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
    add("Notional workload", " · ".join(p for p in parts if p) or None)
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
    supervision = _lookup(
        ext_sources, ["supervisionType", "supervisionAndIdentityVerification", "supervision"]
    )
    supervision_text = _text(supervision)
    if supervision_text:
        supervision_text = _SUPERVISION_WORDS.get(supervision_text, supervision_text)
        checked = _lookup(ext_sources, ["identityChecked"])
        if isinstance(checked, bool) and "identity" not in supervision_text.lower():
            supervision_text += ", identity verified" if checked else ", identity not verified"
        add("Supervision and identity verification", supervision_text)
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


def view_model(
    document: dict[str, Any],
    report: VerificationReport,
    *,
    now: datetime,
    learner_name: str | None = None,
) -> CredentialView:
    """Extract what the page shows from a credential document and its verification report."""
    subject = document.get("credentialSubject")
    subject = subject if isinstance(subject, dict) else {}
    achievement = subject.get("achievement")
    achievement = achievement if isinstance(achievement, dict) else {}
    issuer = document.get("issuer")
    issuer_obj: dict[str, Any] = issuer if isinstance(issuer, dict) else {"id": issuer}
    results = _as_list(subject.get("result"))
    level, rank, levels, scale = _levels(achievement, results)
    valid_from = _parse_time(document.get("validFrom"))
    valid_until = _parse_time(document.get("validUntil"))
    issued = _parse_time(document.get("awardedDate")) or valid_from
    name, note, digest, salt = _recipient(subject, learner_name)
    title = _text(achievement.get("name")) or _text(document.get("name")) or "Credential"
    address = issuer_obj.get("address") if isinstance(issuer_obj.get("address"), dict) else {}
    assert isinstance(address, dict)
    location = ", ".join(
        p
        for p in (
            _text(address.get("addressLocality")),
            _text(address.get("addressCountry")) or _text(address.get("addressCountryCode")),
        )
        if p
    )
    image = achievement.get("image") if isinstance(achievement.get("image"), dict) else {}
    assert isinstance(image, dict)
    alt = _text(image.get("caption")) or (
        f"{title} badge, {level} level" if level else f"{title} badge"
    )
    issuer_image = issuer_obj.get("image")
    if isinstance(issuer_image, dict):
        issuer_image = issuer_image.get("id")
    evidence = [
        Row(
            _text(e.get("name")) or "Evidence",
            _text(e.get("narrative")) or _text(e.get("description")) or "",
            _safe_url(e.get("id")),
        )
        for e in _as_list(document.get("evidence"))
        if isinstance(e, dict)
    ]
    related = [
        Row(_text(r.get("name")) or _text(r.get("id")) or "Related", "", _safe_url(r.get("id")))
        for r in _as_list(achievement.get("related"))
        if isinstance(r, dict)
    ]
    criteria = achievement.get("criteria") if isinstance(achievement.get("criteria"), dict) else {}
    assert isinstance(criteria, dict)
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
        issuer_image=_safe_url(issuer_image),
        issuer_location=location or None,
        issuer_ids=_issuer_ids(issuer_obj),
        issued=_date(issued),
        issued_iso=issued.isoformat() if issued else None,
        valid_from=_date(valid_from),
        valid_until=_date(valid_until),
        valid_until_iso=valid_until.isoformat() if valid_until else None,
        eu_rows=_eu_rows(document, achievement, subject, level, name),
        evidence=evidence,
        related=related,
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


# --- share links -------------------------------------------------------------------------


def linkedin_add_url(
    *,
    name: str,
    organization_name: str,
    issued: datetime | None,
    expires: datetime | None,
    cert_url: str,
    cert_id: str,
    organization_id: str | None = None,
) -> str:
    """LinkedIn "Add to profile" (certification) link: opens the member's add-certification
    form pre-filled; nothing is sent to LinkedIn until the member saves it."""
    params: dict[str, str] = {"startTask": "CERTIFICATION_NAME", "name": name}
    if organization_id:
        params["organizationId"] = organization_id
    else:
        params["organizationName"] = organization_name
    if issued:
        params |= {"issueYear": str(issued.year), "issueMonth": str(issued.month)}
    if expires:
        params |= {"expirationYear": str(expires.year), "expirationMonth": str(expires.month)}
    params |= {"certUrl": cert_url, "certId": cert_id}
    return "https://www.linkedin.com/profile/add?" + urlencode(params)


def lcw_deep_link(*, issuer_did: str, request_url: str) -> str:
    """Learner Credential Wallet deep link (credentials.md §4.4): the wallet opens, signs a
    DIDAuth presentation and POSTs it to ``request_url``, which answers with the credential
    issued to the wallet's DID."""
    return "dccrequest://request?" + urlencode(
        {
            "issuer": issuer_did,
            "vc_request_url": request_url,
            "auth_type": "bearer",
            "vp_version": "1.1",
        }
    )


@functools.lru_cache(maxsize=2048)  # encoding is most of a page render; URLs repeat
def qr_svg(url: str, *, label: str) -> Markup:
    """An inline, accessible SVG QR code for ``url`` (segno; dark on white for scanners)."""
    qr = segno.make(url, error="m")
    svg = qr.svg_inline(scale=4, border=2, dark="#1d2433", light="#ffffff", title=label)
    svg = svg.replace("<svg ", '<svg role="img" aria-label="' + _attr(label) + '" ', 1)
    return Markup(svg)  # noqa: S704 - generated by segno from an escaped label


def _attr(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
    )


# --- rendering ---------------------------------------------------------------------------


def render_credential_page(
    request: Request | None,
    *,
    document: dict[str, Any],
    report: VerificationReport,
    jwt_available: bool,
    urls: CredentialPageUrls,
    learner_name: str | None = None,
    now: datetime | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """Render the public page for one credential.

    ``learner_name`` is the display name to show (the document usually carries only a
    hashed identifier); ``now`` defaults to the current time and only refines wording of
    the expiry banner — the verdict itself comes from ``report``.
    """
    moment = now or datetime.now(UTC)
    view = view_model(document, report, now=moment, learner_name=learner_name)
    linkedin = linkedin_add_url(
        name=view.title
        if not view.level or view.level in view.title
        else f"{view.title} — {view.level}",
        organization_name=view.issuer_name,
        issued=view.issued_at,
        expires=view.expires_at,
        cert_url=urls.page,
        cert_id=view.credential_id,
        organization_id=urls.linkedin_organization_id,
    )
    deep_link = (
        lcw_deep_link(issuer_did=urls.wallet_issuer_did, request_url=urls.wallet_request)
        if urls.wallet_request and urls.wallet_issuer_did
        else None
    )
    response = render(
        request,
        "credential.html",
        status_code=status_code,
        view=view,
        urls=urls,
        jwt_available=jwt_available and urls.jwt is not None,
        linkedin=linkedin,
        deep_link=deep_link,
        qr=qr_svg(urls.page, label=f"QR code linking to this page: {urls.page}"),
        credential_json=json.dumps(document, indent=2, ensure_ascii=False),
        share_open=view.status.kind == "valid",
    )
    response.headers["Cache-Control"] = "no-store"  # the verdict is live
    return response


# --- routes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CredentialBundle:
    """What a loader returns for one credential."""

    document: dict[str, Any]
    report: VerificationReport
    jwt: str | None = None
    image: bytes | None = None  # the achievement's own PNG/SVG to bake into, if any
    learner_name: str | None = None


Loader = Callable[[Request, str], CredentialBundle | None]

# Credentials are public documents; web verifiers (e.g. VerifierPlus) fetch them cross-origin.
_CORS = {"Access-Control-Allow-Origin": "*"}

_SVG_HEADERS = {
    # A baked SVG may come from an issuer-supplied image: never let it run script here.
    # (an instructor's PNG design travels inside as a data: image)
    "Content-Security-Policy": (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; sandbox"
    ),
    "X-Content-Type-Options": "nosniff",
}


def _achievement_level(bundle: CredentialBundle) -> tuple[str | None, int, str]:
    view = view_model(bundle.document, bundle.report, now=datetime.now(UTC))
    return view.level, view.level_rank, view.image_alt


def badge_images(bundle: CredentialBundle) -> tuple[bytes, bytes]:
    """The (PNG, SVG) images to bake into: the bundle's own where given, else defaults."""
    level, rank, alt = _achievement_level(bundle)
    png = svg = None
    if bundle.image is not None:
        if bundle.image.startswith(baking.PNG_SIGNATURE):
            png = bundle.image
        else:
            svg = bundle.image
    if png is not None and svg is None:  # a designed PNG: the SVG shows it too
        svg = badge_image.png_in_svg(png, title=alt)
    return (
        png or badge_image.default_badge_png(level=level, rank=rank),
        svg or badge_image.default_badge_svg(level=level, rank=rank, title=alt),
    )


def baked_badge(bundle: CredentialBundle, kind: Literal["png", "svg"]) -> bytes:
    """The badge image with the JSON credential baked in.

    The JSON (Data Integrity proof) is baked, not the JWT: wallets such as the Learner
    Credential Wallet verify only Data Integrity proofs (credentials.md §0.4). An
    achievement image that cannot be baked (damaged, hostile XML) is logged and replaced
    by the default badge, so the learner always gets a download.
    """
    png, svg = badge_images(bundle)
    image = png if kind == "png" else svg
    try:
        return baking.bake(image, bundle.document, replace=True)
    except baking.BakingError as exc:
        log.warning("achievement image not bakeable, using the default badge: %s", exc.detail)
        level, rank, alt = _achievement_level(bundle)
        default = (
            badge_image.default_badge_png(level=level, rank=rank)
            if kind == "png"
            else badge_image.default_badge_svg(level=level, rank=rank, title=alt)
        )
        return baking.bake(default, bundle.document)


_OFFERS: dict[str, Literal["html", "json", "jwt"]] = {
    "text/html": "html",
    "application/xhtml+xml": "html",
    "application/vc+ld+json": "json",
    "application/ld+json": "json",
    "application/json": "json",
    "application/vc+jwt": "jwt",
    "application/jwt": "jwt",
}


def _wants(request: Request) -> Literal["html", "json", "jwt"]:
    """Pick a representation from ``Accept`` by quality (RFC 9110 §12.5.1); the first
    listed wins a tie; wildcards and an absent header mean the page."""
    best: tuple[float, int, Literal["html", "json", "jwt"]] = (0.0, 0, "html")
    header = request.headers.get("accept", "")
    for position, item in enumerate(header.lower().split(",")):
        media, *params = (p.strip() for p in item.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        kind = _OFFERS.get(media)
        if kind is None and media in ("*/*", "text/*"):
            kind = "html"
        if kind is not None and quality > 0 and (quality, -position) > best[:2]:
            best = (quality, -position, kind)
    return best[2]


def _filename(bundle: CredentialBundle, ext: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", view_model_title(bundle.document).lower()).strip("-")
    return f"{slug[:60] or 'credential'}.{ext}"


def view_model_title(document: dict[str, Any]) -> str:
    subject = document.get("credentialSubject")
    achievement = subject.get("achievement") if isinstance(subject, dict) else None
    if isinstance(achievement, dict) and _text(achievement.get("name")):
        return _text(achievement.get("name")) or "credential"
    return _text(document.get("name")) or "credential"


def make_router(
    load: Loader, *, prefix: str = "/credentials", ob2_prefix: str | None = None
) -> APIRouter:
    """Routes for the page and its downloads, reading credentials through ``load``.

    ``load(request, key)`` returns a :class:`CredentialBundle` (with a fresh verification
    report) or None for an unknown key, which becomes a 404. With ``ob2_prefix`` (where
    :mod:`service.issuer.ob2_router` is mounted, under the same keys) the page also links
    the Open Badges 2.0 hosted assertion for older backpacks.
    """
    router = APIRouter(prefix=prefix, tags=["credentials"])

    def get(request: Request, key: str) -> CredentialBundle:
        bundle = load(request, key)
        if bundle is None:
            raise NotFound(
                "No credential is published under this address.",
                hint="Check the link; a credential page address ends with its identifier.",
            )
        return bundle

    def urls_for(request: Request, key: str, bundle: CredentialBundle) -> CredentialPageUrls:
        base = str(request.base_url).rstrip("/")
        settings = getattr(request.app.state, "settings", None)
        if settings is not None:
            base = settings.public_base_url
        urls = credential_urls(base, key, prefix=prefix)
        if ob2_prefix is not None:
            urls = dataclasses.replace(
                urls, ob2_assertion=f"{base}{ob2_prefix}/assertions/{quote(key, safe='')}"
            )
        return urls if bundle.jwt else dataclasses.replace(urls, jwt=None)

    @router.get("/{key}", response_model=None)
    def page(request: Request, key: str) -> Response:
        """The credential: HTML page, or the signed document by content negotiation."""
        bundle = get(request, key)
        kind = _wants(request)
        if kind == "json":
            return JSONResponse(
                bundle.document,
                media_type="application/vc+ld+json",
                headers={"Vary": "Accept"} | _CORS,
            )
        if kind == "jwt":
            if bundle.jwt is None:
                raise NotFound(
                    "This credential has no VC-JWT form.",
                    hint="Ask for application/vc+ld+json to get the signed JSON.",
                )
            return Response(
                bundle.jwt, media_type="application/vc+jwt", headers={"Vary": "Accept"} | _CORS
            )
        response = render_credential_page(
            request,
            document=bundle.document,
            report=bundle.report,
            jwt_available=bundle.jwt is not None,
            urls=urls_for(request, key, bundle),
            learner_name=bundle.learner_name,
        )
        response.headers["Vary"] = "Accept"
        return response

    @router.get("/{key}/credential.json", response_model=None)
    def download_json(request: Request, key: str) -> Response:
        """The signed credential as a JSON file (embedded proof)."""
        bundle = get(request, key)
        body = json.dumps(bundle.document, indent=2, ensure_ascii=False).encode()
        return Response(
            body,
            media_type="application/vc+ld+json",
            headers={"Content-Disposition": f'attachment; filename="{_filename(bundle, "json")}"'}
            | _CORS,
        )

    @router.get("/{key}/credential.jwt", response_model=None)
    def download_jwt(request: Request, key: str) -> Response:
        """The credential as a VC-JWT (compact JWS) file."""
        bundle = get(request, key)
        if bundle.jwt is None:
            raise NotFound("This credential has no VC-JWT form.")
        return Response(
            bundle.jwt,
            media_type="text/plain",
            headers={"Content-Disposition": f'attachment; filename="{_filename(bundle, "jwt")}"'}
            | _CORS,
        )

    @router.get("/{key}/badge.png", response_model=None)
    def download_png(request: Request, key: str) -> Response:
        """The badge image with the credential baked in (OB 3.0 PNG baking)."""
        bundle = get(request, key)
        return Response(
            baked_badge(bundle, "png"),
            media_type="image/png",
            headers={"Content-Disposition": f'inline; filename="{_filename(bundle, "png")}"'},
        )

    @router.get("/{key}/badge.svg", response_model=None)
    def download_svg(request: Request, key: str) -> Response:
        """The badge image with the credential baked in (OB 3.0 SVG baking)."""
        bundle = get(request, key)
        return Response(
            baked_badge(bundle, "svg"),
            media_type="image/svg+xml",
            headers=_SVG_HEADERS
            | {"Content-Disposition": f'inline; filename="{_filename(bundle, "svg")}"'},
        )

    return router
