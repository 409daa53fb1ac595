"""The ``microcred`` command. Each command is one transaction boundary."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from sqlmodel import Session

from service import logredact, secretbox
from service.db import migrate as db_migrate
from service.db.engine import make_engine
from service.errors import BadInput, ServiceError
from service.settings import Settings, get_settings

if TYPE_CHECKING:
    from service import flows

app = typer.Typer(
    name="microcred",
    help="Competency levels from LMS results, issued as Open Badges 3.0 micro-credentials.",
    no_args_is_help=True,
    add_completion=False,
)


def _bootstrap(settings: Settings | None = None) -> Settings:
    settings = settings or get_settings()
    logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s")
    logredact.install()
    secretbox.configure(secretbox.load_master_key(settings))
    return settings


def _engine(settings: Settings):  # type: ignore[no-untyped-def]
    return make_engine(settings.resolved_database_url)


def _identity(settings: Settings, *, strict: bool = True) -> Settings:
    """The settings with the database's recorded issuer identity: its base URL adopted when
    MICROCRED_BASE_URL is unset (service/issuer/identity.py). Exit 2, before anything is
    written, when MICROCRED_BASE_URL names another URL (unless not ``strict``: reading)."""
    from service.issuer import identity

    engine = _engine(settings)
    try:
        return identity.settle(engine, settings, strict=strict)
    except identity.IdentityMismatch as exc:
        raise _fail(exc) from None
    finally:
        engine.dispose()


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

    from service.issuer import identity

    settings = _bootstrap()
    db_migrate.upgrade(settings.resolved_database_url)
    if not identity.explicit(settings):
        # No public URL configured: the one this database issues as, else (nothing issued
        # yet) where the tool listens (lti: LTI redirect and target link URIs are checked
        # against it).
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
        engine = _engine(settings)
        try:
            recorded = identity.recorded_url(engine)
        finally:
            engine.dispose()
        os.environ["MICROCRED_BASE_URL"] = recorded or f"http://{shown}:{port}"
        if recorded is not None:
            typer.echo(f"base URL {recorded}: the issuer identity this database records", err=True)
        get_settings.cache_clear()
        settings = _bootstrap()
    settings = _identity(settings)  # refuse to start under another issuer's URL
    stop, thread = _start_inprocess_worker(settings, enabled=not no_worker)
    try:
        _run_uvicorn(uvicorn, host, port, proxy_headers, settings)
    finally:
        stop.set()
        if thread is not None:
            thread.join(timeout=30)


def _start_inprocess_worker(settings: Settings, *, enabled: bool) -> tuple[Any, Any]:
    import threading

    stop = threading.Event()
    if not enabled:
        return stop, None
    w = _delivery_worker(settings, threads=4, batch=8)

    def loop() -> None:
        try:
            w.run(stop)
        finally:
            w.close()
            w.engine.dispose()

    thread = threading.Thread(target=loop, name="delivery-worker", daemon=True)
    thread.start()
    return stop, thread


def _run_uvicorn(
    uvicorn: Any, host: str, port: int, proxy_headers: bool, settings: Settings
) -> None:
    _ensure_tool_key(settings)
    from service.serving import CorkedHttpToolsProtocol

    uvicorn.run(
        "service.serving:served_app",
        factory=True,
        host=host,
        port=port,
        http=CorkedHttpToolsProtocol,
        proxy_headers=proxy_headers,
        log_level=settings.log_level.lower(),
        log_config=logredact.uvicorn_log_config(),
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


def _show_provenance(found: Any) -> None:
    p = found.platform
    recorded = "not recorded (registered before microcred kept it, or not by dynamic registration)"
    deps = ", ".join(f"{d}{'' if a else ' (inactive)'}" for d, a in p.deployments) or "none yet"
    lines = [
        f"platform {p.id}: {p.name} ({'active' if p.active else 'INACTIVE'})",
        f"  registered at:        {found.registered_at.isoformat(timespec='seconds')}",
        f"  registered by:        {found.registered_by or 'no record'}",
        f"  openid-configuration: {found.openid_configuration or recorded}",
        f"  from address:         {found.source_ip or recorded}",
        f"  issuer:               {p.issuer}",
        f"  client id:            {p.client_id}",
        f"  product:              {p.product_family or 'not given'}",
        f"  login URL:            {found.auth_login_url}",
        f"  token URL:            {found.auth_token_url}",
        f"  key set (JWKS) URL:   {found.key_set_url}",
        f"  deployments:          {deps}",
    ]
    for line in lines:
        typer.echo(line)


@platform_app.command("activate")
def platform_activate(
    platform_id: Annotated[int, typer.Argument(help="The id from `microcred platform list`.")],
    deployment: Annotated[
        str, typer.Option(help="Also add (or re-activate) this deployment id.")
    ] = "",
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask; activate after showing the record.")
    ] = False,
) -> None:
    """Activate a platform that arrived by dynamic registration, after showing where it came
    from and asking (an institution-level act: no page of microcred can do it)."""
    from service.db.engine import session as db_session
    from service.lti import platforms

    settings = _bootstrap()
    engine = _engine(settings)
    try:
        with db_session(engine) as s:
            found = platforms.provenance(s, platform_id)
    except Exception as exc:
        raise _fail(exc) from exc
    _show_provenance(found)
    if not found.platform.active:
        typer.echo(
            "Once active, this issuer can launch its users into microcred with its own keys. "
            "Check that the issuer and the addresses above are your institution's platform."
        )
    what = f"platform {platform_id}" + (f" with deployment {deployment}" if deployment else "")
    if not yes and not typer.confirm(f"Activate {what}?", default=False):
        typer.echo("not activated", err=True)
        raise typer.Exit(code=1)
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
    from service.issuer import identity, limits
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
            with path.open("rb") as file:  # the verifier refuses anything longer
                data = file.read(limits.DEFAULT.max_bytes + 1).decode("utf-8", "replace")
        engine = _engine(settings)
        try:
            # This database's own credentials resolve offline under the DID it recorded,
            # whatever MICROCRED_BASE_URL says (verifying signs nothing).
            settings = identity.settle(engine, settings, strict=False)
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
    from service import flows
    from service.db.engine import session
    from service.db.types import utcnow
    from service.errors import ServiceError
    from service.issuer import identity
    from service.issuer import service as issuer_service

    settings = _identity(_bootstrap())
    # Revoking goes the instructor page's way: repositories, re-award block, audit.
    action = flows.revoke_credential if revoked else issuer_service.unrevoke
    engine = _engine(settings)
    try:
        with session(engine, write=True) as s:
            row = action(
                s, settings=settings, uuid=credential_id, reason=reason, actor="cli", now=utcnow()
            )
            s.commit()
    except identity.IdentityMismatch as exc:
        raise _fail(exc) from None
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
    """Revoke a credential: status list re-signed, revocation sent to every repository."""
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
    settings = _identity(settings)
    engine = _engine(settings)
    try:
        with session(engine, write=True) as s:
            new = issuer_service.rotate_keys(s, settings=settings, now=utcnow(), actor="cli")
            s.commit()
    finally:
        engine.dispose()
    typer.echo("new issuer keys: " + ", ".join(new))


@issuer_app.command("repair-status-lists")
def issuer_repair_status_lists() -> None:
    """Re-sign the status lists signed under another URL than this database's issuer
    identity (bits unchanged), so the credentials on them verify again."""
    from service.db.types import utcnow
    from service.issuer import identity
    from service.issuer import service as issuer_service

    settings = _bootstrap()
    db_migrate.upgrade(settings.resolved_database_url)
    settings = _identity(settings)
    try:
        with _db(settings, write=True) as s:
            repaired = issuer_service.repair_status_lists(
                s, settings=settings, now=utcnow(), actor="cli"
            )
            s.commit()
    except identity.IdentityMismatch as exc:
        raise _fail(exc) from None
    if not repaired:
        typer.echo(f"every status list is signed as {settings.public_base_url}; nothing to do")
    else:
        ids = ", ".join(str(i) for i in repaired)
        typer.echo(f"re-signed status list(s) {ids} as {settings.public_base_url}")


# --- delivery commands ---
outbox_app = typer.Typer(
    help="Inspect and repair deliveries to repositories.", no_args_is_help=True
)
repository_app = typer.Typer(
    help="Repositories credentials are delivered to.", no_args_is_help=True
)
app.add_typer(outbox_app, name="outbox")
app.add_typer(repository_app, name="repository")


def _delivery_worker(settings: Settings, *, threads: int, batch: int) -> Any:
    from service import flows, outbound
    from service.delivery.worker import Worker, build_connectors

    engine = _engine(settings)
    # The LMS gradebook poster (AGS) is wired by service.flows (lti and delivery stay apart).
    return Worker(
        engine,
        build_connectors(
            engine,
            ags_poster=flows.ags_poster(
                engine, outbound.client(outbound.policy(settings), timeout=30.0)
            ),
        ),
        threads=threads,
        batch=batch,
        poll_seconds=settings.worker_poll_seconds,
    )


@app.command()
def worker(
    threads: Annotated[int, typer.Option(help="Concurrent deliveries in this process.")] = 8,
    batch: Annotated[int, typer.Option(help="Rows claimed per round.")] = 16,
    once: Annotated[bool, typer.Option("--once", help="Deliver what is due, then exit.")] = False,
) -> None:
    """Deliver outbox rows (run any number of these on PostgreSQL)."""
    import signal
    import threading

    settings = _identity(_bootstrap())
    w = _delivery_worker(settings, threads=threads, batch=batch)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        w.run(stop, idle_exit=once)
    finally:
        w.close()
        w.engine.dispose()


@contextlib.contextmanager
def _outbox_session() -> Iterator[Any]:
    from service.db.engine import session

    engine = _engine(_bootstrap())
    try:
        with session(engine, write=True) as s:
            yield s
    finally:
        engine.dispose()


@outbox_app.command("list")
def outbox_list(
    status: Annotated[
        str | None, typer.Option(help="pending, held, delivered, dead, cancelled")
    ] = None,
    kind: Annotated[str | None, typer.Option(help="e.g. credly.issue_badge")] = None,
    credential: Annotated[str | None, typer.Option(help="Only this credential id.")] = None,
    limit: Annotated[int, typer.Option(help="Most rows to show.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """List deliveries, most recent first; warns about expiring repository tokens."""
    import json

    from service.db.types import utcnow
    from service.delivery import outbox, repositories
    from service.delivery.schemas import OutboxPublic

    with _outbox_session() as s:
        now = utcnow()
        warnings = [w.message for w in repositories.token_warnings(s, now=now)]
        rows = outbox.list_messages(
            s, status=status, kind=kind, credential_id=credential, limit=limit
        )
        items = [OutboxPublic.of(r, now=now) for r in rows]
    for w in warnings:
        typer.secho(f"WARNING: {w}", fg="yellow", err=True)
    if as_json:
        typer.echo(
            json.dumps(
                {"warnings": warnings, "items": [i.model_dump(mode="json") for i in items]},
                indent=2,
            )
        )
        return
    if not items:
        typer.echo("no outbox rows match")
        return
    typer.echo(f"{'ID':>6}  {'KIND':<26} {'STATUS':<10} {'TRIES':>5}  {'WHEN':<20} ERROR")
    for i in items:
        when = (i.delivered_at or i.due_at).strftime("%Y-%m-%d %H:%M:%S")
        status_txt = "in-flight" if i.in_flight else i.status
        typer.echo(
            f"{i.id:>6}  {i.kind:<26} {status_txt:<10} {i.attempts:>5}  {when:<20} "
            f"{(i.last_error or '')[:80]}"
        )


@outbox_app.command("show")
def outbox_show(ref: Annotated[str, typer.Argument(help="Row id or uuid.")]) -> None:
    """One row with every attempt: when, what was sent, what came back, why it failed."""
    from sqlmodel import select

    from service.db.models import DeliveryAttempt
    from service.delivery import outbox
    from service.errors import ServiceError

    with _outbox_session() as s:
        try:
            row = outbox.get(s, ref)
        except ServiceError as exc:
            typer.secho(f"error: {exc.detail}", fg="red", err=True)
            raise typer.Exit(1) from exc
        typer.echo(f"{row.id} {row.uuid} {row.kind} credential={row.credential_id}")
        typer.echo(
            f"status={row.status} attempts={row.attempts}/{row.max_attempts} "
            f"due={row.due_at:%Y-%m-%d %H:%M:%S} uncertain={row.uncertain}"
        )
        if row.last_error:
            typer.echo(f"last error: {row.last_error}")
        col = DeliveryAttempt.__table__.c  # type: ignore[attr-defined]
        for a in s.exec(
            select(DeliveryAttempt).where(col.outbox_message_id == row.id).order_by(col.id)
        ).all():
            typer.echo(
                f"  #{a.number} {a.started_at:%H:%M:%S} {a.duration_ms} ms {a.outcome}"
                + (f" HTTP {a.response_status}" if a.response_status else "")
                + (f" - {a.error_code}: {a.error_detail}" if a.error_code else "")
            )
            for line in a.request_summary.splitlines():
                typer.echo(f"      {line}")


def _outbox_action(action: str, ref: str) -> None:
    from service.delivery import outbox
    from service.errors import ServiceError

    with _outbox_session() as s:
        try:
            row = getattr(outbox, action)(s, ref)
        except ServiceError as exc:
            typer.secho(f"error: {exc.detail}", fg="red", err=True)
            if exc.hint:
                typer.echo(exc.hint, err=True)
            raise typer.Exit(1) from exc
        s.commit()
        typer.echo(f"{row.id} {row.kind} is now {row.status}")


@outbox_app.command("retry")
def outbox_retry(ref: Annotated[str, typer.Argument(help="Row id or uuid.")]) -> None:
    """Send a dead row again now, with a fresh attempt budget."""
    _outbox_action("retry", ref)


@outbox_app.command("redeliver")
def outbox_redeliver(ref: Annotated[str, typer.Argument(help="Row id or uuid.")]) -> None:
    """Deliver a delivered row again (repositories are checked first: no duplicates)."""
    _outbox_action("redeliver", ref)


@outbox_app.command("cancel")
def outbox_cancel(ref: Annotated[str, typer.Argument(help="Row id or uuid.")]) -> None:
    """Stop a row that has not been delivered."""
    _outbox_action("cancel", ref)


@repository_app.command("add")
def repository_add(
    kind: Annotated[str, typer.Option(help="credly, badgr, webhook or ags")],
    name: Annotated[str, typer.Option(help="Shown to administrators and learners.")],
    org_id: Annotated[str | None, typer.Option(help="Credly organization id.")] = None,
    environment: Annotated[
        str, typer.Option(help="Credly: sandbox or production; Badgr region: us, eu, test.")
    ] = "production",
    base_url: Annotated[str | None, typer.Option(help="Override the API base URL.")] = None,
    url: Annotated[str | None, typer.Option(help="Webhook receiver URL.")] = None,
    username: Annotated[str | None, typer.Option(help="Badgr account user name.")] = None,
    template: Annotated[
        list[str] | None, typer.Option(help="COMPETENCY:LEVEL=TEMPLATE_ID (repeat).")
    ] = None,
    consent: Annotated[
        str, typer.Option(help="automatic, or ask the learner first.")
    ] = "automatic",
) -> None:
    """Add a repository. The secret (Credly org token, Badgr password, webhook secret) is
    read from MICROCRED_REPOSITORY_SECRET or asked for, never taken on the command line."""
    import os

    from service.delivery import repositories
    from service.errors import ServiceError

    config: dict[str, Any] = {}
    if base_url:
        config["base_url"] = base_url
    if kind == "credly":
        config |= {"organization_id": org_id, "environment": environment}
    if kind == "badgr":
        config |= {"region": environment, "username": username}
    if url:
        config["url"] = url
    mapping: dict[str, str] = {}
    for t in template or []:
        key, sep, value = t.partition("=")
        if not sep or ":" not in key:
            typer.secho(
                f"error: --template {t!r} must look like python:advanced=TEMPLATE_ID",
                fg="red",
                err=True,
            )
            raise typer.Exit(2)
        mapping[key] = value
    if mapping:
        config["badge_classes" if kind == "badgr" else "templates"] = mapping
    secret = os.environ.get("MICROCRED_REPOSITORY_SECRET")
    if secret is None and kind != "ags":
        secret = typer.prompt("secret (token / password)", hide_input=True)
    with _outbox_session() as s:
        try:
            repo = repositories.create(
                s, kind=kind, name=name, config=config, secret=secret, consent_policy=consent
            )
        except ServiceError as exc:
            typer.secho(f"error: {exc.detail}", fg="red", err=True)
            raise typer.Exit(2) from exc
        s.commit()
        typer.echo(f"{repo.id} {repo.uuid}")


@repository_app.command("update")
def repository_update(
    ref: Annotated[str, typer.Argument(help="Repository id or uuid.")],
    template: Annotated[
        list[str] | None, typer.Option(help="COMPETENCY:LEVEL=TEMPLATE_ID to add or change.")
    ] = None,
    new_secret: Annotated[
        bool, typer.Option("--new-secret", help="Replace the token/password (180 more days).")
    ] = False,
    consent: Annotated[str | None, typer.Option(help="automatic or ask.")] = None,
    enabled: Annotated[bool | None, typer.Option("--enable/--disable")] = None,
) -> None:
    """Change a repository: template map, a new token (rotation), consent, on/off."""
    import os

    from service.delivery import repositories
    from service.errors import ServiceError

    secret = None
    if new_secret:
        secret = os.environ.get("MICROCRED_REPOSITORY_SECRET") or typer.prompt(
            "new secret (token / password)", hide_input=True
        )
    mapping: dict[str, str] = {}
    for t in template or []:
        key, sep, value = t.partition("=")
        if not sep or ":" not in key:
            typer.secho(
                f"error: --template {t!r} must look like python:advanced=TEMPLATE_ID",
                fg="red",
                err=True,
            )
            raise typer.Exit(2)
        mapping[key] = value
    with _outbox_session() as s:
        try:
            repo = repositories.update(
                s, ref, templates=mapping, secret=secret, consent_policy=consent, enabled=enabled
            )
        except ServiceError as exc:
            typer.secho(f"error: {exc.detail}", fg="red", err=True)
            raise typer.Exit(2) from exc
        s.commit()
        typer.echo(f"{repo.id} {repo.name} updated")


@repository_app.command("list")
def repository_list() -> None:
    """List repositories, with token-expiry warnings and rate-limit pauses."""
    from service.db.types import utcnow
    from service.delivery import repositories

    with _outbox_session() as s:
        warns = {w.repository_id: w.message for w in repositories.token_warnings(s)}
        for r in repositories.list_all(s):
            expires = r.secret_expires_at.strftime("%Y-%m-%d") if r.secret_expires_at else "-"
            typer.echo(
                f"{r.id:>4}  {r.kind:<8} {r.name:<30} consent={r.consent_policy:<9} "
                f"token-expires={expires}"
            )
            if r.id in warns:
                typer.secho(f"      WARNING: {warns[r.id]}", fg="yellow")
            if r.paused_until is not None and r.paused_until > utcnow():
                typer.echo(
                    f"      paused until {r.paused_until:%Y-%m-%d %H:%M:%S} UTC "
                    f"(rate limit: {r.paused_reason})"
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
            raise _fail(exc) from exc
        s.commit()
    typer.echo(f"token {row.name!r} (id {row.id}, scopes: {', '.join(row.scopes)})")
    typer.echo("Copy it now; it is not shown again:")
    typer.echo(token)


def _report(summary: flows.Summary, head: str) -> None:
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


def _evaluate_new_evidence(settings: Settings) -> None:
    """After an import or sync: evaluate the courses whose evidence changed, as the API
    and the pages do, and say what it issued."""
    import json

    from service import flows

    engine = _engine(settings)
    try:
        done = flows.evaluate_new_evidence(engine, settings=settings, actor="cli")
    finally:
        engine.dispose()
    for course_id, summary in done.items():
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
    import json

    from service.db.types import utcnow
    from service.sources import csvimport

    settings = _identity(_bootstrap()) if evaluate and not dry_run else _bootstrap()
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
            raise _fail(exc) from exc
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
    import os
    from urllib.parse import urlsplit

    from sqlmodel import select

    from service.db.models import SourceConnection
    from service.sources import sync

    if kind not in sync.KINDS:
        raise _fail(ServiceError(f"kind must be one of {', '.join(sync.KINDS)}, not {kind!r}"))
    if urlsplit(base_url).scheme not in ("https", "http") or not urlsplit(base_url).netloc:
        raise _fail(ServiceError(f"{base_url!r} is not an http(s) URL"))
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
            raise _fail(ServiceError(f"a source connection named {name!r} exists"))
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
    import json

    from service import flows, outbound
    from service.db.models import SourceConnection
    from service.db.types import utcnow
    from service.sources import sync

    settings = _identity(_bootstrap()) if evaluate else _bootstrap()
    with (
        _db(settings, write=True) as s,
        outbound.client(outbound.policy(settings), timeout=30.0) as http,
    ):
        try:
            setup = flows.course_setup(s, course_id=course)
            if source is not None:
                conn = sync.get_connection(s, name=source)
            elif setup.source_connection_id is not None and (
                own := s.get(SourceConnection, setup.source_connection_id)
            ):
                conn = own
            else:
                raise BadInput(
                    f"course {course} is not connected to an LMS source",
                    hint="Name one with --source (microcred source list).",
                )
            if lms_course_id is None and setup.lms_course_id:
                lms_course_id = setup.lms_course_id
            report = sync.sync_course(
                s,
                course_id=course,
                connector=sync.connector_for(s, conn, client=http),
                now=utcnow(),
                lms_course_id=lms_course_id,
                connection_id=conn.id,
                actor="cli",
            )
        except ServiceError as exc:
            raise _fail(exc) from exc
        s.commit()
    for p in report.rejected:
        typer.echo(f"{p.where}, {p.field}: {p.reason}", err=True)
    typer.echo(
        f"synced: {report.new} new, {report.updated} updated, {report.unchanged} unchanged, "
        f"{len(report.rejected)} rejected"
    )
    typer.echo(json.dumps(report.as_dict()))
    if evaluate:
        _evaluate_new_evidence(settings)


# --- flows commands ---

course_app = typer.Typer(
    help="Courses: re-evaluate learners, connect a source.", no_args_is_help=True
)
app.add_typer(course_app, name="course")


@course_app.command("reevaluate")
def course_reevaluate(
    course_id: Annotated[int, typer.Argument(help="The course id (see the admin page).")],
    sync: Annotated[
        bool, typer.Option("--sync", help="Pull the course's results from its LMS first.")
    ] = False,
) -> None:
    """Re-evaluate every learner of a course (issues, upgrades, flags), with a progress bar."""
    from service import flows
    from service.db.engine import session as db_session
    from service.db.types import utcnow
    from service.errors import ServiceError

    settings = _identity(_bootstrap())
    engine = _engine(settings)
    try:
        pull = flows.fetch_course(engine, course_id=course_id) if sync else None
        with (
            db_session(engine, write=True) as s,
            typer.progressbar(length=1, label=f"course {course_id}", file=None) as bar,
        ):
            now = utcnow()
            if pull is not None:
                flows.store_fetched(s, pull=pull, now=now, actor="cli")

            def step(done: int, total: int) -> None:
                bar.length = max(total, 1)
                bar.update(1)

            summary = flows.evaluate_course(
                s, settings=settings, course_id=course_id, now=now, actor="cli", progress=step
            )
            s.commit()
    except ServiceError as exc:
        raise _fail(exc) from exc
    finally:
        engine.dispose()
    _report(
        summary,
        f"{summary.learners} learners, {summary.decisions} decisions ({summary.stored} new, "
        f"{summary.unchanged} unchanged):",
    )
    typer.echo(json.dumps(summary.as_dict()))


# --- demo commands ---


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
    from urllib.parse import urlsplit

    from service.demo import bootstrap, server
    from service.issuer import identity, keys

    settings = _bootstrap()
    if reset:
        _reset_demo_database(settings)
    db_migrate.upgrade(settings.resolved_database_url)
    engine = _engine(settings)
    try:
        recorded = identity.recorded_url(engine)
    finally:
        engine.dispose()
    # The tool's URL is the demo's issuer identity: a data directory set up at one port
    # issues there (service/issuer/identity.py).
    recorded_port = urlsplit(recorded).port if recorded else None
    if port is None:
        port = recorded_port or 8000
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
    if recorded is not None and recorded != tool_url:
        tool_socket.close()
        lms_socket.close()
        typer.echo(
            f"error: this database's demo issues as {recorded} "
            f"({keys.did_web(recorded)}), not as {tool_url}; nothing was changed",
            err=True,
        )
        same = (
            f"run `microcred demo --port {recorded_port}`, or "
            if recorded.startswith("http://127.0.0.1:")
            else ""
        )
        typer.echo(
            f"hint: {same}start a new demo with another data directory: "
            "MICROCRED_DATA_DIR=var-demo2 microcred demo",
            err=True,
        )
        raise typer.Exit(code=2)
    apps = bootstrap.build(settings, tool_url=tool_url, lms_url=lms_url, engine=_engine(settings))
    # flows: the course, its rules, the Moodle WS connection and the delivery targets.
    from service.demo import seed

    course_id = seed.seed(_engine(settings), apps.config, platform_id=apps.platform_id)
    # Recorded now, so `microcred verify` and `credential revoke` on this database act as
    # this demo's issuer from the start.
    with _db(settings, write=True) as s:
        identity.ensure(s, apps.tool.state.settings)
        s.commit()
    if settings.database_url:
        same_db = "with the same MICROCRED_DATABASE_URL"
    else:
        same_db = f"with MICROCRED_DATA_DIR={settings.data_dir.resolve()}"
        if not settings.data_dir.is_absolute():
            same_db = f"from this directory (or {same_db})"
    stop, worker_thread = _start_inprocess_worker(apps.tool.state.settings, enabled=True)
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
                f"  Demo course:           course {course_id}; the instructor's 'Sync from LMS'"
                " pulls its results over Moodle web services",
                "Press Ctrl-C to stop.",
                "",
            ]
        )
    )
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


def _reset_demo_database(settings: Settings) -> None:
    from sqlalchemy.engine import make_url

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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
