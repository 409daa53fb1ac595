"""Issuer tables: the deployment's identity, signing keys, issued credentials, revocation
status lists.

Keys are never deleted: a retired key stays published so that every credential it
signed stays verifiable (reference/security.md §3.5). Private keys are encrypted at rest.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Column, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from service.db.base import metadata  # noqa: F401  (naming convention first)
from service.db.types import JSONType, SignedJSONType, UTCDateTime, encrypted, new_uuid, utcnow


class IssuerIdentity(SQLModel, table=True):
    """The issuer identity of this database (one row, id 1), recorded when issuance is first
    set up. Every credential's ``id``, ``issuer.id`` and status list URL derive from it, so
    it does not change (service/issuer/identity.py)."""

    __tablename__ = "issuer_identity"

    id: int | None = Field(default=None, primary_key=True)
    base_url: str = Field(max_length=1000)
    did: str = Field(max_length=1000)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class IssuerKey(SQLModel, table=True):
    """One issuer signing key: Ed25519 (Data Integrity) or ES256/RS256 (VC-JWT)."""

    __tablename__ = "issuer_key"

    id: int | None = Field(default=None, primary_key=True)
    kid: str = Field(max_length=100, unique=True)
    algorithm: str = Field(max_length=20)  # Ed25519 | ES256 | RS256
    private_pem: str = encrypted("issuer_key.private_pem")
    public_jwk: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    public_multibase: str | None = Field(default=None, max_length=100)
    active: bool = Field(default=True, index=True)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    retired_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class StatusList(SQLModel, table=True):
    """A Bitstring Status List (W3C vc-bitstring-status-list) and its signed credential."""

    __tablename__ = "status_list"

    id: int | None = Field(default=None, primary_key=True)
    purpose: str = Field(default="revocation", max_length=20)
    size: int = 131072
    bits: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    # Entries taken: each issuing transaction adds its own as it commits (the row locked
    # only for that commit: issuers in parallel transactions share the list); at
    # ``issuer.service.MAX_FILL`` of ``size`` no new credential gets an entry on it.
    allocated: int = 0
    version: int = 0
    document: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType))
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Credential(SQLModel, table=True):
    """An issued credential: the signed document, its VC-JWT and its revocation state."""

    __table_args__ = (UniqueConstraint("status_list_id", "status_index"),)

    id: int | None = Field(default=None, primary_key=True)
    uuid: str = Field(default_factory=new_uuid, unique=True, max_length=36)
    person_id: int | None = Field(default=None, foreign_key="person.id", index=True)
    lti_user_id: str = Field(default="", max_length=255, index=True)
    template_key: str = Field(max_length=200, index=True)
    level_key: str = Field(max_length=100)
    achievement_id: str = Field(max_length=1000)
    kind: str = Field(default="single", max_length=20)  # single | stacked
    # the signed bytes as serialised (TEXT on PostgreSQL: db.types.JSONText)
    document: dict[str, Any] = Field(sa_column=Column(SignedJSONType, nullable=False))
    jwt: str | None = Field(default=None, sa_column=Column(Text))
    signing_key_id: int = Field(foreign_key="issuer_key.id")
    jwt_key_id: int | None = Field(default=None, foreign_key="issuer_key.id")
    status_list_id: int = Field(foreign_key="status_list.id")
    status_index: int
    issued_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    valid_from: dt.datetime = Field(sa_type=UTCDateTime)
    valid_until: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked: bool = Field(default=False, index=True)
    revoked_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    revocation_reason: str | None = Field(default=None, max_length=1000)
