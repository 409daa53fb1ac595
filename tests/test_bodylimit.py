"""Request body limits (service.bodylimit): a body over its route's limit gets 413 before
any route, sign-in or parser reads it, whether it declares its length or streams.

The app is called as the server calls it (ASGI), with a body produced lazily by a
generator, so what is asserted is how much of the body was ever pulled: a work count.
"""

from __future__ import annotations

import asyncio
import json
import select
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from service.app import create_app
from service.bodylimit import LINGER_BYTES
from service.serving import server_options
from service.settings import Settings
from tests.sources.test_api import auth, token, world
from tests.threaded_server import serving
from tests.timing import HANG

MiB = 1024 * 1024
CHUNK = 64 * 1024
HUGE = 300 * MiB


@dataclass
class Body:
    """A lazily generated body: ``pulled`` counts the bytes the app took from it."""

    total: int
    chunk: int = CHUNK
    fill: bytes = b" "
    pulled: int = 0
    chunks: Iterator[bytes] = field(init=False)

    def __post_init__(self) -> None:
        self.chunks = self._generate()

    def _generate(self) -> Iterator[bytes]:
        left = self.total
        while left > 0:
            n = min(self.chunk, left)
            left -= n
            self.pulled += n
            yield self.fill * n


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    receives: int  # before the answer started (a 413 lingers after it: bodylimit._linger)
    before_answer_pulled: int | None = None  # a streamed body's bytes pulled by then

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    app: FastAPI,
    method: str,
    path: str,
    *,
    body: Body | bytes | None = None,
    headers: dict[str, str] | None = None,
    query: str = "",
) -> Answer:
    """One request through the ASGI app; ``body`` streams without a length (chunked)."""
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "https",
        "server": ("tool.test", 443),
        "client": ("127.0.0.1", 5000),
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [(b"host", b"tool.test"), *raw],
    }
    out: dict[str, Any] = {"body": b"", "receives": 0}
    fixed = body if isinstance(body, bytes) else None
    stream = body.chunks if isinstance(body, Body) else None

    async def receive() -> dict[str, Any]:
        out["receives"] += 1
        if "status" not in out:  # asked for before the answer started
            out["before_answer"] = out.get("before_answer", 0) + 1
        if stream is not None:
            piece = next(stream, None)
            if piece is not None:
                return {"type": "http.request", "body": piece, "more_body": True}
            return {"type": "http.request", "body": b"", "more_body": False}
        if out["receives"] == 1:
            return {"type": "http.request", "body": fixed or b"", "more_body": False}
        await asyncio.sleep(3600)  # nothing more comes: the client waits for the answer
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out["pulled"] = body.pulled if isinstance(body, Body) else None
            out["status"] = message["status"]
            out["headers"] = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            out["body"] += message.get("body", b"")

    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    return Answer(
        out["status"], out["headers"], out["body"], out.get("before_answer", 0), out["pulled"]
    )


@pytest.fixture
def tight(settings: Settings, engine: Engine) -> FastAPI:
    """The app with a 64 KiB default limit, to test both sides of the edge cheaply."""
    return create_app(settings.model_copy(update={"max_body_bytes": 64 * 1024}), engine=engine)


def test_a_declared_length_over_the_limit_is_refused_before_sign_in_or_reading(
    app: FastAPI,
) -> None:
    # Unauthenticated: a 401 would mean the body had been read first (FastAPI reads the
    # body before it runs the route's dependencies).
    answer = call(
        app,
        "POST",
        "/api/credentials",
        headers={"content-type": "application/json", "content-length": str(HUGE)},
    )
    assert answer.status == 413
    assert answer.receives == 0  # not one byte of the body was asked for
    assert answer.json()["error"] == "body_too_large"
    assert "larger than 1 MiB (1048576 bytes)" in answer.json()["detail"]
    assert answer.json()["hint"] == "Send less data in one request."
    assert answer.headers["connection"] == "close"
    assert answer.headers["content-security-policy"].startswith("default-src 'none'")


def test_a_streamed_300_mb_body_is_cut_off_after_the_limit(app: FastAPI) -> None:
    body = Body(HUGE)
    answer = call(app, "POST", "/api/credentials", body=body, headers={"content-type": "json"})
    assert answer.status == 413, answer.body
    assert answer.json()["error"] == "body_too_large"
    # the limit and the one message that crossed it; then, after the answer went out, what
    # the 413's close lingers on (a client that never stops sending: all of LINGER_BYTES)
    assert answer.before_answer_pulled is not None
    assert MiB < answer.before_answer_pulled <= MiB + CHUNK
    assert body.pulled <= MiB + CHUNK + LINGER_BYTES + CHUNK
    assert answer.headers["connection"] == "close"


def test_a_streamed_body_to_verify_is_cut_off_too(app: FastAPI) -> None:
    body = Body(HUGE, fill=b"a")
    answer = call(app, "POST", "/verify", body=body, headers={"content-type": "text/plain"})
    assert answer.status == 413
    assert answer.before_answer_pulled is not None
    assert answer.before_answer_pulled <= MiB + CHUNK


def test_the_largest_credential_verify_accepts_still_gets_its_report(app: FastAPI) -> None:
    doc = b'{"type": ["VerifiableCredential"]}'
    body = doc + b" " * (1_000_000 - len(doc))  # /verify's own maximum
    answer = call(app, "POST", "/verify", body=body, headers={"content-type": "application/json"})
    assert answer.status == 200, answer.body
    assert answer.json()["valid"] is False and answer.json()["checks"][0]["name"] == "format"


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
def test_a_body_of_exactly_the_limit_passes_and_one_byte_more_does_not(
    tight: FastAPI, streamed: bool
) -> None:
    limit = 64 * 1024
    doc = b'{"type": ["VerifiableCredential"]}'
    for size, status in ((limit, 200), (limit + 1, 413)):
        content = doc + b" " * (size - len(doc))
        headers = {"content-type": "application/json"}
        if streamed:
            body: Body | bytes = Body(size, chunk=1000)
            body.chunks = iter([content[i : i + 1000] for i in range(0, size, 1000)])
        else:
            body, headers["content-length"] = content, str(size)
        answer = call(tight, "POST", "/verify", body=body, headers=headers)
        assert answer.status == status, (size, answer.body[:300])
    assert "larger than 64 KiB (65536 bytes)" in answer.json()["detail"]


def test_a_form_post_in_the_lms_frame_gets_a_page_that_says_the_limit(app: FastAPI) -> None:
    # No session either: the 413 comes before the sign-in reads the form.
    for body, length in ((None, str(HUGE)), (Body(HUGE, fill=b"a"), None)):
        headers = {
            "content-type": "application/x-www-form-urlencoded",
            "accept": "text/html,application/xhtml+xml",
        }
        if length:
            headers["content-length"] = length
        answer = call(app, "POST", "/app/me/consent", body=body, headers=headers)
        assert answer.status == 413
        assert answer.headers["content-type"].startswith("text/html")
        page = answer.body.decode()
        assert "The request is too large" in page and "larger than 1 MiB" in page
        assert "What to do:</strong> Send less data in one request." in page
        assert isinstance(body, Body | None)
        if body is not None:
            assert answer.before_answer_pulled is not None
            assert answer.before_answer_pulled <= MiB + CHUNK


def test_csv_import_takes_a_file_above_the_default_limit(
    client: TestClient, engine: Engine
) -> None:
    w = world(engine)
    t = token(engine)
    # Wide rows (a 432-character title, within the column's 500) make the 2 MiB in ~4,400
    # rows: the body limit is what is tested, and a dry run of 38,000 short rows cost 80 s.
    title = "A quiz title long enough to make the file large " * 9
    rows = [b"sub,kind,item_id,item_title,score,max_score\n"]
    size = len(rows[0])
    while size <= 2 * MiB:
        row = f"u-ada,quiz,an-imported-quiz-{len(rows):06d},{title},3,4\n".encode()
        rows.append(row)
        size += len(row)
    url = f"/api/courses/{w.course_id}/evidence/import?mode=dry_run"
    files = {"file": ("results.csv", b"".join(rows), "text/csv")}
    r = client.post(url, files=files, headers=auth(t))
    assert r.status_code == 200, r.text[:500]
    assert r.json()["report"]["applied"] is False
    assert r.json()["report"]["new"] == len(rows) - 1  # every row read, none rejected


def test_csv_import_over_its_own_limit_says_to_split_the_file(app: FastAPI) -> None:
    answer = call(
        app,
        "POST",
        "/api/courses/1/evidence/import",
        headers={"content-type": "multipart/form-data; boundary=x", "content-length": str(HUGE)},
    )
    assert answer.status == 413 and answer.receives == 0
    assert "Split the CSV file into files of at most 10 MB" in answer.json()["hint"]
    assert "larger than 10.1 MiB" in answer.json()["detail"]


def test_a_push_batch_above_the_default_limit_is_accepted(
    client: TestClient, engine: Engine
) -> None:
    w = world(engine)
    t = token(engine)
    result = {
        "learner": {"sub": "u-ada"},
        "kind": "quiz",
        "item_id": "exam-1",
        "item_title": "Final exam, part 2: " + "x" * 200,
        "score": 17,
        "max_score": 20,
        "graded_at": "2026-11-20T10:00:00+01:00",
        "verification": "supervised-online-verified",
        "asserted_by": "proctoring",
        "note": "n" * 300,
    }
    verification = {
        "learner": {"sub": "u-ada"},
        "item_id": "exam-1",
        "level": "supervised-online-verified",
        "occurred_at": "2026-11-20T09:00:00+01:00",
        "note": "Proctored sitting, ID checked by the proctoring service.",
    }
    batch = {
        "course_id": w.course_id,
        "results": [result | {"item_id": f"exam-{i}"} for i in range(1000)],
        "verifications": [verification] * 1000,
    }
    raw = json.dumps(batch, indent=2).encode()  # a full batch, pretty-printed
    assert MiB < len(raw) < 8 * MiB
    r = client.post(
        "/api/evidence",
        content=raw,
        headers=auth(t) | {"content-type": "application/json"},
    )
    assert r.status_code == 200, r.text[:500]


# --- through a real socket, as `microcred serve` runs the app (uvloop, httptools) ---


@pytest.fixture
def served(app: FastAPI) -> Iterator[int]:
    with serving(app, loop="uvloop", lifespan="on", **server_options()) as port:
        yield port


def _answer(conn: socket.socket) -> bytes:
    """Everything the server sends until it ends the connection. It must end it in order
    (FIN), never reset it: closing a socket with the client's unread body in it would
    reset the connection and could drop the 413 before the client reads it
    (``bodylimit._linger`` lingers instead)."""
    got = b""
    while chunk := conn.recv(65536):
        got += chunk
    return got


def test_over_a_socket_a_declared_300_mb_is_refused_before_one_byte_is_sent(
    served: int,
) -> None:
    with socket.create_connection(("127.0.0.1", served), timeout=HANG) as conn:
        conn.sendall(
            b"POST /api/credentials HTTP/1.1\r\nhost: t\r\n"
            b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % HUGE
        )
        got = _answer(conn)  # no body sent: the answer cannot have waited for it
    head, _, payload = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ") and b"connection: close" in head
    assert json.loads(payload)["error"] == "body_too_large"


def test_over_a_socket_a_streamed_300_mb_is_cut_off(served: int) -> None:
    sent = 0
    piece = b"%x\r\n%s\r\n" % (CHUNK, b" " * CHUNK)
    with socket.create_connection(("127.0.0.1", served), timeout=HANG) as conn:
        conn.sendall(
            b"POST /api/credentials HTTP/1.1\r\nhost: t\r\n"
            b"content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        try:
            while sent < HUGE and not select.select([conn], [], [], 0)[0]:
                conn.sendall(piece)
                sent += CHUNK
        except (BrokenPipeError, ConnectionResetError):
            pass
        got = _answer(conn)
    head, _, payload = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert json.loads(payload)["error"] == "body_too_large"
    # The server read about 1 MiB; what else left the client sat in the loopback's socket
    # buffers (a few MB) when the server closed.
    assert sent < 32 * MiB


def test_over_a_socket_the_413_survives_a_body_the_server_never_reads(served: int) -> None:
    # The client sends a good part of its body before it looks for an answer (as a client
    # without Expect: 100-continue does); the server reads none of it. Closing with that
    # data unread would reset the connection; the answer must still arrive whole.
    with socket.create_connection(("127.0.0.1", served), timeout=HANG) as conn:
        conn.sendall(
            b"POST /verify HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n" % HUGE
        )
        conn.sendall(b" " * (2 * MiB))
        got = _answer(conn)
    head, _, payload = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert json.loads(payload)["error"] == "body_too_large"
