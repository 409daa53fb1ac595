"""All tables, imported here so Alembic and ``create_all`` see one metadata.

Each feature keeps its tables in a module of this package; add the import below.

Indexes: a column gets ``index=True`` only when a query filters on it and no unique
constraint or index starts with it. A redundant single-column index is not just extra
write work: PostgreSQL plans a prepared statement once for all parameter values (a generic
plan), and with the statistics of a young table it chose ``ix_person_platform_id`` over
``uq_person_platform_id_sub``, then filtered every person of the platform on each launch.
A foreign key whose parent row is never deleted (platforms, deployments, courses and
people are deactivated, not deleted) needs no index on the child side.
"""

from service.db.models.assessment import (
    BadgeImage,
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
    DeliveryPause,
    DeliveryRepository,
    EmailMismatch,
    OutboxMessage,
    RepositoryCheck,
)
from service.db.models.flows import AgsLineItem, Award, CourseSetup, CourseSync, EvaluationJob
from service.db.models.issuer import Credential, IssuerIdentity, IssuerKey, StatusList
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
    "AgsLineItem",
    "ApiToken",
    "AuditEvent",
    "Award",
    "BadgeImage",
    "Competency",
    "CompetencyLevelTemplate",
    "Course",
    "CourseCompetency",
    "CourseSetup",
    "CourseSync",
    "Credential",
    "Decision",
    "DeliveryAttempt",
    "DeliveryConsent",
    "DeliveryPause",
    "DeliveryRepository",
    "Deployment",
    "EffectivePolicy",
    "EmailMismatch",
    "Enrolment",
    "EvaluationJob",
    "Evidence",
    "EvidenceRevision",
    "ImportRun",
    "IssuerIdentity",
    "IssuerKey",
    "LaunchState",
    "LtiCache",
    "OutboxMessage",
    "Person",
    "PersonLink",
    "Platform",
    "PlatformKeySet",
    "PolicyVersion",
    "RepositoryCheck",
    "ServiceToken",
    "SourceConnection",
    "StatusList",
    "ToolKey",
    "VerificationEvent",
    "WebSession",
]
