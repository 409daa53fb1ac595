"""The policy examples in docs/policies.md are valid policies (docs that cannot rot)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from service.assessment import policyfile
from service.assessment.types import Level, VerificationLevel

DOC = Path(__file__).resolve().parents[2] / "docs" / "policies.md"


def yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_the_typical_course_in_the_docs_is_a_valid_policy_file() -> None:
    course = policyfile.read_policy_file(yaml.safe_load(yaml_blocks()[0]))
    assert [p.competency for p in course.policies] == ["data-cleaning", "statistical-reasoning"]
    assert course.bounds is not None and [s.name for s in course.stacks] == [
        "Data Analysis Foundations"
    ]


def test_the_side_by_side_levels_in_the_docs_read_as_levels() -> None:
    [policy] = policyfile.read_policy_file(yaml.safe_load(yaml_blocks()[1])).policies
    assert policy.levels[Level.INTERMEDIATE].threshold == 0.65
    advanced = policy.levels[Level.ADVANCED]
    assert advanced.verification is VerificationLevel.SUPERVISED_ONLINE_VERIFIED
