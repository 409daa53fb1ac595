"""Builders for test data: plain functions, sensible defaults, keyword overrides."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from service.db.models import Competency, Course, Deployment, Person, Platform


def platform(session: Session, **kw: Any) -> Platform:
    defaults: dict[str, Any] = {
        "name": "Test LMS",
        "issuer": "https://lms.test",
        "client_id": "client-1",
        "auth_login_url": "https://lms.test/auth",
        "auth_token_url": "https://lms.test/token",
        "key_set_url": "https://lms.test/jwks",
    }
    row = Platform(**(defaults | kw))
    session.add(row)
    session.flush()
    return row


def deployment(session: Session, plat: Platform, **kw: Any) -> Deployment:
    row = Deployment(platform_id=plat.id, **({"deployment_id": "dep-1"} | kw))
    session.add(row)
    session.flush()
    return row


def person(session: Session, plat: Platform, **kw: Any) -> Person:
    row = Person(platform_id=plat.id, **({"sub": "user-1", "name": "Ada Lovelace"} | kw))
    session.add(row)
    session.flush()
    return row


def course(session: Session, dep: Deployment, **kw: Any) -> Course:
    row = Course(deployment_id=dep.id, **({"context_id": "ctx-1", "title": "Sample"} | kw))
    session.add(row)
    session.flush()
    return row


def competency(session: Session, key: str = "py", **kw: Any) -> Competency:
    """A catalogue competency (found again, not duplicated, when the key exists)."""
    from sqlmodel import select

    found = session.exec(select(Competency).where(Competency.key == key)).first()
    if found is not None:
        return found
    row = Competency(key=key, name=kw.pop("name", key.title()), **kw)
    session.add(row)
    session.flush()
    return row
