"""Origins that may frame microcred's pages (CSP ``frame-ancestors``; the header itself is
written by ``service.web.framing.SecurityHeaders``, which documents the rules)."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.requests import Request

from service.db.models import Platform
from service.lti.types import LaunchContext

__all__ = ["STATE_KEY", "allow", "launch_origin", "origin", "platform_origins"]

STATE_KEY = "frame_ancestors"  # on request.state


def origin(url: str | None) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL; None for anything else."""
    if not url:
        return None
    return _origin(url)


@functools.lru_cache(maxsize=1024)  # the same few platform URLs on every request
def _origin(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return None
    if any(c in parts.netloc for c in " ;,'\"\\") or "@" in parts.netloc:
        return None  # nothing that could break out of the header value
    return f"{parts.scheme}://{parts.netloc}".lower()


def platform_origins(platform: Platform, *, also: Iterable[str | None] = ()) -> list[str]:
    """The origins a platform frames microcred from, as far as its registration says."""
    found = [origin(platform.issuer), origin(platform.auth_login_url), *map(origin, also)]
    return [o for o in dict.fromkeys(found) if o]


def allow(request: Request, origins: Iterable[str | None]) -> None:
    """Let ``origins`` (URLs or origins) frame the response to ``request``."""
    kept = [o for o in map(origin, origins) if o]
    setattr(request.state, STATE_KEY, list(dict.fromkeys(kept)))


def launch_origin(launch: LaunchContext) -> str | None:
    """The LMS host that frames a launch's pages: its return URL, or for a deep-linking
    request (which may carry none) where the answer goes back to."""
    return origin(launch.return_url) or origin(
        str(launch.deep_linking.get("deep_link_return_url") or "")
    )
