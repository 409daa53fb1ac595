"""LMS pulls through service.outbound: a refused address is not retried."""

from __future__ import annotations

import socket

import httpx
import pytest

from service import outbound
from service.settings import Settings
from service.sources.connectors.base import RetryPolicy, send
from service.sources.errors import SourceRefused


def test_a_private_lms_address_is_refused_at_once_in_production() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    slept: list[float] = []
    pol = outbound.policy(Settings(environment="production"))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/webservice/rest/server.php"
    try:
        with outbound.client(pol) as client, pytest.raises(SourceRefused) as info:
            send(
                client,
                httpx.Request("POST", url),
                what="Moodle core_course_get_courses",
                policy=RetryPolicy(attempts=4),
                sleep=slept.append,
            )
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()
    assert slept == []  # not retried
    assert "private, loopback or link-local" in info.value.detail
