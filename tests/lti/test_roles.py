"""Course roles come from context (membership) roles only."""

from __future__ import annotations

import pytest

from service.lti.roles import course_role

M = "http://purl.imsglobal.org/vocab/lis/v2/membership"
INST = "http://purl.imsglobal.org/vocab/lis/v2/institution/person#"
S = "http://purl.imsglobal.org/vocab/lis/v2/system/person#"


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        ([M + "#Instructor"], "instructor"),
        ([M + "#Learner"], "learner"),
        ([M + "#Administrator"], "admin"),
        ([M + "/Instructor#TeachingAssistant"], "instructor"),
        ([M + "#ContentDeveloper"], "instructor"),
        (["Instructor"], "instructor"),
        (["Learner"], "learner"),
        (["Administrator"], "admin"),
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
