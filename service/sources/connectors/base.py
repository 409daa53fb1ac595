"""What every connector returns, and how it sends a request (retried in place with
``service.httpretry``: a sync is short, unlike a delivery)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from service import httpretry, outbound
from service.sources.errors import SourceRefused, SourceUnavailable
from service.sources.types import Problem, Result

__all__ = ["Connector", "Fetched", "RetryPolicy", "backoff_seconds", "from_unix", "send"]


@dataclass
class Fetched:
    """Everything read for one course: results tagged with where they came from."""

    origin: str  # the connector's, given to every result
    results: list[tuple[str, Result]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    requests: int = 0
    # Every item of the course was read (no warning said part was withheld): only then
    # may a sync delete the stored results the LMS no longer has.
    complete: bool = True
    # Only what changed since a time was asked for (an incremental pull): what is missing
    # from it is unchanged, not deleted.
    incremental: bool = False

    def add(self, where: str, **fields: Any) -> None:
        """A result the LMS asserted, read from ``where`` (fields as ``Result`` takes them)."""
        self.results.append((where, Result(origin=self.origin, **fields)))


class Connector(Protocol):
    kind: str
    origin: str

    def fetch_course(self, lms_course_id: str, *, since: dt.datetime | None = None) -> Fetched:
        """Every result of the course; with ``since``, at least those changed since then
        where the LMS's API can filter (``Fetched.incremental``)."""
        ...


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 30.0


def backoff_seconds(policy: RetryPolicy, attempt: int, retry_after: str | None) -> float:
    """Delay before retry number ``attempt`` (1-based): the server's Retry-After if it sent
    one, else exponential; never more than ``max_delay``."""
    wait = httpretry.parse_retry_after(retry_after, now=dt.datetime.now(dt.UTC))
    if wait is not None:
        return min(wait, policy.max_delay)
    return httpretry.window(attempt, base=policy.base_delay, cap=policy.max_delay)


def send(
    client: httpx.Client,
    request: httpx.Request,
    *,
    what: str,
    policy: RetryPolicy,
    sleep: Callable[[float], None],
    throttled: Callable[[httpx.Response], bool] = lambda r: r.status_code == 429,
) -> httpx.Response:
    """Send with retries on timeouts, connection errors, throttling and server failures
    (``httpretry.RETRYABLE_STATUSES``).

    Returns any other response (the caller turns 4xx into final errors). ``what`` names
    the call in error messages and must not contain secrets.
    """
    for attempt in range(1, policy.attempts + 1):
        last = attempt == policy.attempts
        try:
            response = client.send(request)
        except httpx.TransportError as exc:
            if httpretry.failure(exc).final:  # asking again would be refused again
                raise SourceRefused(
                    f"{what}: {exc}",
                    hint="Point the connection at the LMS's public address, or (development "
                    "only) set MICROCRED_OUTBOUND_ALLOW_PRIVATE=true.",
                ) from exc
            if last:
                raise SourceUnavailable(
                    f"{what}: no answer after {attempt} attempts ({outbound.describe(exc)})",
                    hint="Check that the LMS is reachable from this server; the sync can be "
                    "retried.",
                ) from exc
            sleep(backoff_seconds(policy, attempt, None))
            continue
        if response.status_code in httpretry.RETRYABLE_STATUSES or throttled(response):
            if last:
                raise SourceUnavailable(
                    f"{what}: HTTP {response.status_code} after {attempt} attempts",
                    hint="The LMS is overloaded or failing; the sync can be retried later.",
                )
            sleep(backoff_seconds(policy, attempt, response.headers.get("retry-after")))
            continue
        return response
    raise AssertionError("unreachable")  # pragma: no cover


def from_unix(value: object) -> dt.datetime | None:
    """Moodle timestamps: seconds since the epoch, 0 meaning "not set"."""
    if isinstance(value, int | float) and value > 0:
        return dt.datetime.fromtimestamp(value, dt.UTC)
    return None
