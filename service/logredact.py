"""Keep secrets that can travel in a URL out of the access log.

The tool session's token rides in the query string when the browser refuses even
partitioned cookies (``mc_session``, service/web/auth.py), and the landing redirect of
every launch carries it; dynamic registration brings ``registration_token`` and ``key``.
uvicorn's access log prints each request's path with its query string, so ``microcred
serve`` installs ``RedactQuery`` on that log (reference/security.md W7: no tokens in logs).
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

__all__ = ["SECRET_PARAMS", "RedactQuery", "redact", "uvicorn_log_config"]

SECRET_PARAMS = ("mc_session", "registration_token", "key", "ticket", "token", "access_token")
_PATTERN = re.compile(
    r"(?P<name>(?:^|[?&;])(?:" + "|".join(SECRET_PARAMS) + r"))=(?P<value>[^&;#\s\"]*)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with the value of every secret query parameter replaced."""
    return _PATTERN.sub(r"\g<name>=[redacted]", text)


class RedactQuery(logging.Filter):
    """A filter for uvicorn's access log: its records carry the path with the query string
    as an argument (``client, method, path, http version, status``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's own logging configuration with ``RedactQuery`` on the access handler."""
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_query"] = {"()": "service.logredact.RedactQuery"}
    config["handlers"]["access"]["filters"] = ["redact_query"]
    return config
