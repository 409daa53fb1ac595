"""Every outbound HTTP request microcred makes goes through a client from this module.

``client(policy)`` and ``async_client(policy)`` are ``httpx`` clients whose transport:

- resolves the host itself, refuses private, loopback, link-local, multicast, reserved and
  unspecified addresses (and IPv6 forms embedding them) unless ``Policy.allow_private``, and
  connects to the very address it checked, so a second DNS answer cannot swap it (no
  rebinding window). TLS still runs against the host name (SNI and certificate checks);
- reads the whole body under a byte cap (``Policy.max_bytes``, counted on the wire and again
  after gzip/deflate decoding), so a huge answer is cut instead of buffered;
- bounds each request by a total deadline (``Policy.deadline_seconds``): every connect, read
  and write is given only what is left of it, so a server that drips a byte at a time cannot
  hold a request longer than the deadline;
- refuses ``http://`` when ``https_only``; redirects are off unless the caller turns them on,
  and then each hop passes through this transport again (address and scheme checked anew);
- turns failures into a few errors whose messages do not tell a closed port from a silent
  one (details go to the debug log).

How it connects to the checked address: with httpcore's public ``NetworkBackend`` interface.
The backend given to ``httpcore.ConnectionPool`` receives ``connect_tcp(host, port)``; ours
resolves ``host``, checks the addresses, and asks httpcore's own backend to connect to the
checked IP. httpcore then starts TLS on that stream with ``server_hostname`` = the URL's host,
so certificates are verified against the name, not the IP.

Errors (all ``httpx.TransportError``, so callers that catch ``httpx.HTTPError`` keep working)::

    Blocked(httpx.TransportError)      the address or scheme is not allowed; nothing was sent
    TooLarge(httpx.TransportError)     the answer is larger than the cap
    Unreachable(httpx.ConnectError)    could not connect (refused, timed out, unknown host)
    NoAnswer(httpx.ReadTimeout)        connected, but no complete answer before the deadline
    Broken(httpx.ReadError)            connected, then the connection failed

``Unreachable``, ``NoAnswer`` and ``Broken`` carry the same message (``str(exc)``); their
types keep the retry rules of the callers (a connect failure was never applied, a timeout
after sending may have been).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ipaddress
import logging
import socket
import time
import zlib
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpcore
import httpx

from service.settings import Settings, get_settings

__all__ = [
    "Blocked",
    "Broken",
    "NoAnswer",
    "Policy",
    "TooLarge",
    "Unreachable",
    "address_allowed",
    "async_client",
    "client",
    "default_policy",
    "describe",
    "policy",
]

log = logging.getLogger(__name__)

_IP = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "microcred_outbound_deadline", default=None
)


@dataclass(frozen=True)
class Policy:
    """What outbound requests may do. ``policy(settings)`` reads it from the settings."""

    allow_private: bool = False
    # exceptions to the address rule, e.g. an on-premises LMS at 10.1.2.3/32
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    max_bytes: int = 5_000_000
    deadline_seconds: float = 30.0
    https_only: bool = False  # plain http still reaches loopback when allow_private


def default_policy(**changes: Any) -> Policy:
    """The process settings' policy, for clients made where no settings are passed in."""
    return policy(get_settings(), **changes)


def policy(settings: Settings, **changes: Any) -> Policy:
    """The settings' outbound policy (``MICROCRED_OUTBOUND_*``), with ``changes`` applied."""
    nets = settings.outbound_allowed_networks.replace(",", " ").split()
    base = Policy(
        allow_private=settings.outbound_private_allowed,
        allowed_networks=tuple(ipaddress.ip_network(n, strict=False) for n in nets),
        max_bytes=settings.outbound_max_bytes,
        deadline_seconds=settings.outbound_deadline_seconds,
    )
    return replace(base, **changes) if changes else base


# -- errors -------------------------------------------------------------------------------


def _unreachable_text(host: str) -> str:
    return f"{host} could not be reached or did not answer in time"


class Blocked(httpx.TransportError):
    """The URL's scheme or address is not allowed; no connection was made."""


class TooLarge(httpx.TransportError):
    """The answer is larger than the policy allows."""


class Unreachable(httpx.ConnectError):
    """No connection (refused, reset, timed out or unknown host: one message for all)."""


class NoAnswer(httpx.ReadTimeout):
    """Connected, but the answer did not come before the deadline."""


class Broken(httpx.ReadError):
    """Connected, then the connection failed."""


def describe(exc: httpx.HTTPError) -> str:
    """A message for the caller that never tells one network failure from another."""
    if isinstance(exc, Blocked | TooLarge | Unreachable | NoAnswer | Broken):
        return str(exc)
    try:
        host = exc.request.url.host
    except RuntimeError:  # an error raised without its request
        host = "the server"
    return _unreachable_text(host)


class _NotAllowed(Exception):
    """Raised inside the network backend; the transport turns it into ``Blocked``."""


# -- addresses ----------------------------------------------------------------------------


def address_allowed(ip: _IP) -> bool:
    """Whether ``ip`` is a public unicast address (the only kind production calls)."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and any(ip in net for net in _NAT64):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if ip.teredo is not None:
            return False
        if embedded is not None:
            return address_allowed(embedded)
        if ip.is_site_local:
            return False
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def _resolved(host: str, infos: Iterable[tuple[Any, ...]]) -> list[str]:
    addresses: list[str] = []
    for info in infos:
        ip = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise httpcore.ConnectError(f"{host} has no address")
    return addresses


def _check(host: str, addresses: list[str], pol: Policy) -> list[str]:
    if pol.allow_private:
        return addresses
    allowed = [
        a
        for a in addresses
        if address_allowed(ip := ipaddress.ip_address(a))
        or any(ip in net for net in pol.allowed_networks)
    ]
    if not allowed:
        verb = "is" if _literal(host) else "resolves to"
        raise _NotAllowed(
            f"{host} {verb} a private, loopback or link-local address, which microcred does "
            "not call in production (MICROCRED_OUTBOUND_ALLOW_PRIVATE)"
        )
    return allowed


def _literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


# -- the deadline -------------------------------------------------------------------------


def _left(timeout: float | None, exc: type[Exception]) -> float | None:
    """``timeout`` shortened to what is left of the request's deadline."""
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise exc("the request's deadline has passed")
    return left if timeout is None else min(timeout, left)


# -- the network backends (httpcore's public interface) -----------------------------------


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(
            ssl_context, server_hostname, _left(timeout, httpcore.ConnectTimeout)
        )
        return _Stream(inner)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, pol: Policy) -> None:
        self._inner = httpcore.SyncBackend()
        self._policy = pol

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        literal = _literal(host)
        if literal is not None:
            addresses = [literal]
        else:
            _left(timeout, httpcore.ConnectTimeout)
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise httpcore.ConnectError(f"{host}: {exc}") from exc
            addresses = _resolved(host, infos)
        last: Exception | None = None
        for ip in _check(host, addresses, self._policy):
            try:
                stream = self._inner.connect_tcp(
                    ip,
                    port,
                    timeout=_left(timeout, httpcore.ConnectTimeout),
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
                continue
            return _Stream(stream)
        assert last is not None
        raise last

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _AsyncStream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, _left(timeout, httpcore.WriteTimeout))

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        inner = await self._inner.start_tls(
            ssl_context, server_hostname, _left(timeout, httpcore.ConnectTimeout)
        )
        return _AsyncStream(inner)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _AsyncBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, pol: Policy) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._policy = pol

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        literal = _literal(host)
        if literal is not None:
            addresses = [literal]
        else:
            wait = _left(timeout, httpcore.ConnectTimeout)
            try:
                async with asyncio.timeout(wait):
                    infos = await asyncio.get_running_loop().getaddrinfo(
                        host, port, type=socket.SOCK_STREAM
                    )
            except TimeoutError as exc:
                raise httpcore.ConnectTimeout(f"{host}: no address in time") from exc
            except OSError as exc:
                raise httpcore.ConnectError(f"{host}: {exc}") from exc
            addresses = _resolved(host, infos)
        last: Exception | None = None
        for ip in _check(host, addresses, self._policy):
            try:
                stream = await self._inner.connect_tcp(
                    ip,
                    port,
                    timeout=_left(timeout, httpcore.ConnectTimeout),
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
                continue
            return _AsyncStream(stream)
        assert last is not None
        raise last

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


# -- the transports -----------------------------------------------------------------------


def _core_request(request: httpx.Request, stream: Any) -> httpcore.Request:
    url = request.url
    return httpcore.Request(
        method=request.method,
        url=httpcore.URL(
            scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
        ),
        headers=request.headers.raw,
        content=stream,
        extensions=request.extensions,
    )


def _loopback_name(host: str) -> bool:
    literal = _literal(host)
    return host == "localhost" if literal is None else ipaddress.ip_address(literal).is_loopback


def _precheck(request: httpx.Request, pol: Policy) -> None:
    scheme = request.url.scheme
    # https_only: plain http only to this machine, and only where private addresses are
    # allowed (development and tests); production refuses loopback anyway.
    plain_ok = not pol.https_only or (pol.allow_private and _loopback_name(request.url.host))
    if scheme not in ("http", "https") or (scheme == "http" and not plain_ok):
        raise Blocked(f"{request.url.host}: only https:// is allowed here", request=request)
    # Never ask for an encoding we do not bound while decoding.
    request.headers["accept-encoding"] = "gzip, deflate"


@contextlib.contextmanager
def _mapped(request: httpx.Request) -> Iterator[None]:
    host = request.url.host
    text = _unreachable_text(host)
    try:
        yield
    except (Blocked, TooLarge):
        raise
    except _NotAllowed as exc:
        raise Blocked(str(exc), request=request) from exc
    except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
        log.debug("outbound %s %s: %r", request.method, host, exc)
        raise Unreachable(text, request=request) from exc
    except httpcore.PoolTimeout as exc:
        log.debug("outbound %s %s: %r", request.method, host, exc)
        raise httpx.PoolTimeout(text, request=request) from exc
    except httpcore.TimeoutException as exc:
        log.debug("outbound %s %s: %r", request.method, host, exc)
        raise NoAnswer(text, request=request) from exc
    except httpcore.UnsupportedProtocol as exc:
        raise Blocked(f"{host}: only http(s) URLs are allowed", request=request) from exc
    except (httpcore.NetworkError, httpcore.ProtocolError, OSError) as exc:
        log.debug("outbound %s %s: %r", request.method, host, exc)
        raise Broken(text, request=request) from exc


def _too_large(request: httpx.Request, cap: int) -> TooLarge:
    return TooLarge(
        f"{request.url.host} sent an answer larger than {cap} bytes (MICROCRED_OUTBOUND_MAX_BYTES)",
        request=request,
    )


def _decoded(
    request: httpx.Request, headers: list[tuple[bytes, bytes]], body: bytes, cap: int
) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Undo gzip/deflate under the cap (httpx would otherwise inflate without bound)."""
    encodings = [
        v.decode("latin-1").strip().lower()
        for k, v in headers
        if k.lower() == b"content-encoding" and v.strip()
    ]
    encodings = [e for part in encodings for e in part.split(",") if e.strip() != "identity"]
    if not encodings:
        return headers, body
    if len(encodings) > 1 or encodings[0].strip() not in ("gzip", "x-gzip", "deflate"):
        raise Broken(f"{request.url.host} sent an unsupported content encoding", request=request)
    wbits = zlib.MAX_WBITS | (16 if "gzip" in encodings[0] else 0)
    try:
        inflater = zlib.decompressobj(wbits)
        data = inflater.decompress(body, cap + 1)
    except zlib.error:
        if "gzip" in encodings[0]:
            raise Broken(f"{request.url.host} sent a malformed body", request=request) from None
        try:  # "deflate" without its zlib header, as some servers send it
            inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            data = inflater.decompress(body, cap + 1)
        except zlib.error:
            raise Broken(f"{request.url.host} sent a malformed body", request=request) from None
    if len(data) > cap or inflater.unconsumed_tail:
        raise _too_large(request, cap)
    skip = {b"content-encoding", b"content-length", b"transfer-encoding"}
    return [(k, v) for k, v in headers if k.lower() not in skip], data


def _response(
    request: httpx.Request, resp: httpcore.Response, body: bytes, cap: int
) -> httpx.Response:
    headers, body = _decoded(request, list(resp.headers), body, cap)
    headers = [(k, v) for k, v in headers if k.lower() != b"transfer-encoding"]
    extensions = {k: v for k, v in resp.extensions.items() if k != "network_stream"}
    return httpx.Response(
        resp.status, headers=headers, content=body, request=request, extensions=extensions
    )


def _pool_options() -> dict[str, Any]:
    return {
        "ssl_context": httpx.create_ssl_context(),
        "max_connections": 100,
        "max_keepalive_connections": 20,
        "keepalive_expiry": 5.0,
    }


@contextlib.contextmanager
def _guarded(request: httpx.Request, pol: Policy) -> Iterator[None]:
    """The checks, the deadline and the error mapping around one request (either client)."""
    _precheck(request, pol)
    token = _DEADLINE.set(time.monotonic() + pol.deadline_seconds)
    try:
        with _mapped(request):
            yield
    finally:
        _DEADLINE.reset(token)


class _Transport(httpx.BaseTransport):
    def __init__(self, pol: Policy) -> None:
        self._policy = pol
        self._pool = httpcore.ConnectionPool(network_backend=_Backend(pol), **_pool_options())

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        cap, body = self._policy.max_bytes, bytearray()
        with _guarded(request, self._policy):
            resp = self._pool.handle_request(_core_request(request, request.stream))
            try:
                for chunk in resp.iter_stream():
                    body += chunk
                    if len(body) > cap:
                        raise _too_large(request, cap)
            finally:
                resp.close()
        return _response(request, resp, bytes(body), cap)

    def close(self) -> None:
        self._pool.close()


class _AsyncTransport(httpx.AsyncBaseTransport):
    def __init__(self, pol: Policy) -> None:
        self._policy = pol
        self._pool = httpcore.AsyncConnectionPool(
            network_backend=_AsyncBackend(pol), **_pool_options()
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        cap, body = self._policy.max_bytes, bytearray()
        with _guarded(request, self._policy):
            resp = await self._pool.handle_async_request(
                _core_request(request, _async_body(request))
            )
            try:
                async for chunk in resp.aiter_stream():
                    body += chunk
                    if len(body) > cap:
                        raise _too_large(request, cap)
            finally:
                await resp.aclose()
        return _response(request, resp, bytes(body), cap)

    async def aclose(self) -> None:
        await self._pool.aclose()


async def _async_body(request: httpx.Request) -> AsyncIterator[bytes]:
    stream = request.stream
    if isinstance(stream, httpx.AsyncByteStream):
        async for chunk in stream:
            yield chunk
    else:
        assert isinstance(stream, httpx.SyncByteStream)
        for chunk in stream:
            yield chunk


def _timeout(pol: Policy, timeout: httpx.Timeout | float | None) -> httpx.Timeout:
    if timeout is None:
        return httpx.Timeout(pol.deadline_seconds)
    return timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)


def client(
    pol: Policy,
    *,
    timeout: httpx.Timeout | float | None = None,
    follow_redirects: bool = False,
) -> httpx.Client:
    """A sync client under ``pol``.

    ``timeout`` still bounds each connect and read; ``pol.deadline_seconds`` bounds the
    whole request. Redirects (when followed) are at most 5, each hop checked again.
    """
    return httpx.Client(
        transport=_Transport(pol),
        timeout=_timeout(pol, timeout),
        follow_redirects=follow_redirects,
        max_redirects=5,
    )


def async_client(
    pol: Policy,
    *,
    timeout: httpx.Timeout | float | None = None,
) -> httpx.AsyncClient:
    """The ``async`` twin of ``client`` (redirects are not followed)."""
    return httpx.AsyncClient(
        transport=_AsyncTransport(pol),
        timeout=_timeout(pol, timeout),
        max_redirects=5,
    )
