"""The ``microcred`` command. Each command is one transaction boundary."""

from __future__ import annotations

import logging
from typing import Annotated, NoReturn

import typer

from service import secretbox
from service.db import migrate as db_migrate
from service.db.engine import make_engine
from service.errors import ServiceError
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


# --- sources commands ---
token_app = typer.Typer(help="API tokens for the JSON API.", no_args_is_help=True)
import_app = typer.Typer(help="Import results into a course's evidence.", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(import_app, name="import")


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="Who uses it, e.g. 'proctoring-service'.")],
    scope: Annotated[
        list[str] | None,
        typer.Option(help="Scope to grant (repeat); default evidence:write."),
    ] = None,
) -> None:
    """Create an API token; it is printed once and stored only as a hash."""
    from service import apitoken
    from service.db.engine import session
    from service.db.types import utcnow

    settings = _bootstrap()
    with session(_engine(settings), write=True) as s:
        try:
            row, token = apitoken.create(
                s, name=name, scopes=scope or ["evidence:write"], actor="cli", now=utcnow()
            )
        except ServiceError as exc:
            _fail(exc)
        s.commit()
    typer.echo(f"token {row.name!r} (id {row.id}, scopes: {', '.join(row.scopes)})")
    typer.echo("Copy it now; it is not shown again:")
    typer.echo(token)


@import_app.command("csv")
def import_csv_command(
    file: Annotated[typer.FileBinaryRead, typer.Argument(help="CSV file (docs/csv-import.md).")],
    course: Annotated[int, typer.Option("--course", help="microcred course id.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would happen; write nothing.")
    ] = False,
    partial: Annotated[
        bool, typer.Option("--partial", help="Write the valid rows even if some are bad.")
    ] = False,
) -> None:
    """Import results from a CSV file. All-or-nothing unless --partial."""
    import json

    from service.db.engine import session
    from service.db.types import utcnow
    from service.sources import csvimport

    settings = _bootstrap()
    mode: csvimport.Mode = "dry_run" if dry_run else "partial" if partial else "all"
    data = file.read(csvimport.MAX_BYTES + 1)
    with session(_engine(settings), write=True) as s:
        try:
            report = csvimport.import_csv(
                s,
                course_id=course,
                data=data,
                mode=mode,
                filename=file.name,
                actor="cli",
                now=utcnow(),
            )
        except ServiceError as exc:
            _fail(exc)
        if mode != "dry_run":
            s.commit()
    for p in report.rejected:
        typer.echo(f"{p.where}, column {p.field}: {p.reason}", err=True)
    counts = (
        f"{report.new} new, {report.updated} updated, {report.unchanged} unchanged, "
        f"{len(report.rejected)} rejected"
    )
    if dry_run:
        typer.echo(f"dry run, nothing written: {counts}")
    elif report.applied:
        typer.echo(f"imported (run {report.import_run_id}): {counts}")
    else:
        typer.echo(f"NOT imported (all-or-nothing), it would have been: {counts}")
        typer.echo("Fix the rows above, or use --partial to write the valid rows.", err=True)
    typer.echo(json.dumps(report.as_dict()))
    if report.rejected and not (dry_run or partial):
        raise typer.Exit(1)


def _fail(exc: ServiceError) -> NoReturn:
    typer.echo(f"error: {exc.detail}", err=True)
    if exc.hint:
        typer.echo(exc.hint, err=True)
    raise typer.Exit(2)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
