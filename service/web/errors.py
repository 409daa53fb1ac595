"""One place that turns errors into responses: JSON for the API, a friendly page elsewhere.

No stack trace and no unescaped input ever reaches the client.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope

from service.bodylimit import TooLarge
from service.db.engine import UNAVAILABLE
from service.errors import ServiceError, TooManyRequests
from service.web.templating import render

log = logging.getLogger(__name__)


def wants_json(request: Request) -> bool:
    if request.url.path.startswith("/api/") or request.url.path == "/verify":
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def error_response(
    request: Request,
    *,
    status_code: int,
    code: str,
    title: str,
    detail: str,
    hint: str | None = None,
    as_json: bool | None = None,
) -> Response:
    if wants_json(request) if as_json is None else as_json:
        body: dict[str, str] = {"error": code, "detail": detail}
        if hint:
            body["hint"] = hint
        return JSONResponse(body, status_code=status_code)
    return render(
        request,
        "error.html",
        status_code=status_code,
        title=title,
        detail=detail,
        hint=hint,
        code=code,
    )


def too_large(request: Request, exc: TooLarge) -> Response:
    """The 413 of a body over its route's limit (``service.bodylimit``): a page for a
    browser's form post (it asks for HTML), JSON for every other client (``/verify``'s and
    the API's: curl asks for ``*/*``)."""
    response = error_response(
        request,
        status_code=413,
        code=exc.code,
        title=exc.title,
        detail=exc.detail,
        hint=exc.hint,
        as_json=wants_json(request) or "text/html" not in request.headers.get("accept", ""),
    )
    response.headers.update(exc.headers or {})
    return response


def too_large_before_app(scope: Scope, exc: TooLarge) -> Response:
    """``too_large`` for ``bodylimit.BodyLimit``, which answers before the app runs."""
    return too_large(Request(scope), exc)


# The error body of the JSON API, as OpenAPI documents it (FastAPI's default 422 schema, a list
# of pydantic errors, is not what error_response sends).
ERROR_SCHEMA = {
    "title": "Error",
    "type": "object",
    "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string", "description": "A stable code, e.g. bad_input"},
        "detail": {"type": "string", "description": "What went wrong"},
        "hint": {"type": "string", "description": "What to do about it"},
    },
}


def _document_errors(app: FastAPI) -> None:
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = build()
            schemas = doc.get("components", {}).get("schemas", {})
            if "HTTPValidationError" in schemas:
                schemas["HTTPValidationError"] = ERROR_SCHEMA
                schemas.pop("ValidationError", None)
        return app.openapi_schema or build()

    app.openapi = openapi  # type: ignore[method-assign]


def install(app: FastAPI) -> None:
    _document_errors(app)
    app.exception_handler(TooLarge)(_too_large)
    app.exception_handler(ServiceError)(_service_error)
    app.exception_handler(RequestValidationError)(_validation)
    app.exception_handler(StarletteHTTPException)(_http)
    for kind in UNAVAILABLE:
        app.add_exception_handler(kind, _database_unavailable)
    app.add_exception_handler(DataError, _unstorable)
    app.exception_handler(Exception)(_unexpected)


async def _too_large(request: Request, exc: TooLarge) -> Response:
    return too_large(request, exc)


async def _service_error(request: Request, exc: ServiceError) -> Response:
    if exc.status_code >= 500 and not isinstance(exc, TooManyRequests):  # Busy: no flood
        log.error("%s: %s", exc.code, exc.detail)
    response = error_response(
        request,
        status_code=exc.status_code,
        code=exc.code,
        title=exc.title,
        detail=exc.detail,
        hint=exc.hint,
    )
    response.headers.update(exc.headers)
    return response


async def _validation(request: Request, exc: RequestValidationError) -> Response:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors()
    )
    return error_response(
        request,
        status_code=422,
        code="bad_input",
        title="The request is not valid",
        detail=problems or "invalid request",
    )


async def _http(request: Request, exc: StarletteHTTPException) -> Response:
    return error_response(
        request,
        status_code=exc.status_code,
        code="http_" + str(exc.status_code),
        title="Not found" if exc.status_code == 404 else "Request failed",
        detail=str(exc.detail),
    )


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    # The driver's message can carry the host and user: the log has the class only.
    log.error(
        "database unavailable on %s %s: %s",
        request.method,
        request.url.path,
        type(exc).__name__,
    )
    response = error_response(
        request,
        status_code=503,
        code="database_unavailable",
        title="microcred cannot reach its database",
        detail="The database did not answer, so your request did not complete.",
        hint="Try again in a minute. Administrators: check that the database is running "
        "and reachable from microcred (its /readyz says whether it is).",
    )
    response.headers["retry-after"] = "30"
    return response


async def _unstorable(request: Request, exc: Exception) -> Response:
    # DB-API DataError: the data itself (PostgreSQL: a NUL character in text, a number
    # out of range). The class only in the log: the values may be anyone's input.
    log.warning("unstorable value on %s %s", request.method, request.url.path)
    return error_response(
        request,
        status_code=422,
        code="bad_input",
        title="The request is not valid",
        detail="The request holds a value microcred cannot store or look up "
        "(a NUL character, or a number out of range).",
        hint="Remove control characters and check the numbers, then send it again.",
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(
        request,
        status_code=500,
        code="internal",
        title="Something went wrong",
        detail="An unexpected error occurred. It has been logged.",
        hint="Try again; if it keeps happening, tell your administrator the time it happened.",
    )
