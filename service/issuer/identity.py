"""The deployment's issuer identity: the base URL, and the did:web every credential names.

A credential's ``id``, its ``issuer.id`` (did:web of the base URL), its status list URL and
its VC-JWT ``kid`` all derive from ``MICROCRED_BASE_URL``. The first process that sets up
issuance (its first key, credential or status list) records that URL in the database
(table ``issuer_identity``, one row); from then on it is the deployment's identity and
every process that signs or publishes checks its settings against it:

- ``MICROCRED_BASE_URL`` not set: the recorded URL is adopted (:func:`settle`), so a
  command pointed at a service's data directory or database acts as that service.
- set, and different: :class:`IdentityMismatch`, before anything is written. The CLI
  exits 2 and the web process does not start; a process that signs without having
  settled is stopped by :func:`ensure`, in the signing transaction.

Moving a deployment to another URL is not supported: every credential it issued names the
recorded did:web, and only that origin can serve their DID document and status lists.
"""

from __future__ import annotations

from sqlalchemy import Engine, inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from service.db.engine import session as db_session
from service.db.engine import table
from service.db.models import IssuerIdentity
from service.db.types import utcnow
from service.errors import Conflict
from service.issuer import keys
from service.settings import Settings

__all__ = ["IdentityMismatch", "ensure", "explicit", "recorded", "recorded_url", "settle"]

ROW_ID = 1


class IdentityMismatch(Conflict):
    """The settings name another issuer than the one this database was set up as."""

    code = "issuer_identity_mismatch"


def explicit(settings: Settings) -> bool:
    """Whether ``MICROCRED_BASE_URL`` was given (environment, ``.env`` or code)."""
    return "base_url" in settings.model_fields_set


def recorded(session: Session) -> IssuerIdentity | None:
    """The recorded identity, or None before issuance was first set up."""
    return session.get(IssuerIdentity, ROW_ID)


def recorded_url(engine: Engine) -> str | None:
    """The recorded base URL; None when there is none (or the database is not migrated)."""
    if not inspect(engine).has_table(IssuerIdentity.__tablename__):
        return None
    with db_session(engine) as s:
        row = recorded(s)
        return row.base_url if row is not None else None


def mismatch(recorded_url: str, settings: Settings) -> IdentityMismatch:
    """The error for settings whose base URL is not the recorded one."""
    did = keys.did_web(recorded_url)
    return IdentityMismatch(
        f"this database belongs to the issuer at {recorded_url} ({did}), but "
        f"MICROCRED_BASE_URL is {settings.public_base_url}; nothing was signed or changed",
        hint=f"Run it with MICROCRED_BASE_URL={recorded_url}, or leave MICROCRED_BASE_URL "
        "unset to use the recorded URL. A deployment cannot move to another URL: every "
        f"credential it issued names {did}.",
    )


def settle(engine: Engine, settings: Settings, *, strict: bool = True) -> Settings:
    """The settings this process runs with: the recorded base URL adopted when
    ``MICROCRED_BASE_URL`` is not set (or ``strict`` is False).

    Raises:
        IdentityMismatch: ``MICROCRED_BASE_URL`` is set to another URL and ``strict``.
    """
    url = recorded_url(engine)
    if url is None or url == settings.public_base_url:
        return settings
    if strict and explicit(settings):
        raise mismatch(url, settings)
    return settings.model_copy(update={"base_url": url})


def ensure(session: Session, settings: Settings) -> IssuerIdentity:
    """Record this process's base URL as the identity if none is yet, else check it.

    Called in the transaction that signs (a write session); the row is written with
    ``ON CONFLICT DO NOTHING``, so of two first processes one records and the other is
    checked against it.

    Raises:
        IdentityMismatch: the settings' base URL is not the recorded one.
    """
    row = recorded(session)
    if row is None:
        base_url = settings.public_base_url
        values = {
            "id": ROW_ID,
            "base_url": base_url,
            "did": keys.did_web(base_url),
            "created_at": utcnow(),
        }
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        insert = dialect.insert(table(IssuerIdentity)).values(**values)
        session.execute(insert.on_conflict_do_nothing())
        row = recorded(session)
        assert row is not None
    if row.base_url != settings.public_base_url:
        raise mismatch(row.base_url, settings)
    return row
