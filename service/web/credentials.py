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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote, urlencode

import segno
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from markupsafe import Markup, escape
from sqlmodel import Session

from service.deps import SessionDep
from service.errors import NotFound
from service.issuer import badge_image, baking
from service.issuer.types import VerificationReport
from service.web.credential_view import CredentialView, view_model, view_model_title
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
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{escape(label)}" ', 1)
    return Markup(svg)  # noqa: S704 - generated by segno from an escaped label


# --- rendering ---------------------------------------------------------------------------


def render_credential_page(
    request: Request | None,
    *,
    document: dict[str, Any],
    report: VerificationReport,
    jwt_available: bool,
    urls: CredentialPageUrls,
    learner_name: str | None = None,
) -> HTMLResponse:
    """Render the public page for one credential.

    ``learner_name`` is the display name to show (the document usually carries only a
    hashed identifier). The time now only refines the wording of the expiry banner: the
    verdict itself comes from ``report``.
    """
    view = view_model(document, report, now=datetime.now(UTC), learner_name=learner_name)
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


Loader = Callable[[Request, Session, str], CredentialBundle | None]

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


def badge_images(bundle: CredentialBundle) -> tuple[bytes, bytes]:
    """The (PNG, SVG) images to bake into: the bundle's own where given, else defaults."""
    view = view_model(bundle.document, bundle.report, now=datetime.now(UTC))
    level, rank, alt = view.level, view.level_rank, view.image_alt
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
        png, svg = badge_images(dataclasses.replace(bundle, image=None))
        return baking.bake(png if kind == "png" else svg, bundle.document)


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


def _file(
    bundle: CredentialBundle,
    body: bytes | str,
    ext: str,
    media_type: str,
    disposition: str,
    headers: dict[str, str],
) -> Response:
    """One of the credential's files, named after the learner and the achievement."""
    named = {"Content-Disposition": f'{disposition}; filename="{_filename(bundle, ext)}"'}
    return Response(body, media_type=media_type, headers=headers | named)


def _found(bundle: CredentialBundle | None) -> CredentialBundle:
    """The loaded credential, or 404 for an unknown key."""
    if bundle is None:
        raise NotFound(
            "No credential is published under this address.",
            hint="Check the link; a credential page address ends with its identifier.",
        )
    return bundle


def _page_urls(
    request: Request, key: str, bundle: CredentialBundle, *, prefix: str, ob2_prefix: str | None
) -> CredentialPageUrls:
    """The page's links, at the public base URL when the app has settings."""
    base = str(request.base_url).rstrip("/")
    settings = getattr(request.app.state, "settings", None)
    if settings is not None:
        base = settings.public_base_url
    ob2 = None if ob2_prefix is None else f"{base}{ob2_prefix}/assertions/{quote(key, safe='')}"
    urls = credential_urls(base, key, prefix=prefix, ob2_assertion=ob2)
    return urls if bundle.jwt else dataclasses.replace(urls, jwt=None)


def _signed(bundle: CredentialBundle, kind: str) -> Response:
    """The signed document, as content negotiation chose (``json`` or ``jwt``)."""
    if kind == "json":
        return JSONResponse(
            bundle.document,
            media_type="application/vc+ld+json",
            headers={"Vary": "Accept"} | _CORS,
        )
    if bundle.jwt is None:
        raise NotFound(
            "This credential has no VC-JWT form.",
            hint="Ask for application/vc+ld+json to get the signed JSON.",
        )
    return Response(bundle.jwt, media_type="application/vc+jwt", headers={"Vary": "Accept"} | _CORS)


def make_router(
    load: Loader, *, prefix: str = "/credentials", ob2_prefix: str | None = None
) -> APIRouter:
    """Routes for the page and its downloads, reading credentials through ``load``.

    ``load(request, session, key)`` (the route's read session, ``SessionDep``) returns a
    :class:`CredentialBundle` (with a fresh verification report) or None for an unknown key,
    which becomes a 404. With ``ob2_prefix`` (where
    :mod:`service.issuer.ob2_router` is mounted, under the same keys) the page also links
    the Open Badges 2.0 hosted assertion for older backpacks.
    """
    router = APIRouter(prefix=prefix, tags=["credentials"])

    def fetch(request: Request, session: Session, key: str) -> CredentialBundle:
        """The credential, read and verified; the read ends here, so the pooled connection
        is not held while the page is rendered or the badge baked."""
        bundle = _found(load(request, session, key))
        session.close()
        return bundle

    @router.get("/{key}", response_model=None)
    def page(request: Request, session: SessionDep, key: str) -> Response:
        """The credential: HTML page, or the signed document by content negotiation."""
        bundle = fetch(request, session, key)
        kind = _wants(request)
        if kind != "html":
            return _signed(bundle, kind)
        response = render_credential_page(
            request,
            document=bundle.document,
            report=bundle.report,
            jwt_available=bundle.jwt is not None,
            urls=_page_urls(request, key, bundle, prefix=prefix, ob2_prefix=ob2_prefix),
            learner_name=bundle.learner_name,
        )
        response.headers["Vary"] = "Accept"
        return response

    @router.get("/{key}/credential.json", response_model=None)
    def download_json(request: Request, session: SessionDep, key: str) -> Response:
        """The signed credential as a JSON file (embedded proof)."""
        bundle = fetch(request, session, key)
        body = json.dumps(bundle.document, indent=2, ensure_ascii=False).encode()
        return _file(bundle, body, "json", "application/vc+ld+json", "attachment", _CORS)

    @router.get("/{key}/credential.jwt", response_model=None)
    def download_jwt(request: Request, session: SessionDep, key: str) -> Response:
        """The credential as a VC-JWT (compact JWS) file."""
        bundle = fetch(request, session, key)
        if bundle.jwt is None:
            raise NotFound("This credential has no VC-JWT form.")
        return _file(bundle, bundle.jwt, "jwt", "text/plain", "attachment", _CORS)

    @router.get("/{key}/badge.png", response_model=None)
    def download_png(request: Request, session: SessionDep, key: str) -> Response:
        """The badge image with the credential baked in (OB 3.0 PNG baking)."""
        bundle = fetch(request, session, key)
        return _file(bundle, baked_badge(bundle, "png"), "png", "image/png", "inline", {})

    @router.get("/{key}/badge.svg", response_model=None)
    def download_svg(request: Request, session: SessionDep, key: str) -> Response:
        """The badge image with the credential baked in (OB 3.0 SVG baking)."""
        bundle = fetch(request, session, key)
        svg = baked_badge(bundle, "svg")
        return _file(bundle, svg, "svg", "image/svg+xml", "inline", _SVG_HEADERS)

    return router
