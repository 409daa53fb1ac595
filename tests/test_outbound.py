"""service.outbound against small servers on 127.0.0.1: addresses refused before any
connection, the total deadline, the byte cap, redirects checked per hop, and one message
for every network failure."""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import httpx
import pytest

from service import outbound
from service.settings import Settings

PRODUCTION = outbound.policy(Settings(environment="production"))
DEVELOPMENT = outbound.policy(Settings(environment="development"))


class Server:
    """A one-thread HTTP server on 127.0.0.x: counts the connections it accepted and the
    bytes it sent; ``respond(conn)`` writes the answer."""

    def __init__(self, respond: Callable[[socket.socket], None], host: str = "127.0.0.1"):
        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.url = f"http://{host}:{self.sock.getsockname()[1]}"
        self.respond = respond
        self.connections = 0
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with conn:
                conn.settimeout(5)
                try:
                    conn.recv(65536)  # the request (small, one read is enough here)
                    self.respond(conn)
                except OSError:
                    pass  # the client went away: what the cap and deadline do

    def send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def make(respond: Callable[[Server, socket.socket], None], host: str = "127.0.0.1") -> Server:
        box: list[Server] = []
        server = Server(lambda conn: respond(box[0], conn), host)
        box.append(server)
        servers.append(server)
        return server

    yield make
    for s in servers:
        s.close()


def _ok(server: Server, conn: socket.socket) -> None:
    server.send(conn, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")


@pytest.mark.parametrize(
    "ip",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fec0::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    ],
)
def test_private_and_special_addresses_are_refused(ip: str) -> None:
    assert not outbound.address_allowed(ipaddress.ip_address(ip))


@pytest.mark.parametrize("ip", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(ip: str) -> None:
    assert outbound.address_allowed(ipaddress.ip_address(ip))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_loopback_is_refused_in_production_without_connecting(
    serve: Callable[..., Server], host: str
) -> None:
    server = serve(_ok)
    url = server.url.replace("127.0.0.1", host)
    with outbound.client(PRODUCTION) as http, pytest.raises(outbound.Blocked) as info:
        http.get(url)
    assert "private, loopback or link-local" in str(info.value)
    assert "MICROCRED_OUTBOUND_ALLOW_PRIVATE" in str(info.value)
    # allowed in development: the same server answers, so it was reachable all along
    with outbound.client(DEVELOPMENT) as http:
        assert http.get(url).text == "ok"
    assert server.connections == 1


def test_async_client_refuses_loopback_in_production(serve: Callable[..., Server]) -> None:
    server = serve(_ok)

    async def main() -> None:
        async with outbound.async_client(PRODUCTION) as http:
            with pytest.raises(outbound.Blocked):
                await http.get(server.url)
        async with outbound.async_client(DEVELOPMENT) as http:
            assert (await http.get(server.url)).text == "ok"

    asyncio.run(main())
    assert server.connections == 1


def test_allowed_networks_open_one_private_address(serve: Callable[..., Server]) -> None:
    server = serve(_ok)
    pol = outbound.policy(
        Settings(environment="production", outbound_allowed_networks="127.0.0.1/32")
    )
    with outbound.client(pol) as http:
        assert http.get(server.url).text == "ok"


def test_a_bad_network_setting_says_what_to_write() -> None:
    with pytest.raises(ValueError, match="CIDR ranges"):
        Settings(outbound_allowed_networks="10.0.0.0/8 intranet")


def test_redirect_to_a_private_address_is_refused(serve: Callable[..., Server]) -> None:
    # 127.0.0.1 is allowed by name (as an on-premises LMS would be); it redirects to
    # 127.0.0.2, which is not: that hop is checked again and refused before connecting.
    target = serve(_ok, host="127.0.0.2")

    def redirect(server: Server, conn: socket.socket) -> None:
        server.send(
            conn,
            f"HTTP/1.1 302 Found\r\nlocation: {target.url}/secret\r\ncontent-length: 0\r\n"
            "connection: close\r\n\r\n".encode(),
        )

    first = serve(redirect)
    pol = outbound.policy(Settings(environment="production", outbound_allowed_networks="127.0.0.1"))
    with (
        outbound.client(pol, follow_redirects=True) as http,
        pytest.raises(outbound.Blocked, match=r"127\.0\.0\.2"),
    ):
        http.get(first.url)
    assert first.connections == 1 and target.connections == 0
    # without following, the redirect is only an answer
    with outbound.client(pol) as http:
        assert http.get(first.url).status_code == 302


def test_https_only_refuses_plain_http_before_connecting(serve: Callable[..., Server]) -> None:
    server = serve(_ok)
    # production with the address allowed by name: still not over plain http
    pol = outbound.Policy(allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),))
    with (
        outbound.client(replace(pol, https_only=True)) as http,
        pytest.raises(outbound.Blocked, match="only https"),
    ):
        http.get(server.url)
    assert server.connections == 0
    # development: plain http to this machine only
    dev = outbound.Policy(allow_private=True, https_only=True)
    with outbound.client(dev) as http:
        assert http.get(server.url).text == "ok"
        with pytest.raises(outbound.Blocked, match="only https"):
            http.get("http://example.invalid/")  # refused before any name lookup


def _drip(server: Server, conn: socket.socket) -> None:
    server.send(conn, b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")
    for _ in range(300):  # a byte every 0.1 s: each read succeeds, the answer never ends
        server.send(conn, b"x")
        time.sleep(0.1)


def test_a_dripping_server_is_cut_by_the_total_deadline(serve: Callable[..., Server]) -> None:
    server = serve(_drip)
    pol = outbound.Policy(allow_private=True, deadline_seconds=1.0)
    start = time.monotonic()
    # the per-read timeout (5 s) never fires; only the deadline can end this request
    with outbound.client(pol, timeout=5.0) as http, pytest.raises(outbound.NoAnswer):
        http.get(server.url)
    # generous: the server would drip for 30 s; the deadline is 1 s
    assert time.monotonic() - start < 15
    assert server.sent < 100 + 150  # headers plus at most a few seconds of drips


def test_the_async_client_has_the_same_deadline(serve: Callable[..., Server]) -> None:
    server = serve(_drip)
    pol = outbound.Policy(allow_private=True, deadline_seconds=1.0)

    async def main() -> None:
        async with outbound.async_client(pol, timeout=5.0) as http:
            with pytest.raises(outbound.NoAnswer):
                await http.get(server.url)

    start = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - start < 15


def test_a_large_body_is_cut_at_the_cap(serve: Callable[..., Server]) -> None:
    chunk = b"x" * 65536
    total = 200 * 1024 * 1024

    def huge(server: Server, conn: socket.socket) -> None:
        server.send(conn, f"HTTP/1.1 200 OK\r\ncontent-length: {total}\r\n\r\n".encode())
        for _ in range(total // len(chunk)):
            server.send(conn, chunk)

    server = serve(huge)
    pol = outbound.Policy(allow_private=True, max_bytes=1_000_000)
    with outbound.client(pol) as http, pytest.raises(outbound.TooLarge, match="1000000 bytes"):
        http.get(server.url)
    server.close()  # waits for the server to notice the client left
    # the client stopped reading at the cap: the server got rid of a small part of 200 MB
    # (socket buffers), not all of it
    assert server.sent < 40 * 1024 * 1024


def test_a_compressed_body_is_capped_after_decoding(serve: Callable[..., Server]) -> None:
    bomb = gzip.compress(b"\0" * 50_000_000)  # ~50 KB on the wire

    def respond(server: Server, conn: socket.socket) -> None:
        server.send(
            conn,
            f"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: {len(bomb)}\r\n"
            "connection: close\r\n\r\n".encode()
            + bomb,
        )

    server = serve(respond)
    pol = outbound.Policy(allow_private=True, max_bytes=1_000_000)
    with outbound.client(pol) as http, pytest.raises(outbound.TooLarge):
        http.get(server.url)
    small = gzip.compress(b'{"ok": true}')

    def fine(server: Server, conn: socket.socket) -> None:
        server.send(
            conn,
            f"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: {len(small)}\r\n"
            "connection: close\r\n\r\n".encode()
            + small,
        )

    with outbound.client(pol) as http:
        assert http.get(serve(fine).url).json() == {"ok": True}


def test_a_closed_port_and_a_silent_port_read_the_same() -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    silent = socket.socket()  # accepts connections (the kernel does) but never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    pol = outbound.Policy(allow_private=True, deadline_seconds=1.0)
    messages = []
    try:
        with outbound.client(pol) as http:
            for port in (closed_port, silent.getsockname()[1]):
                with pytest.raises(httpx.TransportError) as info:
                    http.get(f"http://127.0.0.1:{port}/")
                messages.append(outbound.describe(info.value))
    finally:
        silent.close()
    assert messages[0] == messages[1] == "127.0.0.1 could not be reached or did not answer in time"
