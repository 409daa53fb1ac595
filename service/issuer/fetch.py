"""Fetching remote credentials, DID documents, keys and status lists (httpx, bounded).

Used only where the caller asks for network access (``microcred verify URL`` and its
``--allow-network`` option); issuing and verifying this deployment's own credentials
never touch the network. The client comes from ``service.outbound``: https only on every
hop (redirects are followed, at most 5, each checked again; plain http reaches only this
machine, in development), no private addresses in production, a total deadline and a 2 MB
cap.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from service import outbound
from service.errors import DependencyFailed

__all__ = ["ACCEPT_CREDENTIAL", "fetch_json", "fetch_text"]

ACCEPT_CREDENTIAL = "application/vc+ld+json, application/vc+jwt;q=0.9, application/json;q=0.8"
MAX_BYTES = 2_000_000
TIMEOUT = httpx.Timeout(10.0, connect=5.0)


def fetch_text(
    url: str, *, accept: str = "application/json", client: httpx.Client | None = None
) -> str:
    """GET ``url`` and return the body text (https only, at most 2 MB; plain http only to
    this machine in development).

    Raises:
        DependencyFailed: not an https URL, network error, non-2xx answer or an oversized
            body.
    """
    if not url.startswith(("https://", "http://")):
        raise DependencyFailed(f"{url} is not an https:// URL")
    own = client is None
    http = client or outbound.client(
        outbound.default_policy(https_only=True, max_bytes=MAX_BYTES),
        timeout=TIMEOUT,
        follow_redirects=True,
    )
    try:
        # outbound's transport reads the body under MAX_BYTES (TooLarge beyond it)
        resp = http.get(url, headers={"Accept": accept})
    except httpx.HTTPError as exc:
        raise DependencyFailed(f"GET {url} failed: {outbound.describe(exc)}") from exc
    finally:
        if own:
            http.close()
    if resp.status_code // 100 != 2:
        raise DependencyFailed(f"GET {url} answered HTTP {resp.status_code}")
    return resp.text


def fetch_json(url: str, *, client: httpx.Client | None = None) -> Any:
    """GET ``url`` and parse it as JSON."""
    text = fetch_text(url, client=client)
    try:
        return json.loads(text)
    except ValueError as exc:
        raise DependencyFailed(f"GET {url} did not return JSON") from exc
