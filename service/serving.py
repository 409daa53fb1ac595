"""The HTTP server's protocol: uvicorn's httptools protocol, with a response's status line,
headers and body sent in one write.

uvicorn writes a response's head when the app sends ``http.response.start`` and its body
when the app sends ``http.response.body``: two ``send`` calls, and two TCP segments that
wake the browser twice, for every page (strace of 1,000 requests: 2,000 writes). Here the
writes a request makes in one turn of the event loop are joined and sent at the end of
that turn (a Starlette response sends both messages in the same turn): one ``send``
(1,000 writes), as Node's HTTP server corks a response. A streamed body whose chunks come
in later turns goes out chunk by chunk as before.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["CorkedHttpToolsProtocol"]


class _Corked:
    """A transport whose writes of one event-loop turn go out as one."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes) -> None:
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
        self._flush()  # a response with "connection: close" is written, then closed
        self._transport.close()

    def get_write_buffer_size(self) -> int:
        pending: int = self._transport.get_write_buffer_size()
        return pending + sum(map(len, self._held))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CorkedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a ``_Corked`` transport (``uvicorn.run(http=)``)."""

    def connection_made(self, transport: Any) -> None:  # asyncio's, or uvloop's own type
        corked: Any = _Corked(transport, asyncio.get_running_loop())
        super().connection_made(corked)
