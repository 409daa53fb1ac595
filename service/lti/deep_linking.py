"""Deep Linking 2.0 response (lti-dl v2.0 §4.2): the signed LtiDeepLinkingResponse that an
instructor's choice is auto-posted back with, as form field ``JWT``."""

from __future__ import annotations

import datetime as dt
import html
import secrets
from typing import Any

from sqlmodel import Session

from service import jws
from service.errors import BadInput
from service.lti import keys, pages, platforms
from service.lti.types import CLAIM, LaunchContext

__all__ = ["auto_post_page", "resource_link", "response_jwt"]

DL = "https://purl.imsglobal.org/spec/lti-dl/claim/"


def resource_link(
    *, url: str, title: str, text: str = "", custom: dict[str, str] | None = None
) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "ltiResourceLink", "url": url, "title": title[:200]}
    if text:
        item["text"] = text[:1000]
    if custom:
        item["custom"] = custom
    return item


def response_jwt(
    session: Session,
    *,
    context: LaunchContext,
    items: list[dict[str, Any]],
    now: dt.datetime,
) -> str:
    """Sign the response with the tool's current key (its kid is in /lti/jwks)."""
    if not context.is_deep_linking or not context.deep_linking.get("deep_link_return_url"):
        raise BadInput("this launch is not a deep linking request")
    issued = int(now.timestamp())
    claims: dict[str, Any] = {
        "iss": context.client_id,
        "aud": context.issuer,
        "iat": issued,
        "exp": issued + 600,
        "nonce": secrets.token_urlsafe(24),
        CLAIM + "deployment_id": context.deployment_id,
        CLAIM + "message_type": "LtiDeepLinkingResponse",
        CLAIM + "version": "1.3.0",
        DL + "content_items": items,
    }
    if "data" in context.deep_linking:
        claims[DL + "data"] = context.deep_linking["data"]  # echoed unchanged (§4.2.4)
    return jws.sign(claims, keys.signing_key(session), headers={"typ": "JWT"})


def auto_post_page(*, return_url: str, token: str) -> str:
    """An HTML form that posts the response to the platform's return URL."""
    url = platforms.check_url(return_url, what="deep_link_return_url")
    body = (
        "<section class='card'><h1>Adding to your course…</h1>"
        f"<form id='dl' data-autopost method='post' action='{html.escape(url, quote=True)}'>"
        f"<input type='hidden' name='JWT' value='{html.escape(token, quote=True)}'>"
        "<noscript><button type='submit'>Continue</button></noscript></form></section>"
    )
    return pages.page("Adding · microcred", body, scripts=("autopost.js",))
