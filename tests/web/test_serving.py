"""The server settings (service.serving): uvicorn's h11 protocol with a bound on a request's
head by default, httptools when MICROCRED_HTTP_PROTOCOL (or serve --http) asks for it;
responses intact with either, a streamed body chunk by chunk."""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import threading
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, StreamingResponse
from starlette.routing import Route
from typer.testing import CliRunner

from service.serving import MAX_HEAD_BYTES, Protocol, server_options
from service.settings import Settings
from tests.threaded_server import serving
from tests.timing import HANG

PAGE = "<p>" + "x" * 5000 + "</p>"
released = threading.Event()


async def page(_request: Request) -> HTMLResponse:
    return HTMLResponse(PAGE)


async def stream(_request: Request) -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"first;"
        # the second chunk only once the client has the first: a held first chunk would
        # not be released before the client's read below times out (HANG)
        for _ in range(int(2 * HANG * 100)):
            if released.is_set():
                break
            await asyncio.sleep(0.01)
        yield b"second"

    return StreamingResponse(chunks(), media_type="text/plain")


async def upload(request: Request) -> HTMLResponse:
    return HTMLResponse(str(len(await request.body())))


app = Starlette(
    routes=[
        Route("/page", page, methods=["GET", "HEAD"]),
        Route("/stream", stream),
        Route("/upload", upload, methods=["POST"]),
    ]
)


def _serving(loop: str, protocol: Protocol) -> contextlib.AbstractContextManager[int]:
    return serving(app, loop=loop, lifespan="off", **server_options(protocol))


@pytest.fixture(params=["asyncio", "uvloop"])
def port(request: pytest.FixtureRequest) -> Iterator[int]:
    """The h11 server (the default) on either loop (``microcred serve`` runs uvloop)."""
    with _serving(request.param, "h11") as free:
        yield free


@pytest.fixture(params=[("asyncio", "h11"), ("uvloop", "h11"), ("uvloop", "httptools")])
def any_port(request: pytest.FixtureRequest) -> Iterator[int]:
    """Either protocol ``MICROCRED_HTTP_PROTOCOL`` picks: the same answers from both."""
    with _serving(*request.param) as free:
        yield free


def _exchange(port: int, raw: bytes, *, until: bytes, count: int = 1) -> bytes:
    # a guard against a hang, not a speed figure: CI hosts run up to several times slower
    with socket.create_connection(("127.0.0.1", port), timeout=HANG) as conn:
        conn.sendall(raw)
        got = b""
        while got.count(until) < count:
            chunk = conn.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


def test_pipelined_requests_on_one_connection_each_get_their_response(any_port: int) -> None:
    one = b"GET /page HTTP/1.1\r\nhost: t\r\n\r\n"
    got = _exchange(any_port, one * 3, until=b"</p>", count=3)
    assert got.count(b"HTTP/1.1 200 OK") == 3 and got.count(PAGE.encode()) == 3


def test_head_and_connection_close(any_port: int) -> None:
    got = _exchange(any_port, b"HEAD /page HTTP/1.1\r\nhost: t\r\n\r\n", until=b"\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 200 OK") and got.endswith(b"\r\n\r\n")
    closing = b"GET /page HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n"
    got = _exchange(any_port, closing, until=b"never")  # read until the server closes
    assert b"connection: close" in got.lower() and got.endswith(PAGE.encode())


def test_a_streamed_body_is_not_held_back(any_port: int) -> None:
    released.clear()
    with socket.create_connection(("127.0.0.1", any_port), timeout=HANG) as conn:
        conn.sendall(b"GET /stream HTTP/1.1\r\nhost: t\r\n\r\n")
        got = b""
        while b"first;" not in got:
            got += conn.recv(65536)  # times out (fails) if the first chunk were held
        released.set()
        while b"0\r\n\r\n" not in got:
            got += conn.recv(65536)
    assert got.index(b"first;") < got.index(b"second")


def test_settle_heap_freezes_the_startup_heap_and_raises_the_young_threshold() -> None:
    import gc
    import weakref

    from service.serving import GC_YOUNG_THRESHOLD, settle_heap

    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    try:
        settle_heap()
        assert gc.get_freeze_count() > 10_000  # this process's modules, classes, functions
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, before[1], before[2])
        # a cycle made afterwards is still collected
        box = _Box(None)
        box.me = box
        box_ref = weakref.ref(box)
        del box
        gc.collect()
        assert box_ref() is None
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


class _Box:
    def __init__(self, value: object) -> None:
        self.me: object = value


def test_serve_builds_its_app_through_served_app(monkeypatch: pytest.MonkeyPatch) -> None:
    """``microcred serve`` hands uvicorn the factory that settles the heap."""
    from service.cli import server
    from service.settings import get_settings

    seen: dict[str, object] = {}

    class _Uvicorn:
        @staticmethod
        def run(app: object, **kw: object) -> None:
            seen["app"], seen["kw"] = app, kw

    monkeypatch.setattr(server, "_ensure_tool_key", lambda _settings: None)
    server._run_uvicorn(_Uvicorn, "127.0.0.1", 0, False, get_settings(), None)
    assert seen["app"] == "service.serving:served_app"
    assert seen["kw"]["factory"] is True  # type: ignore[index]
    # h11 with its bound on a request's head unless asked otherwise
    assert seen["kw"]["http"] == "h11"  # type: ignore[index]
    assert seen["kw"]["h11_max_incomplete_event_size"] == MAX_HEAD_BYTES  # type: ignore[index]


def test_serve_runs_httptools_when_the_setting_or_the_flag_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from service.cli import server
    from service.settings import get_settings

    seen: list[dict[str, object]] = []

    class _Uvicorn:
        @staticmethod
        def run(_app: object, **kw: object) -> None:
            seen.append(kw)

    monkeypatch.setattr(server, "_ensure_tool_key", lambda _settings: None)
    server._run_uvicorn(_Uvicorn, "127.0.0.1", 0, False, get_settings(), "httptools")
    settings = get_settings().model_copy(update={"http_protocol": "httptools"})
    server._run_uvicorn(_Uvicorn, "127.0.0.1", 0, False, settings, None)
    server._run_uvicorn(_Uvicorn, "127.0.0.1", 0, False, settings, "h11")  # the flag wins
    assert [kw["http"] for kw in seen] == ["httptools", "httptools", "h11"]
    assert "h11_max_incomplete_event_size" not in seen[0]


def test_server_options_refuse_an_unknown_protocol() -> None:
    with pytest.raises(ValueError, match="h11, httptools"):
        server_options("h2")  # type: ignore[arg-type]


def test_the_protocol_setting_takes_only_what_uvicorn_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typing import get_args

    from pydantic import ValidationError

    from service.serving import PROTOCOLS

    assert get_args(Settings.model_fields["http_protocol"].annotation) == PROTOCOLS
    monkeypatch.setenv("MICROCRED_HTTP_PROTOCOL", "httptools")
    assert Settings().http_protocol == "httptools"
    monkeypatch.setenv("MICROCRED_HTTP_PROTOCOL", "auto")
    with pytest.raises(ValidationError):
        Settings()


def _send_until_answered(port: int, head: bytes, more: Iterator[bytes]) -> tuple[int, bytes]:
    """Send ``head``, then ``more`` until the server answers or hangs up; returns the bytes
    of ``more`` sent and what came back."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=HANG) as conn:
        conn.sendall(head)
        try:
            for piece in more:
                if select.select([conn], [], [], 0)[0]:
                    break  # an answer (or the close) is waiting
                conn.sendall(piece)
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass
        got = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := conn.recv(65536):
                got += chunk
    return sent, got


def _endless(piece: bytes, total: int = 300 * 1024 * 1024) -> Iterator[bytes]:
    for _ in range(total // len(piece)):
        yield piece


def test_a_header_that_never_ends_is_refused_and_the_connection_closed(port: int) -> None:
    # 300 MB of one header line, generated as it is sent. The server keeps at most
    # MAX_HEAD_BYTES plus one read of it; the client gets far less out before the close
    # than the 300 MB it meant to send (the loopback's socket buffers take a few MB).
    sent, got = _send_until_answered(
        port, b"GET /page HTTP/1.1\r\nhost: t\r\nx-big: ", _endless(b"a" * 65536)
    )
    assert got.startswith(b"HTTP/1.1 400 ") and b"connection: close" in got.lower()
    assert sent < 32 * 1024 * 1024


def test_a_request_line_that_never_ends_is_refused(port: int) -> None:
    sent, got = _send_until_answered(port, b"GET /page?q=", _endless(b"a" * 65536))
    assert got.startswith(b"HTTP/1.1 400 ") and sent < 32 * 1024 * 1024


def test_endless_trailers_after_a_chunked_body_are_refused(port: int) -> None:
    head = b"POST /upload HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n"
    body = b"5\r\nhello\r\n0\r\nx-trailer: "
    sent, got = _send_until_answered(port, head + body, _endless(b"a" * 65536))
    assert b" 400 " in got.split(b"\r\n")[0] and sent < 32 * 1024 * 1024


def test_headers_under_the_limit_and_a_body_in_tiny_chunks_still_work(any_port: int) -> None:
    big = b"x-big: " + b"a" * (MAX_HEAD_BYTES - 1024) + b"\r\n"
    got = _exchange(any_port, b"GET /page HTTP/1.1\r\nhost: t\r\n" + big + b"\r\n", until=b"</p>")
    assert got.startswith(b"HTTP/1.1 200 OK")
    # 10-byte chunks with three times MAX_HEAD_BYTES of chunk framing (5 bytes each), all
    # of it next to body bytes: the bound is on one incomplete event, not on their sum
    count = 3 * MAX_HEAD_BYTES // 5
    chunks = b"".join(b"a\r\n" + b"0123456789" + b"\r\n" for _ in range(count))
    head = b"POST /upload HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n"
    size = str(10 * count).encode()
    got = _exchange(any_port, head + chunks + b"0\r\n\r\n", until=size)
    assert got.startswith(b"HTTP/1.1 200 OK") and got.endswith(size)


def test_serve_refuses_an_unknown_http_flag_before_starting(runner: CliRunner) -> None:
    from service.cli import app as cli

    result = runner.invoke(cli, ["serve", "--http", "h2"])
    assert result.exit_code == 2
    assert "one of h11, httptools" in result.output


def test_fastapi_telemetry_is_off_unless_the_setting_turns_it_on(settings: Settings) -> None:
    from service.app import telemetry

    off = telemetry(settings)
    assert settings.otel is False
    assert off == {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}
    on = telemetry(settings.model_copy(update={"otel": True}))
    assert set(on.values()) == {True} and set(on) == set(off)


def test_the_app_serves_with_fastapi_telemetry_on(settings: Settings, engine: Engine) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app

    app = create_app(settings.model_copy(update={"otel": True}), engine=engine)
    with TestClient(app) as client:
        answer = client.get("/healthz")
    assert answer.status_code == 200 and answer.headers["x-request-id"]


@pytest.mark.db
def test_the_routes_run_in_as_many_threads_as_the_setting_says(
    settings: Settings, engine: Engine
) -> None:
    """Sync routes and the database work of async ones share AnyIO's default thread
    limiter, which the app sizes when it starts: ``web_threads``, or by default 2 on
    SQLite (one writer at a time) and AnyIO's own 40 on PostgreSQL."""
    import anyio.to_thread
    from fastapi.testclient import TestClient

    from service.app import create_app

    async def tokens() -> float:
        return anyio.to_thread.current_default_thread_limiter().total_tokens

    default = 2 if engine.dialect.name == "sqlite" else 40
    for threads, expected in ((0, default), (3, 3)):
        app = create_app(settings.model_copy(update={"web_threads": threads}), engine=engine)
        with TestClient(app) as client:
            assert client.portal.call(tokens) == expected
            assert client.get("/healthz").status_code == 200
