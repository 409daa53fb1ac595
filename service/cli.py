"""The ``microcred`` command. Each command is one transaction boundary."""

from __future__ import annotations

import logging
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
    db_migrate.upgrade(settings.resolved_database_url)
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=host,
        port=port,
        proxy_headers=proxy_headers,
        log_level=settings.log_level.lower(),
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
    tool_socket = server.bind("127.0.0.1", port)
    lms_socket = server.bind("127.0.0.1", lms_port)
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
