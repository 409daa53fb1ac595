"""Errors of the evidence sources.

DependencyFailed (service.errors)
 └── SourceError               an LMS data API failed; ``retryable`` tells the worker
      ├── SourceUnavailable    retryable: timeout, connection error, 429, 5xx (after retries)
      ├── SourceAuthFailed     final: token rejected or expired and could not be refreshed
      ├── SourceRefused        final: any other 4xx, or a Moodle web-service exception
      └── SourceDataError      final: the response is not in the documented shape

Nothing is written when one of these is raised during a sync: connectors fetch everything
first and the store writes afterwards in one transaction.
"""

from __future__ import annotations

from service.errors import DependencyFailed

__all__ = [
    "SourceAuthFailed",
    "SourceDataError",
    "SourceError",
    "SourceRefused",
    "SourceUnavailable",
]


class SourceError(DependencyFailed):
    code = "source_failed"
    status_code = 502
    title = "The LMS data API failed"
    retryable = False


class SourceUnavailable(SourceError):
    code = "source_unavailable"
    status_code = 503
    retryable = True


class SourceAuthFailed(SourceError):
    code = "source_auth_failed"
    title = "The LMS rejected our API token"


class SourceRefused(SourceError):
    code = "source_refused"
    title = "The LMS refused the request"


class SourceDataError(SourceError):
    code = "source_data"
    title = "The LMS answered in an unexpected shape"
