"""A size limit on every request body, enforced before any route, dependency, sign-in or
parser reads it.

``BodyLimit`` is plain ASGI (not ``BaseHTTPMiddleware``, which would buffer and cost a task
per request). A request whose ``Content-Length`` is over its route's limit is answered 413
at once: the app never runs and nothing of the body is read. A body without a length
(chunked, streamed) is counted as the app receives it; the message that takes it over the
limit is the last one read from the server, and the app gets ``TooLarge`` (a Starlette
``HTTPException``, so FastAPI's body parsing lets it through to the app's error handler)
instead of it, on that and every later ``receive``. The 413 asks the client to close the
connection (``Connection: close``): the rest of the body is never used.

Closed while the client is still sending, the socket would reset the connection and the
client could lose the 413 it has not read yet. So the 413 goes out whole, and its end
waits while what the client still sends is read and dropped (``_linger``: at most
``LINGER_SECONDS`` and ``LINGER_BYTES``), as nginx lingers on close.

The limit is ``MICROCRED_MAX_BODY_BYTES`` for every route except the few in
``larger_routes``, which is the one place a route's larger limit is declared.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import anyio
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.settings import Settings
from service.sources import csvimport

__all__ = ["BodyLimit", "RouteLimit", "TooLarge", "larger_routes", "size"]

# What a CSV upload carries besides the file: multipart boundaries and part headers.
_MULTIPART_ROOM = 64 * 1024


@dataclass(frozen=True)
class RouteLimit:
    """A route whose body may be larger than the default, and what to do when it is not."""

    method: str
    path: re.Pattern[str]
    max_bytes: int
    hint: str


def larger_routes(settings: Settings) -> tuple[RouteLimit, ...]:
    """The routes that need more than ``MICROCRED_MAX_BODY_BYTES``."""
    csv_mb = csvimport.MAX_BYTES // (1024 * 1024)
    return (
        RouteLimit(
            "POST",
            re.compile(r"/api/courses/[^/]+/evidence/import"),
            csvimport.MAX_BYTES + _MULTIPART_ROOM,
            f"Split the CSV file into files of at most {csv_mb} MB and import them one by one "
            "(docs/csv-import.md).",
        ),
        RouteLimit(
            "POST",
            re.compile(r"/api/evidence"),
            settings.max_push_body_bytes,
            "Send the results and verifications in smaller batches (several requests).",
        ),
    )


def size(n: int) -> str:
    """``n`` bytes as a person reads it (1 MiB, 512 KiB, 300 bytes)."""
    for unit, name in ((1024 * 1024, "MiB"), (1024, "KiB")):
        if n >= unit:
            return f"{n / unit:.3g} {name}"
    return f"{n} bytes"


class TooLarge(HTTPException):
    """The request body is over its route's limit (413)."""

    code = "body_too_large"
    title = "The request is too large"

    def __init__(self, *, max_bytes: int, hint: str) -> None:
        super().__init__(
            413,
            detail=f"The request body is larger than {size(max_bytes)} ({max_bytes} bytes), "
            "the limit for this address.",
            headers={"connection": "close"},
        )
        self.max_bytes = max_bytes
        self.hint = hint


Responder = Callable[[Scope, TooLarge], Response]


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length; counting still holds
    return None


LINGER_SECONDS = 2.0
LINGER_BYTES = 16 * 1024 * 1024  # a few socket buffers' worth


def _linger(receive: Receive, send: Send) -> Send:
    """``send`` for a 413: the response's last message is held back while the rest of the
    request is read and dropped (until the client stops sending, or the bounds)."""

    async def lingering(message: Message) -> None:
        if message["type"] != "http.response.body" or message.get("more_body", False):
            await send(message)
            return
        await send({**message, "more_body": True})
        dropped = 0
        with anyio.move_on_after(LINGER_SECONDS):
            while dropped < LINGER_BYTES:
                got = await receive()
                if got["type"] != "http.request" or not got.get("more_body", False):
                    break
                dropped += len(got.get("body", b""))
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return lingering


class BodyLimit:
    """ASGI middleware: 413 for a body over its route's limit (see the module docstring).

    ``respond(scope, error)`` renders the 413 sent before the app runs (the app's own error
    shape); a ``TooLarge`` the app did not turn into a response is rendered the same way.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        larger: Sequence[RouteLimit] = (),
        respond: Responder,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = tuple(larger)
        self.respond = respond

    def limit(self, method: str, path: str) -> tuple[int, str]:
        for route in self.larger:
            if route.method == method and route.path.fullmatch(path):
                return route.max_bytes, route.hint
        return self.max_bytes, "Send less data in one request."

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes, hint = self.limit(scope["method"], scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > max_bytes:
            await self.respond(scope, TooLarge(max_bytes=max_bytes, hint=hint))(
                scope, receive, _linger(receive, send)
            )
            return
        received = 0
        refused: TooLarge | None = None
        started = False

        async def counted() -> Message:
            nonlocal received, refused
            if refused is not None:
                raise refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    refused = TooLarge(max_bytes=max_bytes, hint=hint)
                    raise refused
            return message

        lingering = _linger(receive, send)

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            # the app's own answer to ``TooLarge``: it lingers as the middleware's does
            await (lingering if refused is not None else send)(message)

        try:
            await self.app(scope, counted, watched)
        except TooLarge as exc:
            if started:
                raise
            await self.respond(scope, exc)(scope, receive, lingering)
