"""Retry schedule: capped exponential backoff with full jitter and a Retry-After floor.

``delay = max(retry_after, uniform(0, min(cap, base * 2**attempt)))`` (AWS "Exponential
Backoff And Jitter"; Retry-After is seconds or an HTTP date, RFC 9110 §10.2.3). Pure: the
random source and the clock are arguments.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random

__all__ = ["BASE_SECONDS", "CAP_SECONDS", "next_delay", "parse_retry_after"]

BASE_SECONDS = 2.0
CAP_SECONDS = 300.0


def next_delay(
    attempt: int,
    *,
    retry_after: float | None = None,
    base: float = BASE_SECONDS,
    cap: float = CAP_SECONDS,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before the next attempt.

    Args:
        attempt: attempts made so far (1 after the first failure).
        retry_after: the server's Retry-After in seconds; the delay is never shorter.
        base: first ceiling of the jitter window.
        cap: largest ceiling of the jitter window.
        rng: source of randomness (``random`` module default).

    Returns:
        A delay in seconds, ``>= retry_after`` when given and ``<= max(cap, retry_after)``.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    # 2**attempt overflows floats long after it passes the cap; clamp the exponent.
    ceiling = min(cap, base * 2 ** min(attempt - 1, 62))
    delay = (rng or random).uniform(0.0, ceiling)
    if retry_after is not None and retry_after > delay:
        return float(retry_after)
    return delay


def parse_retry_after(value: str | None, *, now: dt.datetime) -> float | None:
    """Seconds from ``now`` named by a Retry-After header, or None if absent or malformed.

    Args:
        value: the header value: delta-seconds or an HTTP-date.
        now: aware current time, to turn a date into seconds.

    Returns:
        Non-negative seconds, or None.
    """
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
