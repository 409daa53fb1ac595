"""All tables, imported here so Alembic and ``create_all`` see one metadata.

Each feature keeps its tables in a module of this package; add the import below.
"""

from service.db.models.core import AuditEvent, Course, Deployment, Enrolment, Person, Platform
from service.db.models.lti import (
    LaunchState,
    LtiCache,
    PlatformKeySet,
    ServiceToken,
    ToolKey,
    WebSession,
)

__all__ = [
    "AuditEvent",
    "Course",
    "Deployment",
    "Enrolment",
    "LaunchState",
    "LtiCache",
    "Person",
    "Platform",
    "PlatformKeySet",
    "ServiceToken",
    "ToolKey",
    "WebSession",
]
