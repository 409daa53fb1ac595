"""Issuer commands: ``microcred verify``, ``microcred credential ...``, ``microcred issuer ...``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from service.cli.common import _bootstrap, _db, _fail, _identity, app, group
from service.db.types import utcnow
from service.errors import BadInput, ServiceError

issuer_app = group("issuer", "Issuer keys (Open Badges 3.0 signing).")
credential_app = group("credential", "Issued credentials: revoke, unrevoke.")


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

    from service.issuer import fetch as issuer_fetch
    from service.issuer import limits
    from service.issuer import service as issuer_service

    data: str | bytes

    settings = _bootstrap()
    if source.startswith(("https://", "http://")):
        data = issuer_fetch.fetch_text(source, accept=issuer_fetch.ACCEPT_CREDENTIAL)
    else:
        path = Path(source)
        if not path.is_file():
            raise BadInput(f"{source} is neither a file nor an http(s) URL")
        # JSON, a VC-JWT, or a baked PNG/SVG badge (an image may hold more than the
        # credential); the verifier refuses a credential over its own limit.
        with path.open("rb") as file:
            data = file.read(8 * limits.DEFAULT.max_bytes + 1)
    # This database's own credentials resolve offline under the DID it recorded, whatever
    # MICROCRED_BASE_URL says (verifying signs nothing).
    settings = _identity(settings, strict=False)
    with _db(settings) as s:
        report = issuer_service.verify_input(
            s,
            settings,
            data,
            now=utcnow(),
            fetch=issuer_fetch.fetch_json if allow_network else None,
        )
    typer.echo(json.dumps(report.as_dict(), indent=2))
    if not report.valid:
        typer.echo("invalid because " + "; ".join(report.reasons), err=True)
        raise typer.Exit(1)


def _set_revoked(credential_id: str, reason: str, *, revoked: bool) -> None:
    from service.flows import revoking
    from service.issuer import identity

    settings = _identity(_bootstrap())
    # The instructor page's and the API's way: repositories, re-award block, audit; an
    # award's revocation, or one a repository was sent, is not undone.
    action = revoking.revoke_credential if revoked else revoking.unrevoke_credential
    try:
        with _db(settings, write=True) as s:
            row = action(
                s, settings=settings, uuid=credential_id, reason=reason, actor="cli", now=utcnow()
            )
            s.commit()
    except identity.IdentityMismatch as exc:
        raise _fail(exc) from None
    except ServiceError as exc:
        raise _fail(exc, code=1) from None
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
    from service.issuer import service as issuer_service

    settings = _identity(_bootstrap(migrate=True))
    with _db(settings, write=True) as s:
        new = issuer_service.rotate_keys(s, settings=settings, now=utcnow(), actor="cli")
        s.commit()
    typer.echo("new issuer keys: " + ", ".join(new))


@issuer_app.command("repair-status-lists")
def issuer_repair_status_lists() -> None:
    """Re-sign the status lists signed under another URL than this database's issuer
    identity (bits unchanged), so the credentials on them verify again."""
    from service.issuer import service as issuer_service

    settings = _identity(_bootstrap(migrate=True))
    with _db(settings, write=True) as s:
        repaired = issuer_service.repair_status_lists(
            s, settings=settings, now=utcnow(), actor="cli"
        )
        s.commit()
    if not repaired:
        typer.echo(f"every status list is signed as {settings.public_base_url}; nothing to do")
    else:
        ids = ", ".join(str(i) for i in repaired)
        typer.echo(f"re-signed status list(s) {ids} as {settings.public_base_url}")
