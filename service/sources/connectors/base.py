"""What every connector returns, and the shared HTTP retry rule."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import httpx

from service import outbound
from service.sources.errors import SourceRefused, SourceUnavailable
from service.sources.types import Problem, Result

__all__ = ["Connector", "Fetched", "RetryPolicy", "backoff_seconds", "from_unix", "send"]


@dataclass
class Fetched:
    """Everything read for one course: results tagged with where they came from."""

    results: list[tuple[str, Result]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    requests: int = 0
    # Every item of the course was read (no warning said part was withheld): only then
    # may a sync delete the stored results the LMS no longer has.
    complete: bool = True
    # Only what changed since a time was asked for (an incremental pull): what is missing
    # from it is unchanged, not deleted.
    incremental: bool = False


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
    """Delay before retry number ``attempt`` (1-based): the server's Retry-After seconds if
    it sent them (RFC 9110 §10.2.3), else exponential; never more than ``max_delay``."""
    seconds = (retry_after or "").strip()
    if seconds.isascii() and seconds.isdigit():  # isdigit alone takes '²', which float refuses
        return min(float(seconds), policy.max_delay)
    return min(policy.base_delay * float(2 ** max(attempt - 1, 0)), policy.max_delay)


def send(
    client: httpx.Client,
    request: httpx.Request,
    *,
    what: str,
    policy: RetryPolicy,
    sleep: Callable[[float], None],
    throttled: Callable[[httpx.Response], bool] = lambda r: r.status_code == 429,
) -> httpx.Response:
    """Send with retries on timeouts, connection errors, throttling and 5xx.

    Returns any other response (the caller turns 4xx into final errors). ``what`` names
    the call in error messages and must not contain secrets.
    """
    for attempt in range(1, policy.attempts + 1):
        last = attempt == policy.attempts
        try:
            response = client.send(request)
        except (outbound.Blocked, outbound.TooLarge) as exc:
            # Asking again would be refused again: not retried.
            raise SourceRefused(
                f"{what}: {exc}",
                hint="Point the connection at the LMS's public address, or (development only) "
                "set MICROCRED_OUTBOUND_ALLOW_PRIVATE=true.",
            ) from exc
        except httpx.TransportError as exc:
            if last:
                raise SourceUnavailable(
                    f"{what}: no answer after {attempt} attempts ({outbound.describe(exc)})",
                    hint="Check that the LMS is reachable from this server; the sync can be "
                    "retried.",
                ) from exc
            sleep(backoff_seconds(policy, attempt, None))
            continue
        if response.status_code >= 500 or throttled(response):
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
