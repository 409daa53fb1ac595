"""What every ``microcred`` command shares: the Typer app, settings bootstrap, the
database engine, the issuer identity check and error exits."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

import typer
from sqlmodel import Session

from service import logredact, requestlog, secretbox
from service.db import migrate as db_migrate
from service.db.engine import make_engine, session
from service.errors import ServiceError
from service.settings import Settings, get_settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from service.flows import evaluating

app = typer.Typer(
    name="microcred",
    help="Competency levels from LMS results, issued as Open Badges 3.0 micro-credentials.",
    no_args_is_help=True,
    add_completion=False,
)


def group(name: str, text: str, *, parent: typer.Typer = app) -> typer.Typer:
    """The command group ``microcred NAME`` (``text`` is its help, shown when no command is
    given), under ``parent``."""
    commands = typer.Typer(help=text, no_args_is_help=True)
    parent.add_typer(commands, name=name)
    return commands


def _bootstrap(settings: Settings | None = None, *, migrate: bool = False) -> Settings:
    """Logging, secrets and (with ``migrate``) the database at the latest migration."""
    settings = settings or get_settings()
    requestlog.configure(level=settings.log_level, json_lines=settings.log_format == "json")
    # Migrations run before most commands: their INFO lines are noise to the person typing.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logredact.install()
    secretbox.configure(secretbox.load_master_key(settings))
    if migrate:
        db_migrate.upgrade(settings.resolved_database_url)
    return settings


def _engine(settings: Settings) -> Engine:
    return make_engine(
        settings.resolved_database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )


@contextlib.contextmanager
def _engine_of(settings: Settings) -> Iterator[Engine]:
    """An engine for one command, closed afterwards (PostgreSQL pools)."""
    engine = _engine(settings)
    try:
        yield engine
    finally:
        engine.dispose()


def _identity(settings: Settings, *, strict: bool = True) -> Settings:
    """The settings with the database's recorded issuer identity: its base URL adopted when
    MICROCRED_BASE_URL is unset (service/issuer/identity.py). Exit 2, before anything is
    written, when MICROCRED_BASE_URL names another URL (unless not ``strict``: reading)."""
    from service.issuer import identity

    with _engine_of(settings) as engine:
        return identity.settle(engine, settings, strict=strict)


def _recorded_url(settings: Settings) -> str | None:
    """The base URL this database issues as, if it recorded one (service/issuer/identity.py)."""
    from service.issuer import identity

    with _engine_of(settings) as engine:
        return identity.recorded_url(engine)


def _fail(exc: Exception, *, code: int = 2) -> typer.Exit:
    """Exit ``code`` with a ``ServiceError``'s detail and hint; any other exception is
    raised."""
    if isinstance(exc, ServiceError):
        typer.echo(f"error: {exc.detail}", err=True)
        if exc.hint:
            typer.echo(f"hint: {exc.hint}", err=True)
        return typer.Exit(code=code)
    raise exc


@contextlib.contextmanager
def _db(settings: Settings, *, write: bool = False) -> Iterator[Session]:
    """One session for one command; the engine is closed afterwards (PostgreSQL pools)."""
    with _engine_of(settings) as engine, session(engine, write=write) as s:
        yield s


def _report(summary: evaluating.Summary, head: str) -> None:
    """An evaluation's problems (stderr), then ``head`` and what it did with the awards."""
    for problem in summary.problems:
        typer.echo(f"problem: {problem}", err=True)
    sep = " " if head.endswith(":") else ", "
    typer.echo(
        f"{head}{sep}{summary.issued} issued, {summary.upgraded} upgraded, "
        f"{summary.pending} awaiting approval, {summary.flagged} flagged, "
        f"{summary.revoked} revoked"
        + (f", {summary.blocked} held back by a revocation" if summary.blocked else "")
    )
