"""The ``microcred`` command. Each command is one transaction boundary."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Annotated, NoReturn

import typer
from sqlmodel import Session

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
@contextlib.contextmanager
def _db(settings: Settings, *, write: bool = False) -> Iterator[Session]:
    """One session for one command; the engine is closed afterwards (PostgreSQL pools)."""
    from service.db.engine import session

    engine = _engine(settings)
    try:
        with session(engine, write=write) as s:
            yield s
    finally:
        engine.dispose()


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
    from service.db.types import utcnow

    settings = _bootstrap()
    with _db(settings, write=True) as s:
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

    from service.db.types import utcnow
    from service.sources import csvimport

    settings = _bootstrap()
    mode: csvimport.Mode = "dry_run" if dry_run else "partial" if partial else "all"
    data = file.read(csvimport.MAX_BYTES + 1)
    with _db(settings, write=True) as s:
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


source_app = typer.Typer(help="Connections to LMS data APIs (Moodle WS, Canvas REST).")
app.add_typer(source_app, name="source")


@source_app.command("add")
def source_add(
    name: Annotated[str, typer.Option(help="A name for the connection.")],
    kind: Annotated[str, typer.Option(help="moodle or canvas.")],
    base_url: Annotated[str, typer.Option(help="Site root, e.g. https://moodle.example.edu.")],
    platform: Annotated[int | None, typer.Option(help="Platform id it belongs to.")] = None,
    client_id: Annotated[str, typer.Option(help="Canvas developer key id (refresh).")] = "",
) -> None:
    """Add an LMS data connection; secrets are read from a prompt (or MICROCRED_SOURCE_*
    environment variables), never from the command line, and stored encrypted."""
    import os
    from urllib.parse import urlsplit

    from sqlmodel import select

    from service.db.models import SourceConnection
    from service.sources import sync

    if kind not in sync.KINDS:
        _fail(ServiceError(f"kind must be one of {', '.join(sync.KINDS)}, not {kind!r}"))
    if urlsplit(base_url).scheme not in ("https", "http") or not urlsplit(base_url).netloc:
        _fail(ServiceError(f"{base_url!r} is not an http(s) URL"))
    token = os.environ.get("MICROCRED_SOURCE_TOKEN") or typer.prompt(
        "API token (Moodle web service token / Canvas access token)", hide_input=True
    )
    refresh = secret = None
    if kind == "canvas" and client_id:
        refresh = os.environ.get("MICROCRED_SOURCE_REFRESH_TOKEN") or typer.prompt(
            "Canvas refresh token", hide_input=True
        )
        secret = os.environ.get("MICROCRED_SOURCE_CLIENT_SECRET") or typer.prompt(
            "Canvas developer key secret", hide_input=True
        )
    settings = _bootstrap()
    with _db(settings, write=True) as s:
        if s.exec(select(SourceConnection).where(SourceConnection.name == name)).first():
            _fail(ServiceError(f"a source connection named {name!r} exists"))
        row = SourceConnection(
            name=name,
            kind=kind,
            base_url=base_url.rstrip("/"),
            platform_id=platform,
            access_token=token,
            refresh_token=refresh,
            client_id=client_id,
            client_secret=secret,
        )
        s.add(row)
        s.commit()
    typer.echo(f"source connection {name!r} added (id {row.id})")


@source_app.command("list")
def source_list() -> None:
    """List LMS data connections (never their secrets)."""
    from sqlmodel import select

    from service.db.models import SourceConnection

    settings = _bootstrap()
    with _db(settings) as s:
        for row in s.exec(select(SourceConnection)).all():
            state = "active" if row.active else "inactive"
            typer.echo(f"{row.id}\t{row.name}\t{row.kind}\t{row.base_url}\t{state}")


@app.command("sync")
def sync_command(
    course: Annotated[int, typer.Option("--course", help="microcred course id.")],
    source: Annotated[str, typer.Option("--source", help="Source connection name.")],
    lms_course_id: Annotated[
        str | None,
        typer.Option(help="The LMS course id (Canvas: $Canvas.course.id); default context id."),
    ] = None,
) -> None:
    """Pull a course's quiz, assignment and rubric results from the LMS now."""
    import json

    from service.db.types import utcnow
    from service.sources import sync

    settings = _bootstrap()
    with _db(settings, write=True) as s:
        try:
            conn = sync.get_connection(s, name=source)
            report = sync.sync_course(
                s,
                course_id=course,
                connector=sync.connector_for(s, conn),
                now=utcnow(),
                lms_course_id=lms_course_id,
                connection_id=conn.id,
                actor="cli",
            )
        except ServiceError as exc:
            _fail(exc)
        s.commit()
    for p in report.rejected:
        typer.echo(f"{p.where}, {p.field}: {p.reason}", err=True)
    typer.echo(
        f"synced: {report.new} new, {report.updated} updated, {report.unchanged} unchanged, "
        f"{len(report.rejected)} rejected"
    )
    typer.echo(json.dumps(report.as_dict()))


def _fail(exc: ServiceError) -> NoReturn:
    typer.echo(f"error: {exc.detail}", err=True)
    if exc.hint:
        typer.echo(exc.hint, err=True)
    raise typer.Exit(2)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
