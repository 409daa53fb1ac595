"""Development-only previews with the sample credentials.

``/_preview/credentials/{scenario}`` (valid, revoked, expired, invalid, hostile) serves the
real page and download routes, and ``/_preview/ob2/assertions/{scenario}`` the OB 2.0
hosted documents, from :mod:`service.web.credential_samples`; the app mounts them only
outside production.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from sqlmodel import Session

from service.issuer import ob2_router
from service.web import credential_samples, credentials


def _load(_request: Request, _session: Session, key: str) -> credentials.CredentialBundle | None:
    try:
        document, report, learner = credential_samples.sample(key)
    except KeyError:
        return None
    return credentials.CredentialBundle(document=document, report=report, learner_name=learner)


router = credentials.make_router(_load, prefix="/_preview/credentials", ob2_prefix="/_preview/ob2")


# The OB 2.0 hosted documents of the same samples: "revoked" answers 410.
def _load_ob2(_session: Session, key: str) -> ob2_router.Ob2Credential | None:
    try:
        document, _report, _learner = credential_samples.sample(key)
    except KeyError:
        return None
    revoked = key == "revoked"
    return ob2_router.Ob2Credential(
        document=document,
        revoked=revoked,
        revocation_reason="Grade corrected after appeal." if revoked else None,
    )


def _load_achievement(_session: Session, achievement_id: str) -> dict[str, Any] | None:
    for scenario in ("valid", "revoked", "expired"):
        document, _report, _learner = credential_samples.sample(scenario)
        achievement: dict[str, Any] = document["credentialSubject"]["achievement"]
        if achievement["id"] == achievement_id:
            return achievement
    return None


def _load_issuer(_request: Request) -> dict[str, Any]:
    document, _report, _learner = credential_samples.sample("valid")
    issuer: dict[str, Any] = document["issuer"]
    return issuer


ob2_preview_router = ob2_router.make_router(
    _load_ob2,
    load_achievement=_load_achievement,
    load_issuer=_load_issuer,
    list_revoked=lambda _session: [("revoked", "Grade corrected after appeal.")],
    prefix="/_preview/ob2",
)
