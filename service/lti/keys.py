"""The tool's own signing keys: created on first use, encrypted at rest, rotated with a grace.

The newest unretired key signs. ``rotate`` retires it and makes a new one; retired keys stay
in ``/lti/jwks`` for ``key_rotation_grace_days`` so assertions and deep-linking responses
signed just before the rotation still verify (Security Framework §6.3: publish before use,
keep the old key until what it signed has expired).

Parsing an RSA PEM costs ~46 ms, so parsed keys are cached per process. The cache is keyed
by the signing key's ``kid``, read with one small query, so a rotation made by another
process (``microcred keys rotate``) is picked up on the next use.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

from sqlalchemy import or_
from sqlmodel import Session, col, select

from service import jws
from service.db.models import ToolKey
from service.db.types import utcnow

__all__ = ["create_key", "ensure_key", "published_jwks", "rotate", "signing_key"]

_lock = threading.Lock()
_parsed: dict[str, jws.PrivateKey] = {}


def create_key(session: Session) -> ToolKey:
    """A new signing key, its ``kid`` the RFC 7638 thumbprint of its public key."""
    pem = jws.new_rsa_pem()
    key = jws.thumbprinted(pem)
    row = ToolKey(kid=key.kid, alg="RS256", private_pem=pem, public_jwk=key.public.jwk)
    session.add(row)
    session.flush()
    with _lock:
        _parsed[key.kid] = key
    return row


def _current(session: Session) -> ToolKey | None:
    return session.exec(
        select(ToolKey).where(col(ToolKey.retired_at).is_(None)).order_by(col(ToolKey.id).desc())
    ).first()


def ensure_key(session: Session) -> ToolKey:
    """The signing key, created if there is none yet (first start). Caller commits."""
    return _current(session) or create_key(session)


def signing_key(session: Session) -> jws.PrivateKey:
    """The parsed current signing key (parsed once per process per kid)."""
    kid = session.exec(
        select(ToolKey.kid)
        .where(col(ToolKey.retired_at).is_(None))
        .order_by(col(ToolKey.id).desc())
    ).first()
    if kid is not None and kid in _parsed:
        return _parsed[kid]
    row = (
        ensure_key(session)
        if kid is None
        else session.exec(select(ToolKey).where(ToolKey.kid == kid)).one()
    )
    with _lock:
        if row.kid not in _parsed:
            _parsed[row.kid] = jws.load_private_key(row.private_pem, kid=row.kid, alg=row.alg)
        return _parsed[row.kid]


def published_jwks(
    session: Session, *, grace_days: int, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Current key plus keys retired less than ``grace_days`` ago."""
    now = now or utcnow()
    cutoff = now - dt.timedelta(days=grace_days)
    rows = session.exec(
        select(ToolKey)
        .where(or_(col(ToolKey.retired_at).is_(None), col(ToolKey.retired_at) > cutoff))
        .order_by(col(ToolKey.id).desc())
    ).all()
    return {"keys": [dict(r.public_jwk) for r in rows]}


def rotate(session: Session, *, now: dt.datetime | None = None) -> tuple[ToolKey | None, ToolKey]:
    """Retire the current key and create a new one. Returns (old, new). Caller commits."""
    old = _current(session)
    if old is not None:
        old.retired_at = now or utcnow()
        session.add(old)
        session.flush()
    return old, create_key(session)
