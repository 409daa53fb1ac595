"""Request helpers for the LTI routes: form parameters and the outbound HTTP client."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Annotated

import httpx
from fastapi import Depends, Request
from sqlalchemy import Engine

from service.errors import BadInput
from service.lti import ratelimit
from service.settings import Settings

__all__ = [
    "EngineDep",
    "HttpDep",
    "LtiCall",
    "LtiCallDep",
    "ParamsDep",
    "SettingsDep",
    "get_engine",
    "get_http",
    "get_settings",
    "lti_call",
    "request_params",
]

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


async def get_http(request: Request) -> httpx.Client:
    """One shared client per app for calls to platforms (JWKS, tokens, NRPS, AGS, DR).

    Tests put a client with an ``httpx.MockTransport`` (or a platform's TestClient) in
    ``app.state.lti_http``. ``async`` only so FastAPI resolves it on the event loop instead
    of a thread-pool round trip (it never awaits; creating the client does no I/O).
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


async def get_engine(request: Request) -> Engine:
    """``service.deps.EngineDep`` without the thread-pool round trip FastAPI makes for a
    sync dependency (the launch path resolves several per request)."""
    engine: Engine = request.app.state.engine
    return engine


async def get_settings(request: Request) -> Settings:
    """``service.deps.SettingsDep`` resolved on the event loop (see ``get_engine``)."""
    settings: Settings = request.app.state.settings
    return settings


ParamsDep = Annotated[dict[str, str], Depends(request_params)]
EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
HttpDep = Annotated[httpx.Client, Depends(get_http)]


@dataclass(frozen=True)
class LtiCall:
    """What the login and launch endpoints need of a request, after the rate limit."""

    params: dict[str, str]
    engine: Engine
    settings: Settings
    http: httpx.Client


async def lti_call(request: Request) -> LtiCall:
    """One dependency for the login and launch endpoints: the per-IP rate limit, then the
    request's parameters and the app's engine, settings and HTTP client. FastAPI resolves
    each dependency of a request in turn, at ~15 us each; five were ~5 % of a launch."""
    await ratelimit.limit_lti(request)
    return LtiCall(
        params=await request_params(request),
        engine=request.app.state.engine,
        settings=request.app.state.settings,
        http=await get_http(request),
    )


LtiCallDep = Annotated[LtiCall, Depends(lti_call)]
