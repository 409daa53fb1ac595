"""Repository configuration: create, list, token-expiry warnings (caller commits)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from sqlmodel import Session, select

from service.db.models import DeliveryRepository
from service.db.types import row_id, utcnow
from service.delivery import credly
from service.delivery.types import RepositoryConfig
from service.errors import BadInput, NotFound

__all__ = [
    "KINDS",
    "TOKEN_WARNING_DAYS",
    "TokenWarning",
    "create",
    "get",
    "list_all",
    "snapshots",
    "token_warnings",
    "update",
]

KINDS = ("credly", "badgr", "webhook", "ags")
TOKEN_WARNING_DAYS = 14
COL = DeliveryRepository.__table__.c  # type: ignore[attr-defined]


def create(
    session: Session,
    *,
    kind: str,
    name: str,
    config: dict[str, Any],
    secret: str | None = None,
    secret_expires_at: dt.datetime | None = None,
    consent_policy: str = "automatic",
    now: dt.datetime | None = None,
) -> DeliveryRepository:
    """Add a repository. A Credly token without a given expiry expires 180 days from now."""
    now = now or utcnow()
    if kind not in KINDS:
        raise BadInput(f"repository kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if consent_policy not in ("automatic", "ask"):
        raise BadInput("consent_policy must be 'automatic' or 'ask'")
    if kind == "credly":
        if not config.get("organization_id"):
            raise BadInput("a Credly repository needs config.organization_id")
        if not config.get("base_url") and config.get("environment") not in credly.BASE_URLS:
            raise BadInput("a Credly repository needs config.environment: sandbox or production")
        if secret and secret_expires_at is None:
            secret_expires_at = now + dt.timedelta(days=credly.TOKEN_LIFETIME_DAYS)
    if kind == "webhook" and not str(config.get("url", "")).startswith(("https://", "http://")):
        raise BadInput("a webhook repository needs config.url (https://…)")
    repo = DeliveryRepository(
        kind=kind,
        name=name,
        config=config,
        secret=secret,
        secret_expires_at=secret_expires_at,
        consent_policy=consent_policy,
        created_at=now,
        updated_at=now,
    )
    session.add(repo)
    session.flush()
    return repo


def update(
    session: Session,
    ref: str | int,
    *,
    templates: dict[str, str] | None = None,
    secret: str | None = None,
    secret_expires_at: dt.datetime | None = None,
    consent_policy: str | None = None,
    enabled: bool | None = None,
    now: dt.datetime | None = None,
) -> DeliveryRepository:
    """Change a repository. A new Credly token without a given expiry gets 180 days."""
    now = now or utcnow()
    repo = get(session, ref)
    if templates:
        key = "badge_classes" if repo.kind == "badgr" else "templates"
        config = dict(repo.config)
        config[key] = {**(config.get(key) or {}), **templates}
        repo.config = config
    if secret is not None:
        repo.secret = secret
        repo.access_token = repo.refresh_token = None
        repo.access_token_expires_at = None
        if secret_expires_at is None and repo.kind == "credly":
            secret_expires_at = now + dt.timedelta(days=credly.TOKEN_LIFETIME_DAYS)
        repo.secret_expires_at = secret_expires_at
    if consent_policy is not None:
        if consent_policy not in ("automatic", "ask"):
            raise BadInput("consent_policy must be 'automatic' or 'ask'")
        repo.consent_policy = consent_policy
    if enabled is not None:
        repo.enabled = enabled
    repo.updated_at = now
    session.add(repo)
    session.flush()
    return repo


def get(session: Session, ref: str | int) -> DeliveryRepository:
    number = row_id(ref)
    cond = COL.id == number if number is not None else COL.uuid == str(ref)
    repo = session.exec(select(DeliveryRepository).where(cond)).first()
    if repo is None:
        raise NotFound(f"no delivery repository {ref!r}")
    return repo


def list_all(session: Session, *, enabled_only: bool = False) -> Sequence[DeliveryRepository]:
    q = select(DeliveryRepository).order_by(COL.id)
    if enabled_only:
        q = q.where(COL.enabled.is_(True))
    return session.exec(q).all()


def snapshots(session: Session, ids: Iterable[int]) -> dict[int, RepositoryConfig]:
    """Decrypted snapshots of the given repositories, for a worker batch."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = session.exec(select(DeliveryRepository).where(COL.id.in_(wanted))).all()
    return {
        r.id: RepositoryConfig(
            id=r.id,
            kind=r.kind,
            name=r.name,
            config=dict(r.config),
            secret=r.secret,
            access_token=r.access_token,
            refresh_token=r.refresh_token,
            access_token_expires_at=r.access_token_expires_at,
        )
        for r in rows
        if r.id is not None
    }


@dataclasses.dataclass(frozen=True)
class TokenWarning:
    repository_id: int
    repository: str
    expires_at: dt.datetime
    days_left: int

    @property
    def message(self) -> str:
        when = self.expires_at.strftime("%Y-%m-%d")
        if self.days_left < 0:
            return (
                f"the token of {self.repository!r} expired on {when}: deliveries to it fail; "
                "create a new token and update the repository"
            )
        return (
            f"the token of {self.repository!r} expires on {when} ({self.days_left} days): "
            "create a new token and update the repository before then"
        )


def token_warnings(session: Session, *, now: dt.datetime | None = None) -> list[TokenWarning]:
    """Repositories whose token expires within 14 days (or has expired)."""
    now = now or utcnow()
    limit = now + dt.timedelta(days=TOKEN_WARNING_DAYS)
    rows = session.exec(
        select(DeliveryRepository).where(
            COL.enabled.is_(True),
            COL.secret_expires_at.is_not(None),
            COL.secret_expires_at <= limit,
        )
    ).all()
    out = []
    for r in rows:
        assert r.id is not None and r.secret_expires_at is not None
        left = (r.secret_expires_at - now).total_seconds() / 86400
        out.append(TokenWarning(r.id, r.name, r.secret_expires_at, int(left // 1)))
    return out
