"""The LTI routes' form reading: a url-encoded body split by ``parse_qsl`` gives what
Starlette's form parser gives."""

from __future__ import annotations

import anyio
import pytest
from starlette.requests import Request

from service.lti.http import request_params

BODIES = [
    b"iss=https%3A%2F%2Flms.test&login_hint=42&target_link_uri=https%3A%2F%2Ftool.test%2Flti",
    b"name=Zo%C3%AB+Ng&empty=&flag",
    b"a=1&a=2&b=x+y%2Bz",
    b"bad=%ZZ%C3&ok=1",  # a broken escape and half a UTF-8 sequence
    b"raw=\xe9t\xe9&x=%E9",  # bytes that are not UTF-8
    b"&&=&key==v=w",
]


def _request(body: bytes, content_type: str, query: bytes = b"") -> Request:
    sent = False

    async def receive() -> dict[str, object]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/lti/login",
        "query_string": query,
        "headers": [(b"content-type", content_type.encode())],
    }
    return Request(scope, receive)


async def _starlette(body: bytes) -> dict[str, str]:
    form = await _request(body, "application/x-www-form-urlencoded").form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


@pytest.mark.parametrize("body", BODIES)
def test_a_url_encoded_body_reads_as_starlette_reads_it(body: bytes) -> None:
    async def both() -> tuple[dict[str, str], dict[str, str]]:
        ours = await request_params(
            _request(body, "application/x-www-form-urlencoded; charset=utf-8")
        )
        return ours, await _starlette(body)

    ours, theirs = anyio.run(both)
    assert ours == theirs


def test_query_and_form_merge_and_the_form_wins() -> None:
    request = _request(b"b=form&c=3", "application/x-www-form-urlencoded", b"a=1&b=query")
    assert anyio.run(request_params, request) == {"a": "1", "b": "form", "c": "3"}


def test_too_many_fields_read_as_an_empty_form() -> None:
    request = _request(b"a=1&" * 1001, "application/x-www-form-urlencoded")
    assert anyio.run(request_params, request) == {}


def test_a_multipart_body_goes_through_starlettes_parser() -> None:
    body = (
        b'--xx\r\nContent-Disposition: form-data; name="iss"\r\n\r\nhttps://lms.test\r\n--xx--\r\n'
    )
    request = _request(body, "multipart/form-data; boundary=xx")
    assert anyio.run(request_params, request) == {"iss": "https://lms.test"}
