"""Secrets in query strings never reach the access log (reference/security.md W7)."""

from __future__ import annotations

import logging
import logging.config

import pytest

from service.logredact import (
    RedactQuery,
    RedactSecrets,
    install,
    redact,
    redact_text,
    uvicorn_log_config,
)


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
    assert config["handlers"]["access"]["filters"][0] == "redact_query"
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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Credly: the recipient same@example.edu already holds this template",
            "Credly: the recipient [email] already holds this template",
        ),
        ("id_token eyJhbGciOi.eyJzdWIiOiIx.c2lnbmF0dXJl rejected", "id_token [jwt] rejected"),
        ("Authorization: Bearer abc.DEF-123_x", "Authorization: Bearer [redacted]"),
        ("token mct_AbC123-_z was revoked", "token mct_[redacted] was revoked"),
        ("GET /app?mc_session=s3cr3t 200", "GET /app?mc_session=[redacted] 200"),
        ("course 12: 5 learners, 3 issued", "course 12: 5 learners, 3 issued"),
    ],
)
def test_secrets_and_addresses_are_masked_in_any_message(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_the_root_handlers_mask_what_services_log(caplog: pytest.LogCaptureFixture) -> None:
    handler = logging.StreamHandler()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        install()
        install()  # idempotent
        assert sum(isinstance(f, RedactSecrets) for f in handler.filters) == 1
        record = logging.LogRecord(
            "service.delivery.worker",
            logging.WARNING,
            __file__,
            1,
            "delivery %s dead: %s",
            ("d-1", "the recipient ada@example.edu already holds it"),
            None,
        )
        assert handler.filters[0].filter(record)
        assert record.getMessage() == "delivery d-1 dead: the recipient [email] already holds it"
    finally:
        root.removeHandler(handler)
