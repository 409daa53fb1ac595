"""Course role and administrator status from LTI roles.

LTI 1.3 Core §A.2: context roles are ``http://purl.imsglobal.org/vocab/lis/v2/membership#X``
(sub-roles ``membership/X#Y``) or, for context roles only, the short name ``X``. Institution
(``…/institution/person#X``) and system (``…/system/person#X``) roles — which Canvas sends for
every user — grant nothing inside a course. LTI 1.1 ``urn:lti:role:ims/lis/X`` names (seen
from older platforms and Moodle's mapping) are context roles too.

Who administers microcred for a tenant (README "Roles and administration"): an institution or
system Administrator (LTI Core §A.2.1-2; Moodle sends both for a site administrator, Canvas
the institution role for an account administrator), for the platform and deployment of the
launch only. The *context* role ``membership#Administrator`` is a course-level role: it gives
what an instructor gets in that course and nothing beyond it (security.md §4.3).
"""

from __future__ import annotations

from collections.abc import Iterable

from service.lti.types import CourseRole

__all__ = ["context_roles", "course_role", "is_administrator"]

_MEMBERSHIP = "http://purl.imsglobal.org/vocab/lis/v2/membership"
_LTI11_CONTEXT = "urn:lti:role:ims/lis/"
_INSTRUCTOR = {"Instructor", "ContentDeveloper", "TeachingAssistant", "Administrator"}
# Institution and system roles that make a tenant administrator (LTI Core §A.2.1, §A.2.2),
# in their LIS v2 and LTI 1.1 spellings.
_ADMINISTRATOR = frozenset(
    {
        "http://purl.imsglobal.org/vocab/lis/v2/institution/person#Administrator",
        "http://purl.imsglobal.org/vocab/lis/v2/system/person#Administrator",
        "http://purl.imsglobal.org/vocab/lis/v2/system/person#SysAdmin",
        "urn:lti:instrole:ims/lis/Administrator",
        "urn:lti:sysrole:ims/lis/Administrator",
        "urn:lti:sysrole:ims/lis/SysAdmin",
    }
)


def _context_role(role: str) -> str | None:
    """The principal context role name of one roles-claim entry, or None."""
    role = role.strip()
    if role.startswith(_MEMBERSHIP + "#"):
        return role[len(_MEMBERSHIP) + 1 :]
    if role.startswith(_MEMBERSHIP + "/"):
        # sub-role: membership/Instructor#TeachingAssistant -> principal Instructor
        return role[len(_MEMBERSHIP) + 1 :].split("#", 1)[0]
    if role.startswith(_LTI11_CONTEXT):
        return role[len(_LTI11_CONTEXT) :].split("/", 1)[0]
    if role and ":" not in role and "/" not in role and "#" not in role:
        return role  # short name (Core §A.2.3.1): context roles only
    return None


def context_roles(roles: Iterable[str]) -> set[str]:
    return {r for r in (_context_role(x) for x in roles if isinstance(x, str)) if r}


def course_role(roles: Iterable[str]) -> CourseRole:
    """instructor (Instructor, TA, ContentDeveloper, or the course's Administrator) >
    learner; anything else, or no context role, is a learner."""
    if context_roles(roles) & _INSTRUCTOR:
        return "instructor"
    return "learner"


def is_administrator(roles: Iterable[str]) -> bool:
    """Whether the launch's roles make its user an administrator of the launch's tenant:
    an institution or system Administrator role, never a context (course) role."""
    return any(isinstance(r, str) and r.strip() in _ADMINISTRATOR for r in roles)
