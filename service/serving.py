"""How a server process runs: uvicorn's HTTP protocol (h11, with a bound on a request's
head, unless a proxy in front bounds heads), and the garbage collector set for a long-lived
server.

uvicorn's httptools protocol keeps a request line or header that never ends in memory
whole (a 200 MB header took the process from 33 to 250 MB), and it has no setting to bound
it. Its h11 protocol has one, public: ``h11_max_incomplete_event_size``. A request whose
line and headers (or trailers after a chunked body) pass ``MAX_HEAD_BYTES`` is refused
with 400 and a closed connection. Bodies are ``service.bodylimit``'s.

h11 is the default (safe when the server is reached directly). httptools parses a request
in C, with less server CPU per request (bench/README.md "Launch, 7 Dec (stack)" and "07:29"):
``MICROCRED_HTTP_PROTOCOL=httptools`` (or ``microcred serve --http httptools``) is for a
server that only a proxy reaches, one that bounds request heads itself (nginx
``large_client_header_buffers``, 4 x 8 KB by default; a Kubernetes ingress or a load
balancer likewise). The deploy files, behind their TLS proxy or ingress, use it.
``server_options`` gives both ``microcred serve`` and the demo server these settings.
"""

from __future__ import annotations

import gc
from typing import Any, Literal, get_args

__all__ = ["MAX_HEAD_BYTES", "PROTOCOLS", "Protocol", "served_app", "server_options", "settle_heap"]

# Allocations (less deallocations) between two young-generation collections; CPython's
# default is 700. See ``settle_heap``.
GC_YOUNG_THRESHOLD = 10_000

# Request line plus headers (or trailers), as h11's 16 KiB default but roomier: an LTI
# login's query and a browser's cookies for the tool's host fit many times over.
MAX_HEAD_BYTES = 64 * 1024

Protocol = Literal["h11", "httptools"]
PROTOCOLS: tuple[str, ...] = get_args(Protocol)


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


def server_options(protocol: Protocol = "h11") -> dict[str, Any]:
    """uvicorn's settings for a microcred server (``uvicorn.run(**server_options())``):
    h11 with its bound on a request's head, or httptools behind a proxy that bounds heads
    (``MICROCRED_HTTP_PROTOCOL``, see the module docstring)."""
    if protocol == "httptools":
        return {"http": "httptools"}
    if protocol != "h11":
        raise ValueError(f"unknown HTTP protocol {protocol!r} (one of {', '.join(PROTOCOLS)})")
    return {"http": "h11", "h11_max_incomplete_event_size": MAX_HEAD_BYTES}
