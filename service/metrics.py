"""Prometheus metrics at ``GET /metrics`` (docs/operations.md "Metrics").

Two kinds, so that any number of web processes and workers give one true picture:

- **Per web process** (counters and histograms of what this process served): HTTP requests
  and their latency by route template and status, LTI launches by outcome, ``POST /verify``
  by result. Prometheus scrapes each process and sums.
- **From the database at scrape time** (the same in every process; aggregate with ``max``):
  credentials issued and revoked, decisions by level, outbox rows by repository and status,
  the delivery queue's depth and oldest due row's age, the sync lag of each connected
  course. A handful of indexed aggregate queries per scrape.

The endpoint answers only ``Authorization: Bearer <MICROCRED_METRICS_TOKEN>``; without the
setting it is off (404), so nothing about the deployment is public by default.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from sqlalchemy import Engine, and_, func, select
from starlette.types import Scope

from service.db.engine import table
from service.db.models import (
    CourseSetup,
    Credential,
    Decision,
    DeliveryRepository,
    ImportRun,
    OutboxMessage,
)
from service.db.types import utcnow
from service.errors import NotFound, ServiceError

__all__ = ["Metrics", "router"]

# Latency buckets (seconds) around what the pages and the launch take.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Database(Collector):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        now = utcnow()
        models = (Credential, Decision, OutboxMessage, DeliveryRepository, ImportRun, CourseSetup)
        cred, dec, out, repo, run, setup = (table(m) for m in models)
        with self.engine.connect() as conn:
            issued, revoked = conn.execute(
                select(func.count(), func.count().filter(cred.c.revoked.is_(True)))
            ).one()
            levels = conn.execute(select(dec.c.level, func.count()).group_by(dec.c.level)).all()
            rows = conn.execute(
                select(func.coalesce(repo.c.name, ""), out.c.status, func.count())
                .select_from(out.outerjoin(repo, repo.c.id == out.c.repository_id))
                .group_by(repo.c.name, out.c.status)
            ).all()
            due = and_(out.c.status == "pending", out.c.due_at <= now)
            depth, oldest = conn.execute(
                select(func.count(), func.min(out.c.due_at)).where(due)
            ).one()
            synced = conn.execute(
                select(setup.c.course_id, func.max(run.c.finished_at))
                .select_from(
                    setup.outerjoin(
                        run,
                        and_(
                            run.c.course_id == setup.c.course_id,
                            run.c.kind == "sync",
                            run.c.status == "applied",
                        ),
                    )
                )
                .where(setup.c.source_connection_id.is_not(None))
                .group_by(setup.c.course_id)
            ).all()
        g = GaugeMetricFamily
        yield g("microcred_credentials_issued", "Credentials issued (all time)", value=issued)
        yield g("microcred_credentials_revoked", "Credentials revoked", value=revoked)
        decisions = g("microcred_decisions", "Decisions recorded, by level", labels=["level"])
        for level, n in levels:
            decisions.add_metric([level], n)
        yield decisions
        outbox = g(
            "microcred_deliveries",
            "Outbox rows by repository and status (pending, held, delivered, dead, cancelled)",
            labels=["repository", "status"],
        )
        for name, status, n in rows:
            outbox.add_metric([name, status], n)
        yield outbox
        yield g("microcred_delivery_queue_depth", "Deliveries due and not yet made", value=depth)
        age = 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
        yield g(
            "microcred_delivery_queue_oldest_seconds",
            "How long the oldest due delivery has waited (0 when none)",
            value=age,
        )
        lag = g(
            "microcred_sync_lag_seconds",
            "Time since each connected course's last successful LMS sync (-1: never)",
            labels=["course_id"],
        )
        for course_id, finished in synced:
            seconds = -1.0 if finished is None else (now - finished).total_seconds()
            lag.add_metric([str(course_id)], seconds)
        yield lag


class Metrics:
    """The metrics of one web process (its own registry: tests build many apps)."""

    def __init__(self, engine: Engine) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "microcred_http_requests",
            "HTTP requests served by this process",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "microcred_http_request_duration_seconds",
            "Time to answer, by route template",
            ["method", "route"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.launches = Counter(
            "microcred_lti_launches",
            "LTI launches by outcome (ok: landed; refused: 4xx; error: 5xx)",
            ["outcome"],
            registry=self.registry,
        )
        self.verifications = Counter(
            "microcred_verifications",
            "POST /verify requests by result",
            ["result"],
            registry=self.registry,
        )
        self.registry.register(_Database(engine))

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        """One request served (``requestlog.RequestContext``)."""
        route = scope.get("route")
        # The template, never the raw path: ids would make a series per credential.
        template = getattr(route, "path", None) or (
            "static" if scope["path"].startswith("/static/") else "unmatched"
        )
        method = scope["method"]
        self.requests.labels(method, template, str(status)).inc()
        self.latency.labels(method, template).observe(seconds)
        if template == "/lti/launch" and method == "POST":
            outcome = "ok" if status < 400 else "refused" if status < 500 else "error"
            self.launches.labels(outcome).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def count_verification(app: Any, *, valid: bool, reasons: list[str]) -> None:
    """One ``POST /verify`` answered (``valid``, ``revoked`` or ``invalid``)."""
    metrics = getattr(app.state, "metrics", None)
    if metrics is None:
        return
    result = "valid" if valid else "revoked" if any("revoked" in r for r in reasons) else "invalid"
    metrics.verifications.labels(result).inc()


class Unauthorised(ServiceError):
    code = "unauthorised"
    status_code = 401
    title = "Metrics need the metrics token"


router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
def metrics_endpoint(request: Request) -> Response:
    """Prometheus metrics (bearer MICROCRED_METRICS_TOKEN)."""
    token = request.app.state.settings.metrics_token
    metrics: Metrics | None = getattr(request.app.state, "metrics", None)
    if token is None or not token.get_secret_value() or metrics is None:
        raise NotFound("metrics are off", hint="Set MICROCRED_METRICS_TOKEN to serve /metrics.")
    given = request.headers.get("authorization", "")
    expected = "Bearer " + token.get_secret_value()
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise Unauthorised(
            "send Authorization: Bearer <MICROCRED_METRICS_TOKEN>",
            hint="Configure the scraper's bearer token (Prometheus: authorization.credentials).",
        )
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
