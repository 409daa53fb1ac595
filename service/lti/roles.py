"""Course role from LTI roles: only *context* (membership) roles grant course rights.

LTI 1.3 Core §A.2: context roles are ``http://purl.imsglobal.org/vocab/lis/v2/membership#X``
(sub-roles ``membership/X#Y``) or, for context roles only, the short name ``X``. Institution
(``…/institution/person#X``) and system (``…/system/person#X``) roles — which Canvas sends for
every user — grant nothing inside a course. LTI 1.1 ``urn:lti:role:ims/lis/X`` names (seen
from older platforms and Moodle's mapping) are context roles too.
"""

from __future__ import annotations

from collections.abc import Iterable

from service.lti.types import CourseRole

__all__ = ["context_roles", "course_role"]

_MEMBERSHIP = "http://purl.imsglobal.org/vocab/lis/v2/membership"
_LTI11_CONTEXT = "urn:lti:role:ims/lis/"
_INSTRUCTOR = {"Instructor", "ContentDeveloper", "TeachingAssistant"}
_ADMIN = {"Administrator"}


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
    """admin > instructor > learner; anything else, or no context role, is a learner."""
    names = context_roles(roles)
    if names & _ADMIN:
        return "admin"
    if names & _INSTRUCTOR:
        return "instructor"
    return "learner"
