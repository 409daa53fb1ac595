"""Request helpers for the LTI routes: form parameters and the outbound HTTP client."""

from __future__ import annotations

import threading
from typing import Annotated

import httpx
from fastapi import Depends, Request

from service.errors import BadInput

__all__ = ["HttpDep", "ParamsDep", "get_http", "request_params"]

_lock = threading.Lock()


async def request_params(request: Request) -> dict[str, str]:
    """Query and (for POST) url-encoded form fields as one flat mapping of strings.

    Read in an async dependency so the sync route itself never awaits the body.
    """
    params: dict[str, str] = dict(request.query_params)
    if request.method == "POST":
        try:
            form = await request.form()
        except Exception:  # malformed bodies are treated as empty forms
            form = None
        if form is not None:
            for key, value in form.items():
                if isinstance(value, str):
                    params[key] = value
    if any("\x00" in k or "\x00" in v for k, v in params.items()):
        raise BadInput("The request contains a NUL character.", hint="Start again from the course.")
    return params


def get_http(request: Request) -> httpx.Client:
    """One shared client per app for calls to platforms (JWKS, tokens, NRPS, AGS, DR).

    Tests put a client with an ``httpx.MockTransport`` (or a platform's TestClient) in
    ``app.state.lti_http``.
    """
    client: httpx.Client | None = getattr(request.app.state, "lti_http", None)
    if client is None:
        with _lock:
            client = getattr(request.app.state, "lti_http", None)
            if client is None:
                timeout = request.app.state.settings.lti_http_timeout_seconds
                client = httpx.Client(timeout=timeout, follow_redirects=False)
                request.app.state.lti_http = client
    return client


ParamsDep = Annotated[dict[str, str], Depends(request_params)]
HttpDep = Annotated[httpx.Client, Depends(get_http)]
