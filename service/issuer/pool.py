"""A dedicated, bounded executor for verifying posted credentials (security review H1).

Verification is CPU work on input from anyone, so it never runs on the event loop nor in
the thread pool that serves every other page: it gets its own threads, as many as
``MICROCRED_VERIFY_CONCURRENCY``, and no queue. When every thread is busy the request is
refused at once (``Busy``, 503 with ``Retry-After``) instead of waiting, so a burst of
hostile requests costs at most that many verifications at a time, each bounded by
:mod:`service.issuer.limits`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import TypeVar

from service.errors import Busy

__all__ = ["VerifierPool"]

T = TypeVar("T")


class VerifierPool:
    """Runs at most ``size`` verifications at once, each in one of its own threads."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=size, thread_name_prefix="verify"
        )
        self._slots = threading.BoundedSemaphore(size)
        self.refused = 0  # requests turned away while full (for tests and /metrics)

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in a pool thread and wait for it without blocking the event loop.

        Raises:
            Busy: every thread is taken; nothing was started.
        """
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            raise Busy(
                "The verifier is busy with other credentials; try again in a few seconds.",
                retry_after=2,
            )
        try:
            future = self._executor.submit(fn)
        except BaseException:
            self._slots.release()
            raise
        # The slot is freed when the work ends, not when the request does: a client that
        # hangs up does not make room for more work than the pool has threads.
        future.add_done_callback(lambda _: self._slots.release())
        return await asyncio.wrap_future(future)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)
