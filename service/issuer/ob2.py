"""Open Badges 2.0 hosted documents built from an Open Badges 3.0 credential.

Legacy backpacks (Badgr / Canvas Credentials import, Moodle's backpack connection) speak
OB 2.0 only. Each OB 3.0 credential is re-expressed as a *hosted* OB 2.0 Assertion whose
BadgeClass and Issuer are also hosted, so a backpack verifies it by fetching the three URLs
(OB 2.0 §"HostedBadge", credentials.md §3). Nothing here signs anything: hosted
verification relies on HTTPS and on the assertion living on the issuer's origin.

* recipient — the OB 3.0 ``emailAddress`` IdentityObject is reused as is: OB 3.0 and OB 2.0
  share the ``sha256$hex(identity + salt)`` format, so no plaintext email is needed;
* revocation — a revoked assertion is answered with HTTP 410 and
  ``{id, revoked: true, revocationReason}``; the Issuer also names a ``RevocationList``.

Errors::

    BadInput
     └── NotExpressible   the credential has no hashed email recipient (OB 2.0 backpacks
                          match badges to accounts by email) or no achievement
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from service.errors import BadInput

__all__ = [
    "OB2_CONTEXT",
    "NotExpressible",
    "Ob2Urls",
    "assertion",
    "badge_class",
    "badge_key",
    "issuer_profile",
    "revocation_list",
    "revoked_assertion",
]

OB2_CONTEXT = "https://w3id.org/openbadges/v2"


class NotExpressible(BadInput):
    code = "not_expressible_as_ob2"
    title = "This credential has no Open Badges 2.0 form"


@dataclass(frozen=True)
class Ob2Urls:
    """Where the hosted documents live; every id below is built from ``base``."""

    base: str
    prefix: str = "/ob2"

    @property
    def root(self) -> str:
        return self.base.rstrip("/") + self.prefix

    def assertion(self, key: str) -> str:
        return f"{self.root}/assertions/{quote(key, safe='')}"

    def badge(self, key: str) -> str:
        return f"{self.root}/badges/{key}"

    def badge_image(self, key: str) -> str:
        return f"{self.root}/badges/{key}/image"

    @property
    def issuer(self) -> str:
        return f"{self.root}/issuer"

    @property
    def revocations(self) -> str:
        return f"{self.root}/revocations"


def badge_key(achievement_id: str) -> str:
    """A URL-safe, reversible key for an OB 3.0 achievement id (unpadded base64url), so that
    every assertion of one achievement points at the same BadgeClass without an index."""
    return base64.urlsafe_b64encode(achievement_id.encode()).decode().rstrip("=")


def achievement_id_from_key(key: str) -> str | None:
    """Inverse of :func:`badge_key`; None for a key that does not decode."""
    try:
        raw = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
        return raw.decode("utf-8") if badge_key(raw.decode("utf-8")) == key else None
    except (ValueError, UnicodeDecodeError):
        return None


def _subject(document: dict[str, Any]) -> dict[str, Any]:
    subject = document.get("credentialSubject")
    return subject if isinstance(subject, dict) else {}


def _achievement(document: dict[str, Any]) -> dict[str, Any]:
    achievement = _subject(document).get("achievement")
    if not isinstance(achievement, dict) or not isinstance(achievement.get("id"), str):
        raise NotExpressible("the credential has no achievement with an id")
    return achievement


def _recipient(document: dict[str, Any]) -> dict[str, Any]:
    for ident in _subject(document).get("identifier") or []:
        if (
            isinstance(ident, dict)
            and ident.get("identityType") == "emailAddress"
            and ident.get("hashed") is True
            and isinstance(ident.get("identityHash"), str)
            and ident["identityHash"].startswith("sha256$")
        ):
            recipient = {"type": "email", "hashed": True, "identity": ident["identityHash"]}
            if isinstance(ident.get("salt"), str):
                recipient["salt"] = ident["salt"]
            return recipient
    raise NotExpressible(
        "the credential has no hashed email recipient, which OB 2.0 backpacks need to "
        "match a badge to an account",
        hint="Learners with such credentials can use the OB 3.0 credential in a wallet.",
    )


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, dict):  # a language map: take English, else the first value
        for key in ("en", "en-GB", "en-US", *value.keys()):
            if isinstance(value.get(key), str):
                return str(value[key])
    return None


def _texts(source: dict[str, Any], fields: tuple[str, ...]) -> dict[str, str]:
    """The ``fields`` of ``source`` that hold text (:func:`_text`), in order."""
    return {f: text for f in fields if (text := _text(source.get(f)))}


def _https(value: Any) -> str | None:
    return value if isinstance(value, str) and value.startswith(("https://", "http://")) else None


def assertion(
    document: dict[str, Any], *, key: str, urls: Ob2Urls, image: str | None = None
) -> dict[str, Any]:
    """The hosted OB 2.0 Assertion for an OB 3.0 credential.

    Args:
        document: The OB 3.0 credential (as issued).
        key: The key the assertion is served under (``/ob2/assertions/{key}``).
        urls: Where the hosted documents live.
        image: Optional URL of this award's image.

    Returns:
        The Assertion JSON-LD document (OB 2.0 §Assertion: id, type, recipient, badge,
        verification, issuedOn; plus expires, evidence and narrative when present).

    Raises:
        NotExpressible: no hashed email recipient or no achievement.
    """
    achievement = _achievement(document)
    issued = document.get("awardedDate") or document.get("validFrom")
    if not isinstance(issued, str):
        raise NotExpressible("the credential has no validFrom date")
    out: dict[str, Any] = {
        "@context": OB2_CONTEXT,
        "type": "Assertion",
        "id": urls.assertion(key),
        "recipient": _recipient(document),
        "badge": urls.badge(badge_key(achievement["id"])),
        # Hosted: the backpack re-fetches ``id``, which lives on the issuer's origin.
        "verification": {"type": "HostedBadge"},
        "issuedOn": issued,
    }
    if isinstance(document.get("validUntil"), str):
        out["expires"] = document["validUntil"]
    if image:
        out["image"] = image
    evidence = []
    for item in document.get("evidence") or []:
        if not isinstance(item, dict):
            continue
        entry: dict[str, Any] = {"type": "Evidence"}
        if _https(item.get("id")):
            entry["id"] = item["id"]
        entry |= _texts(item, ("name", "description", "narrative", "genre", "audience"))
        if len(entry) > 1:
            evidence.append(entry)
    if evidence:
        out["evidence"] = evidence
    results = _subject(document).get("result") or []
    values = [r.get("value") for r in results if isinstance(r, dict) and _text(r.get("value"))]
    if values:
        out["narrative"] = "Level reached: " + ", ".join(str(v) for v in values)
    return out


def revoked_assertion(*, key: str, urls: Ob2Urls, reason: str | None) -> dict[str, Any]:
    """The body served with HTTP 410 for a revoked hosted assertion (OB 2.0 §Revocation)."""
    body: dict[str, Any] = {
        "@context": OB2_CONTEXT,
        "type": "Assertion",
        "id": urls.assertion(key),
        "revoked": True,
    }
    if reason:
        body["revocationReason"] = reason
    return body


def badge_class(achievement: dict[str, Any], *, urls: Ob2Urls) -> dict[str, Any]:
    """The hosted OB 2.0 BadgeClass for an OB 3.0 Achievement.

    Required by OB 2.0 and by Badgr's importer: id, type, name, description, image,
    criteria, issuer. ``image`` is the achievement's own http(s) image, else the hosted
    default image route.
    """
    if not isinstance(achievement.get("id"), str):
        raise NotExpressible("the achievement has no id")
    key = badge_key(achievement["id"])
    name = _text(achievement.get("name")) or "Achievement"
    own_image = achievement.get("image")
    own_image = own_image.get("id") if isinstance(own_image, dict) else own_image
    criteria_in = achievement.get("criteria")
    if not isinstance(criteria_in, dict):
        criteria_in = {}
    criteria: dict[str, Any] = {}
    if _https(criteria_in.get("id")):
        criteria["id"] = criteria_in["id"]
    criteria |= _texts(criteria_in, ("narrative",))
    if not criteria:
        criteria["narrative"] = f"Awarded for {name}."
    out: dict[str, Any] = {
        "@context": OB2_CONTEXT,
        "type": "BadgeClass",
        "id": urls.badge(key),
        "name": name,
        "description": _text(achievement.get("description")) or name,
        "image": _https(own_image) or urls.badge_image(key),
        "criteria": criteria,
        "issuer": urls.issuer,
    }
    alignments = []
    for a in achievement.get("alignment") or []:
        if not (isinstance(a, dict) and _text(a.get("targetName")) and _https(a.get("targetUrl"))):
            continue  # OB 2.0 AlignmentObject requires targetName and targetUrl
        entry = {"targetName": _text(a["targetName"]), "targetUrl": a["targetUrl"]}
        entry |= _texts(a, ("targetDescription", "targetFramework", "targetCode"))
        alignments.append(entry)
    if alignments:
        out["alignment"] = alignments
    tags = [t for t in achievement.get("tag") or [] if isinstance(t, str)]
    if tags:
        out["tags"] = tags
    return out


def issuer_profile(profile: dict[str, Any], *, urls: Ob2Urls) -> dict[str, Any]:
    """The hosted OB 2.0 Issuer Profile for the OB 3.0 issuer Profile.

    OB 2.0 issuers carry name, url and email (badgecheck warns without an email); the
    OB 3.0 ``id`` (a DID) has no OB 2.0 counterpart and is left out.

    Raises:
        NotExpressible: the profile lacks a name or an http(s) url.
    """
    name = _text(profile.get("name"))
    url = _https(profile.get("url"))
    if not name or not url:
        raise NotExpressible(
            "the issuer profile needs a name and an http(s) url for Open Badges 2.0",
            hint="Set the issuer's name and web address in the issuer profile.",
        )
    out: dict[str, Any] = {
        "@context": OB2_CONTEXT,
        "type": "Issuer",
        "id": urls.issuer,
        "name": name,
        "url": url,
    }
    if isinstance(profile.get("email"), str):
        out["email"] = profile["email"]
    out |= _texts(profile, ("description",))
    image = profile.get("image")
    image = image.get("id") if isinstance(image, dict) else image
    if _https(image):
        out["image"] = image
    out["revocationList"] = urls.revocations
    return out


def revocation_list(revoked: list[tuple[str, str | None]], *, urls: Ob2Urls) -> dict[str, Any]:
    """The issuer's OB 2.0 RevocationList: ``(assertion key, reason)`` pairs."""
    entries: list[dict[str, str]] = []
    for key, reason in revoked:
        entry = {"id": urls.assertion(key)}
        if reason:
            entry["revocationReason"] = reason
        entries.append(entry)
    return {
        "@context": OB2_CONTEXT,
        "type": "RevocationList",
        "id": urls.revocations,
        "issuer": urls.issuer,
        "revokedAssertions": entries,
    }
