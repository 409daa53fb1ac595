"""Deliveries through service.outbound: a refused address is final (dead letter with a
clear message), a timeout stays retryable."""

from __future__ import annotations

import datetime as dt
import socket

import pytest

from service import outbound
from service.delivery import errors, http, outbox
from service.settings import Settings

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def test_a_private_address_is_final_and_never_contacted() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    record = outbox.AttemptRecord(started_at=NOW)
    pol = outbound.policy(Settings(environment="production"))
    try:
        with outbound.client(pol) as client, pytest.raises(errors.FinalError) as info:
            http.request(
                client,
                "POST",
                f"http://127.0.0.1:{listener.getsockname()[1]}/hook",
                record=record,
                clock=lambda: NOW,
                json={"a": 1},
            )
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()
    assert isinstance(info.value, errors.NotConfigured)
    assert "private, loopback or link-local" in info.value.detail
    assert "MICROCRED_OUTBOUND_ALLOW_PRIVATE" in info.value.detail
    assert record.requests == ["POST /hook -> refused: address not allowed"]


def test_a_silent_repository_is_a_retryable_timeout() -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    record = outbox.AttemptRecord(started_at=NOW)
    pol = outbound.Policy(allow_private=True, deadline_seconds=1.0)
    try:
        with outbound.client(pol) as client, pytest.raises(errors.RetryableError) as info:
            http.request(
                client,
                "POST",
                f"http://127.0.0.1:{silent.getsockname()[1]}/hook",
                record=record,
                clock=lambda: NOW,
                json={"a": 1},
            )
    finally:
        silent.close()
    assert isinstance(info.value, errors.TimedOut) and info.value.uncertain
