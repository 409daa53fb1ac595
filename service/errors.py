"""The error base every feature raises.

ServiceError (code, HTTP status, message a person can act on)
 ├── NotFound            404
 ├── Forbidden           403
 ├── BadInput            400/422  malformed input: says which field and why
 ├── Conflict            409
 ├── TooManyRequests     429      with Retry-After
 │    └── Busy           503      with Retry-After: all slots for the work are taken
 └── DependencyFailed    502/503  a platform, repository or database we depend on failed

A business outcome ("not eligible") is a value, never one of these.
"""

from __future__ import annotations

__all__ = [
    "BadInput",
    "Busy",
    "Conflict",
    "DependencyFailed",
    "Forbidden",
    "NotFound",
    "ServiceError",
    "TooManyRequests",
]


class ServiceError(Exception):
    code = "error"
    status_code = 500
    title = "Something went wrong"

    def __init__(self, detail: str, *, hint: str | None = None, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.hint = hint
        self.headers: dict[str, str] = {}  # sent with the error response
        if code is not None:
            self.code = code


class NotFound(ServiceError):
    code = "not_found"
    status_code = 404
    title = "Not found"


class Forbidden(ServiceError):
    code = "forbidden"
    status_code = 403
    title = "Not allowed"


class BadInput(ServiceError):
    code = "bad_input"
    status_code = 422
    title = "The input is not valid"


class Conflict(ServiceError):
    code = "conflict"
    status_code = 409
    title = "Conflict"


class TooManyRequests(ServiceError):
    code = "rate_limited"
    status_code = 429
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after: int, hint: str | None = None) -> None:
        super().__init__(detail, hint=hint)
        self.retry_after = retry_after
        self.headers["retry-after"] = str(retry_after)


class Busy(TooManyRequests):
    code = "busy"
    status_code = 503
    title = "Too busy right now"


class DependencyFailed(ServiceError):
    code = "dependency_failed"
    status_code = 503
    title = "A service we depend on failed"
