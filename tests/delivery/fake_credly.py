"""A fake Credly API on loopback, built from the documented shapes
(reference/credentials.md §4.1), with fault injection. Run as a separate process:

    python tests/delivery/fake_credly.py        # prints "PORT <n>" then serves

Credly side: ``POST /v1/organizations/{org}/badges`` (Basic auth with the org token,
required fields, duplicate refusal 422 unless the template allows duplicates),
``GET …/badges?filter=issuer_earner_id::X&page=N`` (paged), ``PUT …/badges/{id}/revoke``.

Control side (no auth, loopback only): ``POST /_control/config`` (token, templates,
latency, virtual clock, fault mix and outage window, scripted faults), ``GET
/_control/state`` (badges, request log, Retry-After violations), ``POST /_control/reset``.

Fault outcomes: ok, 429 (Retry-After, not applied), 500 (not applied), 500_applied,
timeout (hangs, never applied), timeout_applied (applied, then hangs), reset (connection
reset, not applied), reset_applied (applied, then reset). A 429 sets a per-earner
"not before" time; any later request for that earner that arrives earlier is logged as a
violation. With ``org_limits`` the 429 also holds for the whole organisation (as a real
rate limit does): any request to that organisation before its Retry-After is a violation.
"""

from __future__ import annotations

import base64
import contextlib
import json
import random
import re
import socket
import struct
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

BADGES = re.compile(r"^/v1/organizations/([^/]+)/badges$")
REVOKE = re.compile(r"^/v1/organizations/([^/]+)/badges/([^/]+)/revoke$")
ORG = re.compile(r"^/v1/organizations/([^/?]+)")
REQUIRED = (
    "recipient_email",
    "badge_template_id",
    "issued_at",
    "issued_to_first_name",
    "issued_to_last_name",
)


class _Reset(Exception):
    pass


class State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.token = "test-org-token"
        self.templates: dict[str, dict[str, Any]] = {}
        self.badges: list[dict[str, Any]] = []
        # Indexes so a 10,000-badge benchmark does not scan every badge per request.
        self.by_earner: dict[str, list[dict[str, Any]]] = {}
        self.by_email: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.requests: list[dict[str, Any]] = []
        self.violations: list[dict[str, Any]] = []
        self.not_before: dict[str, float] = {}
        self.latency = 0.0
        self.hang = 2.0
        self.script: list[dict[str, Any]] = []
        self.mix: dict[str, float] = {}
        self.list_fail = 0.0
        self.outage: tuple[float, float] | None = None
        self.rng = random.Random(0)
        self.vt0 = self.rt0 = time.time()
        self.factor = 1.0
        self.ra_max = 60
        self.org_limits = False
        # Where a listed badge names its template: "nested" ({"badge_template": {"id"}}, as
        # the issue answer) or "flat" ("badge_template_id"), as some list answers do.
        self.template_field = "nested"

    def vnow(self) -> float:
        return self.vt0 + (time.time() - self.rt0) * self.factor

    def configure(self, c: dict[str, Any]) -> None:
        if "token" in c:
            self.token = c["token"]
        if "templates" in c:
            self.templates = {str(k): dict(v) for k, v in c["templates"].items()}
        if "latency_ms" in c:
            self.latency = c["latency_ms"] / 1000.0
        if "hang_seconds" in c:
            self.hang = float(c["hang_seconds"])
        if "script" in c:
            self.script = list(c["script"])
        if "mix" in c:
            self.mix = dict(c["mix"])
        if "list_fail" in c:
            self.list_fail = float(c["list_fail"])
        if "outage" in c:
            self.outage = tuple(c["outage"]) if c["outage"] else None  # type: ignore[assignment]
        if "ra_max" in c:
            self.ra_max = int(c["ra_max"])
        if "org_limits" in c:
            self.org_limits = bool(c["org_limits"])
        if "template_field" in c:
            self.template_field = str(c["template_field"])
        if "seed" in c:
            self.rng = random.Random(c["seed"])
        if "clock" in c:
            self.vt0, self.rt0, self.factor = c["clock"]

    def in_fault_window(self) -> bool:
        if self.outage is None:
            return True
        start, end = self.outage
        return start <= self.vnow() < end

    def pick(self, kind: str) -> dict[str, Any]:
        """The fault for this request: scripted first, else the mix (within the window)."""
        with self.lock:
            if self.script and kind in ("POST", "PUT"):
                return self.script.pop(0)
            if not self.in_fault_window():
                return {"outcome": "ok"}
            if kind == "GET":
                if self.list_fail and self.rng.random() < self.list_fail:
                    return {"outcome": "500"}
                return {"outcome": "ok"}
            r = self.rng.random()
            acc = 0.0
            for outcome, p in self.mix.items():
                acc += p
                if r < acc:
                    ra = self.rng.randint(1, self.ra_max)
                    return {"outcome": outcome, "retry_after": ra}
            return {"outcome": "ok"}


STATE = State()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeCredly/1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle's algorithm
        # and delayed ACKs add ~40 ms to every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (_Reset, BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()

    # -- helpers ---------------------------------------------------------------------------

    def _body(self) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        return json.loads(raw) if raw else {}

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _reset(self) -> None:
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        raise _Reset

    def _authorised(self) -> bool:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Basic "):
            return False
        user = base64.b64decode(auth[6:]).decode().split(":", 1)[0]
        return user == STATE.token

    def _log(self, method: str, earner: str | None, outcome: str) -> None:
        now = STATE.vnow()
        with STATE.lock:
            entry = {
                "t": now,
                "method": method,
                "path": self.path,
                "earner": earner,
                "outcome": outcome,
            }
            STATE.requests.append(entry)
            limits = [STATE.not_before.get(earner)] if earner is not None else []
            limits.append(STATE.not_before.get(self._org_key()))
            not_before = max((t for t in limits if t is not None), default=float("-inf"))
            if now < not_before:
                STATE.violations.append(entry | {"not_before": not_before})

    def _org_key(self) -> str:
        m = ORG.match(urlparse(self.path).path)
        return "org:" + (m.group(1) if m else "")

    def _fault_before(self, fault: dict[str, Any], earner: str | None) -> bool:
        """Faults that happen before applying; True when the request was answered."""
        o = fault["outcome"]
        if o == "429":
            ra = int(fault.get("retry_after", 5))
            with STATE.lock:
                if earner is not None:
                    STATE.not_before[earner] = STATE.vnow() + ra
                if STATE.org_limits:
                    STATE.not_before[self._org_key()] = STATE.vnow() + ra
            self._send(429, {"data": {"message": "Too many requests"}}, {"Retry-After": str(ra)})
            return True
        if o == "500":
            self._send(500, {"data": {"message": "Internal server error"}})
            return True
        if o == "timeout":
            time.sleep(STATE.hang)
            self._reset()
        if o == "reset":
            self._reset()
        return False

    def _fault_after(self, fault: dict[str, Any], status: int, body: Any) -> None:
        o = fault["outcome"]
        if o == "500_applied":
            self._send(500, {"data": {"message": "Internal server error"}})
        elif o == "timeout_applied":
            time.sleep(STATE.hang)
            self._send(status, body)
        elif o == "reset_applied":
            self._reset()
        else:
            self._send(status, body)

    # -- routes ----------------------------------------------------------------------------

    def do_POST(self) -> None:
        path = urlparse(self.path).path
        if path == "/_control/config":
            STATE.configure(self._body())
            return self._send(200, {"ok": True})
        if path == "/_control/reset":
            self._body()
            with STATE.lock:
                STATE.reset()
            return self._send(200, {"ok": True})
        m = BADGES.match(path)
        if not m:
            return self._send(404, {"data": {"message": "Not found"}})
        body = self._body()
        if STATE.latency:
            time.sleep(STATE.latency)
        if not self._authorised():
            return self._send(401, {"data": {"message": "Unauthorized"}})
        earner = body.get("issuer_earner_id")
        fault = STATE.pick("POST")
        self._log("POST", earner, fault["outcome"])
        if self._fault_before(fault, earner):
            return None
        missing = [f for f in REQUIRED if not body.get(f)]
        if missing:
            return self._send(
                422, {"data": {"message": f"Validation failed: {', '.join(missing)} missing"}}
            )
        tid = str(body["badge_template_id"])
        with STATE.lock:
            tmpl = STATE.templates.get(tid)
            if tmpl is None or tmpl.get("state", "active") != "active":
                status, out = (
                    422,
                    {"data": {"message": "Validation failed: badge template is not active"}},
                )
            else:
                same = STATE.by_email.get((tid, body["recipient_email"]), []) + [
                    b
                    for b in STATE.by_earner.get(earner or "", [])
                    if b["badge_template"]["id"] == tid
                ]
                dup = not tmpl.get("allow_duplicates") and any(
                    b["state"] in ("pending", "accepted") for b in same
                )
                if dup:
                    status, out = (
                        422,
                        {
                            "data": {"message": "Validation failed: User already has this badge"},
                            "metadata": {},
                        },
                    )
                else:
                    badge = {
                        "id": str(uuid.uuid4()),
                        "state": "pending",
                        "badge_template": {"id": tid},
                        "recipient_email": body["recipient_email"],
                        "issued_to_first_name": body["issued_to_first_name"],
                        "issued_to_last_name": body["issued_to_last_name"],
                        "issuer_earner_id": earner,
                        "issued_at": body["issued_at"],
                        "evidence": body.get("evidence"),
                        "created_at_v": STATE.vnow(),
                    }
                    STATE.badges.append(badge)
                    STATE.by_earner.setdefault(earner or "", []).append(badge)
                    STATE.by_email.setdefault((tid, body["recipient_email"]), []).append(badge)
                    status, out = 201, {"data": badge}
        if status != 201:
            return self._send(status, out)
        return self._fault_after(fault, status, out)

    def do_PUT(self) -> None:
        path = urlparse(self.path).path
        m = REVOKE.match(path)
        if not m:
            return self._send(404, {"data": {"message": "Not found"}})
        body = self._body()
        if STATE.latency:
            time.sleep(STATE.latency)
        if not self._authorised():
            return self._send(401, {"data": {"message": "Unauthorized"}})
        with STATE.lock:
            badge = next((b for b in STATE.badges if b["id"] == m.group(2)), None)
        earner = badge.get("issuer_earner_id") if badge else None
        fault = STATE.pick("PUT")
        self._log("PUT", earner, fault["outcome"])
        if self._fault_before(fault, earner):
            return None
        if badge is None:
            return self._send(404, {"data": {"message": "Badge not found"}})
        if not body.get("reason"):
            return self._send(422, {"data": {"message": "Validation failed: reason missing"}})
        with STATE.lock:
            if badge["state"] == "revoked":
                return self._send(422, {"data": {"message": "Badge has already been revoked"}})
            badge["state"] = "revoked"
            badge["revoke_reason"] = body["reason"]
        return self._fault_after(fault, 200, {"data": badge})

    @staticmethod
    def _listed(badge: dict[str, Any]) -> dict[str, Any]:
        if STATE.template_field != "flat":
            return badge
        out = {k: v for k, v in badge.items() if k != "badge_template"}
        return out | {"badge_template_id": badge["badge_template"]["id"]}

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path == "/_control/state":
            with STATE.lock:
                return self._send(
                    200,
                    {
                        "badges": STATE.badges,
                        "requests": STATE.requests,
                        "violations": STATE.violations,
                        "vnow": STATE.vnow(),
                    },
                )
        m = BADGES.match(url.path)
        if not m:
            return self._send(404, {"data": {"message": "Not found"}})
        if STATE.latency:
            time.sleep(STATE.latency)
        if not self._authorised():
            return self._send(401, {"data": {"message": "Unauthorized"}})
        q = parse_qs(url.query)
        filters = dict(f.split("::", 1) for f in q.get("filter", [""])[0].split("|") if "::" in f)
        earner = filters.get("issuer_earner_id")
        fault = STATE.pick("GET")
        self._log("GET", earner, fault["outcome"])
        if fault["outcome"] != "ok":
            return self._send(503, {"data": {"message": "Service unavailable"}})
        with STATE.lock:
            pool = STATE.by_earner.get(earner, []) if earner is not None else STATE.badges
            found = [b for b in pool if all(str(b.get(k)) == v for k, v in filters.items())]
        per = 2
        page = int(q.get("page", ["1"])[0])
        total_pages = max(1, -(-len(found) // per))
        chunk = [self._listed(b) for b in found[(page - 1) * per : page * per]]
        meta = {
            "count": len(chunk),
            "current_page": page,
            "total_count": len(found),
            "total_pages": total_pages,
            "per": per,
            "next_page_url": f"{url.path}?page={page + 1}" if page < total_pages else None,
        }
        return self._send(200, {"data": chunk, "metadata": meta})


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    # Stop when the parent closes our stdin (no orphan servers).
    threading.Thread(target=lambda: (sys.stdin.read(), server.shutdown()), daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
