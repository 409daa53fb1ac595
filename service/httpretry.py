"""Retrying outbound HTTP, shared by the LMS pulls (``service.sources``) and the deliveries
(``service.delivery``): which failures are worth another try, whether a request that
failed may have been applied, and how long to wait.

The clients come from ``service.outbound``: an address it refuses and an oversized answer
are final (asking again is refused again). Waits: capped exponential backoff, never less
than the server's Retry-After (seconds or an HTTP date, RFC 9110 §10.2.3); the outbox adds
full jitter (AWS "Exponential Backoff And Jitter"). Pure: randomness and clock are
arguments.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import random

import httpx

from service import outbound

__all__ = [
    "BASE_SECONDS",
    "CAP_SECONDS",
    "RETRYABLE_STATUSES",
    "Failure",
    "failure",
    "next_delay",
    "parse_retry_after",
    "window",
]

# Answers worth asking again for: the server was busy, throttling, or failing for a moment.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
BASE_SECONDS = 2.0
CAP_SECONDS = 300.0


@dataclasses.dataclass(frozen=True)
class Failure:
    """Why a request got no answer."""

    note: str  # a few words for an attempt log, e.g. "connect timeout"
    detail: str  # what happened, for a message
    final: bool = False  # asking again cannot help
    timeout: bool = False
    maybe_applied: bool = False  # (part of) the request went out: the server may have acted


def failure(exc: httpx.TransportError) -> Failure:
    """Classify a transport error raised by an ``outbound`` client."""
    if isinstance(exc, outbound.Blocked):  # nothing was sent
        return Failure("refused: address not allowed", str(exc), final=True)
    if isinstance(exc, outbound.TooLarge):
        return Failure("answer too large", str(exc), final=True, maybe_applied=True)
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):  # never connected
        return Failure("connect timeout", f"could not connect in time ({exc})", timeout=True)
    if isinstance(exc, httpx.TimeoutException):
        return Failure(
            "timeout after sending", f"no answer in time ({exc})", timeout=True, maybe_applied=True
        )
    if isinstance(exc, httpx.ConnectError):
        return Failure("connection refused", f"could not connect ({exc})")
    # Reset or closed after (part of) the request went out.
    return Failure("connection broken", f"connection broken ({exc})", maybe_applied=True)


def window(attempt: int, *, base: float, cap: float) -> float:
    """``min(cap, base * 2**(attempt - 1))``: the wait ceiling after ``attempt`` failures."""
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    # 2**attempt overflows floats long after it passes the cap; clamp the exponent.
    return min(cap, base * 2.0 ** min(attempt - 1, 62))


def next_delay(
    attempt: int,
    *,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait after ``attempt`` failures: full jitter within ``window`` (from
    ``BASE_SECONDS`` up to ``CAP_SECONDS``), never shorter than the server's Retry-After
    (``retry_after`` seconds). ``rng``: the randomness (the ``random`` module by default)."""
    delay = (rng or random).uniform(0.0, window(attempt, base=BASE_SECONDS, cap=CAP_SECONDS))
    if retry_after is not None and retry_after > delay:
        return float(retry_after)
    return delay


def parse_retry_after(value: str | None, *, now: dt.datetime) -> float | None:
    """Non-negative seconds from ``now`` (aware) named by a Retry-After header value
    (delta-seconds or an HTTP-date), or None if absent or malformed."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():  # isdigit alone takes '²', which int refuses
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - now).total_seconds())
