"""How a server process runs: uvicorn's httptools protocol with a response's status line,
headers and body sent in one write, a bound on what a request may send outside its body,
and the garbage collector set for a long-lived server.

uvicorn writes a response's head when the app sends ``http.response.start`` and its body
when the app sends ``http.response.body``: two ``send`` calls, and two TCP segments that
wake the browser twice, for every page (strace of 1,000 requests: 2,000 writes). Here the
writes a request makes in one turn of the event loop are joined and sent at the end of
that turn (a Starlette response sends both messages in the same turn): one ``send``
(1,000 writes), as Node's HTTP server corks a response. A streamed body whose chunks come
in later turns goes out chunk by chunk as before.

uvicorn's h11 protocol bounds a request's head (``h11_max_incomplete_event_size``), its
httptools protocol does not: a request line or header that never ends is kept in memory
whole (a 200 MB header took the process from 33 to 250 MB). ``CorkedHttpToolsProtocol``
refuses, with 431 and a closed connection, a request that sends more than
``MAX_HEAD_BYTES`` while its parser makes no headway on a body: its request line and
headers, or trailers after a chunked body. Bodies are ``service.bodylimit``'s, and uvicorn
itself stops reading a body the app does not take (64 KiB buffered).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["MAX_HEAD_BYTES", "CorkedHttpToolsProtocol", "served_app", "settle_heap"]

# Allocations (less deallocations) between two young-generation collections; CPython's
# default is 700. See ``settle_heap``.
GC_YOUNG_THRESHOLD = 10_000

# Request line plus headers (or trailers), as h11's 16 KiB default but roomier: an LTI
# login's query and a browser's cookies for the tool's host fit many times over.
MAX_HEAD_BYTES = 64 * 1024

# How long a connection closed in the middle of a request stays open for the client to
# read the answer (``_Corked.close``).
LINGER_SECONDS = 2.0

_HEAD_MESSAGE = (
    b"The request line and headers (or trailers) are larger than 64 KiB: send shorter "
    b"ones (a long query string belongs in a POST body; clear the cookies of this site)."
)
_TOO_LARGE_HEAD = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(_HEAD_MESSAGE), _HEAD_MESSAGE)
)


def settle_heap() -> None:
    """Set the cyclic garbage collector for a server whose startup heap lives as long as
    the process: call it once the app is built, before the first request.

    ``gc.freeze()`` moves every object alive now (modules, classes, routes, compiled
    statements: ~220,000 objects) out of the collector's reach, so a full collection no
    longer walks them; a larger young-generation threshold makes collections rarer while
    most request objects are freed by reference counting anyway. Measured on the launch
    benchmark (PostgreSQL, 15 s at 16 browsers): collections took 7.8 % of the server's
    CPU (2.41 of 30.8 s; each full one ~110 ms), 1.3 % after (0.40 s). Objects frozen
    stay in memory even if they become garbage later; the app's startup objects do not.
    """
    gc.collect()  # what startup left as garbage is not frozen
    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, GC_YOUNG_THRESHOLD), gen1, gen2)


def served_app() -> Any:
    """``microcred serve``'s app factory (uvicorn ``factory=True``): the app, then
    ``settle_heap``."""
    from service.app import create_app

    app = create_app()
    settle_heap()
    return app


class _Corked:
    """A transport whose writes of one event-loop turn go out as one, and whose close
    lingers while the client may still be sending the request (``close``)."""

    __slots__ = ("_held", "_lingering", "_loop", "_mid_request", "_transport")

    def __init__(
        self,
        transport: Any,
        loop: asyncio.AbstractEventLoop,
        mid_request: Callable[[], bool] = lambda: False,
    ) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._mid_request = mid_request
        self._lingering = False

    def write(self, data: bytes) -> None:
        if self._lingering:
            return  # the answer is out; the connection is being closed
        if not self._held:
            self._loop.call_soon(self._flush)
        self._held.append(data)

    def _flush(self) -> None:
        if not self._held:
            return
        data = b"".join(self._held)
        self._held.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        """Write what is held (a response with ``connection: close``), then close.

        Closed while the client is still sending its request (a 413 for a body over the
        limit, a 431), the socket would reset the connection, and the client could lose
        the answer it has not read yet. So then the close lingers, as nginx's does: the
        answer and the end of our side go out, reading stops (nothing more is taken in),
        and the socket closes ``LINGER_SECONDS`` later.
        """
        self._flush()
        if self._lingering or not self._mid_request() or not self._transport.can_write_eof():
            self._transport.close()
            return
        self._lingering = True
        self._transport.pause_reading()
        self._transport.write_eof()
        self._loop.call_later(LINGER_SECONDS, self._transport.close)

    def is_closing(self) -> bool:
        return self._lingering or bool(self._transport.is_closing())

    def get_write_buffer_size(self) -> int:
        pending: int = self._transport.get_write_buffer_size()
        return pending + sum(map(len, self._held))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CorkedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a ``_Corked`` transport (``uvicorn.run(http=)``),
    with a request's head bounded (``MAX_HEAD_BYTES``)."""

    def connection_made(self, transport: Any) -> None:  # asyncio's, or uvloop's own type
        self.in_message = False  # between the parser's message begin and complete
        self.body_moved = False  # the parser gave body bytes during this read
        self.stalled = 0  # bytes read in a row, inside a message, without body bytes
        corked: Any = _Corked(transport, asyncio.get_running_loop(), lambda: self.in_message)
        super().connection_made(corked)

    def on_message_begin(self) -> None:
        self.in_message = True
        super().on_message_begin()

    def on_body(self, body: bytes) -> None:
        self.body_moved = True
        super().on_body(body)

    def on_message_complete(self) -> None:
        self.in_message = False
        super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        self.body_moved = False
        super().data_received(data)
        if not self.in_message or self.body_moved:
            self.stalled = 0
            return
        # A head (or trailer) still being read: the parser holds all of it.
        self.stalled += len(data)
        if self.stalled > MAX_HEAD_BYTES and not self.transport.is_closing():
            self.transport.write(_TOO_LARGE_HEAD)
            self.transport.close()
