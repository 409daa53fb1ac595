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

__all__ = [
    "AuditEvent",
    "Competency",
    "CompetencyLevelTemplate",
    "Course",
    "CourseCompetency",
    "Decision",
    "Deployment",
    "EffectivePolicy",
    "Enrolment",
    "Person",
    "Platform",
    "PolicyVersion",
]
