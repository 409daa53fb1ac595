"""Request helpers for the LTI routes: form parameters and the outbound HTTP client."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import parse_qsl

import httpx
from fastapi import Depends, Request
from sqlalchemy import Engine

from service import outbound
from service.errors import BadInput
from service.lti import ratelimit
from service.settings import Settings

__all__ = [
    "LtiCall",
    "LtiCallDep",
    "get_async_http",
    "get_http",
    "lti_call",
    "request_params",
]

_lock = threading.Lock()
_URLENCODED = "application/x-www-form-urlencoded"
_MAX_FIELDS = 1000  # Starlette's default for a form


async def request_params(request: Request) -> dict[str, str]:
    """Query and (for POST) form fields as one flat mapping of strings (the last value of
    a repeated name, as Starlette's form).

    A url-encoded body, as platforms post the login and the launch, is split here
    (``parse_qsl``: a tenth of the CPU of Starlette's form parser on an id_token post);
    any other body goes through Starlette's parser. A malformed body is an empty form.
    """
    params: dict[str, str] = dict(request.query_params)
    if request.method == "POST":
        if request.headers.get("content-type", "").startswith(_URLENCODED):
            body = await request.body()
            with contextlib.suppress(ValueError):  # more fields than a form may have
                # as Starlette reads them: bytes as latin-1, %-escapes as UTF-8
                params.update(
                    parse_qsl(
                        body.decode("latin-1"),
                        keep_blank_values=True,
                        encoding="utf-8",
                        errors="replace",
                        max_num_fields=_MAX_FIELDS,
                    )
                )
        else:
            try:
                form = await request.form(max_fields=_MAX_FIELDS)
            except Exception:  # malformed bodies are treated as empty forms
                form = None
            if form is not None:
                for key, value in form.items():
                    if isinstance(value, str):
                        params[key] = value
    if any("\x00" in k or "\x00" in v for k, v in params.items()):
        raise BadInput("The request contains a NUL character.", hint="Start again from the course.")
    return params


def _shared(request: Request, name: str, make: Callable[..., Any]) -> Any:
    """``app.state.<name>``, made once per app with ``make(policy, timeout=...)``."""
    client = getattr(request.app.state, name, None)
    if client is None:
        with _lock:
            client = getattr(request.app.state, name, None)
            if client is None:
                settings = request.app.state.settings
                client = make(outbound.policy(settings), timeout=settings.lti_http_timeout_seconds)
                setattr(request.app.state, name, client)
    return client


async def get_http(request: Request) -> httpx.Client:
    """One shared client per app for calls to platforms (JWKS, tokens, NRPS, AGS, DR).

    A ``service.outbound`` client (address checks, deadline, byte cap; no redirects). Tests
    put a client with an ``httpx.MockTransport`` (or a platform's TestClient) in
    ``app.state.lti_http``. ``async`` only so FastAPI resolves it on the event loop instead
    of a thread-pool round trip (it never awaits; creating the client does no I/O).
    """
    client: httpx.Client = _shared(request, "lti_http", outbound.client)
    return client


async def get_async_http(request: Request) -> httpx.AsyncClient:
    """The ``async`` client for dynamic registration (``app.state.lti_http_async``; tests put
    one with an ``httpx.MockTransport`` there)."""
    client: httpx.AsyncClient = _shared(request, "lti_http_async", outbound.async_client)
    return client


@dataclass(frozen=True)
class LtiCall:
    """What the login and launch endpoints need of a request, after the rate limit."""

    params: dict[str, str]
    engine: Engine
    settings: Settings
    http: httpx.Client


async def lti_call(request: Request) -> LtiCall:
    """What the login and launch endpoints read first: the per-IP rate limit, then the
    request's parameters and the app's engine, settings and HTTP client. Awaited by the
    route itself rather than declared as dependencies: FastAPI resolves each dependency of
    a request in turn, at ~15 us each; five were ~5 % of a launch."""
    await ratelimit.limit_lti(request)
    return LtiCall(
        params=await request_params(request),
        engine=request.app.state.engine,
        settings=request.app.state.settings,
        http=await get_http(request),
    )


LtiCallDep = Annotated[LtiCall, Depends(lti_call)]
