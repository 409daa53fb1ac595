"""Course roles come from context (membership) roles only; administrators of a tenant from
institution and system roles only."""

from __future__ import annotations

import pytest

from service.lti.roles import course_role, is_administrator

M = "http://purl.imsglobal.org/vocab/lis/v2/membership"
INST = "http://purl.imsglobal.org/vocab/lis/v2/institution/person#"
S = "http://purl.imsglobal.org/vocab/lis/v2/system/person#"


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        ([M + "#Instructor"], "instructor"),
        ([M + "#Learner"], "learner"),
        # a course's Administrator is an instructor there, nothing more
        ([M + "#Administrator"], "instructor"),
        ([M + "/Instructor#TeachingAssistant"], "instructor"),
        ([M + "#ContentDeveloper"], "instructor"),
        (["Instructor"], "instructor"),
        (["Learner"], "learner"),
        (["Administrator"], "instructor"),
        (["urn:lti:role:ims/lis/Administrator"], "instructor"),
        (["urn:lti:role:ims/lis/Instructor"], "instructor"),
        ([], "learner"),
        (["http://example.edu/roles#Wizard"], "learner"),
        ([INST + "Administrator", S + "SysAdmin", M + "#Learner"], "learner"),
        ([INST + "Instructor"], "learner"),
        (
            ["urn:lti:instrole:ims/lis/Administrator", "urn:lti:sysrole:ims/lis/Administrator"],
            "learner",
        ),
        # Moodle site admin: Instructor + system and institution Administrator
        ([M + "#Instructor", S + "Administrator", INST + "Administrator"], "instructor"),
        ([M + "#Learner", M + "#Instructor"], "instructor"),
        ([M + "#Mentor"], "learner"),
    ],
)
def test_course_role(roles: list[str], expected: str) -> None:
    assert course_role(roles) == expected


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        # Moodle site administrator (lti.md §2.6)
        ([M + "#Instructor", S + "Administrator", INST + "Administrator"], True),
        # Canvas account administrator, and Instructure's site admin
        ([INST + "Administrator", S + "User"], True),
        ([S + "SysAdmin"], True),
        (["urn:lti:instrole:ims/lis/Administrator"], True),
        (["urn:lti:sysrole:ims/lis/Administrator"], True),
        (["urn:lti:sysrole:ims/lis/SysAdmin"], True),
        # course-level roles never make an administrator of the tenant
        ([M + "#Administrator"], False),
        (["Administrator"], False),
        (["urn:lti:role:ims/lis/Administrator"], False),
        ([M + "/Administrator#Administrator"], False),
        ([M + "#Instructor", INST + "Instructor", INST + "Staff", S + "User"], False),
        # near misses: another vocabulary, a fragment of the URI, a prefix
        (["http://example.edu/roles#Administrator"], False),
        ([INST + "AdministratorX"], False),
        ([INST.rstrip("#") + "/Administrator"], False),
        ([], False),
    ],
)
def test_is_administrator(roles: list[str], expected: bool) -> None:
    assert is_administrator(roles) is expected
