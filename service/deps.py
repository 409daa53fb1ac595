"""FastAPI dependencies shared by every router: the one definition of each.

How a route gets its session (JSON routes, pages and forms alike): ``SessionDep`` to read,
``WriteSessionDep`` to read then write (SQLite ``BEGIN IMMEDIATE``: a read transaction that
later writes fails at once when another connection committed meanwhile). The route, or
``web.appshell.submit`` for a form, commits once; a form's error page renders in the same
session after the rollback. ``EngineDep`` only where a route needs more than one
transaction by design: the launch confirmation (the launch commits, then the after-launch
work runs in its own transaction), the readiness probe (a bare connection), and the key
sets read in a read transaction and created in a write one only when none exists yet (the
issuer's did.json and JWKS, the tool's ``/lti/jwks``). The sign-in dependency
(``web.auth``) keeps its own short transactions, before the route's.
``tests/test_code_shape.py`` holds the web package to this."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlmodel import Session

from service import apitoken
from service.db.engine import call, in_process
from service.db.engine import session as db_session
from service.db.models import ApiToken
from service.db.types import MAX_ROW_ID
from service.settings import Settings


# Plain attribute reads: async so FastAPI does not hop to the thread pool for them.
async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


async def _release(engine: Engine, session: Session) -> None:
    """Close a route's session. One still holding a connection rolls back and returns it
    to the pool: on SQLite that runs in this process without waiting on a network, so on
    the event loop (by the ``with`` around the ``yield``); on PostgreSQL it is a round trip,
    so in the thread pool (``db.engine.call``), never on the event loop. A route that
    committed holds no connection any more (the commit gave it back)."""
    if not in_process(engine) and session.in_transaction():
        await call(engine, session.close)


# The session dependencies are async generators: FastAPI runs them on the event loop, with
# no thread-pool hop before and after the route (a sync generator costs one for its enter
# and one for its exit, ~100 us of CPU per request in bench/README.md "Launch, 7 Dec
# (stack)"). Opening a session does no I/O: the route's first statement checks out the
# connection, in the route's thread.
async def get_session(request: Request) -> AsyncIterator[Session]:
    """Read session: the route commits if it writes (read-mostly requests)."""
    engine = request.app.state.engine
    with db_session(engine) as s:
        try:
            yield s
        finally:
            await _release(engine, s)


async def get_write_session(request: Request) -> AsyncIterator[Session]:
    """Read-then-write session (SQLite BEGIN IMMEDIATE); the route commits once."""
    engine = request.app.state.engine
    with db_session(engine, write=True) as s:
        try:
            yield s
        finally:
            await _release(engine, s)


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
# A row id in a path. A number beyond the INTEGER column names no row, and the database driver
# would fail on it (a 500), so it is refused up front with a 422.
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="A row id (1 to 2147483647)")]
EngineDep = Annotated[Engine, Depends(get_engine)]
SessionDep = Annotated[Session, Depends(get_session)]
WriteSessionDep = Annotated[Session, Depends(get_write_session)]


# Declared as an HTTP bearer scheme so OpenAPI (/docs) shows how to authenticate; the
# checking (and the error a person can act on) is ours, hence auto_error=False.
_bearer = HTTPBearer(auto_error=False, description="A token from `microcred token create`.")


def get_api_token(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiToken:
    """The API token of a bearer-authenticated JSON API request (401 otherwise)."""
    given = (
        f"Bearer {credentials.credentials}" if credentials else request.headers.get("authorization")
    )
    return apitoken.authenticate(session, authorization=given)


ApiTokenDep = Annotated[ApiToken, Depends(get_api_token)]


def scope(name: str) -> Callable[[ApiToken], ApiToken]:
    """Dependency factory: the request's API token, which must carry scope ``name``."""

    def check(token: ApiTokenDep) -> ApiToken:
        apitoken.require(token, name)
        return token

    return check


def api_scope(name: str) -> Callable[[Request, ApiTokenDep], str]:
    """Router-level dependency: a bearer API token with scope ``name``; the principal
    (``api-token:<id>``) is kept on ``request.state.actor`` for the audit log."""

    def check(request: Request, token: ApiTokenDep) -> str:
        apitoken.require(token, name)
        request.state.actor = f"api-token:{token.id}"
        return str(request.state.actor)

    return check
