"""Public credential pages: the credential page renderer and the OB 2.0 hosted documents,
reading issued credentials through the issuer and verifying each one live. The loaders read
in the session each route takes from ``SessionDep``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session, select

from service.db.models import Credential
from service.db.types import utcnow
from service.deps import SessionDep
from service.errors import NotFound
from service.issuer import ob2_router, repository
from service.issuer import service as issuer
from service.policies import badge
from service.web import credentials
from service.web.templating import render

home = APIRouter()


@home.get("/", include_in_schema=False)
def home_page(request: Request) -> HTMLResponse:
    """What this server is, for a person who opens its address: verifiers and LMS admins."""
    settings = request.app.state.settings
    base = settings.public_base_url
    return render(request, "home.html", issuer_name=settings.issuer_name, base=base)


def _load(request: Request, s: Session, key: str) -> credentials.CredentialBundle | None:
    settings = request.app.state.settings
    row = repository.credential_by_uuid(s, key)
    if row is None:
        return None
    report = issuer.verify_input(s, settings, row.document, now=utcnow())
    subject = row.document.get("credentialSubject", {})
    subject = subject if isinstance(subject, dict) else {}
    achievement = subject.get("achievement")
    shown = achievement.get("image") if isinstance(achievement, dict) else None
    # The image the credential was issued with, designed by its instructor: the badge
    # downloads are baked into it (else into the default badge of the level).
    sha = badge.sha_of_url(
        settings.public_base_url, shown.get("id") if isinstance(shown, dict) else None
    )
    designed = badge.image(s, sha) if sha is not None else None
    name = subject.get("name")
    return credentials.CredentialBundle(
        document=row.document,
        report=report,
        jwt=row.jwt,
        image=designed.data if designed is not None else None,
        learner_name=name if isinstance(name, str) else None,
    )


images = APIRouter()


@images.get(badge.PATH_PREFIX + "{sha256}.png", include_in_schema=False)
def badge_image(session: SessionDep, sha256: str) -> Response:
    """A badge image an instructor uploaded; never changes under its address."""
    row = badge.image(session, sha256) if len(sha256) == 64 else None
    if row is None:
        raise NotFound("no such badge image")
    return Response(
        row.data,
        media_type=row.media_type,
        headers={
            "Cache-Control": "public, max-age=31536000, immutable",
            "X-Content-Type-Options": "nosniff",
            "Access-Control-Allow-Origin": "*",
        },
    )


def _load_ob2(s: Session, key: str) -> ob2_router.Ob2Credential | None:
    row = repository.credential_by_uuid(s, key)
    if row is None:
        return None
    return ob2_router.Ob2Credential(
        document=row.document, revoked=row.revoked, revocation_reason=row.revocation_reason
    )


def _load_achievement(s: Session, achievement_id: str) -> dict[str, Any] | None:
    query = select(Credential).where(Credential.achievement_id == achievement_id).limit(1)
    row = s.exec(query).first()
    if row is None:
        return None
    achievement = row.document.get("credentialSubject", {}).get("achievement")
    return achievement if isinstance(achievement, dict) else None


def _load_issuer(request: Request) -> dict[str, Any]:
    return issuer.profile_document(request.app.state.settings)


def _list_revoked(s: Session) -> list[tuple[str, str | None]]:
    rows = s.exec(select(Credential).where(Credential.revoked == True)).all()  # noqa: E712
    return [(r.uuid, r.revocation_reason) for r in rows]


def routers() -> list[APIRouter]:
    """The home page, the credential page (with downloads) and the OB 2.0 hosted documents."""
    return [
        home,
        images,
        credentials.make_router(_load, prefix="/credentials", ob2_prefix="/ob2"),
        ob2_router.make_router(
            _load_ob2,
            load_achievement=_load_achievement,
            load_issuer=_load_issuer,
            list_revoked=_list_revoked,
            prefix="/ob2",
        ),
    ]
