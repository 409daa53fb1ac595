"""Routes for Open Badges 2.0 hosted assertions (legacy backpacks), over caller loaders.

``make_router`` serves, under ``/ob2`` (docs/ob2.md):

* ``GET /ob2/assertions/{key}`` — the hosted Assertion; **410 Gone** with
  ``{id, revoked: true, revocationReason}`` once revoked; 404 when unknown or when the
  credential has no OB 2.0 form (no hashed email recipient);
* ``GET /ob2/assertions/{key}/image`` — a PNG baked with the assertion (keyword
  ``openbadges``), for backpacks that import images;
* ``GET /ob2/badges/{badge_key}`` and ``…/image`` — the BadgeClass and its default image;
* ``GET /ob2/issuer`` — the Issuer profile; ``GET /ob2/revocations`` — the RevocationList.

The loaders keep this module ignorant of storage: the lead wires them to the credential
tables, and each route hands its loader the request's read session (``SessionDep``). All
documents are public (they hold only a salted hash of the recipient).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlmodel import Session

from service.deps import SessionDep
from service.issuer import badge_image, baking, ob2

__all__ = ["Ob2Credential", "make_router"]

MEDIA_TYPE = "application/ld+json"
_HEADERS = {
    # Browser-based backpacks and validators fetch these cross-origin.
    "Access-Control-Allow-Origin": "*",
    "Cache-Control": "public, max-age=300",
}


@dataclass(frozen=True)
class Ob2Credential:
    """What the assertion loader returns for one key."""

    document: dict[str, Any]
    revoked: bool = False
    revocation_reason: str | None = None


AssertionLoader = Callable[[Session, str], Ob2Credential | None]
AchievementLoader = Callable[[Session, str], dict[str, Any] | None]
IssuerLoader = Callable[[Request], dict[str, Any]]
Urls = Callable[[Request], ob2.Ob2Urls]
RevokedLister = Callable[[Session], Iterable[tuple[str, str | None]]]


def _json(body: dict[str, Any], status_code: int = 200, *, live: bool = False) -> JSONResponse:
    headers = dict(_HEADERS)
    if live or status_code >= 400:
        # Assertions and revocations must show a revocation at once; others may be cached.
        headers["Cache-Control"] = "no-cache"
    return JSONResponse(body, status_code=status_code, media_type=MEDIA_TYPE, headers=headers)


def _not_found(detail: str) -> JSONResponse:
    return JSONResponse(
        {"error": "not_found", "detail": detail},
        status_code=404,
        headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "no-store"},
    )


def make_router(
    load: AssertionLoader,
    *,
    load_achievement: AchievementLoader,
    load_issuer: IssuerLoader,
    list_revoked: RevokedLister,
    prefix: str = "/ob2",
) -> APIRouter:
    """Build the OB 2.0 router.

    Args:
        load: ``(session, key) -> Ob2Credential | None``: the OB 3.0 credential served as
            assertion ``key``, with its revocation state.
        load_achievement: ``(session, achievement_id) -> dict | None``: the OB 3.0
            Achievement with that id (as embedded in any of its credentials).
        load_issuer: ``(request) -> dict``: the OB 3.0 issuer Profile.
        list_revoked: ``(session) -> [(key, reason)]``: every revoked assertion (the
            issuer's revocation list).
        prefix: Mount point.

    Returns:
        The router; its documents' ids use ``settings.public_base_url`` when the app has
        settings, else the request's base URL.
    """
    router = APIRouter(prefix=prefix, tags=["open badges 2.0"])

    def urls(request: Request) -> ob2.Ob2Urls:
        settings = getattr(request.app.state, "settings", None)
        base = settings.public_base_url if settings is not None else str(request.base_url)
        return ob2.Ob2Urls(base=base, prefix=prefix)

    _add_assertion_routes(router, load, urls)
    _add_badge_routes(router, load_achievement, urls)
    _add_issuer_routes(router, load_issuer, list_revoked, urls)
    return router


def _add_assertion_routes(router: APIRouter, load: AssertionLoader, urls: Urls) -> None:
    """The hosted assertions and their baked images."""

    @router.get("/assertions/{key}", response_model=None)
    def get_assertion(request: Request, session: SessionDep, key: str) -> Response:
        """OB 2.0 hosted Assertion; 410 Gone when revoked."""
        found = load(session, key)
        if found is None:
            return _not_found("No badge assertion is published under this address.")
        u = urls(request)
        if found.revoked:
            return _json(
                ob2.revoked_assertion(key=key, urls=u, reason=found.revocation_reason), 410
            )
        try:
            body = ob2.assertion(found.document, key=key, urls=u, image=f"{u.assertion(key)}/image")
        except ob2.NotExpressible as exc:
            return _not_found(f"This credential has no Open Badges 2.0 form: {exc.detail}.")
        return _json(body, live=True)

    @router.get("/assertions/{key}/image", response_model=None)
    def get_assertion_image(request: Request, session: SessionDep, key: str) -> Response:
        """The badge image baked with the OB 2.0 assertion."""
        found = load(session, key)
        session.close()  # the read is over: no pooled connection held while baking
        if found is None or found.revoked:
            return _not_found("No badge assertion is published under this address.")
        u = urls(request)
        try:
            # The same document the assertion URL serves, so either import path agrees.
            body = ob2.assertion(found.document, key=key, urls=u, image=f"{u.assertion(key)}/image")
        except ob2.NotExpressible as exc:
            return _not_found(f"This credential has no Open Badges 2.0 form: {exc.detail}.")
        achievement = found.document["credentialSubject"]["achievement"]
        level, rank = badge_image.level_hint(achievement)
        png = baking.bake_png_ob2(badge_image.default_badge_png(level=level, rank=rank), body)
        return Response(png, media_type="image/png", headers=_HEADERS)


def _add_badge_routes(router: APIRouter, load_achievement: AchievementLoader, urls: Urls) -> None:
    """The BadgeClasses and their images."""

    def achievement_for(session: Session, badge_key: str) -> dict[str, Any] | None:
        achievement_id = ob2.achievement_id_from_key(badge_key)
        return None if achievement_id is None else load_achievement(session, achievement_id)

    @router.get("/badges/{badge_key}", response_model=None)
    def get_badge(request: Request, session: SessionDep, badge_key: str) -> Response:
        """OB 2.0 BadgeClass."""
        achievement = achievement_for(session, badge_key)
        if achievement is None:
            return _not_found("No badge class is published under this address.")
        return _json(ob2.badge_class(achievement, urls=urls(request)))

    @router.get("/badges/{badge_key}/image", response_model=None)
    def get_badge_image(session: SessionDep, badge_key: str) -> Response:
        """The BadgeClass image (the default badge for its level)."""
        achievement = achievement_for(session, badge_key)
        if achievement is None:
            return _not_found("No badge class is published under this address.")
        level, rank = badge_image.level_hint(achievement)
        return Response(
            badge_image.default_badge_png(level=level, rank=rank),
            media_type="image/png",
            headers=_HEADERS,
        )


def _add_issuer_routes(
    router: APIRouter, load_issuer: IssuerLoader, list_revoked: RevokedLister, urls: Urls
) -> None:
    """The issuer profile and its revocation list."""

    @router.get("/issuer", response_model=None)
    def get_issuer(request: Request) -> Response:
        """OB 2.0 Issuer profile."""
        try:
            body = ob2.issuer_profile(load_issuer(request), urls=urls(request))
        except ob2.NotExpressible as exc:
            return _not_found(f"The issuer has no Open Badges 2.0 profile: {exc.detail}.")
        return _json(body)

    @router.get("/revocations", response_model=None)
    def get_revocations(request: Request, session: SessionDep) -> Response:
        """OB 2.0 RevocationList of the issuer."""
        body = ob2.revocation_list(list(list_revoked(session)), urls=urls(request))
        return _json(body, live=True)
