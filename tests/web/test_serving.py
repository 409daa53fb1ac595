"""The server protocol (service.serving): a response goes out in one write, intact, and a
streamed body still goes out chunk by chunk."""

from __future__ import annotations

import asyncio
import asyncio.selector_events
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, StreamingResponse
from starlette.routing import Route

from service.serving import CorkedHttpToolsProtocol

PAGE = "<p>" + "x" * 5000 + "</p>"
released = threading.Event()


async def page(_request: Request) -> HTMLResponse:
    return HTMLResponse(PAGE)


async def stream(_request: Request) -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"first;"
        # the second chunk only once the client has the first: a held first chunk would
        # never be released, and the client's read below times out
        for _ in range(1000):
            if released.is_set():
                break
            await asyncio.sleep(0.01)
        yield b"second"

    return StreamingResponse(chunks(), media_type="text/plain")


app = Starlette(routes=[Route("/page", page, methods=["GET", "HEAD"]), Route("/stream", stream)])


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every write the server makes on a socket (the asyncio loop's Python transport)."""
    seen: list[bytes] = []
    transport = asyncio.selector_events._SelectorSocketTransport
    original = transport.write

    def spy(self: object, data: bytes) -> None:
        seen.append(bytes(data))
        original(self, data)  # type: ignore[arg-type]

    monkeypatch.setattr(transport, "write", spy)
    return seen


@pytest.fixture(params=["asyncio", "uvloop"])
def port(request: pytest.FixtureRequest, writes: list[bytes]) -> Iterator[int]:
    """The server on either loop (``microcred serve`` runs uvloop, whose transport is its
    own type); only asyncio's transport writes can be counted."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = int(s.getsockname()[1])
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=free,
        loop=request.param,
        http=CorkedHttpToolsProtocol,
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    yield free
    server.should_exit = True
    thread.join(10)


def _exchange(port: int, raw: bytes, *, until: bytes, count: int = 1) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(raw)
        got = b""
        while got.count(until) < count:
            chunk = conn.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


def test_a_response_goes_out_in_one_write(
    port: int, writes: list[bytes], request: pytest.FixtureRequest
) -> None:
    got = _exchange(port, b"GET /page HTTP/1.1\r\nhost: t\r\n\r\n", until=b"</p>")
    assert got.startswith(b"HTTP/1.1 200 OK\r\n") and got.endswith(PAGE.encode())
    if request.node.callspec.params["port"] == "asyncio":
        assert len(writes) == 1 and writes[0] == got


def test_pipelined_requests_on_one_connection_each_get_their_response(port: int) -> None:
    one = b"GET /page HTTP/1.1\r\nhost: t\r\n\r\n"
    got = _exchange(port, one * 3, until=b"</p>", count=3)
    assert got.count(b"HTTP/1.1 200 OK") == 3 and got.count(PAGE.encode()) == 3


def test_head_and_connection_close(port: int) -> None:
    got = _exchange(port, b"HEAD /page HTTP/1.1\r\nhost: t\r\n\r\n", until=b"\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 200 OK") and got.endswith(b"\r\n\r\n")
    closing = b"GET /page HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n"
    got = _exchange(port, closing, until=b"never")  # read until the server closes
    assert b"connection: close" in got.lower() and got.endswith(PAGE.encode())


def test_a_streamed_body_is_not_held_back(port: int) -> None:
    released.clear()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
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
    import service.cli as cli
    from service.settings import get_settings

    seen: dict[str, object] = {}

    class _Uvicorn:
        @staticmethod
        def run(app: object, **kw: object) -> None:
            seen["app"], seen["kw"] = app, kw

    monkeypatch.setattr(cli, "_ensure_tool_key", lambda _settings: None)
    cli._run_uvicorn(_Uvicorn, "127.0.0.1", 0, False, get_settings())
    assert seen["app"] == "service.serving:served_app"
    assert seen["kw"]["factory"] is True  # type: ignore[index]
