"""Value types the LTI package hands to the layers above it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["CourseRole", "LaunchContext"]

# A course's Administrator (context role) is an instructor there (lti.roles); "admin" may
# still be read from sessions and enrolments recorded before that rule.
CourseRole = Literal["instructor", "learner"]

CLAIM = "https://purl.imsglobal.org/spec/lti/claim/"
DL_SETTINGS = "https://purl.imsglobal.org/spec/lti-dl/claim/deep_linking_settings"
AGS_ENDPOINT = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"
NRPS_CLAIM = "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"


@dataclass(frozen=True)
class LaunchContext:
    """A validated launch: who, from which tenant, in which course, with which services."""

    launch_id: str
    platform_id: int
    deployment_pk: int
    issuer: str
    client_id: str
    deployment_id: str
    message_type: str
    sub: str
    role: CourseRole
    roles: list[str]
    name: str = ""
    given_name: str = ""
    family_name: str = ""
    email: str = ""
    context_id: str = ""
    context_title: str = ""
    context_label: str = ""
    resource_link_id: str = ""
    resource_link_title: str = ""
    custom: dict[str, Any] = field(default_factory=dict)
    ags: dict[str, Any] = field(default_factory=dict)
    nrps_url: str = ""
    deep_linking: dict[str, Any] = field(default_factory=dict)
    return_url: str = ""
    product_family: str = ""

    @property
    def is_deep_linking(self) -> bool:
        return self.message_type == "LtiDeepLinkingRequest"

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LaunchContext:
        return cls(**data)
