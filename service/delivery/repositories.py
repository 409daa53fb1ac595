"""Repository configuration: create, list, token-expiry warnings (caller commits)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from sqlmodel import Session, select

from service.db import engine as db_engine
from service.db.models import Competency, DeliveryPause, DeliveryRepository
from service.db.types import row_id, utcnow
from service.delivery import providers
from service.delivery.types import RepositoryConfig
from service.errors import BadInput, NotFound

__all__ = [
    "LEVELS",
    "TOKEN_WARNING_DAYS",
    "TokenWarning",
    "check_template_keys",
    "create",
    "get",
    "list_all",
    "snapshots",
    "token_warnings",
    "update",
]

LEVELS = ("beginning", "intermediate", "advanced")
TOKEN_WARNING_DAYS = 14
COL = db_engine.table(DeliveryRepository).c


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
    """Add a repository. A secret without a given expiry gets its kind's lifetime (Credly:
    180 days from now)."""
    now = now or utcnow()
    provider = providers.get(kind)
    if consent_policy not in ("automatic", "ask"):
        raise BadInput("consent_policy must be 'automatic' or 'ask'")
    config = provider.check_config(config)
    if secret and secret_expires_at is None and provider.secret_days:
        secret_expires_at = now + dt.timedelta(days=provider.secret_days)
    if provider.map_key and config.get(provider.map_key):
        check_template_keys(session, config[provider.map_key], option=provider.map_key)
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
    db_engine.forget(session, "repositories")
    return repo


def update(
    session: Session,
    ref: str | int,
    *,
    templates: dict[str, str] | None = None,
    secret: str | None = None,
    consent_policy: str | None = None,
    enabled: bool | None = None,
    now: dt.datetime | None = None,
) -> DeliveryRepository:
    """Change a repository. A new secret gets its kind's lifetime (Credly: 180 days)."""
    now = now or utcnow()
    repo = get(session, ref)
    provider = providers.get(repo.kind)
    if templates:
        key = provider.map_key
        if key is None:
            raise BadInput(f"a {repo.kind} repository has no template map")
        check_template_keys(session, templates, option=key)
        config = dict(repo.config)
        config[key] = {**(config.get(key) or {}), **templates}
        repo.config = config
    if secret is not None:
        repo.secret = secret
        repo.access_token = repo.refresh_token = None
        repo.access_token_expires_at = None
        days = provider.secret_days
        repo.secret_expires_at = now + dt.timedelta(days=days) if days else None
    if consent_policy is not None:
        if consent_policy not in ("automatic", "ask"):
            raise BadInput("consent_policy must be 'automatic' or 'ask'")
        repo.consent_policy = consent_policy
    if enabled is not None:
        repo.enabled = enabled
    repo.updated_at = now
    session.add(repo)
    session.flush()
    db_engine.forget(session, "repositories")
    return repo


def check_template_keys(session: Session, mapping: dict[str, Any], *, option: str) -> None:
    """Refuse a template map whose keys are not ``competency:level`` of the catalogue, so a
    typo is seen when the map is set, not when a delivery dead-letters."""
    known = sorted(session.exec(select(Competency.key)).all())
    for key in mapping:
        competency, sep, level = str(key).rpartition(":")
        if not sep or level not in LEVELS:
            raise BadInput(
                f"{option}: the key {key!r} must be COMPETENCY:LEVEL with a level among "
                f"{', '.join(LEVELS)}"
            )
        if competency not in known:
            valid = ", ".join(known) if known else "none yet: create competencies first"
            raise BadInput(
                f"{option}: no competency {competency!r} in the catalogue (key {key!r}); "
                f"the catalogue's competencies: {valid}"
            )
        if not str(mapping[key]).strip():
            raise BadInput(f"{option}: the key {key!r} maps to an empty id")


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


def scoped_pauses(session: Session) -> dict[int, list[DeliveryPause]]:
    """The rate limits holding now on a part of a repository (one LMS platform's
    gradebook), by repository id; whole-repository pauses are on the repository."""
    now = utcnow()
    col = db_engine.table(DeliveryPause).c
    found: dict[int, list[DeliveryPause]] = {}
    q = select(DeliveryPause).where(col.paused_until > now).order_by(col.repository_id, col.scope)
    for p in session.exec(q).all():
        found.setdefault(p.repository_id, []).append(p)
    return found


def enabled(session: Session) -> Sequence[DeliveryRepository]:
    """``list_all(enabled_only=True)``, read once per transaction (a worker's batch queues
    many credentials; ``create`` and ``update`` drop the copy)."""
    cache = db_engine.transaction_cache(session, "repositories")
    if "enabled" not in cache:
        cache["enabled"] = list_all(session, enabled_only=True)
    rows: Sequence[DeliveryRepository] = cache["enabled"]
    return rows


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
