"""Per-client token buckets: the rate limits of the public endpoints (reference/security.md
§4.1). ``Buckets(n)`` allows a burst of ``n`` requests per key that refills evenly over a
minute; ``take`` says how long to wait when the bucket is empty (answer 429 with
``Retry-After``).

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

__all__ = ["Buckets", "wait"]

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


def wait(request: Request, buckets: str, per_minute: int) -> int:
    """Take a token for the request's client from the app's ``buckets`` (made on first use,
    ``per_minute``); 0 when allowed (always, with ``per_minute`` 0), else the seconds to
    wait."""
    if per_minute <= 0:
        return 0
    found: Buckets | None = getattr(request.app.state, buckets, None)
    if found is None:
        found = Buckets(per_minute)
        setattr(request.app.state, buckets, found)
    return found.take(request.client.host if request.client else "unknown")
