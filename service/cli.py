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

from service import logredact, requestlog, secretbox
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
    requestlog.configure(level=settings.log_level, json_lines=settings.log_format == "json")
    # Migrations run before most commands: their INFO lines are noise to the person typing.
    logging.getLogger("alembic").setLevel(logging.WARNING)
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
        log_config=logredact.uvicorn_log_config(json_lines=settings.log_format == "json"),
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
    finally:
        engine.dispose()
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
    source: Annotated[
        str,
        typer.Argument(help="A credential file (JSON, VC-JWT, baked PNG or SVG badge) or URL."),
    ],
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

    data: str | bytes

    settings = _bootstrap()
    try:
        if source.startswith(("https://", "http://")):
            data = issuer_fetch.fetch_text(source, accept=issuer_fetch.ACCEPT_CREDENTIAL)
        else:
            path = Path(source)
            if not path.is_file():
                typer.echo(f"error: {source} is neither a file nor an http(s) URL", err=True)
                raise typer.Exit(2)
            # JSON, a VC-JWT, or a baked PNG/SVG badge (an image may hold more than the
            # credential); the verifier refuses a credential over its own limit.
            with path.open("rb") as file:
                data = file.read(8 * limits.DEFAULT.max_bytes + 1)
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
    from service.delivery import checks
    from service.delivery.worker import Job, Worker, build_connectors

    engine = _engine(settings)
    lms_http = outbound.client(outbound.policy(settings), timeout=30.0)
    holder: dict[str, Any] = {}

    def scheduled_sync() -> int:
        # Pull every connected course whose last pull is older than its interval
        # (MICROCRED_SYNC_INTERVAL_SECONDS) or that a launch asked for (flows.run_due_syncs).
        return len(
            flows.run_due_syncs(
                engine, settings=settings, http=lms_http, worker=holder["worker"].name
            )
        )

    def evaluate() -> int:
        # The evaluation queue (docs/scale.md): one batch of due learners.
        done, _summary = flows.run_evaluation_jobs(engine, settings=settings, limit=batch)
        return done

    # The LMS gradebook poster (AGS), the scheduled sync and the evaluation queue are wired
    # by service.flows (lti and delivery stay apart).
    worker = Worker(
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
        jobs=[
            Job(
                "lms-sync",
                scheduled_sync,
                poll_seconds=max(settings.worker_poll_seconds, 1.0),
                close=lms_http.close,
            ),
            Job("evaluation", evaluate, poll_seconds=settings.worker_poll_seconds),
            Job("repository-checks", lambda: checks.run_due(engine, worker=holder["worker"].name)),
        ],
    )
    holder["worker"] = worker
    return worker


@app.command()
def worker(
    threads: Annotated[int, typer.Option(help="Concurrent deliveries in this process.")] = 8,
    batch: Annotated[int, typer.Option(help="Rows claimed per round.")] = 16,
    once: Annotated[bool, typer.Option("--once", help="Deliver what is due, then exit.")] = False,
) -> None:
    """Deliver outbox rows, pull connected courses from their LMS on schedule and evaluate
    queued learners (run any number of these on PostgreSQL; one on SQLite)."""
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
def outbox_retry(
    refs: Annotated[list[str] | None, typer.Argument(help="Row ids or uuids.")] = None,
    all_dead: Annotated[
        bool, typer.Option("--all-dead", help="Every dead row (of --repository, if given).")
    ] = False,
    repository: Annotated[
        str | None,
        typer.Option(help="Repository id or uuid: its dead rows (with or without --all-dead)."),
    ] = None,
) -> None:
    """Send dead rows again now, each with a fresh attempt budget: the rows named, or every
    dead row (of one repository). Exit 1 if any row could not be retried."""
    from service.delivery import outbox, repositories
    from service.errors import ServiceError

    if not refs and not all_dead and repository is None:
        typer.secho("error: name rows, or give --all-dead or --repository", fg="red", err=True)
        raise typer.Exit(2)
    failed = 0
    with _outbox_session() as s:
        todo: list[str | int] = list(refs or [])
        if all_dead or repository is not None:
            repo_id = None
            if repository is not None:
                try:
                    repo_id = repositories.get(s, repository).id
                except ServiceError as exc:
                    typer.secho(f"error: {exc.detail}", fg="red", err=True)
                    raise typer.Exit(2) from exc
            todo += outbox.dead_ids(s, repository_id=repo_id)
            if not todo:
                typer.echo("no dead rows to retry")
                return
        for ref in dict.fromkeys(todo):
            try:
                row = outbox.retry(s, ref)
            except ServiceError as exc:
                failed += 1
                typer.secho(f"error: {ref}: {exc.detail}", fg="red", err=True)
                continue
            typer.echo(f"{row.id} {row.kind} is now {row.status}")
        s.commit()
    if failed:
        raise typer.Exit(1)


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


@repository_app.command("test")
def repository_test(
    ref: Annotated[str, typer.Argument(help="Repository id or uuid.")],
) -> None:
    """Test a Credly repository without changing anything: the base URL answers, the token
    is accepted, and every template in the map is an active badge template. Exit 1 if not."""
    from service.delivery import checks, repositories

    with _outbox_session() as s:
        try:
            repo_id = repositories.get(s, ref).id
        except ServiceError as exc:
            typer.secho(f"error: {exc.detail}", fg="red", err=True)
            raise typer.Exit(2) from exc
        snapshot = repositories.snapshots(s, [repo_id or 0])[repo_id or 0]
    result = checks.check(snapshot)  # the same test as the administrator's page queues
    if result.outcome == "untestable":
        typer.echo(f"error: {result.summary}", err=True)
        raise typer.Exit(2)
    if result.outcome == "failed":
        typer.secho(f"{snapshot.name}: {result.summary}", fg="red", err=True)
        raise typer.Exit(1)
    typer.echo(f"{snapshot.name}: {result.summary}")
    for line in result.problems:
        typer.secho(f"  {line}", fg="yellow", err=True)
    if not result.ok:
        raise typer.Exit(1)


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
    """After an import or sync: queue the learners whose results changed and evaluate
    them here when they are few (``MICROCRED_EVALUATION_INLINE_LEARNERS``), as the API and
    the pages do, and say what it issued (or how many wait for the workers)."""
    import json

    from service import flows

    engine = _engine(settings)
    try:
        done = flows.evaluate_new_evidence(engine, settings=settings, actor="cli")
    finally:
        engine.dispose()
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
    engine = _engine(settings)
    try:
        with _db(settings) as s:
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
                    hint="Connect it with microcred course connect, or name one with --source "
                    "(microcred source list).",
                )
            if lms_course_id is None and setup.lms_course_id:
                lms_course_id = setup.lms_course_id
            s.expunge(conn)
        # The LMS is read with no transaction open (SQLite's write lock is not held while
        # it answers); a refreshed Canvas token is saved at once in its own transaction.
        with outbound.client(outbound.policy(settings), timeout=30.0) as http:
            assert conn.id is not None
            fetched = sync.connector_for(
                None, conn, client=http, on_refresh=flows.token_saver(engine, conn.id)
            )
            pull = flows.prefetched_pull(
                engine,
                course_id=course,
                connection=conn,
                lms_course_id=lms_course_id,
                connector=fetched,
                http=http,
            )
        with _db(settings, write=True) as s:
            report = flows.store_fetched(s, pull=pull, now=utcnow(), actor="cli")
            s.commit()
    except ServiceError as exc:
        raise _fail(exc) from exc
    finally:
        engine.dispose()
    for p in report.rejected:
        typer.echo(f"{p.where}, {p.field}: {p.reason}", err=True)
    typer.echo(
        f"synced: {report.new} new, {report.updated} updated, {report.unchanged} unchanged, "
        f"{report.removed} removed, {len(report.rejected)} rejected"
    )
    typer.echo(json.dumps(report.as_dict()))
    if evaluate:
        _evaluate_new_evidence(settings)


# --- policy commands ---

policy_app = typer.Typer(help="Institution policies: defaults and bounds.", no_args_is_help=True)
institution_app = typer.Typer(
    help="The institution's default thresholds and the bounds instructors move them in.",
    no_args_is_help=True,
)
app.add_typer(policy_app, name="policy")
policy_app.add_typer(institution_app, name="institution")


@institution_app.command("show")
def policy_institution_show(
    fmt: Annotated[str, typer.Option("--format", help="yaml or json.")] = "yaml",
) -> None:
    """The current version: who saved it and when, then its defaults and bounds."""
    from service.db.engine import session as db_session
    from service.policies import files
    from service.policies import service as policies

    settings = _bootstrap()
    db_migrate.upgrade(settings.resolved_database_url)
    engine = _engine(settings)
    try:
        with db_session(engine) as s:
            row, _, _ = policies.institution_layers(s)
            doc = policies.export_institution(s)
    except ServiceError as exc:
        raise _fail(exc) from None
    finally:
        engine.dispose()
    typer.echo(f"# version {row.version}, saved {row.created_at:%Y-%m-%d %H:%M} by {row.author}")
    typer.echo(files.dump(doc, "json" if fmt == "json" else "yaml"), nl=False)


@institution_app.command("export")
def policy_institution_export(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (default: print).")
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="yaml or json (default: from --output, else yaml).")
    ] = "",
) -> None:
    """The institution defaults and bounds as a policy file `policy institution import` reads."""
    from service.db.engine import session as db_session
    from service.policies import files
    from service.policies import service as policies

    settings = _bootstrap()
    db_migrate.upgrade(settings.resolved_database_url)
    engine = _engine(settings)
    try:
        with db_session(engine) as s:
            doc = policies.export_institution(s)
    except ServiceError as exc:
        raise _fail(exc) from None
    finally:
        engine.dispose()
    chosen = fmt or ("json" if output is not None and output.suffix == ".json" else "yaml")
    text = files.dump(doc, chosen)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}")


@institution_app.command("import")
def policy_institution_import(
    file: Annotated[Path, typer.Argument(help="A JSON or YAML file (docs/policies.md).")],
    note: Annotated[str, typer.Option(help="Why it changes (kept with the version).")] = "",
) -> None:
    """Save a file's defaults and bounds as the next version; refused, with the courses at
    fault, if a course's thresholds would fall outside the new bounds."""
    from service.db.engine import session as db_session
    from service.policies import service as policies

    settings = _bootstrap()
    db_migrate.upgrade(settings.resolved_database_url)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        typer.echo(f"error: {file} cannot be read: {exc}", err=True)
        raise typer.Exit(2) from None
    fmt = "json" if file.suffix.lower() == ".json" else "yaml"
    engine = _engine(settings)
    try:
        with db_session(engine, write=True) as s:
            row = policies.import_institution(s, text=text, fmt=fmt, author="cli", note=note)
            s.commit()
            version = row.version
    except ServiceError as exc:
        raise _fail(exc) from None
    finally:
        engine.dispose()
    typer.echo(f"institution policy version {version} saved")


# --- flows commands ---

course_app = typer.Typer(
    help="Courses: connect one to its LMS, see its sync health, re-evaluate its learners.",
    no_args_is_help=True,
)
app.add_typer(course_app, name="course")


@course_app.command("connect")
def course_connect(
    course_id: Annotated[int, typer.Argument(help="The course id (see the admin page).")],
    source: Annotated[
        str, typer.Option("--source", help="Source connection name (microcred source add).")
    ],
    lms_course_id: Annotated[
        str,
        typer.Option(
            help="The LMS's own course id: Moodle course/view.php?id=…, Canvas "
            "$Canvas.course.id. Default: the LTI context id (Moodle's course id)."
        ),
    ] = "",
    interval: Annotated[
        int | None,
        typer.Option(
            help="Seconds between this course's scheduled pulls (default "
            "MICROCRED_SYNC_INTERVAL_SECONDS)."
        ),
    ] = None,
) -> None:
    """Connect a course to its LMS data source: the worker then pulls its roster (NRPS)
    and results on schedule, and the instructor's page shows Sync from LMS."""
    from service import flows
    from service.db.types import utcnow
    from service.sources import sync

    settings = _bootstrap()
    with _db(settings, write=True) as s:
        try:
            conn = sync.get_connection(s, name=source)
            setup = flows.connect_source(
                s,
                course_id=course_id,
                connection_id=conn.id,
                lms_course_id=lms_course_id,
                actor="cli",
                now=utcnow(),
                interval_seconds=interval,
            )
        except ServiceError as exc:
            raise _fail(exc) from exc
        s.commit()
    every = setup.sync_interval_seconds or settings.sync_interval_seconds
    typer.echo(
        f"course {course_id} connected to {source!r} (LMS course "
        f"{setup.lms_course_id or 'from the LTI context'}); the worker pulls it within "
        f"seconds, then every {every} s"
    )


@course_app.command("status")
def course_status(
    course_id: Annotated[int, typer.Argument(help="The course id (see the admin page).")],
) -> None:
    """The course's sync health: last pull, roster size, errors, items needing attention."""
    from service import flows
    from service.db.types import utcnow

    settings = _bootstrap()
    with _db(settings) as s:
        h = flows.sync_health(s, course_id=course_id, settings=settings)
    if not h.connected:
        typer.echo(f"course {course_id} is not connected (microcred course connect)")
        raise typer.Exit(1)
    typer.echo(h.pulled_text(utcnow()))
    if h.waiting:
        typer.echo("a pull is queued")
    if h.members is not None:
        typer.echo(f"roster: {h.members} members")
    if h.error:
        typer.echo(f"last pull failed ({h.failures} in a row): {h.error}")
    if h.roster_error:
        typer.echo(f"roster not read: {h.roster_error}")
    if h.attention:
        typer.echo(f"{h.attention} items need attention (microcred sync --course {course_id})")


@course_app.command("reevaluate")
def course_reevaluate(
    course_id: Annotated[int, typer.Argument(help="The course id (see the admin page).")],
    sync: Annotated[
        bool, typer.Option("--sync", help="Pull the course's results from its LMS first.")
    ] = False,
    queue_only: Annotated[
        bool,
        typer.Option(
            "--queue", help="Only queue the learners for the workers (`microcred worker`)."
        ),
    ] = False,
) -> None:
    """Re-evaluate every learner of a course (issues, upgrades, flags), with a progress bar.

    The learners are queued (docs/scale.md) and this command works on the queue until it
    is empty; workers running meanwhile share the work (their part is not counted here).
    """
    from service import evaluation, flows
    from service.db.engine import session as db_session
    from service.db.models import Course
    from service.db.types import utcnow
    from service.errors import NotFound, ServiceError

    settings = _identity(_bootstrap())
    engine = _engine(settings)
    try:
        pull = flows.fetch_course(engine, course_id=course_id) if sync else None
        with db_session(engine, write=True) as s:
            if s.get(Course, course_id) is None:
                raise NotFound(f"no course {course_id}")
            now = utcnow()
            if pull is not None:
                flows.store_fetched(s, pull=pull, now=now, actor="cli")
            queued = evaluation.enqueue(
                s, course_id=course_id, reason="microcred course reevaluate"
            )
            s.commit()
        if queue_only:
            typer.echo(f"{queued} learners queued for the workers")
            return
        with typer.progressbar(length=max(queued, 1), label=f"course {course_id}") as bar:
            seen = 0

            def step(done: int, total: int) -> None:
                nonlocal seen
                bar.length = max(total, 1)
                bar.update(done - seen)
                seen = done

            summary = flows.run_course_jobs(
                engine, settings=settings, course_id=course_id, actor="cli", progress=step
            )
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


# --- learner data (GDPR/FERPA requests; docs/operations.md "Personal data") ---
learner_app = typer.Typer(
    help="One learner's personal data: find, export, erase.", no_args_is_help=True
)
app.add_typer(learner_app, name="learner")


@learner_app.command("find")
def learner_find(
    email: Annotated[str | None, typer.Option(help="The learner's e-mail address.")] = None,
    sub: Annotated[str | None, typer.Option(help="The learner's LMS user id (LTI sub).")] = None,
) -> None:
    """Print the person ids that match an e-mail address or LMS user id."""
    from service import learnerdata

    if (email is None) == (sub is None):
        typer.echo("error: give --email or --sub (one of them)", err=True)
        raise typer.Exit(2)
    settings = _bootstrap()
    with _db(settings) as s:
        found = learnerdata.find(s, email=email, sub=sub)
        if not found:
            typer.echo("no person matches", err=True)
            raise typer.Exit(1)
        for p in found:
            typer.echo(f"{p.id}\tplatform {p.platform_id}\t{p.sub}\t{p.name}\t{p.email}")


@learner_app.command("export")
def learner_export(
    person_id: Annotated[int, typer.Argument(help="The person id (microcred learner find).")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the JSON here, not to stdout.")
    ] = None,
) -> None:
    """Everything held about one learner, as JSON (GDPR Art. 15/20, FERPA inspection)."""
    from service import learnerdata
    from service.db.types import utcnow

    settings = _identity(_bootstrap(), strict=False)
    try:
        with _db(settings) as s:
            data = learnerdata.export(s, settings=settings, person_id=person_id, now=utcnow())
    except ServiceError as exc:
        raise _fail(exc) from exc
    text = json.dumps(data, indent=2, ensure_ascii=False)
    if output is None:
        typer.echo(text)
        return
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
    typer.echo(f"wrote {output} (personal data: keep it private, send it to the learner only)")


@learner_app.command("erase")
def learner_erase(
    person_id: Annotated[int, typer.Argument(help="The person id (microcred learner find).")],
    revoke: Annotated[
        bool,
        typer.Option(
            "--revoke", help="Also revoke every credential issued to them (and tell repositories)."
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do it (without: say what would go).")] = False,
) -> None:
    """Erase one learner's personal data; issued credentials stay verifiable and revocable."""
    from service import learnerdata
    from service.db.types import utcnow

    settings = _identity(_bootstrap())
    try:
        with _db(settings, write=True) as s:
            if not yes:
                data = learnerdata.export(s, settings=settings, person_id=person_id, now=utcnow())
                typer.echo(
                    f"would erase person {person_id}: {len(data['evidence'])} evidence rows, "
                    f"{len(data['decisions'])} decisions, {len(data['enrolments'])} enrolments; "
                    f"{len(data['credentials'])} credentials stay verifiable"
                    + (" and are revoked" if revoke else "")
                    + ". Run again with --yes to do it."
                )
                raise typer.Exit(1)
            report = learnerdata.erase(
                s, settings=settings, person_id=person_id, actor="cli", now=utcnow(), revoke=revoke
            )
            s.commit()
    except ServiceError as exc:
        raise _fail(exc) from exc
    typer.echo(json.dumps(report.as_dict(), indent=2))
    if report.held_elsewhere:
        typer.echo(
            f"{len(report.held_elsewhere)} copies are held outside microcred: ask each "
            "repository as held_elsewhere says.",
            err=True,
        )


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
                f"  Demo course:           course {course_id}; the worker pulls its roster (NRPS)"
                " and results (Moodle web services) every "
                f"{settings.sync_interval_seconds} s, launches or not",
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


_METAVARS = {int: "N", float: "NUMBER", Path: "PATH"}


class _PlainCommand(typer.core.TyperCommand):
    """Arguments shown by their metavar alone (``REF``, ``[REF]``), without a type label."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = param.metavar or str(param.name).upper()
                pieces.append(name if param.required else f"[{name}]")
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        args: list[tuple[str, str]] = []
        opts: list[tuple[str, str]] = []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                args.append((param.metavar or str(param.name).upper(), record[1]))
            else:
                opts.append(record)
        for title, rows in (("Arguments", args), ("Options", opts)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def _plain_help(typer_app: typer.Typer) -> None:
    """Help as people read it: plain paragraphs re-wrapped to the terminal (not the
    docstrings' line breaks), and upper-case metavars (``--name TEXT``, ``REF``) instead of
    the ``<str>``/``<bool>`` type labels recent Typer versions print for every option."""
    import typing

    typer_app.rich_markup_mode = None
    for info in typer_app.registered_commands:
        if info.callback is None:
            continue
        if info.cls in (None, typer.core.TyperCommand):
            info.cls = _PlainCommand
        hints = typing.get_type_hints(info.callback, include_extras=True)
        for pname, hint in hints.items():
            if typing.get_origin(hint) is not Annotated:
                continue
            base, *meta = typing.get_args(hint)
            for m in meta:
                if not isinstance(m, typer.models.ParameterInfo) or m.metavar is not None:
                    continue
                inner = [a for a in typing.get_args(base) if a is not type(None)] or [base]
                many = typing.get_origin(inner[0]) is list
                if isinstance(m, typer.models.ArgumentInfo):
                    m.metavar = pname.upper() + ("..." if many else "")
                elif inner[0] is not bool:
                    m.metavar = _METAVARS.get(inner[0], "TEXT")
        # Keep the evaluated annotations: re-reading the strings would build fresh infos.
        info.callback.__annotations__ = hints
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _plain_help(group.typer_instance)


_plain_help(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
