"""Development-only preview of the credential page with the sample credentials.

``/_preview/credentials/{scenario}`` (valid, revoked, expired, invalid, hostile) serves the
real page and download routes from :mod:`service.web.credential_samples`; the app mounts it
only outside production.
"""

from __future__ import annotations

from fastapi import Request

from service.web import credential_samples, credentials


def _load(_request: Request, key: str) -> credentials.CredentialBundle | None:
    try:
        document, report, learner = credential_samples.sample(key)
    except KeyError:
        return None
    return credentials.CredentialBundle(document=document, report=report, learner_name=learner)


router = credentials.make_router(_load, prefix="/_preview/credentials")
