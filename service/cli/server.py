"""``microcred migrate`` and ``microcred serve``."""

from __future__ import annotations

import os
from typing import Annotated, Any, cast

import typer

from service import logredact
from service.cli.common import _bootstrap, _db, _identity, _recorded_url, app
from service.cli.workers import _start_inprocess_worker
from service.serving import PROTOCOLS, Protocol, server_options
from service.settings import Settings, get_settings


@app.command()
def migrate() -> None:
    """Apply database migrations."""
    settings = _bootstrap(migrate=True)
    typer.echo(f"database is at the latest migration ({settings.resolved_database_url})")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Run no in-process worker.")
    ] = False,
    proxy_headers: Annotated[bool, typer.Option(help="Trust X-Forwarded-* headers.")] = True,
    http: Annotated[
        str | None,
        typer.Option(
            help="HTTP parser: h11 (bounds a request's head at 64 KiB) or httptools (faster; "
            "only behind a proxy that bounds request heads). Default: MICROCRED_HTTP_PROTOCOL.",
        ),
    ] = None,
) -> None:
    """Run the web app (plus an in-process worker unless --no-worker)."""
    import uvicorn

    from service.issuer import identity

    if http is not None and http not in PROTOCOLS:
        raise typer.BadParameter(f"one of {', '.join(PROTOCOLS)}", param_hint="--http")
    settings = _bootstrap(migrate=True)
    if not identity.explicit(settings):
        # No public URL configured: the one this database issues as, else (nothing issued
        # yet) where the tool listens (lti: LTI redirect and target link URIs are checked
        # against it).
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
        recorded = _recorded_url(settings)
        os.environ["MICROCRED_BASE_URL"] = recorded or f"http://{shown}:{port}"
        if recorded is not None:
            typer.echo(f"base URL {recorded}: the issuer identity this database records", err=True)
        get_settings.cache_clear()
        settings = _bootstrap()
    settings = _identity(settings)  # refuse to start under another issuer's URL
    stop, thread = _start_inprocess_worker(settings, enabled=not no_worker)
    try:
        _run_uvicorn(uvicorn, host, port, proxy_headers, settings, http)
    finally:
        stop.set()
        if thread is not None:
            thread.join(timeout=30)


def _run_uvicorn(
    uvicorn: Any, host: str, port: int, proxy_headers: bool, settings: Settings, http: str | None
) -> None:
    _ensure_tool_key(settings)
    protocol = settings.http_protocol if http is None else cast(Protocol, http)
    uvicorn.run(
        "service.serving:served_app",
        factory=True,
        host=host,
        port=port,
        **server_options(protocol),
        proxy_headers=proxy_headers,
        log_level=settings.log_level.lower(),
        log_config=logredact.uvicorn_log_config(json_lines=settings.log_format == "json"),
    )


def _ensure_tool_key(settings: Settings) -> None:
    """The tool's LTI signing key exists from the first start on (encrypted at rest)."""
    from service.lti import keys

    with _db(settings, write=True) as s:
        keys.ensure_key(s)
        s.commit()
