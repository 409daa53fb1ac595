"""The ``microcred`` command. Each command is one transaction boundary."""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer

from service import secretbox
from service.db import migrate as db_migrate
from service.db.engine import make_engine
from service.settings import Settings, get_settings

app = typer.Typer(
    name="microcred",
    help="Competency levels from LMS results, issued as Open Badges 3.0 micro-credentials.",
    no_args_is_help=True,
    add_completion=False,
)


def _bootstrap(settings: Settings | None = None) -> Settings:
    settings = settings or get_settings()
    logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s")
    secretbox.configure(secretbox.load_master_key(settings))
    return settings


def _engine(settings: Settings):  # type: ignore[no-untyped-def]
    return make_engine(settings.resolved_database_url)


@app.command()
def migrate() -> None:
    """Apply database migrations."""
    settings = _bootstrap()
    db_migrate.upgrade(settings.resolved_database_url)
    typer.echo(f"database is at the latest migration ({settings.resolved_database_url})")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Run no in-process worker.")
    ] = False,
    proxy_headers: Annotated[bool, typer.Option(help="Trust X-Forwarded-* headers.")] = True,
) -> None:
    """Run the web app (plus an in-process worker unless --no-worker)."""
    import uvicorn

    settings = _bootstrap()
    if "base_url" not in settings.model_fields_set:
        # lti: no public URL configured, so the tool is where it listens (LTI redirect and
        # target link URIs are checked against it).
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
        os.environ["MICROCRED_BASE_URL"] = f"http://{shown}:{port}"
        get_settings.cache_clear()
        settings = _bootstrap()
    db_migrate.upgrade(settings.resolved_database_url)
    _ensure_tool_key(settings)
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=host,
        port=port,
        proxy_headers=proxy_headers,
        log_level=settings.log_level.lower(),
    )


# --- lti commands ---
def _ensure_tool_key(settings: Settings) -> None:
    """The tool's LTI signing key exists from the first start on (encrypted at rest)."""
    from service.db.engine import session as db_session
    from service.lti import keys

    engine = _engine(settings)
    with db_session(engine, write=True) as s:
        keys.ensure_key(s)
        s.commit()
    engine.dispose()


platform_app = typer.Typer(help="LMS platform registrations (LTI 1.3).", no_args_is_help=True)
keys_app = typer.Typer(help="The tool's LTI signing keys.", no_args_is_help=True)
app.add_typer(platform_app, name="platform")
app.add_typer(keys_app, name="keys")


def _fail(exc: Exception) -> typer.Exit:
    from service.errors import ServiceError

    if isinstance(exc, ServiceError):
        typer.echo(f"error: {exc.detail}", err=True)
        if exc.hint:
            typer.echo(f"hint: {exc.hint}", err=True)
        return typer.Exit(code=2)
    raise exc


@platform_app.command("add")
def platform_add(
    issuer: Annotated[str, typer.Option(help="The platform's issuer (iss).")],
    client_id: Annotated[str, typer.Option(help="The client id the platform gave microcred.")],
    auth_url: Annotated[str, typer.Option(help="OIDC authentication endpoint.")],
    token_url: Annotated[str, typer.Option(help="OAuth2 token endpoint.")],
    jwks_url: Annotated[str, typer.Option(help="The platform's JWKS URL.")],
    deployment: Annotated[list[str], typer.Option(help="Deployment id (repeat for several).")],
    name: Annotated[str, typer.Option(help="A name for people.")] = "",
    audience: Annotated[
        str, typer.Option(help="Token audience, when it differs from the token URL.")
    ] = "",
) -> None:
    """Register a platform manually (active at once); prints its id."""
    from service.db.engine import session as db_session
    from service.lti import keys, platforms

    settings = _bootstrap()
    db_migrate.upgrade(settings.resolved_database_url)
    engine = _engine(settings)
    try:
        with db_session(engine, write=True) as s:
            row = platforms.add_platform(
                s,
                issuer=issuer,
                client_id=client_id,
                auth_login_url=auth_url,
                auth_token_url=token_url,
                key_set_url=jwks_url,
                deployment_ids=deployment,
                name=name,
                auth_audience=audience or None,
            )
            keys.ensure_key(s)
            s.commit()
    except Exception as exc:
        raise _fail(exc) from exc
    typer.echo(row.id)


@platform_app.command("list")
def platform_list() -> None:
    """List registered platforms and their deployments."""
    from service.db.engine import session as db_session
    from service.lti import platforms

    settings = _bootstrap()
    engine = _engine(settings)
    with db_session(engine) as s:
        rows = platforms.list_platforms(s)
    if not rows:
        typer.echo("no platforms registered")
    for p in rows:
        state = "active" if p.active else "INACTIVE"
        deps = ", ".join(f"{d}{'' if a else ' (inactive)'}" for d, a in p.deployments) or "none"
        typer.echo(
            f"{p.id}\t{state}\t{p.name}\tissuer={p.issuer}\tclient_id={p.client_id}"
            f"\tdeployments={deps}"
        )


@platform_app.command("activate")
def platform_activate(
    platform_id: Annotated[int, typer.Argument(help="The id from `microcred platform list`.")],
    deployment: Annotated[
        str, typer.Option(help="Also add (or re-activate) this deployment id.")
    ] = "",
) -> None:
    """Activate a platform that arrived by dynamic registration."""
    from service.db.engine import session as db_session
    from service.lti import platforms

    settings = _bootstrap()
    engine = _engine(settings)
    try:
        with db_session(engine, write=True) as s:
            platforms.activate(s, platform_id, deployment_id=deployment or None)
            s.commit()
    except Exception as exc:
        raise _fail(exc) from exc
    typer.echo(f"platform {platform_id} is active")


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Make a new signing key; the old one stays published for the grace period."""
    from service import audit
    from service.db.engine import session as db_session
    from service.lti import keys

    settings = _bootstrap()
    db_migrate.upgrade(settings.resolved_database_url)
    engine = _engine(settings)
    with db_session(engine, write=True) as s:
        old, new = keys.rotate(s)
        audit.record(
            s,
            actor="cli",
            action="tool_key.rotated",
            subject=f"tool_key:{new.kid}",
            previous=old.kid if old else None,
        )
        s.commit()
    typer.echo(f"new signing key {new.kid}")
    if old is not None:
        typer.echo(
            f"previous key {old.kid} stays published for {settings.key_rotation_grace_days} days"
        )


# --- demo commands ---


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="Port of the tool (served as 127.0.0.1).")] = 8000,
    lms_port: Annotated[
        int, typer.Option(help="Port of the demo LMS (served as localhost, another site).")
    ] = 8001,
) -> None:
    """Run the service plus the bundled demo LMS, seeded; prints the URLs to open."""
    from service.demo import bootstrap, server

    settings = _bootstrap()
    db_migrate.upgrade(settings.resolved_database_url)
    try:
        tool_socket = server.bind("127.0.0.1", port)
        lms_socket = server.bind("127.0.0.1", lms_port)
    except OSError as exc:
        typer.echo(
            f"error: cannot listen on 127.0.0.1:{port} and :{lms_port} ({exc.strerror})",
            err=True,
        )
        typer.echo("hint: pick free ports with --port and --lms-port (0 = any).", err=True)
        raise typer.Exit(code=2) from exc
    tool_url = f"http://127.0.0.1:{tool_socket.getsockname()[1]}"
    lms_url = f"http://localhost:{lms_socket.getsockname()[1]}"
    apps = bootstrap.build(settings, tool_url=tool_url, lms_url=lms_url, engine=_engine(settings))
    typer.echo(
        "\n".join(
            [
                "",
                "microcred demo is running.",
                f"  Open the demo course:  {lms_url}/",
                f"  The tool:              {tool_url}/  (registered as platform {apps.platform_id},"
                f" issuer {apps.config.issuer})",
                f"  Database:              {settings.resolved_database_url}",
                "Press Ctrl-C to stop.",
                "",
            ]
        )
    )
    server.run(
        apps.tool,
        apps.lms,
        tool_socket=tool_socket,
        lms_socket=lms_socket,
        log_level=settings.log_level.lower(),
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
