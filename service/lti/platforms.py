"""Platform registrations: add (CLI or dynamic registration), list, activate, and where a
registration came from (``provenance``), which ``microcred platform activate`` shows before
it asks. Activation is an institution-level act: only the command line does it."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlmodel import Session, col, select

from service import audit
from service.db.models import AuditEvent, Deployment, Platform
from service.errors import BadInput, Conflict, NotFound

__all__ = [
    "PlatformView",
    "Provenance",
    "activate",
    "add_platform",
    "check_url",
    "is_loopback",
    "list_platforms",
    "provenance",
]


def is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, *, what: str) -> str:
    """HTTPS only (Security Framework §3, security.md L17); plain http only on loopback."""
    parts = urlsplit(url.strip())
    if not parts.netloc or parts.scheme not in ("https", "http"):
        raise BadInput(f"{what} must be an absolute https:// URL, not {url!r}")
    if parts.scheme == "http" and not is_loopback(parts.hostname or ""):
        raise BadInput(
            f"{what} must use https:// ({url!r}); plain http is accepted only for "
            "localhost/127.0.0.1 test setups"
        )
    if parts.username or parts.password:
        raise BadInput(f"{what} must not carry credentials")
    return url.strip()


def add_platform(
    session: Session,
    *,
    issuer: str,
    client_id: str,
    auth_login_url: str,
    auth_token_url: str,
    key_set_url: str,
    deployment_ids: list[str],
    name: str = "",
    active: bool = True,
    auth_audience: str | None = None,
    product_family: str = "",
    actor: str = "cli",
    origin: dict[str, str] | None = None,
) -> Platform:
    """Register a platform (issuer + client_id) with its deployments. Caller commits.

    ``origin`` (where a dynamic registration came from) goes into the audit event.
    """
    issuer = check_url(issuer, what="issuer")
    if not client_id.strip():
        raise BadInput("client_id must not be empty")
    existing = session.exec(
        select(Platform).where(Platform.issuer == issuer, Platform.client_id == client_id)
    ).first()
    if existing is not None:
        raise Conflict(
            f"platform {existing.id} already has issuer {issuer} and client_id {client_id}",
            hint=f"It is registered already (`microcred platform list`). To add a deployment "
            f"to it: `microcred platform activate {existing.id} --deployment ID`.",
        )
    row = Platform(
        name=name or urlsplit(issuer).hostname or issuer,
        issuer=issuer,
        client_id=client_id.strip(),
        auth_login_url=check_url(auth_login_url, what="auth URL"),
        auth_token_url=check_url(auth_token_url, what="token URL"),
        key_set_url=check_url(key_set_url, what="JWKS URL"),
        auth_audience=auth_audience,
        product_family=product_family,
        active=active,
    )
    session.add(row)
    session.flush()
    for dep in deployment_ids:
        if not dep or len(dep) > 255:
            raise BadInput("a deployment id must be 1 to 255 characters")
        session.add(Deployment(platform_id=row.id or 0, deployment_id=dep))
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="platform.registered",
        subject=f"platform:{row.id}",
        issuer=issuer,
        client_id=client_id,
        deployments=deployment_ids,
        active=active,
        **(origin or {}),
    )
    return row


@dataclass(frozen=True)
class PlatformView:
    id: int
    name: str
    issuer: str
    client_id: str
    active: bool
    deployments: list[tuple[str, bool]]
    product_family: str


def _view(session: Session, p: Platform) -> PlatformView:
    deps = session.exec(
        select(Deployment).where(Deployment.platform_id == p.id).order_by(col(Deployment.id))
    ).all()
    return PlatformView(
        id=p.id or 0,
        name=p.name,
        issuer=p.issuer,
        client_id=p.client_id,
        active=p.active,
        deployments=[(d.deployment_id, d.active) for d in deps],
        product_family=p.product_family,
    )


def list_platforms(session: Session) -> list[PlatformView]:
    rows = session.exec(select(Platform).order_by(col(Platform.id))).all()
    return [_view(session, p) for p in rows]


@dataclass(frozen=True)
class Provenance:
    """Where a registration came from, as recorded: for the person about to activate it."""

    platform: PlatformView
    registered_at: dt.datetime
    registered_by: str  # "dynamic-registration", "cli", "demo"; "" if no record
    openid_configuration: str | None  # the URL the platform gave (dynamic registration)
    source_ip: str | None  # the address the registration request came from
    auth_login_url: str
    auth_token_url: str
    key_set_url: str


def provenance(session: Session, platform_id: int) -> Provenance:
    row = session.get(Platform, platform_id)
    if row is None:
        raise NotFound(f"no platform with id {platform_id}", hint="See `microcred platform list`.")
    registered = session.exec(
        select(AuditEvent)
        .where(AuditEvent.action == "platform.registered", AuditEvent.platform_id == row.id)
        .order_by(col(AuditEvent.id))
    ).first()
    detail = registered.detail if registered is not None else {}

    def text(key: str) -> str | None:
        value = detail.get(key)
        return value if isinstance(value, str) and value else None

    return Provenance(
        platform=_view(session, row),
        registered_at=row.created_at,
        registered_by=registered.actor if registered is not None else "",
        openid_configuration=text("openid_configuration"),
        source_ip=text("source_ip"),
        auth_login_url=row.auth_login_url,
        auth_token_url=row.auth_token_url,
        key_set_url=row.key_set_url,
    )


def activate(
    session: Session, platform_id: int, *, deployment_id: str | None = None, actor: str = "cli"
) -> Platform:
    """Activate a platform (and optionally add or re-activate one deployment)."""
    row = session.get(Platform, platform_id)
    if row is None:
        raise NotFound(f"no platform with id {platform_id}", hint="See `microcred platform list`.")
    row.active = True
    session.add(row)
    if deployment_id:
        dep = session.exec(
            select(Deployment).where(
                Deployment.platform_id == platform_id, Deployment.deployment_id == deployment_id
            )
        ).first()
        dep = dep or Deployment(platform_id=platform_id, deployment_id=deployment_id)
        dep.active = True
        session.add(dep)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="platform.activated",
        subject=f"platform:{platform_id}",
        deployment_id=deployment_id,
    )
    return row
