"""``microcred verify URL`` / ``--allow-network`` fetches: https on every hop, capped."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from service.errors import DependencyFailed
from service.issuer import fetch


@pytest.fixture
def redirecting() -> Iterator[str]:
    """A server on 127.0.0.1 whose every answer redirects to a plain-http foreign host."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                conn.sendall(
                    b"HTTP/1.1 302 Found\r\nlocation: http://issuer.example.invalid/c.json\r\n"
                    b"content-length: 0\r\nconnection: close\r\n\r\n"
                )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/c.json"
    stop.set()
    thread.join(5)
    sock.close()


def test_plain_http_to_another_host_is_refused() -> None:
    with pytest.raises(DependencyFailed, match="only https"):
        fetch.fetch_text("http://issuer.example.invalid/c.json")  # no lookup, no connection


def test_a_redirect_to_plain_http_is_refused(redirecting: str) -> None:
    with pytest.raises(DependencyFailed, match="only https") as info:
        fetch.fetch_text(redirecting)
    assert "issuer.example.invalid" in info.value.detail


def test_other_schemes_are_refused() -> None:
    with pytest.raises(DependencyFailed, match="not an https"):
        fetch.fetch_text("file:///etc/passwd")
