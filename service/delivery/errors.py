"""Connector errors: what the outbox uses to decide between retry and dead letter.

ConnectorError (code, detail, status, response excerpt)
 ├── RetryableError              try again later (backoff, at least Retry-After)
 │    ├── RateLimited            429 (and 503 with Retry-After)
 │    ├── ServerError            5xx; ``uncertain`` when the request was sent
 │    ├── TimedOut               no answer in time; ``uncertain`` once the request was sent
 │    ├── ConnectionFailed       refused/reset; ``uncertain`` if it broke after sending
 │    ├── UnexpectedAnswer       a 2xx that is not JSON (an HTML page: wrong base URL?)
 │    └── NotReady               the connector cannot act yet (e.g. no AGS poster wired)
 └── FinalError                  never retried: dead letter at once
      ├── Rejected               other 4xx (bad template id, missing names, 401/403 token)
      ├── NotConfigured          the repository configuration lacks something
      └── Unconfirmed            the repository's answers do not show the effect happened
                                 (e.g. a revoke that found nothing to revoke); a person
                                 must look, so the detail says what to check

``uncertain`` marks an attempt that may have had its effect; the next attempt checks the
repository before sending again (reference/security.md §3.2 point 3).
"""

from __future__ import annotations

from service import httpretry

__all__ = [
    "ConnectionFailed",
    "ConnectorError",
    "FinalError",
    "NotConfigured",
    "NotReady",
    "RateLimited",
    "Rejected",
    "RetryableError",
    "ServerError",
    "TimedOut",
    "Unconfirmed",
    "UnexpectedAnswer",
    "error_for_status",
]


class ConnectorError(Exception):
    code = "connector_error"

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        excerpt: str = "",
        retry_after: float | None = None,
        uncertain: bool = False,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.excerpt = excerpt
        self.retry_after = retry_after
        self.uncertain = uncertain


class RetryableError(ConnectorError):
    code = "retryable"


class RateLimited(RetryableError):
    code = "rate_limited"


class ServerError(RetryableError):
    code = "server_error"


class TimedOut(RetryableError):
    code = "timeout"


class ConnectionFailed(RetryableError):
    code = "connection_failed"


class UnexpectedAnswer(RetryableError):
    code = "unexpected_answer"


class NotReady(RetryableError):
    code = "not_ready"


class FinalError(ConnectorError):
    code = "final"


class Rejected(FinalError):
    code = "rejected"


class NotConfigured(FinalError):
    code = "not_configured"


class Unconfirmed(FinalError):
    code = "unconfirmed"


def error_for_status(
    status: int, detail: str, *, excerpt: str = "", retry_after: float | None = None
) -> ConnectorError:
    """The error for an HTTP status that is not a success."""
    if status == 429 or (status == 503 and retry_after is not None):
        return RateLimited(detail, status=status, excerpt=excerpt, retry_after=retry_after)
    if status in httpretry.RETRYABLE_STATUSES:
        # The server received the request: a 5xx may have been applied.
        return ServerError(
            detail, status=status, excerpt=excerpt, retry_after=retry_after, uncertain=True
        )
    return Rejected(detail, status=status, excerpt=excerpt)
