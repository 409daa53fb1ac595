"""The ``microcred`` command. Each command is one transaction boundary."""

from __future__ import annotations

import json
import logging
from pathlib import Path
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


# --- assessment commands ---


@app.command()
def evaluate(
    policy: Annotated[
        Path, typer.Option("--policy", help="Policy file, JSON or YAML (docs/policies.md).")
    ],
    evidence: Annotated[
        Path, typer.Option("--evidence", help="Evidence file, JSON or YAML (docs/policies.md).")
    ],
    now: Annotated[
        str | None,
        typer.Option(
            "--now",
            help="Evaluation time, ISO 8601 (default: the evidence file's 'now', else the "
            "current time).",
        ),
    ] = None,
) -> None:
    """Dry-run of the rules engine: JSON decisions with reasons (exit 2: a file is invalid)."""
    from service.policies import dryrun, files

    try:
        result = dryrun.run(policy, evidence, now=now)
    except files.FileError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(result, indent=2, ensure_ascii=False))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
