"""LTI commands: ``microcred platform ...`` and ``microcred keys ...``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from service.cli.common import _bootstrap, _db, group

platform_app = group("platform", "LMS platform registrations (LTI 1.3).")
keys_app = group("keys", "The tool's LTI signing keys.")


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
    from service.lti import keys, platforms

    settings = _bootstrap(migrate=True)
    with _db(settings, write=True) as s:
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
    typer.echo(row.id)


@platform_app.command("list")
def platform_list() -> None:
    """List registered platforms and their deployments."""
    from service.lti import platforms

    with _db(_bootstrap()) as s:
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
    from service.lti import platforms

    settings = _bootstrap()
    with _db(settings) as s:
        found = platforms.provenance(s, platform_id)
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
    with _db(settings, write=True) as s:
        platforms.activate(s, platform_id, deployment_id=deployment or None)
        s.commit()
    typer.echo(f"platform {platform_id} is active")


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Make a new signing key; the old one stays published for the grace period."""
    from service import audit
    from service.lti import keys

    settings = _bootstrap(migrate=True)
    with _db(settings, write=True) as s:
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
