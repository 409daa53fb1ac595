"""Secrets in query strings never reach the access log (reference/security.md W7)."""

from __future__ import annotations

import logging
import logging.config

import pytest

from service.logredact import RedactQuery, redact, uvicorn_log_config


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("/app?mc_session=s3cr3t", "/app?mc_session=[redacted]"),
        ("/app/me?x=1&mc_session=s3cr3t&y=2", "/app/me?x=1&mc_session=[redacted]&y=2"),
        (
            "/lti/register?openid_configuration=https%3A%2F%2Fm&registration_token=eyJ.x.y&key=k1",
            "/lti/register?openid_configuration=https%3A%2F%2Fm"
            "&registration_token=[redacted]&key=[redacted]",
        ),
        ("/x?MC_SESSION=abc", "/x?MC_SESSION=[redacted]"),
        ("/x?monkey=1&tokens=2&keys=3", "/x?monkey=1&tokens=2&keys=3"),  # other names stay
        ("/healthz", "/healthz"),
    ],
)
def test_secret_parameters_are_redacted(line: str, expected: str) -> None:
    assert redact(line) == expected


def test_the_filter_keeps_uvicorns_access_record_shape() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/app?mc_session=s3cr3t", "1.1", 200),
        None,
    )
    assert RedactQuery().filter(record)
    assert record.args == ("127.0.0.1:5000", "GET", "/app?mc_session=[redacted]", "1.1", 200)
    assert "s3cr3t" not in record.getMessage()


def test_serve_puts_the_filter_on_the_access_handler() -> None:
    config = uvicorn_log_config()
    assert config["handlers"]["access"]["filters"] == ["redact_query"]
    loggers = [logging.getLogger(n) for n in ("uvicorn", "uvicorn.error", "uvicorn.access")]
    saved = [(lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    try:
        logging.config.dictConfig(config)
        handler = logging.getLogger("uvicorn.access").handlers[0]
        assert any(isinstance(f, RedactQuery) for f in handler.filters)
    finally:
        for lg, (handlers, level, propagate) in zip(loggers, saved, strict=True):
            lg.handlers[:] = handlers
            lg.setLevel(level)
            lg.propagate = propagate
