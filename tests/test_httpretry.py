"""One retry rule for LMS pulls and deliveries (service/httpretry.py, issue #15 item 5)."""

from __future__ import annotations

import httpx
import pytest

from service import httpretry, outbound
from service.sources.connectors.base import RetryPolicy, backoff_seconds, send

REQ = httpx.Request("GET", "https://lms.example/api")


@pytest.mark.parametrize(
    ("exc", "final", "timeout", "maybe_applied"),
    [
        (outbound.Blocked("private address"), True, False, False),
        (outbound.TooLarge("answer over 5 MB"), True, False, True),
        (httpx.ConnectTimeout("slow", request=REQ), False, True, False),
        (httpx.PoolTimeout("busy", request=REQ), False, True, False),
        (httpx.ReadTimeout("slow", request=REQ), False, True, True),
        (httpx.ConnectError("refused", request=REQ), False, False, False),
        (httpx.ReadError("reset", request=REQ), False, False, True),
        (httpx.RemoteProtocolError("closed", request=REQ), False, False, True),
    ],
)
def test_a_transport_failure_says_whether_to_retry_and_whether_it_may_have_been_applied(
    exc: httpx.TransportError, final: bool, timeout: bool, maybe_applied: bool
) -> None:
    got = httpretry.failure(exc)
    assert (got.final, got.timeout, got.maybe_applied) == (final, timeout, maybe_applied)


def test_an_lms_pull_waits_for_a_retry_after_date_as_deliveries_do() -> None:
    later = "Fri, 01 Jan 2100 00:00:00 GMT"
    assert backoff_seconds(RetryPolicy(max_delay=30.0), 1, later) == 30.0  # capped


@pytest.mark.parametrize(("status", "retried"), [(408, True), (503, True), (501, False)])
def test_an_lms_pull_retries_the_statuses_deliveries_retry(status: int, retried: bool) -> None:
    answers = [httpx.Response(status), httpx.Response(200, json={})]
    slept: list[float] = []
    with httpx.Client(transport=httpx.MockTransport(lambda _: answers.pop(0))) as client:
        got = send(client, REQ, what="test", policy=RetryPolicy(), sleep=slept.append)
    assert (got.status_code == 200, slept) == (retried, [0.5] if retried else [])
