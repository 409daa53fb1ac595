"""FastAPI dependencies shared by every router."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlmodel import Session

from service.db.engine import session as db_session
from service.settings import Settings


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def get_session(request: Request) -> Iterator[Session]:
    """Read session: the route commits if it writes (read-mostly requests)."""
    with db_session(request.app.state.engine) as s:
        yield s


def get_write_session(request: Request) -> Iterator[Session]:
    """Read-then-write session (SQLite BEGIN IMMEDIATE); the route commits once."""
    with db_session(request.app.state.engine, write=True) as s:
        yield s


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
EngineDep = Annotated[Engine, Depends(get_engine)]
SessionDep = Annotated[Session, Depends(get_session)]
WriteSessionDep = Annotated[Session, Depends(get_write_session)]
