"""Who may frame microcred's pages, and the Content-Security-Policy of every response.

microcred's pages live inside the LMS's iframe, so ``frame-ancestors`` cannot be
``'none'`` for them, and must never be ``*`` (reference/security.md §4.1, ASVS 3.4.6, W3):

- a page of a session (``/app``...) may be framed by its platform: the origins of the
  platform's issuer and OIDC auth URL, and the origin of the launch's
  ``launch_presentation.return_url`` (Canvas serves courses from the institution's host, not
  from its issuer ``canvas.instructure.com``); plus ``MICROCRED_EXTRA_FRAME_ANCESTORS``;
- the protocol pages of a login or launch: the platform of that login or launch;
- dynamic registration: the platform that is registering (its OpenID configuration URL);
- an error page of a framed path whose platform is not known: the registered, active
  platforms (an administrator who is registering one still sees the message);
- everything else (the public credential page, the issuer profile, JSON): ``'none'``.

Routes put the origins on ``request.state.frame_ancestors``; ``SecurityHeaders`` writes the
header. Every HTML page gets ``script-src 'self'`` (no inline scripts: the few the LTI
protocol needs are static files, their data in JSON blocks), ``object-src 'none'`` and
``base-uri 'none'``; JSON and other responses get ``default-src 'none'``. Every response
of a framed path gets ``Referrer-Policy: no-referrer`` (a URL there may carry the session
token).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Engine
from sqlmodel import col, select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.db.engine import UNAVAILABLE
from service.db.engine import session as db_session
from service.db.models import Platform
from service.lti.origins import STATE_KEY, origin, platform_origins
from service.settings import Settings

__all__ = ["SecurityHeaders", "html_policy"]

log = logging.getLogger(__name__)

# Paths whose HTML is shown inside the LMS's frame.
_FRAMED = ("/lti/", "/app")


def _known_platforms(engine: Engine) -> list[str]:
    with db_session(engine) as s:
        rows = s.exec(select(Platform).where(col(Platform.active).is_(True))).all()
    out: list[str] = []
    for p in rows:
        out += platform_origins(p)
    return list(dict.fromkeys(out))


def html_policy(ancestors: Iterable[str]) -> str:
    frame = " ".join(ancestors) or "'none'"
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        "img-src 'self' data: https:; object-src 'none'; base-uri 'none'; "
        f"frame-ancestors {frame}"
    )


OTHER_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"


class SecurityHeaders:
    """ASGI middleware: CSP (with ``frame-ancestors``), ``nosniff`` and, behind https, HSTS
    on every response that does not set its own."""

    def __init__(self, app: ASGIApp, *, settings: Settings, engine: Engine) -> None:
        self.app = app
        self.settings = settings
        self.engine = engine
        self.extra = [o for o in map(origin, settings.extra_frame_ancestors.split()) if o]
        self.hsts = settings.base_url.startswith("https://")
        self.known: list[str] = []  # the registered platforms' origins, last read

    async def _known(self) -> list[str]:
        """The registered platforms' origins; when the database does not answer (the page
        being sent may be the one that says so), the last ones read."""
        try:
            self.known = await run_in_threadpool(_known_platforms, self.engine)
        except UNAVAILABLE:
            log.warning("frame-ancestors: database unavailable, using the last platforms read")
        return self.known

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        path: str = scope["path"]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if "content-security-policy" not in headers:
                    if headers.get("content-type", "").startswith("text/html"):
                        ancestors = state.get(STATE_KEY)
                        if ancestors is None and path.startswith(_FRAMED):
                            ancestors = await self._known()
                        framed = [] if ancestors is None else [*ancestors, *self.extra]
                        headers["content-security-policy"] = html_policy(dict.fromkeys(framed))
                    else:
                        headers["content-security-policy"] = OTHER_POLICY
                headers.setdefault("x-content-type-options", "nosniff")
                if path.startswith(_FRAMED):
                    # The session token may be in these URLs (cookies blocked): never send
                    # it on as a Referer, error pages and redirects included.
                    headers.setdefault("referrer-policy", "no-referrer")
                if self.hsts:
                    headers.setdefault(
                        "strict-transport-security", "max-age=31536000; includeSubDomains"
                    )
            await send(message)

        await self.app(scope, receive, send_with_headers)
