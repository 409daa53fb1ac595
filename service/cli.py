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


# --- issuer commands ---
issuer_app = typer.Typer(help="Issuer keys (Open Badges 3.0 signing).", no_args_is_help=True)
credential_app = typer.Typer(help="Issued credentials: revoke, unrevoke.", no_args_is_help=True)
app.add_typer(issuer_app, name="issuer")
app.add_typer(credential_app, name="credential")


@app.command()
def verify(
    source: Annotated[str, typer.Argument(help="A credential file (JSON or JWS) or its URL.")],
    allow_network: Annotated[
        bool,
        typer.Option(
            "--allow-network",
            help="Resolve other issuers' DIDs, keys and status lists over the network.",
        ),
    ] = False,
) -> None:
    """Verify an OB 3.0 credential; print a JSON report; exit 1 if invalid."""
    import json
    from pathlib import Path

    from service.db.engine import session
    from service.db.types import utcnow
    from service.errors import ServiceError
    from service.issuer import fetch as issuer_fetch
    from service.issuer import service as issuer_service

    settings = _bootstrap()
    try:
        if source.startswith(("https://", "http://")):
            data = issuer_fetch.fetch_text(source, accept=issuer_fetch.ACCEPT_CREDENTIAL)
        else:
            path = Path(source)
            if not path.is_file():
                typer.echo(f"error: {source} is neither a file nor an http(s) URL", err=True)
                raise typer.Exit(2)
            data = path.read_text("utf-8", errors="replace")
        engine = _engine(settings)
        try:
            with session(engine) as s:
                report = issuer_service.verify_input(
                    s,
                    settings,
                    data,
                    now=utcnow(),
                    fetch=issuer_fetch.fetch_json if allow_network else None,
                )
        finally:
            engine.dispose()
    except ServiceError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(report.as_dict(), indent=2))
    if not report.valid:
        typer.echo("invalid because " + "; ".join(report.reasons), err=True)
        raise typer.Exit(1)


def _set_revoked(credential_id: str, reason: str, *, revoked: bool) -> None:
    from service.db.engine import session
    from service.db.types import utcnow
    from service.errors import ServiceError
    from service.issuer import service as issuer_service

    settings = _bootstrap()
    action = issuer_service.revoke if revoked else issuer_service.unrevoke
    engine = _engine(settings)
    try:
        with session(engine, write=True) as s:
            row = action(
                s, settings=settings, uuid=credential_id, reason=reason, actor="cli", now=utcnow()
            )
            s.commit()
    except ServiceError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    state = "revoked" if row.revoked else "no longer revoked"
    typer.echo(f"credential {row.uuid} is {state} (status list {row.status_list_id})")


@credential_app.command("revoke")
def credential_revoke(
    credential_id: Annotated[str, typer.Argument(help="The credential id (uuid).")],
    reason: Annotated[str, typer.Option(help="Why it is revoked (kept in the audit log).")],
) -> None:
    """Revoke a credential: its status-list bit is set and the list re-signed."""
    _set_revoked(credential_id, reason, revoked=True)


@credential_app.command("unrevoke")
def credential_unrevoke(
    credential_id: Annotated[str, typer.Argument(help="The credential id (uuid).")],
    reason: Annotated[str, typer.Option(help="Why the revocation is undone.")],
) -> None:
    """Undo a revocation made in error."""
    _set_revoked(credential_id, reason, revoked=False)


@issuer_app.command("rotate-keys")
def issuer_rotate_keys() -> None:
    """Retire the issuer signing keys and create new ones (old ones stay published)."""
    from service.db.engine import session
    from service.db.types import utcnow
    from service.issuer import service as issuer_service

    settings = _bootstrap()
    db_migrate.upgrade(settings.resolved_database_url)
    engine = _engine(settings)
    try:
        with session(engine, write=True) as s:
            new = issuer_service.rotate_keys(s, settings=settings, now=utcnow(), actor="cli")
            s.commit()
    finally:
        engine.dispose()
    typer.echo("new issuer keys: " + ", ".join(new))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
