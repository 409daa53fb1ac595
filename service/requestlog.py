"""Request ids and structured (JSON lines) logs.

Each HTTP request gets an id: the caller's ``X-Request-ID`` when it is a plain token (a
load balancer's), else a new one. It is answered in ``X-Request-ID``, set on every log
record written while the request runs (``RequestIdFilter``), written on the outbox rows
the request causes (``service.delivery.outbox.enqueue``) and bound again by the worker
while it delivers them, so one id follows an award from the launch to Credly.

``MICROCRED_LOG_FORMAT=json`` writes one JSON object per line (``JsonFormatter``); the
redaction of secrets and e-mail addresses (``service.logredact``) applies first, as in the
text format.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import random
import re
import time
from collections.abc import Iterator
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "JsonFormatter",
    "RequestContext",
    "RequestIdFilter",
    "bound",
    "current",
]

_SANE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_current: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "microcred_request_id", default=None
)


def current() -> str | None:
    """The id of the request (or the job of a request) being served, if any."""
    return _current.get()


@contextlib.contextmanager
def bound(request_id: str | None) -> Iterator[None]:
    """Log under ``request_id`` inside the block (a worker delivering a request's row)."""
    token = _current.set(request_id)
    try:
        yield
    finally:
        _current.reset(token)


def _incoming(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _SANE.fullmatch(text) else None
    return None


class RequestContext:
    """Pure ASGI middleware: the request id, and the request's metrics when the app keeps
    them (``service.metrics``): count and duration by route template and status.

    Plain ASGI rather than ``BaseHTTPMiddleware``, which runs every request through extra
    tasks and memory streams (app.py, ``QueueAfterEvidence``).
    """

    def __init__(self, app: ASGIApp, *, observe: Any = None) -> None:
        self.app = app
        self.observe = observe  # (scope, status, seconds) -> None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # A correlation id, not a secret: the random module's generator (seeded from the OS
        # at start) needs no system call per request, as secrets' os.urandom does.
        rid = _incoming(scope) or f"{random.getrandbits(128):032x}"
        token = _current.set(rid)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                headers.append((b"x-request-id", rid.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _current.reset(token)
            if self.observe is not None:
                self.observe(scope, status, time.perf_counter() - started)


class RequestIdFilter(logging.Filter):
    """Sets ``record.request_id`` (``-`` outside a request) for either format."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _current.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, exception."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or _current.get()
        if rid and rid != "-":
            out["request_id"] = rid
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure(*, level: str, json_lines: bool) -> None:
    """Root logging for a command: text or JSON lines, request ids on every record."""
    fmt = "%(levelname)s %(name)s [%(request_id)s]: %(message)s"
    logging.basicConfig(level=level, format=fmt)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())
        if json_lines:
            handler.setFormatter(JsonFormatter())
    # httpx logs a line per request at INFO: the worker's own lines say what each call was
    # for, and a URL may carry a query secret. DEBUG shows them again.
    if logging.getLevelName(level.upper()) != logging.DEBUG:
        logging.getLogger("httpx").setLevel(logging.WARNING)
