"""Delivery commands: ``microcred worker``, ``microcred outbox ...`` and
``microcred repository ...``."""

from __future__ import annotations

import json
import os
import signal
import threading
from typing import Annotated, Any

import typer
from sqlmodel import select

from service.cli.common import _bootstrap, _db, _fail, _identity, app, group
from service.cli.workers import _delivery_worker, _run
from service.db.engine import table
from service.db.types import utcnow
from service.errors import ServiceError

outbox_app = group("outbox", "Inspect and repair deliveries to repositories.")
repository_app = group("repository", "Repositories credentials are delivered to.")


@app.command()
def worker(
    threads: Annotated[int, typer.Option(help="Concurrent deliveries in this process.")] = 8,
    batch: Annotated[int, typer.Option(help="Rows claimed per round.")] = 16,
    once: Annotated[bool, typer.Option("--once", help="Deliver what is due, then exit.")] = False,
) -> None:
    """Deliver outbox rows, pull connected courses from their LMS on schedule and evaluate
    queued learners (run any number of these on PostgreSQL; one on SQLite)."""
    settings = _identity(_bootstrap())
    w = _delivery_worker(settings, threads=threads, batch=batch)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    _run(w, stop, idle_exit=once)


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

    from service.delivery import outbox, repositories
    from service.delivery.schemas import OutboxPublic

    with _db(_bootstrap(), write=True) as s:
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
    from service.db.models import DeliveryAttempt
    from service.delivery import outbox

    with _db(_bootstrap(), write=True) as s:
        try:
            row = outbox.get(s, ref)
        except ServiceError as exc:
            raise _fail(exc, code=1) from exc
        typer.echo(f"{row.id} {row.uuid} {row.kind} credential={row.credential_id}")
        typer.echo(
            f"status={row.status} attempts={row.attempts}/{row.max_attempts} "
            f"due={row.due_at:%Y-%m-%d %H:%M:%S} uncertain={row.uncertain}"
        )
        if row.last_error:
            typer.echo(f"last error: {row.last_error}")
        col = table(DeliveryAttempt).c
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

    with _db(_bootstrap(), write=True) as s:
        try:
            row = getattr(outbox, action)(s, ref)
        except ServiceError as exc:
            raise _fail(exc, code=1) from exc
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

    if not refs and not all_dead and repository is None:
        typer.secho("error: name rows, or give --all-dead or --repository", fg="red", err=True)
        raise typer.Exit(2)
    failed = 0
    with _db(_bootstrap(), write=True) as s:
        todo: list[str | int] = list(refs or [])
        if all_dead or repository is not None:
            repo_id = None if repository is None else repositories.get(s, repository).id
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
        str | None,
        typer.Option(
            help="Credly: sandbox or production; Badgr region: us (default), eu, ca, au, "
            "sg or test."
        ),
    ] = None,
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

    from service.delivery import providers, repositories

    provider = providers.get(kind)
    given = {"org_id": org_id, "environment": environment, "username": username, "url": url}
    # a setting not given is not stored: the provider's check names what it needs
    config: dict[str, Any] = {
        s.key: given[s.option or s.key]
        for s in provider.settings
        if given[s.option or s.key] is not None
    }
    if base_url:
        config["base_url"] = base_url
    mapping = _template_options(template)
    if mapping:
        config[provider.map_key or "templates"] = mapping
    secret = os.environ.get("MICROCRED_REPOSITORY_SECRET")
    if secret is None and provider.secret:
        secret = typer.prompt(f"secret ({provider.secret.prompt})", hide_input=True)
    with _db(_bootstrap(), write=True) as s:
        repo = repositories.create(
            s, kind=kind, name=name, config=config, secret=secret, consent_policy=consent
        )
        s.commit()
        typer.echo(f"{repo.id} {repo.uuid}")


def _template_options(given: list[str] | None) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for t in given or []:
        key, sep, value = t.partition("=")
        if not sep or ":" not in key:
            typer.secho(
                f"error: --template {t!r} must look like python:advanced=TEMPLATE_ID",
                fg="red",
                err=True,
            )
            raise typer.Exit(2)
        mapping[key] = value
    return mapping


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

    from service.delivery import repositories

    secret = None
    if new_secret:
        secret = os.environ.get("MICROCRED_REPOSITORY_SECRET") or typer.prompt(
            "new secret (token / password)", hide_input=True
        )
    mapping = _template_options(template)
    with _db(_bootstrap(), write=True) as s:
        repo = repositories.update(
            s, ref, templates=mapping, secret=secret, consent_policy=consent, enabled=enabled
        )
        s.commit()
        typer.echo(f"{repo.id} {repo.name} updated")


@repository_app.command("test")
def repository_test(
    ref: Annotated[str, typer.Argument(help="Repository id or uuid.")],
) -> None:
    """Test a repository without changing anything (Credly: the base URL answers, the token
    is accepted, and every template in the map is an active badge template). Exit 1 if not."""
    from service.delivery import checks, repositories

    with _db(_bootstrap(), write=True) as s:
        repo_id = repositories.get(s, ref).id
        snapshot = repositories.snapshots(s, [repo_id or 0])[repo_id or 0]
    result = checks.check(snapshot)  # the same test as the administrator's page queues
    if result.outcome == "untestable":
        typer.echo(f"error: {result.summary}", err=True)
        raise typer.Exit(2)
    if result.outcome == "failed":
        typer.secho(f"{snapshot.name}: not working: {result.summary}", fg="red", err=True)
        raise typer.Exit(1)
    typer.echo(f"{snapshot.name}: {result.summary}")
    for line in result.problems:
        typer.secho(f"  {line}", fg="yellow", err=True)
    if not result.ok:
        raise typer.Exit(1)


@repository_app.command("list")
def repository_list() -> None:
    """List repositories, with token-expiry warnings and rate-limit pauses."""
    from service.delivery import repositories

    with _db(_bootstrap(), write=True) as s:
        warns = {w.repository_id: w.message for w in repositories.token_warnings(s)}
        pauses = repositories.scoped_pauses(s)
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
            for p in pauses.get(r.id or 0, []):
                typer.echo(
                    f"      {p.scope} paused until {p.paused_until:%Y-%m-%d %H:%M:%S} UTC "
                    f"(rate limit: {p.paused_reason})"
                )
