"""LTI tables: the tool's keys, login state, launch data, platform key sets, service
tokens and the web sessions that follow a launch.

Everything a launch needs between two requests lives here, so any number of web
processes can serve one launch (no sticky sessions).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from service.db.base import metadata  # noqa: F401  (naming convention first)
from service.db.types import JSONType, UTCDateTime, encrypted, json_field, utcnow


class ToolKey(SQLModel, table=True):
    """An RSA key the tool signs with (service assertions, deep-linking responses).

    The newest key without ``retired_at`` signs; retired keys stay published in
    ``/lti/jwks`` until the grace period after ``retired_at`` ends.
    """

    __tablename__ = "tool_key"

    id: int | None = Field(default=None, primary_key=True)
    kid: str = Field(max_length=100, unique=True)
    alg: str = Field(default="RS256", max_length=10)
    private_pem: str = encrypted("tool_key.private_pem")
    public_jwk: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    retired_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class LaunchState(SQLModel, table=True):
    """One OIDC login: the state and nonce we issued, consumed once by the launch."""

    __tablename__ = "launch_state"

    state: str = Field(primary_key=True, max_length=100)
    nonce: str = Field(max_length=100, unique=True)
    platform_id: int = Field(foreign_key="platform.id")
    target_link_uri: str = Field(default="", max_length=1000)
    storage_target: str = Field(default="", max_length=200)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: dt.datetime = Field(sa_type=UTCDateTime, index=True)
    used_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class LtiCache(SQLModel, table=True):
    """Key/value entries with expiry: pylti1p3 launch data and one-time launch tickets."""

    __tablename__ = "lti_cache"

    key: str = Field(primary_key=True, max_length=300)
    value: Any = Field(sa_column=Column(JSONType, nullable=True))
    expires_at: dt.datetime = Field(sa_type=UTCDateTime, index=True)


class PlatformKeySet(SQLModel, table=True):
    """A platform's JWKS as last fetched, and when a kid miss last forced a refetch."""

    __tablename__ = "platform_key_set"

    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(max_length=1000, unique=True)
    keys: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    fetched_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: dt.datetime = Field(sa_type=UTCDateTime)
    refetched_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    refetch_count: int = 0


class ServiceToken(SQLModel, table=True):
    """An OAuth2 access token for AGS/NRPS, cached per (platform, scope set) until expiry."""

    __tablename__ = "service_token"
    __table_args__ = (UniqueConstraint("platform_id", "scope_key"),)

    id: int | None = Field(default=None, primary_key=True)
    platform_id: int = Field(foreign_key="platform.id")
    scope_key: str = Field(max_length=1000)
    access_token: str = encrypted("service_token.access_token")
    expires_at: dt.datetime = Field(sa_type=UTCDateTime)


class WebSession(SQLModel, table=True):
    """The tool's own session after a launch. ``id`` is the SHA-256 of the secret token."""

    __tablename__ = "web_session"

    id: str = Field(primary_key=True, max_length=64)
    person_id: int = Field(foreign_key="person.id")
    platform_id: int = Field(foreign_key="platform.id")
    deployment_id: int = Field(foreign_key="deployment.id")
    course_id: int | None = Field(default=None, foreign_key="course.id")
    role: str = Field(max_length=20)
    roles: list[str] = json_field(list)
    launch_id: str = Field(default="", max_length=100)
    # Origin of the launch's return URL: the LMS host that frames the session's pages
    # (service/web/framing.py), which for Canvas is not the issuer's.
    frame_origin: str = Field(default="", max_length=300)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_seen_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: dt.datetime = Field(sa_type=UTCDateTime, index=True)
