"""The few HTML pages the LTI protocol itself needs (no templates: they run before any
session exists and must stay tiny). Dynamic values go in a JSON data block with ``<``
escaped, never into markup or script text; the scripts are static files
(``service/web/static``), since the pages' Content-Security-Policy allows no inline script.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Any

__all__ = ["json_block", "login_storage_page", "page"]


def json_block(data: dict[str, Any]) -> str:
    text = json.dumps(data).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="lti-cfg">{text}</script>'


def page(
    title: str,
    body_html: str,
    *,
    scripts: Sequence[str] = (),
    data: dict[str, Any] | None = None,
) -> str:
    """A minimal standalone page. ``body_html`` must already be escaped by the caller;
    ``scripts`` are file names under ``/static/``, run in order after the body."""
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title>"
        "<link rel='stylesheet' href='/static/microcred.css'></head><body>"
        "<header class='bar'><span class='brand'>microcred</span></header>"
        f"<main id='main'>{body_html}</main>"
        + (json_block(data) if data is not None else "")
        + "".join(f"<script src='/static/{html.escape(name)}'></script>" for name in scripts)
        + "</body></html>"
    )


def login_storage_page(*, auth_url: str, state: str, nonce: str, target: str, origin: str) -> str:
    """Login step when the platform offers platform storage: keep state and nonce there,
    then continue to the platform's auth endpoint (the cookie is set as well)."""
    body = (
        "<section class='card'><h1>Signing you in…</h1>"
        "<p>Continuing to your learning platform.</p>"
        "<noscript><p>JavaScript is needed to continue.</p></noscript></section>"
    )
    return page(
        "Signing in · microcred",
        body,
        scripts=("lti-storage.js", "lti-login.js"),
        data={
            "auth_url": auth_url,
            "state": state,
            "nonce": nonce,
            "target": target,
            "origin": origin,
        },
    )
