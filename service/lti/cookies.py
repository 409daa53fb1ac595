"""Cookies that survive inside an LMS iframe.

Production (https): ``Secure; HttpOnly; SameSite=None; Partitioned`` (CHIPS), the only
combination a cross-site iframe keeps when third-party cookies are blocked.

Plain http is only accepted on loopback (local demo, test harnesses). Browsers treat
http://localhost and 127.0.0.1 as secure contexts and keep the Secure cookie, but non-browser
clients (Python's cookie jar) never send a Secure cookie over http, so on http a second,
``SameSite=Lax`` copy named ``<name>_legacy`` is set as well and accepted in its place.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from starlette.responses import Response

__all__ = ["LEGACY_SUFFIX", "read_iframe_cookie", "set_iframe_cookie"]

LEGACY_SUFFIX = "_legacy"


_SAFE = re.compile(r"^[A-Za-z0-9_.~-]{1,200}$")


def _cookie(name: str, value: str, attrs: list[str]) -> str:
    # Built by hand: Starlette's ``partitioned=`` needs Python 3.14's http.cookies. Names
    # and values are ours (state ids, url-safe tokens); anything else is refused.
    if not _SAFE.match(name) or not (value == "" or _SAFE.match(value)):
        raise ValueError("cookie name/value must be url-safe tokens")
    return "; ".join([f"{name}={value}", *attrs])


def set_iframe_cookie(
    response: Response,
    name: str,
    value: str,
    *,
    max_age: int | None,
    secure_request: bool,
) -> None:
    age = [f"Max-Age={max_age}"] if max_age else []
    response.headers.append(
        "set-cookie",
        _cookie(
            name, value, [*age, "Path=/", "Secure", "HttpOnly", "SameSite=None", "Partitioned"]
        ),
    )
    if not secure_request:
        response.headers.append(
            "set-cookie",
            _cookie(name + LEGACY_SUFFIX, value, [*age, "Path=/", "HttpOnly", "SameSite=Lax"]),
        )


def read_iframe_cookie(cookies: Mapping[str, str], name: str) -> str | None:
    return cookies.get(name) or cookies.get(name + LEGACY_SUFFIX) or None
