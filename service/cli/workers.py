"""The background worker as ``microcred worker``, ``serve`` and ``demo`` build it: delivery,
the scheduled LMS sync and the evaluation queue."""

from __future__ import annotations

import threading
from typing import Any

from service.cli.common import _engine
from service.settings import Settings


def _start_inprocess_worker(settings: Settings, *, enabled: bool) -> tuple[Any, Any]:
    stop = threading.Event()
    if not enabled:
        return stop, None
    w = _delivery_worker(settings, threads=4, batch=8)
    thread = threading.Thread(target=_run, args=(w, stop), name="delivery-worker", daemon=True)
    thread.start()
    return stop, thread


def _run(w: Any, stop: threading.Event, *, idle_exit: bool = False) -> None:
    """Run worker ``w`` until ``stop`` (or, with ``idle_exit``, until nothing is due), then
    close it and its engine."""
    try:
        w.run(stop, idle_exit=idle_exit)
    finally:
        w.close()
        w.engine.dispose()


def _delivery_worker(settings: Settings, *, threads: int, batch: int) -> Any:
    from service import outbound
    from service.delivery import checks
    from service.delivery.worker import Job, Worker, build_connectors
    from service.flows import evaluation_queue, gradebook, syncing

    engine = _engine(settings)
    lms_http = outbound.client(outbound.policy(settings), timeout=30.0)
    holder: dict[str, Any] = {}

    def scheduled_sync() -> int:
        # Pull every connected course whose last pull is older than its interval
        # (MICROCRED_SYNC_INTERVAL_SECONDS) or that a launch asked for (syncing.run_due_syncs).
        return len(
            syncing.run_due_syncs(
                engine, settings=settings, http=lms_http, worker=holder["worker"].name
            )
        )

    def evaluate() -> int:
        # The evaluation queue (docs/scale.md): one batch of due learners.
        done, _summary = evaluation_queue.run_evaluation_jobs(
            engine, settings=settings, limit=batch
        )
        return done

    # The LMS gradebook poster (AGS), the scheduled sync and the evaluation queue are wired
    # by service.flows (lti and delivery stay apart).
    worker = Worker(
        engine,
        build_connectors(
            engine,
            ags_poster=gradebook.ags_poster(
                engine, outbound.client(outbound.policy(settings), timeout=30.0)
            ),
        ),
        threads=threads,
        batch=batch,
        poll_seconds=settings.worker_poll_seconds,
        jobs=[
            Job(
                "lms-sync",
                scheduled_sync,
                poll_seconds=max(settings.worker_poll_seconds, 1.0),
                close=lms_http.close,
            ),
            Job("evaluation", evaluate, poll_seconds=settings.worker_poll_seconds),
            Job("repository-checks", lambda: checks.run_due(engine, worker=holder["worker"].name)),
        ],
    )
    holder["worker"] = worker
    return worker
