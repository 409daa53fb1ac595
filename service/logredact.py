"""Keep secrets and personal data out of the logs (reference/security.md W7: no JWTs,
bearer tokens or e-mail addresses in logs).

- ``RedactQuery`` on uvicorn's access log: the tool session's token rides in the query
  string when the browser refuses even partitioned cookies (``mc_session``,
  service/web/auth.py), and the landing redirect of every launch carries it; dynamic
  registration brings ``registration_token`` and ``key``.
- ``RedactSecrets`` on every other handler the CLI sets up: messages can quote what a
  remote service answered (Credly echoes the recipient's e-mail in its errors), so
  e-mail addresses, JWTs, bearer and API tokens are masked wherever they come from.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

__all__ = [
    "SECRET_PARAMS",
    "RedactQuery",
    "RedactSecrets",
    "install",
    "redact",
    "redact_text",
    "uvicorn_log_config",
]

SECRET_PARAMS = ("mc_session", "registration_token", "key", "ticket", "token", "access_token")
_PATTERN = re.compile(
    r"(?P<name>(?:^|[?&;])(?:" + "|".join(SECRET_PARAMS) + r"))=(?P<value>[^&;#\s\"]*)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with the value of every secret query parameter replaced."""
    return _PATTERN.sub(r"\g<name>=[redacted]", text)


_MASKS = (
    (re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), "[jwt]"),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+"), "Bearer [redacted]"),
    (re.compile(r"\bmct_[A-Za-z0-9_-]+"), "mct_[redacted]"),
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"), "[email]"),
)


def redact_text(text: str) -> str:
    """``text`` with JWTs, bearer and API tokens, e-mail addresses and secret query
    parameters masked."""
    for pattern, mask in _MASKS:
        text = pattern.sub(mask, text)
    return redact(text)


class RedactSecrets(logging.Filter):
    """A filter for ordinary handlers: formats the message, masks it, drops the args."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is logging's problem, not ours
            return True
        masked = redact_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def install() -> None:
    """Put ``RedactSecrets`` on the root logger's handlers (after ``basicConfig``)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets())


class RedactQuery(logging.Filter):
    """A filter for uvicorn's access log: its records carry the path with the query string
    as an argument (``client, method, path, http version, status``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def uvicorn_log_config(*, json_lines: bool = False) -> dict[str, Any]:
    """uvicorn's own logging configuration with ``RedactQuery`` on the access handler, the
    request id on every record, and (``json_lines``) JSON lines (service/requestlog.py)."""
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    filters = config.setdefault("filters", {})
    filters["redact_query"] = {"()": "service.logredact.RedactQuery"}
    filters["redact_secrets"] = {"()": "service.logredact.RedactSecrets"}
    filters["request_id"] = {"()": "service.requestlog.RequestIdFilter"}
    config["handlers"]["access"]["filters"] = ["redact_query", "request_id"]
    config["handlers"]["default"]["filters"] = ["redact_secrets", "request_id"]
    if json_lines:
        config["formatters"]["json"] = {"()": "service.requestlog.JsonFormatter"}
        config["handlers"]["access"]["formatter"] = "json"
        config["handlers"]["default"]["formatter"] = "json"
    return config
