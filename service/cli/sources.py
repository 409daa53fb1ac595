"""Sources commands: ``microcred token ...``, ``microcred import ...``, ``microcred source ...``
and ``microcred sync``."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

import typer
from sqlmodel import select

from service.cli.common import _bootstrap, _db, _engine_of, _identity, _report, app, group
from service.db.types import utcnow
from service.errors import BadInput, ServiceError
from service.settings import Settings

if TYPE_CHECKING:
    from service.db.models import SourceConnection

token_app = group("token", "API tokens for the JSON API.")
import_app = group("import", "Import results into a course's evidence.")


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

    settings = _bootstrap()
    with _db(settings, write=True) as s:
        row, token = apitoken.create(
            s, name=name, scopes=scope or ["evidence:write"], actor="cli", now=utcnow()
        )
        s.commit()
    typer.echo(f"token {row.name!r} (id {row.id}, scopes: {', '.join(row.scopes)})")
    typer.echo("Copy it now; it is not shown again:")
    typer.echo(token)


def _evaluate_new_evidence(settings: Settings) -> None:
    """After an import or sync: queue the learners whose results changed and evaluate
    them here when they are few (``MICROCRED_EVALUATION_INLINE_LEARNERS``), as the API and
    the pages do, and say what it issued (or how many wait for the workers)."""

    from service.flows import evaluation_queue

    with _engine_of(settings) as engine:
        done = evaluation_queue.evaluate_new_evidence(engine, settings=settings, actor="cli")
    for course_id, summary in done.items():
        if summary.queued:
            typer.echo(f"course {course_id}: {summary.queued} learners queued for the workers")
        else:
            _report(summary, f"evaluated course {course_id}: {summary.learners} learners")
        typer.echo(json.dumps({"course_id": course_id, **summary.as_dict()}))


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
    evaluate: Annotated[
        bool,
        typer.Option(
            "--evaluate/--no-evaluate", help="Evaluate the course's learners after the import."
        ),
    ] = True,
) -> None:
    """Import results from a CSV file (all-or-nothing unless --partial), then evaluate the
    course's learners and issue what they earned."""

    from service.sources import csvimport

    settings = _identity(_bootstrap()) if evaluate and not dry_run else _bootstrap()
    mode: csvimport.Mode = "dry_run" if dry_run else "partial" if partial else "all"
    data = file.read(csvimport.MAX_BYTES + 1)
    with _db(settings, write=True) as s:
        report = csvimport.import_csv(
            s,
            course_id=course,
            data=data,
            mode=mode,
            filename=file.name,
            actor="cli",
            now=utcnow(),
        )
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
    if report.applied and not dry_run and evaluate:
        _evaluate_new_evidence(settings)
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
    from service.db.models import SourceConnection
    from service.sources import sync

    if kind not in sync.KINDS:
        raise ServiceError(f"kind must be one of {', '.join(sync.KINDS)}, not {kind!r}")
    if urlsplit(base_url).scheme not in ("https", "http") or not urlsplit(base_url).netloc:
        raise ServiceError(f"{base_url!r} is not an http(s) URL")
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
            raise ServiceError(f"a source connection named {name!r} exists")
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
    from service.db.models import SourceConnection

    settings = _bootstrap()
    with _db(settings) as s:
        for row in s.exec(select(SourceConnection)).all():
            state = "active" if row.active else "inactive"
            typer.echo(f"{row.id}\t{row.name}\t{row.kind}\t{row.base_url}\t{state}")


@app.command("sync")
def sync_command(
    course: Annotated[int, typer.Option("--course", help="microcred course id.")],
    source: Annotated[
        str | None,
        typer.Option("--source", help="Source connection name; default the course's own."),
    ] = None,
    lms_course_id: Annotated[
        str | None,
        typer.Option(
            help="The LMS course id (Canvas: $Canvas.course.id); default the one the course "
            "was connected with, else its LTI context id."
        ),
    ] = None,
    evaluate: Annotated[
        bool,
        typer.Option(
            "--evaluate/--no-evaluate", help="Evaluate the course's learners after the pull."
        ),
    ] = True,
) -> None:
    """Pull a course's quiz, assignment and rubric results from the LMS now, then evaluate
    the course's learners and issue what they earned."""

    from service import outbound
    from service.flows import syncing
    from service.sources import sync

    settings = _identity(_bootstrap()) if evaluate else _bootstrap()
    with _engine_of(settings) as engine:
        conn, lms_course_id = _source_of(settings, course, source, lms_course_id)
        # The LMS is read with no transaction open (SQLite's write lock is not held while
        # it answers); a refreshed Canvas token is saved at once in its own transaction.
        with outbound.client(outbound.policy(settings), timeout=30.0) as http:
            assert conn.id is not None
            fetched = sync.connector_for(
                None, conn, client=http, on_refresh=syncing.token_saver(engine, conn.id)
            )
            pull = syncing.prefetched_pull(
                engine,
                course_id=course,
                connection=conn,
                lms_course_id=lms_course_id,
                connector=fetched,
                http=http,
            )
        with _db(settings, write=True) as s:
            report = syncing.store_fetched(s, pull=pull, now=utcnow(), actor="cli")
            s.commit()
    for p in report.rejected:
        typer.echo(f"{p.where}, {p.field}: {p.reason}", err=True)
    typer.echo(
        f"synced: {report.new} new, {report.updated} updated, {report.unchanged} unchanged, "
        f"{report.removed} removed, {len(report.rejected)} rejected"
    )
    typer.echo(json.dumps(report.as_dict()))
    if evaluate:
        _evaluate_new_evidence(settings)


def _source_of(
    settings: Settings, course: int, source: str | None, lms_course_id: str | None
) -> tuple[SourceConnection, str | None]:
    """The connection to pull from (named, else the course's own) and the LMS course id
    (given, else the one the course was connected with), detached from the session."""
    from service.db.models import SourceConnection
    from service.flows import setup_store
    from service.sources import sync

    with _db(settings) as s:
        setup = setup_store.course_setup(s, course_id=course)
        if source is not None:
            conn = sync.get_connection(s, name=source)
        elif setup.source_connection_id is not None and (
            own := s.get(SourceConnection, setup.source_connection_id)
        ):
            conn = own
        else:
            raise BadInput(
                f"course {course} is not connected to an LMS source",
                hint="Connect it with microcred course connect, or name one with --source "
                "(microcred source list).",
            )
        if lms_course_id is None and setup.lms_course_id:
            lms_course_id = setup.lms_course_id
        s.expunge(conn)
    return conn, lms_course_id
