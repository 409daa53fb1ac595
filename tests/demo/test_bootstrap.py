"""`microcred demo` wiring: the demo LMS is registered in the tool once, whatever the re-runs."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlmodel import select

from service.db.engine import session
from service.db.models import AuditEvent, Deployment, Platform
from service.demo import bootstrap
from service.settings import Settings


def test_register_is_idempotent_and_follows_port_changes(
    engine: Engine, settings: Settings
) -> None:
    first = bootstrap.demo_config(
        tool_url="http://127.0.0.1:8000", lms_url="http://localhost:8001", settings=settings
    )
    pid = bootstrap.register(engine, first)
    assert bootstrap.register(engine, first) == pid
    moved = bootstrap.demo_config(
        tool_url="http://127.0.0.1:9000", lms_url="http://localhost:8001", settings=settings
    )
    assert bootstrap.register(engine, moved) == pid
    with session(engine) as s:
        (row,) = s.exec(select(Platform)).all()
        deps = s.exec(select(Deployment)).all()
        actions = [e.action for e in s.exec(select(AuditEvent)).all()]
    assert row.issuer == "http://localhost:8001" and row.client_id == "microcred-demo"
    assert row.auth_login_url == "http://localhost:8001/auth"
    assert row.key_set_url == "http://localhost:8001/jwks" and row.active
    assert [(d.deployment_id, d.active) for d in deps] == [("1", True)]
    assert actions.count("platform.registered") == 1


def test_register_reactivates_a_deactivated_demo_platform(
    engine: Engine, settings: Settings
) -> None:
    config = bootstrap.demo_config(
        tool_url="http://127.0.0.1:8000", lms_url="http://localhost:8001", settings=settings
    )
    pid = bootstrap.register(engine, config)
    with session(engine, write=True) as s:
        row = s.get(Platform, pid)
        assert row is not None
        row.active = False
        s.add(row)
        s.commit()
    bootstrap.register(engine, config)
    with session(engine) as s:
        row = s.get(Platform, pid)
        assert row is not None and row.active
