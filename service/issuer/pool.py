"""Where posted credentials are verified: bounded, and away from the pages (review H1).

Verification is CPU work on input from anyone, so it never runs on the event loop nor in
the thread pool that serves every other page:

- each verification runs in one of the pool's own threads, at most
  ``MICROCRED_VERIFY_CONCURRENCY`` at once, with no queue: when every thread is busy the
  request is refused at once (``Busy``, 503 with ``Retry-After``);
- the expensive step, canonicalising the credential and its proof options (JSON-LD
  expansion and RDFC-1.0), runs in worker *processes*: Python threads share one
  interpreter lock, so CPU work in a thread slows every page of the process, while a
  process runs on another core. The work there is bounded by
  :mod:`service.issuer.limits`; a result that takes longer than ``HASH_TIMEOUT_SECONDS``
  (only possible if a bound were missing) fails the proof check.

The worker processes start from a fork server that has imported the canonicaliser, so a
new worker is warm; they hold no keys and no database connection, only documents, and run
at a lower CPU priority than the web process (``WORKER_NICENESS``), so that on a busy
machine a stream of hostile verifications takes CPU from itself, not from the pages.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from service.errors import BadInput, Busy
from service.issuer import canon, contexts, dataintegrity, limits

__all__ = ["HASH_TIMEOUT_SECONDS", "VerifierPool", "hash_in_worker", "shutdown_processes"]

T = TypeVar("T")
HASH_TIMEOUT_SECONDS = 30.0

_processes: concurrent.futures.ProcessPoolExecutor | None = None
_processes_lock = threading.Lock()


def _process_pool(size: int) -> concurrent.futures.ProcessPoolExecutor:
    """The worker processes, shared by every app in this process (made on first use)."""
    global _processes
    with _processes_lock:
        if _processes is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["service.issuer.pool"])
            _processes = concurrent.futures.ProcessPoolExecutor(
                max_workers=size, mp_context=context, initializer=_lower_priority
            )
        return _processes


WORKER_NICENESS = 10


def _lower_priority() -> None:
    # A worker yields the CPU to the web process: when cores are scarce, the pages keep
    # their speed and hostile verifications wait (Linux weighs nice 10 at about a tenth).
    os.nice(WORKER_NICENESS)


def shutdown_processes() -> None:
    """Stop the worker processes (the app's shutdown; the next use starts new ones)."""
    global _processes
    with _processes_lock:
        pool, _processes = _processes, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


def _drop_process_pool(broken: concurrent.futures.ProcessPoolExecutor) -> None:
    global _processes
    with _processes_lock:
        if _processes is broken:
            _processes = None
    broken.shutdown(wait=False, cancel_futures=True)


# A worker's refusals by name: exceptions are returned, not pickled.
_REFUSALS: dict[str, type[BadInput]] = {
    cls.__name__: cls for cls in (limits.LimitExceeded, canon.UndefinedTermError, BadInput)
}


def hash_in_worker(
    document: Mapping[str, Any], config: Mapping[str, Any], base_url: str, bounds: limits.Limits
) -> tuple[str, bytes | str]:
    """``dataintegrity.hash_data`` in a worker process: ``("ok", hashData)``, or the class
    name and message of the refusal."""
    try:
        loader = contexts.loader_for(base_url)
        return "ok", dataintegrity.hash_data(document, config, loader, bounds=bounds)
    except BadInput as exc:
        return type(exc).__name__, exc.detail


class VerifierPool:
    """Runs at most ``size`` verifications at once, each in one of its own threads, with
    their canonicalisation in worker processes (``hasher``)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=size, thread_name_prefix="verify"
        )
        self._slots = threading.BoundedSemaphore(size)
        self.refused = 0  # requests turned away while full

    def try_reserve(self) -> bool:
        """Take a slot if one is free (callers that must not even read the request)."""
        if self._slots.acquire(blocking=False):
            return True
        self.refused += 1
        return False

    def busy(self) -> Busy:
        return Busy(
            "The verifier is busy with other credentials; try again in a few seconds.",
            retry_after=2,
        )

    async def run(self, fn: Callable[[], T], *, reserved: bool = False) -> T:
        """Run ``fn`` in a pool thread and wait for it without blocking the event loop.

        Args:
            fn: the work.
            reserved: a slot was already taken with :meth:`try_reserve`.

        Raises:
            Busy: every thread is taken; nothing was started.
        """
        if not reserved and not self.try_reserve():
            raise self.busy()
        try:
            future = self._executor.submit(fn)
        except BaseException:
            self._slots.release()
            raise
        # The slot is freed when the work ends, not when the request does: a client that
        # hangs up does not make room for more work than the pool has threads.
        future.add_done_callback(lambda _: self._slots.release())
        return await asyncio.wrap_future(future)

    def release(self) -> None:
        """Give back a slot taken with :meth:`try_reserve` and not used."""
        self._slots.release()

    def hasher(
        self,
        document: Mapping[str, Any],
        config: Mapping[str, Any],
        base_url: str,
        bounds: limits.Limits,
    ) -> bytes:
        """``hash_data`` in the worker processes (a ``verify.RemoteHasher``)."""
        pool = _process_pool(self.size)
        try:
            future = pool.submit(hash_in_worker, document, config, base_url, bounds)
            kind, value = future.result(timeout=HASH_TIMEOUT_SECONDS)
        except BrokenProcessPool:
            _drop_process_pool(pool)  # a worker died (killed, out of memory): start afresh
            raise
        except concurrent.futures.TimeoutError:
            raise limits.LimitExceeded(
                f"canonicalizing it took longer than {HASH_TIMEOUT_SECONDS:.0f} s"
            ) from None
        if kind == "ok":
            assert isinstance(value, bytes)
            return value
        assert isinstance(value, str)
        raise _REFUSALS.get(kind, BadInput)(value)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)
