"""An app served by uvicorn in a thread on a free loopback port, for tests that need a real
socket (``microcred serve``'s protocols, body limits, the deploy proxy)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

from tests.timing import HANG


@contextlib.contextmanager
def serving(app: Any, **options: Any) -> Iterator[int]:
    """Serve ``app`` with uvicorn ``options`` until the block ends; yields the port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = int(s.getsockname()[1])
    config = uvicorn.Config(app, host="127.0.0.1", port=free, log_level="warning", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + HANG
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield free
    finally:
        server.should_exit = True
        thread.join(HANG)
