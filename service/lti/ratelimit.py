"""Per-IP rate limit on the OIDC login and launch endpoints (reference/security.md §4.1,
W9): a token bucket per client address, ``MICROCRED_LTI_RATE_LIMIT_PER_MINUTE`` tokens that
refill evenly over a minute; an empty bucket answers 429 with ``Retry-After``.

The buckets live in the process (each web process counts on its own). Behind a proxy the
client address is the one uvicorn takes from ``X-Forwarded-For`` (``serve
--proxy-headers``); without it every request would share the proxy's bucket.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from fastapi import Request

from service.errors import TooManyRequests

__all__ = ["Buckets", "limit_lti", "limit_registration"]

_MAX_KEYS = 10_000


class Buckets:
    """Token buckets keyed by client address."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # tokens per second
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: str) -> int:
        """Take one token for ``key``; 0 when allowed, else the seconds to wait."""
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                if len(self._buckets) > _MAX_KEYS:
                    self._prune(now)
                return 0
            self._buckets[key] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / self.rate))

    def _prune(self, now: float) -> None:
        # Forget addresses whose bucket has refilled: they would start full anyway.
        full = [
            k for k, (t, at) in self._buckets.items() if t + (now - at) * self.rate >= self.capacity
        ]
        for k in full:
            del self._buckets[k]


async def limit_lti(request: Request) -> None:
    """Dependency of the login and launch routes."""
    settings = request.app.state.settings
    if settings.lti_rate_limit_per_minute <= 0:
        return
    buckets: Buckets | None = getattr(request.app.state, "lti_buckets", None)
    if buckets is None:
        buckets = request.app.state.lti_buckets = Buckets(settings.lti_rate_limit_per_minute)
    wait = buckets.take(request.client.host if request.client else "unknown")
    if wait:
        raise TooManyRequests(
            f"Too many sign-ins from your network in the last minute; try again in {wait} s.",
            retry_after=wait,
            hint="If a whole class starts at once, the administrator can raise "
            "MICROCRED_LTI_RATE_LIMIT_PER_MINUTE.",
        )


async def limit_registration(request: Request) -> None:
    """Per-IP limit on dynamic registration (``/lti/register``): each one makes microcred
    call two URLs the caller chose, so far fewer are allowed than sign-ins."""
    settings = request.app.state.settings
    per_minute = settings.dynamic_registration_rate_limit_per_minute
    if per_minute <= 0:
        return
    buckets: Buckets | None = getattr(request.app.state, "registration_buckets", None)
    if buckets is None:
        buckets = request.app.state.registration_buckets = Buckets(per_minute)
    wait = buckets.take(request.client.host if request.client else "unknown")
    if wait:
        raise TooManyRequests(
            f"Too many registrations from your network in the last minute; try again in {wait} s.",
            retry_after=wait,
            hint="The administrator can raise "
            "MICROCRED_DYNAMIC_REGISTRATION_RATE_LIMIT_PER_MINUTE.",
        )
