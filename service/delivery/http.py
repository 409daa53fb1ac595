"""The one place connectors call httpx: errors mapped onto the connector error tree, and
each request summarised (method, path, status, time; never headers or secrets).

The clients come from ``service.outbound``: an address it refuses (private, loopback in
production) is final (``NotConfigured``, dead letter), an oversized answer is final
(``Rejected``), and timeouts and connection failures stay retryable (classified by
``service.httpretry``, as for the LMS pulls)."""

from __future__ import annotations

import time
from typing import Any

import httpx

from service import httpretry, outbound
from service.delivery.errors import (
    ConnectionFailed,
    ConnectorError,
    NotConfigured,
    NotReady,
    Rejected,
    ServerError,
    TimedOut,
    UnexpectedAnswer,
    error_for_status,
)
from service.delivery.outbox import AttemptRecord
from service.delivery.types import Clock

__all__ = ["HttpConnector", "json_of", "request"]


class HttpConnector:
    """Base of the connectors that call a repository over HTTP: their own ``outbound``
    client (10 s per request, 5 s to connect; tests pass one) and the worker's clock."""

    def __init__(self, client: httpx.Client | None = None, *, clock: Clock) -> None:
        self._client = client or outbound.client(
            outbound.default_policy(), timeout=httpx.Timeout(10.0, connect=5.0)
        )
        self._clock = clock

    def close(self) -> None:
        self._client.close()


def request(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    record: AttemptRecord,
    clock: Clock,
    what: str = "",
    **kw: Any,
) -> httpx.Response:
    """Send one request (``kw``: ``httpx.Client.request``'s keyword arguments); return a
    2xx response or raise a ``ConnectorError``."""
    shown = httpx.URL(url).copy_with(query=None).path
    params = kw.get("params")
    if params:
        shown += "?" + "&".join(f"{k}={v}" for k, v in params.items())
    label = f"{method} {shown}" + (f" ({what})" if what else "")
    if record.send_deadline is not None and clock() >= record.send_deadline:
        record.note(f"{label} -> not sent: the lease is about to expire")
        raise NotReady(f"{label}: not sent, this worker's lease on the row is about to expire")
    t0 = time.monotonic()
    try:
        response = client.request(method, url, **kw)
    except httpx.TransportError as exc:
        failed = httpretry.failure(exc)
        record.note(f"{label} -> {failed.note}")
        raise _error(failed, label) from exc
    ms = int((time.monotonic() - t0) * 1000)
    excerpt = response.text[:500]
    record.note(
        f"{label} -> {response.status_code} ({ms} ms)", status=response.status_code, excerpt=excerpt
    )
    if response.is_success:
        return response
    retry_after = httpretry.parse_retry_after(response.headers.get("retry-after"), now=clock())
    err = error_for_status(
        response.status_code,
        f"{label} answered {response.status_code}: {_message(response)}",
        excerpt=excerpt,
        retry_after=retry_after,
    )
    if isinstance(err, ServerError) and method == "GET":
        err.uncertain = False  # a failed read changes nothing
    raise err


def _error(failed: httpretry.Failure, label: str) -> ConnectorError:
    if failed.final and not failed.maybe_applied:  # nothing was sent; it would be refused again
        return NotConfigured(
            f"{label}: not sent, {failed.detail}. Point the repository at a public address, or "
            "(development only) set MICROCRED_OUTBOUND_ALLOW_PRIVATE=true."
        )
    if failed.final:
        return Rejected(f"{label}: {failed.detail}", uncertain=True)
    kind = TimedOut if failed.timeout else ConnectionFailed
    return kind(f"{label}: {failed.detail}", uncertain=failed.maybe_applied)


def _not_json(response: httpx.Response, who: str) -> str:
    kind = "HTML" if _looks_html(response) else "something other than JSON"
    return (
        f"{who} answered {kind} (status {response.status_code}), not JSON: is the base URL right?"
    )


def _looks_html(response: httpx.Response) -> bool:
    ctype = response.headers.get("content-type", "").lower()
    return "html" in ctype or response.text[:200].lstrip().lower().startswith(
        ("<!doctype", "<html")
    )


def json_of(response: httpx.Response, *, record: AttemptRecord, who: str) -> Any:
    """The JSON body of a successful answer. An answer that is not JSON (an HTML page from
    a wrong base URL, a proxy's error page) is a retryable error with a plain note, not a
    ``JSONDecodeError`` traceback on every attempt; after a write it is uncertain, so the
    next attempt checks the repository before sending again."""
    try:
        return response.json()
    except ValueError:
        message = _not_json(response, who)
        record.note(message, status=response.status_code, excerpt=response.text[:500])
        raise UnexpectedAnswer(
            message,
            status=response.status_code,
            excerpt=response.text[:500],
            uncertain=response.request.method != "GET",
        ) from None


def _message(response: httpx.Response) -> str:
    if _looks_html(response):
        return "an HTML page, not JSON: is the base URL right?"
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(body, dict):
        data = body.get("data")
        if isinstance(data, dict) and "message" in data:
            return str(data["message"])[:300]
        status = body.get("status")
        if isinstance(status, dict) and "description" in status:
            return str(status["description"])[:300]
        for key in ("message", "error_description", "error", "detail"):
            if key in body:
                return str(body[key])[:300]
    return response.text[:200]
