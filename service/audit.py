"""Append-only audit log: every change an administrator or instructor makes."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from service.db.models import AuditEvent


def record(
    session: Session, *, actor: str, action: str, subject: str = "", **detail: Any
) -> AuditEvent:
    event = AuditEvent(actor=actor, action=action, subject=subject, detail=detail)
    session.add(event)
    return event
