"""The application factory."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine

import service
from service import deps, secretbox
from service.db.engine import make_engine
from service.delivery import router as delivery_router
from service.issuer import router as issuer_router
from service.policies import router as policies_router
from service.settings import Settings, get_settings
from service.sources import router as sources_router
from service.web import admin, errors, health, instructor, learner, public

log = logging.getLogger(__name__)

# flows: evidence that arrives through the JSON API (push, CSV import) is evaluated at once.
_EVIDENCE_POSTS = re.compile(r"^/api/(evidence|courses/\d+/evidence/import)$")


def _evaluate_after_evidence(app: FastAPI) -> None:
    from starlette.concurrency import run_in_threadpool

    from service import flows

    @app.middleware("http")
    async def evaluate(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        if (
            request.method == "POST"
            and response.status_code < 300
            and _EVIDENCE_POSTS.match(request.url.path)
        ):
            await run_in_threadpool(
                flows.evaluate_new_evidence,
                request.app.state.engine,
                settings=request.app.state.settings,
                actor="system",
            )
        return response


def create_app(settings: Settings | None = None, *, engine: Engine | None = None) -> FastAPI:
    """Build the app. Keys and engines are loaded once here, never per request."""
    settings = settings or get_settings()
    secretbox.configure(secretbox.load_master_key(settings))
    app = FastAPI(
        title="microcred",
        version=service.__version__,
        description="Competency levels from LMS results, issued as Open Badges 3.0.",
    )
    app.state.settings = settings
    app.state.engine = engine or make_engine(settings.resolved_database_url)
    errors.install(app)
    app.mount(
        "/static", StaticFiles(directory=Path(__file__).parent / "web" / "static"), name="static"
    )
    app.include_router(health.router)
    # lti routers
    from service.lti import router as lti_router
    from service.web import launch as web_launch

    app.include_router(lti_router.router)
    app.include_router(web_launch.router)
    # public credential pages (before the issuer's own routes)
    for public_router in public.routers():
        app.include_router(public_router)
    # issuer routers
    app.include_router(issuer_router.router)
    # credpage routers
    if settings.environment != "production":
        from service.web import credential_preview  # dev-only sample pages

        app.include_router(credential_preview.router)
        app.include_router(credential_preview.ob2_preview_router)
    # delivery routers
    app.include_router(
        delivery_router.router, dependencies=[Depends(deps.api_scope("delivery:admin"))]
    )
    # sources routers
    app.include_router(sources_router.router)
    # policies routers
    # assessment routers
    app.include_router(
        policies_router.router, dependencies=[Depends(deps.api_scope("policies:admin"))]
    )
    # flows routers
    _evaluate_after_evidence(app)
    app.include_router(instructor.router)
    app.include_router(learner.router)
    app.include_router(admin.router)
    return app
