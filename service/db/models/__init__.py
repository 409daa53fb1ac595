"""All tables, imported here so Alembic and ``create_all`` see one metadata.

Each feature keeps its tables in a module of this package; add the import below.
"""

from service.db.models.assessment import (
    Competency,
    CompetencyLevelTemplate,
    CourseCompetency,
    Decision,
    EffectivePolicy,
    PolicyVersion,
)
from service.db.models.core import AuditEvent, Course, Deployment, Enrolment, Person, Platform
from service.db.models.delivery import (
    DeliveryAttempt,
    DeliveryConsent,
    DeliveryRepository,
    EmailMismatch,
    OutboxMessage,
)
from service.db.models.flows import Award, CourseSetup
from service.db.models.issuer import Credential, IssuerKey, StatusList
from service.db.models.lti import (
    LaunchState,
    LtiCache,
    PlatformKeySet,
    ServiceToken,
    ToolKey,
    WebSession,
)
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
    "Award",
    "Competency",
    "CompetencyLevelTemplate",
    "Course",
    "CourseCompetency",
    "CourseSetup",
    "Credential",
    "Decision",
    "DeliveryAttempt",
    "DeliveryConsent",
    "DeliveryRepository",
    "Deployment",
    "EffectivePolicy",
    "EmailMismatch",
    "Enrolment",
    "Evidence",
    "EvidenceRevision",
    "ImportRun",
    "IssuerKey",
    "LaunchState",
    "LtiCache",
    "OutboxMessage",
    "Person",
    "PersonLink",
    "Platform",
    "PlatformKeySet",
    "PolicyVersion",
    "ServiceToken",
    "SourceConnection",
    "StatusList",
    "ToolKey",
    "VerificationEvent",
    "WebSession",
]
