"""The application factory."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import anyio.to_thread
from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.telemetry import TelemetryConfig
from sqlalchemy import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import service
from service import bodylimit, deps, metrics, requestlog, secretbox
from service.db.engine import UNAVAILABLE, in_process, make_engine
from service.db.engine import session as db_session
from service.delivery import router as delivery_router
from service.issuer import identity
from service.issuer import router as issuer_router
from service.policies import router as policies_router
from service.settings import Settings, get_settings
from service.sources import router as sources_router
from service.web import (
    admin,
    admin_settings,
    credential_api,
    errors,
    framing,
    health,
    instructor,
    learner,
    pending,
    public,
)

log = logging.getLogger(__name__)

# flows: evidence that arrives through the JSON API (push, CSV import) is queued for the
# workers' evaluation before the answer goes out.
_EVIDENCE_POSTS = re.compile(r"^/api/(evidence|courses/\d+/evidence/import)$")


class QueueAfterEvidence:
    """ASGI middleware: after a successful evidence POST, queue the evaluation of the
    learners whose results changed before the client gets the answer, so an accepted
    answer means "stored and queued"; the award happens in a worker, never in the request.

    Plain ASGI rather than ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware
    runs every request of the app through extra tasks and memory streams, which cost more
    than a whole session lookup on each login, launch and page (bench/README.md, Launch).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not _EVIDENCE_POSTS.match(scope["path"])
        ):
            await self.app(scope, receive, send)
            return
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, hold)
        status = next((m["status"] for m in held if m["type"] == "http.response.start"), 500)
        if status < 300:
            from starlette.concurrency import run_in_threadpool

            await run_in_threadpool(_queue_new_evidence, scope["app"].state.engine)
        for message in held:
            await send(message)


def _queue_new_evidence(engine: Engine) -> None:
    from service.flows import evaluation_queue

    with db_session(engine, write=True) as s:
        evaluation_queue.enqueue_new_evidence(s)
        s.commit()


def create_app(settings: Settings | None = None, *, engine: Engine | None = None) -> FastAPI:
    """Build the app. Keys and engines are loaded once here, never per request."""
    settings = settings or get_settings()
    secretbox.configure(secretbox.load_master_key(settings))
    from service.lti import registration

    registration.require_key_in_production(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        threads = app.state.settings.web_threads or (2 if in_process(app.state.engine) else 40)
        anyio.to_thread.current_default_thread_limiter().total_tokens = threads  # routes'
        yield
        issuer_router.shutdown(app)  # the verifier's threads and worker processes

    app = FastAPI(
        title="microcred",
        version=service.__version__,
        description="Competency levels from LMS results, issued as Open Badges 3.0.",
        lifespan=lifespan,
        telemetry=telemetry(settings),
    )
    app.state.engine = engine or make_engine(
        settings.resolved_database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )
    settings = _settle_identity(app.state.engine, settings)
    app.state.settings = settings
    errors.install(app)
    app.state.metrics = metrics.Metrics(app.state.engine)
    _include_routes(app, settings)
    _add_middleware(app, settings)
    return app


def telemetry(settings: Settings) -> TelemetryConfig:
    """FastAPI's built-in OpenTelemetry, as ``MICROCRED_OTEL`` says. On by default in
    FastAPI (it records whenever an SDK provider is configured in the process, and checks
    for one on every request: ~8 us); microcred turns it off unless asked for."""
    on = settings.otel
    return {"tracing": on, "metrics": on, "logs": on, "operation_spans": on}


def _settle_identity(engine: Engine, settings: Settings) -> Settings:
    """The deployment's recorded issuer identity: adopted when MICROCRED_BASE_URL is unset,
    and the app does not start under another URL (IdentityMismatch says which to use)."""
    try:
        return identity.settle(engine, settings)
    except UNAVAILABLE as exc:
        # A replica may start before its database answers (/readyz says so); signing
        # still checks the identity in its own transaction (identity.ensure).
        log.warning(
            "database unavailable at startup (%s): the issuer identity is checked at signing",
            type(exc).__name__,
        )
        return settings


def _include_routes(app: FastAPI, settings: Settings) -> None:
    """Every router, in matching order (the first route that matches a path answers)."""
    app.mount(
        "/static", StaticFiles(directory=Path(__file__).parent / "web" / "static"), name="static"
    )
    app.include_router(health.router)
    app.include_router(metrics.router)
    from service.lti import router as lti_router
    from service.web import launch as web_launch

    app.include_router(lti_router.router)
    app.include_router(web_launch.router)
    # public credential pages (before the issuer's own routes)
    for public_router in public.routers():
        app.include_router(public_router)
    app.include_router(issuer_router.router)
    app.include_router(credential_api.router)
    if settings.environment != "production":
        from service.web import credential_preview  # dev-only sample pages

        app.include_router(credential_preview.router)
        app.include_router(credential_preview.ob2_preview_router)
    app.include_router(
        delivery_router.router, dependencies=[Depends(deps.api_scope("delivery:admin"))]
    )
    app.include_router(sources_router.router)
    app.include_router(
        policies_router.router, dependencies=[Depends(deps.api_scope("policies:admin"))]
    )
    app.include_router(instructor.router)
    app.include_router(learner.router)
    app.include_router(pending.router)
    app.include_router(admin.router)
    app.include_router(admin_settings.router)


def _add_middleware(app: FastAPI, settings: Settings) -> None:
    """The middleware, innermost first (each one added wraps those added before it)."""
    app.add_middleware(QueueAfterEvidence)
    # Inside SecurityHeaders (a 413 gets its headers too), outside everything that reads.
    app.add_middleware(
        bodylimit.BodyLimit,
        max_bytes=settings.max_body_bytes,
        larger=bodylimit.larger_routes(settings),
        respond=errors.too_large_before_app,
    )
    app.add_middleware(framing.SecurityHeaders, settings=settings, engine=app.state.engine)
    # outermost: the request id is set before anything logs, the latency covers everything
    app.add_middleware(requestlog.RequestContext, observe=app.state.metrics.observe)
