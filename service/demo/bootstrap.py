"""Wire the demo: its configuration, its registration in the tool, and both apps."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI
from sqlalchemy import Engine
from sqlmodel import select

from service.db.engine import session
from service.db.models import Platform
from service.demo.app import create_demo_app
from service.demo.config import DemoConfig, ToolEndpoints
from service.lti import keys as lti_keys
from service.lti import platforms
from service.settings import Settings

__all__ = ["DemoApps", "build", "demo_config", "register"]

PLATFORM_NAME = "microcred demo LMS"


def demo_config(*, tool_url: str, lms_url: str, settings: Settings) -> DemoConfig:
    return DemoConfig(
        issuer=lms_url.rstrip("/"),
        tool=ToolEndpoints(base_url=tool_url.rstrip("/")),
        data_dir=settings.data_dir,
    )


def register(engine: Engine, config: DemoConfig) -> int:
    """Register the demo LMS in the tool (active at once); idempotent. Returns the platform id.

    The first run goes through the same code as ``microcred platform add``; a re-run keeps
    the row and only refreshes the URLs (ports may change between runs) and the deployment.
    """
    tool = config.tool
    with session(engine, write=True) as s:
        row = s.exec(
            select(Platform).where(
                Platform.issuer == config.issuer, Platform.client_id == tool.client_id
            )
        ).first()
        if row is None:
            row = platforms.add_platform(
                s,
                issuer=config.issuer,
                client_id=tool.client_id,
                auth_login_url=config.auth_url,
                auth_token_url=config.token_url,
                key_set_url=config.jwks_url,
                deployment_ids=[tool.deployment_id],
                name=PLATFORM_NAME,
                actor="demo",
            )
        else:
            row.auth_login_url = platforms.check_url(config.auth_url, what="auth URL")
            row.auth_token_url = platforms.check_url(config.token_url, what="token URL")
            row.key_set_url = platforms.check_url(config.jwks_url, what="JWKS URL")
            s.add(row)
            s.flush()
            assert row.id is not None
            platforms.activate(s, row.id, deployment_id=tool.deployment_id, actor="demo")
        lti_keys.ensure_key(s)
        assert row.id is not None
        platform_id = row.id
        s.commit()
    return platform_id


@dataclass(frozen=True)
class DemoApps:
    tool: FastAPI
    lms: FastAPI
    config: DemoConfig
    platform_id: int


def build(settings: Settings, *, tool_url: str, lms_url: str, engine: Engine) -> DemoApps:
    """The tool app (its base URL set to ``tool_url``) and the LMS app, registered together.

    The database must already be migrated.
    """
    from service.app import create_app  # the tool; imported late so demo stays a leaf

    config = demo_config(tool_url=tool_url, lms_url=lms_url, settings=settings)
    platform_id = register(engine, config)
    # the demo tool calls its own LMS on loopback
    tool_settings = settings.model_copy(
        update={"base_url": tool_url, "outbound_allow_private": True}
    )
    tool = create_app(tool_settings, engine=engine)
    return DemoApps(tool=tool, lms=create_demo_app(config), config=config, platform_id=platform_id)
