"""The demo LMS as its own FastAPI app (its own origin, so the tool iframe is third-party)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import Scope

from service import bodylimit
from service.demo import moodle_ws, pages
from service.demo.config import DemoConfig
from service.demo.course import Course, sample_course
from service.demo.platform import DemoPlatform, OAuthError, ServiceAuthError
from service.demo.router import router
from service.errors import ServiceError

__all__ = ["MAX_BODY_BYTES", "create_demo_app"]

# The largest body the demo LMS reads (token requests, scores, deep-linking responses,
# web-service calls and webhooks are all far smaller).
MAX_BODY_BYTES = 1024 * 1024


def _error(
    request: Request, *, status: int, code: str, title: str, detail: str, hint: str | None = None
) -> Response:
    path = request.url.path
    if path == "/token":
        # RFC 6749 §5.2 error body.
        return JSONResponse(
            {"error": code, "error_description": detail},
            status_code=status,
            headers={"Cache-Control": "no-store"},
        )
    if path.startswith("/api/"):
        return JSONResponse({"error": code, "detail": detail}, status_code=status)
    return pages.render(
        "error.html", status_code=status, title=title, detail=detail, hint=hint, code=code
    )


def _too_large(scope: Scope, exc: bodylimit.TooLarge) -> Response:
    response = _error(
        Request(scope),
        status=413,
        code=exc.code,
        title=exc.title,
        detail=exc.detail,
        hint=exc.hint,
    )
    response.headers.update(exc.headers or {})
    return response


def create_demo_app(
    config: DemoConfig, *, course: Course | None = None, http: httpx.Client | None = None
) -> FastAPI:
    """Build the LMS app. The signing key is loaded (or made) once, here."""
    platform = DemoPlatform(config, course or sample_course(), http=http)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        platform.close()

    app = FastAPI(
        title="microcred demo LMS",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.platform = platform
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    app.include_router(router)
    app.include_router(moodle_ws.router)

    app.add_middleware(bodylimit.BodyLimit, max_bytes=MAX_BODY_BYTES, respond=_too_large)

    @app.exception_handler(bodylimit.TooLarge)
    async def _body_too_large(request: Request, exc: bodylimit.TooLarge) -> Response:
        return _too_large(request.scope, exc)

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> Response:
        response = _error(
            request,
            status=exc.status_code,
            code=exc.code,
            title=exc.title,
            detail=exc.detail,
            hint=exc.hint,
        )
        if isinstance(exc, ServiceAuthError):
            # RFC 6750 §3: tell the client which scheme and what went wrong.
            response.headers["WWW-Authenticate"] = f'Bearer error="{exc.code}"'
        elif isinstance(exc, OAuthError) and exc.status_code == 401:
            response.headers["WWW-Authenticate"] = 'Bearer error="invalid_client"'
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
            for e in exc.errors()
        )
        return _error(
            request,
            status=422,
            code="bad_input",
            title="The request is not valid",
            detail=problems or "invalid request",
        )

    return app
