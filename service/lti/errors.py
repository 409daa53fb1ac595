"""Errors of the LTI package. Each carries what went wrong and what to check.

ServiceError
 ├── LaunchRejected       400  a login or launch failed a check (bad token, state, claims)
 │    └── LaunchForbidden 403  the launch is valid but the platform/deployment is not allowed
 ├── RegistrationFailed   400  dynamic registration could not complete
 └── PlatformCallFailed   502  a platform service (token, NRPS, AGS, JWKS) failed
"""

from __future__ import annotations

from service.errors import ServiceError

__all__ = ["LaunchForbidden", "LaunchRejected", "PlatformCallFailed", "RegistrationFailed"]

ADMIN_HINT = (
    "Start the activity again from the course. If it keeps failing, your administrator "
    "should check the platform registration in microcred (`microcred platform list`)."
)


class LaunchRejected(ServiceError):
    code = "launch_rejected"
    status_code = 400
    title = "The LTI launch was rejected"

    def __init__(self, detail: str, *, hint: str | None = None, code: str | None = None) -> None:
        super().__init__(detail, hint=hint or ADMIN_HINT, code=code)


class LaunchForbidden(LaunchRejected):
    code = "launch_forbidden"
    status_code = 403
    title = "This platform is not allowed to launch microcred"


class RegistrationFailed(ServiceError):
    code = "registration_failed"
    status_code = 400
    title = "Registration with the platform failed"


class PlatformCallFailed(ServiceError):
    code = "platform_call_failed"
    status_code = 502
    title = "The learning platform did not answer as expected"

    def __init__(
        self,
        detail: str,
        *,
        hint: str | None = None,
        code: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(detail, hint=hint, code=code)
        self.status = status
