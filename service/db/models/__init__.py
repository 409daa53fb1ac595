"""All tables, imported here so Alembic and ``create_all`` see one metadata.

Each feature keeps its tables in a module of this package; add the import below.
"""

from service.db.models.core import AuditEvent, Course, Deployment, Enrolment, Person, Platform
from service.db.models.sources import (
    ApiToken,
    Evidence,
    EvidenceRevision,
    ImportRun,
    PersonLink,
    SourceConnection,
    VerificationEvent,
)

__all__ = [
    "ApiToken",
    "AuditEvent",
    "Course",
    "Deployment",
    "Enrolment",
    "Evidence",
    "EvidenceRevision",
    "ImportRun",
    "Person",
    "PersonLink",
    "Platform",
    "SourceConnection",
    "VerificationEvent",
]
