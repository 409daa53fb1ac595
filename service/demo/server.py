"""Run the tool and the demo LMS side by side in one process (two uvicorn servers).

The tool and the LMS must be different *sites* so that the tool's cookies are third-party
inside the LMS iframe, as in production: the tool is served as ``http://127.0.0.1:<port>``
and the LMS as ``http://localhost:<port>`` (both bound to the loopback interface).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from service.serving import server_options, settle_heap

__all__ = ["bind", "run", "running"]


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0 picks a free one), so the URL is known before apps start."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to ``_serve_all`` (one handler stops both)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _server(app: FastAPI, log_level: str) -> _Server:
    config = uvicorn.Config(
        app, log_level=log_level, lifespan="on", access_log=False, **server_options()
    )
    return _Server(config)


async def _serve_all(pairs: list[tuple[_Server, socket.socket]], *, signals: bool) -> None:
    if signals:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):

            def stop() -> None:
                for srv, _ in pairs:
                    srv.should_exit = True

            loop.add_signal_handler(sig, stop)
    await asyncio.gather(*(srv.serve(sockets=[sock]) for srv, sock in pairs))


def run(
    tool: FastAPI,
    lms: FastAPI,
    *,
    tool_socket: socket.socket,
    lms_socket: socket.socket,
    log_level: str = "info",
) -> None:
    """Serve both apps until interrupted (Ctrl-C stops both)."""
    settle_heap()
    pairs = [(_server(tool, log_level), tool_socket), (_server(lms, log_level), lms_socket)]
    asyncio.run(_serve_all(pairs, signals=True))


@contextlib.contextmanager
def running(
    tool: FastAPI,
    lms: FastAPI,
    *,
    tool_socket: socket.socket,
    lms_socket: socket.socket,
    log_level: str = "warning",
    startup_timeout: float = 30.0,
) -> Iterator[None]:
    """Serve both apps in a background thread for the duration of the block (tests, bench)."""
    servers = [_server(tool, log_level), _server(lms, log_level)]
    pairs = list(zip(servers, [tool_socket, lms_socket], strict=True))
    failure: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(_serve_all(pairs, signals=False))
        except BaseException as exc:  # reported to the caller below
            failure.append(exc)

    thread = threading.Thread(target=target, name="demo-servers", daemon=True)
    thread.start()
    deadline = threading.Event()
    for _ in range(int(startup_timeout * 20)):
        if all(s.started for s in servers) or failure or not thread.is_alive():
            break
        deadline.wait(0.05)
    if not all(s.started for s in servers):
        for s in servers:
            s.should_exit = True
        thread.join(timeout=10)
        raise RuntimeError(f"demo servers did not start: {failure or 'timeout'}")
    try:
        yield
    finally:
        for s in servers:
            s.should_exit = True
        thread.join(timeout=15)
        for sock in (tool_socket, lms_socket):
            sock.close()
