"""``microcred demo``: the tool, a demo platform and a seeded course in one process."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn
from urllib.parse import urlsplit

import typer
from sqlalchemy.engine import make_url

from service.cli.common import _bootstrap, _db, _engine, _recorded_url, app
from service.cli.workers import _start_inprocess_worker
from service.db import migrate as db_migrate
from service.errors import Conflict, ServiceError
from service.settings import Settings

if TYPE_CHECKING:
    from service.demo.bootstrap import DemoApps


@app.command()
def demo(
    port: Annotated[
        int | None,
        typer.Option(
            help="Port of the tool (served as 127.0.0.1); default the one this data "
            "directory's demo was set up with, else 8000.",
            show_default=False,
        ),
    ] = None,
    lms_port: Annotated[
        int, typer.Option(help="Port of the demo LMS (served as localhost, another site).")
    ] = 8001,
    reset: Annotated[
        bool,
        typer.Option(
            "--reset",
            help="Start over: delete the demo's SQLite database (results, decisions, "
            "credentials) before seeding it again.",
        ),
    ] = False,
) -> None:
    """Run the service plus the bundled demo LMS, seeded; prints the URLs to open."""
    from service.demo import bootstrap, server
    from service.issuer import identity

    settings = _bootstrap()
    if reset:
        _reset_demo_database(settings)
    db_migrate.upgrade(settings.resolved_database_url)
    recorded = _recorded_url(settings)
    # The tool's URL is the demo's issuer identity: a data directory set up at one port
    # issues there (service/issuer/identity.py).
    recorded_port = urlsplit(recorded).port if recorded else None
    if port is None:
        port = recorded_port or 8000
    tool_socket, lms_socket = _bind(port, lms_port)
    tool_url = f"http://127.0.0.1:{tool_socket.getsockname()[1]}"
    lms_url = f"http://localhost:{lms_socket.getsockname()[1]}"
    if recorded is not None and recorded != tool_url:
        tool_socket.close()
        lms_socket.close()
        _refuse_other_issuer(recorded, recorded_port, tool_url)
    engine = _engine(settings)  # the tool's, for as long as the demo runs
    apps = bootstrap.build(settings, tool_url=tool_url, lms_url=lms_url, engine=engine)
    # flows: the course, its rules, the Moodle WS connection and the delivery targets.
    from service.demo import seed

    course_id = seed.seed(engine, apps.config, platform_id=apps.platform_id)
    # Recorded now, so `microcred verify` and `credential revoke` on this database act as
    # this demo's issuer from the start.
    with _db(settings, write=True) as s:
        identity.ensure(s, apps.tool.state.settings)
        s.commit()
    stop, worker_thread = _start_inprocess_worker(apps.tool.state.settings, enabled=True)
    _print_urls(settings, apps, tool_url=tool_url, lms_url=lms_url, course_id=course_id)
    try:
        server.run(
            apps.tool,
            apps.lms,
            tool_socket=tool_socket,
            lms_socket=lms_socket,
            log_level=settings.log_level.lower(),
        )
    finally:
        stop.set()
        if worker_thread is not None:
            worker_thread.join(timeout=30)


def _bind(port: int, lms_port: int) -> tuple[socket.socket, socket.socket]:
    """The tool's and the demo LMS's listening sockets; exit 2 when a port is taken."""
    from service.demo import server

    try:
        return server.bind("127.0.0.1", port), server.bind("127.0.0.1", lms_port)
    except OSError as exc:
        raise ServiceError(
            f"cannot listen on 127.0.0.1:{port} and :{lms_port} ({exc.strerror})",
            hint="pick free ports with --port and --lms-port (0 = any).",
        ) from exc


def _refuse_other_issuer(recorded: str, recorded_port: int | None, tool_url: str) -> NoReturn:
    """Exit 2: this database's demo issues at another URL (service/issuer/identity.py)."""
    from service.issuer import keys

    same = (
        f"run `microcred demo --port {recorded_port}`, or "
        if recorded.startswith("http://127.0.0.1:")
        else ""
    )
    raise Conflict(
        f"this database's demo issues as {recorded} "
        f"({keys.did_web(recorded)}), not as {tool_url}; nothing was changed",
        hint=f"{same}start a new demo with another data directory: "
        "MICROCRED_DATA_DIR=var-demo2 microcred demo",
    )


def _print_urls(
    settings: Settings, apps: DemoApps, *, tool_url: str, lms_url: str, course_id: int
) -> None:
    """What to open, where the data is, and which issuer the commands act as."""
    from service.issuer import keys

    if settings.database_url:
        same_db = "with the same MICROCRED_DATABASE_URL"
    else:
        same_db = f"with MICROCRED_DATA_DIR={settings.data_dir.resolve()}"
        if not settings.data_dir.is_absolute():
            same_db = f"from this directory (or {same_db})"
    typer.echo(
        "\n".join(
            [
                "",
                "microcred demo is running.",
                f"  Open the demo course:  {lms_url}/",
                f"  The tool:              {tool_url}/  (registered as platform {apps.platform_id},"
                f" issuer {apps.config.issuer})",
                f"  Database:              {settings.resolved_database_url}",
                f"  Issuer:                {keys.did_web(tool_url)}; `microcred` commands run"
                f" {same_db} act as this issuer (e.g. `microcred verify FILE`)",
                f"  Demo course:           course {course_id}; the worker pulls its roster (NRPS)"
                " and results (Moodle web services) every "
                f"{settings.sync_interval_seconds} s, launches or not",
                "Press Ctrl-C to stop.",
                "",
            ]
        )
    )


def _reset_demo_database(settings: Settings) -> None:
    url = make_url(settings.resolved_database_url)
    if not url.drivername.startswith("sqlite") or not url.database:
        typer.echo(
            "error: --reset deletes the demo's SQLite file; this database is "
            f"{url.render_as_string(hide_password=True)}.",
            err=True,
        )
        typer.echo("hint: drop and recreate that database yourself, then run the demo.", err=True)
        raise typer.Exit(code=2)
    for suffix in ("", "-wal", "-shm"):
        Path(url.database + suffix).unlink(missing_ok=True)
    typer.echo(f"demo reset: deleted {url.database}")
