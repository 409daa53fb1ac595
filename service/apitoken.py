"""API tokens for the JSON API: created once, shown once, stored only as a SHA-256 hash.

A token reads ``mct_<prefix>_<secret>``; the prefix finds the row, the hash of the whole
token (``secretbox.token_hash``) is compared in constant time.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
import secrets

from sqlmodel import Session, select

from service import audit
from service.db.models import ApiToken
from service.errors import BadInput, Conflict, Forbidden, ServiceError
from service.secretbox import token_hash

__all__ = ["SCOPES", "Unauthenticated", "authenticate", "create", "require", "touch"]

SCOPES = {
    "evidence:write": "post results and verification events, import CSV files",
    "evidence:read": "read a course's evidence",
    "credentials:write": "issue, revoke and unrevoke credentials",
    "policies:admin": "edit the competency catalogue, institution policy and course policies",
    "delivery:admin": "configure repositories, watch, retry and cancel deliveries",
}
_TOKEN_RE = re.compile(r"^mct_([A-Za-z0-9]{12})_([A-Za-z0-9_-]{43})$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$")


class Unauthenticated(ServiceError):
    code = "unauthenticated"
    status_code = 401
    title = "Authentication needed"


def create(
    session: Session, *, name: str, scopes: list[str], actor: str, now: dt.datetime
) -> tuple[ApiToken, str]:
    """Create a token; returns the row and the plaintext, which is never stored."""
    if not _NAME_RE.match(name):
        raise BadInput(
            f"token name {name!r} is not allowed",
            hint="Use 1-100 letters, digits, spaces, '.', '_' or '-', starting with a letter.",
        )
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise BadInput(
            f"unknown scope(s): {', '.join(unknown) or '(none given)'}",
            hint="Known scopes: " + ", ".join(sorted(SCOPES)),
        )
    if session.exec(select(ApiToken).where(ApiToken.name == name)).first() is not None:
        raise Conflict(f"a token named {name!r} exists", hint="Pick another name.")
    prefix = "".join(secrets.choice("abcdefghijkmnopqrstuvwxyz23456789") for _ in range(12))
    token = f"mct_{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiToken(
        name=name,
        prefix=prefix,
        token_hash=token_hash(token),
        scopes=sorted(scopes),
        created_at=now,
    )
    session.add(row)
    session.flush()
    audit.record(
        session, actor=actor, action="api_token.created", subject=f"api-token:{row.id}", name=name
    )
    return row, token


def authenticate(session: Session, *, authorization: str | None) -> ApiToken:
    """The token row named by an ``Authorization: Bearer`` header, or Unauthenticated."""
    hint = "Send 'Authorization: Bearer <token>' with a token from `microcred token create`."
    if not authorization:
        raise Unauthenticated("no API token given", hint=hint)
    scheme, _, token = authorization.partition(" ")
    match = _TOKEN_RE.match(token.strip()) if scheme.lower() == "bearer" else None
    if match is None:
        raise Unauthenticated("the Authorization header is not a microcred bearer token", hint=hint)
    row = session.exec(select(ApiToken).where(ApiToken.prefix == match.group(1))).first()
    if row is None or not hmac.compare_digest(row.token_hash, token_hash(token.strip())):
        raise Unauthenticated("the API token is not valid", hint=hint)
    if row.revoked_at is not None:
        raise Unauthenticated("the API token was revoked", hint=hint)
    return row


def require(token: ApiToken, scope: str) -> None:
    if scope not in token.scopes:
        raise Forbidden(
            f"the API token {token.name!r} lacks the scope {scope!r}",
            hint=f"Create a token with --scope {scope}.",
        )


def touch(session: Session, *, token_id: int | None, now: dt.datetime) -> None:
    """Record when a token was last used (called by write routes, which commit anyway)."""
    row = session.get(ApiToken, token_id) if token_id is not None else None
    if row is not None:
        row.last_used_at = now
        session.add(row)
