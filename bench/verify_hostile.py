"""Hostile ``POST /verify`` against a running service (security review H1).

    python bench/verify_hostile.py [--requests 200] [--attackers 20] [--seconds 20]

Loopback only; every loop is bounded and the script stops the service it started.

1. Starts ``microcred serve --no-worker`` on SQLite in a temporary folder, on a free
   127.0.0.1 port, with one issued credential and the per-IP limit on /verify off (the
   attack comes from many addresses: what is left is the work limit, the dedicated
   bounded verifier threads and their concurrency limit).
2. Worst-case CPU of one /verify: posts each hostile credential family (the review's poison
   graph, many poison graphs up to the work cap, a property with as many values as the
   node-map cap allows, a dataset at the quad limit) one at a time and reads the server
   process's CPU time (/proc) around each request.
3. A credential page's latency (GET /credentials/{id}, HTML) idle: p50/p95 over
   ``--requests`` sequential requests.
4. The same while ``--attackers`` clients post the worst family: paced (each waits out the
   ``Retry-After`` of a 503, so the verifier is always busy with hostile work: the H1
   case), then as a flood (each resends the moment it has an answer), then, for comparison,
   a flood of ``GET /healthz`` (what any endpoint suffers from a flood); the ratio to idle.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.issuer import hostile, samples  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _processes() -> tuple[dict[int, int], dict[int, int]]:
    """(pid -> parent pid, pid -> CPU ticks) of every process (Linux /proc)."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        parents[int(entry.name)] = int(fields[1])
        ticks[int(entry.name)] = int(fields[11]) + int(fields[12])
    return parents, ticks


def family(root: int) -> list[int]:
    """``root`` and all its descendants."""
    parents, _ = _processes()
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def cpu_seconds(root: int) -> float:
    """User + system CPU of the service and its descendants (its verifier processes are
    children of its fork server), in seconds."""
    _, ticks = _processes()
    return sum(ticks.get(pid, 0) for pid in family(root)) / os.sysconf("SC_CLK_TCK")


def issue_credential(env: dict[str, str]) -> str:
    """Issue one credential into the bench database (as the service would) and return its id."""
    os.environ.update(env)
    from service import secretbox
    from service.db import migrate
    from service.db.engine import make_engine, session
    from service.db.types import utcnow
    from service.issuer import service
    from service.settings import Settings

    settings = Settings()
    migrate.upgrade(settings.resolved_database_url)
    secretbox.configure(secretbox.load_master_key(settings))
    engine = make_engine(settings.resolved_database_url)
    with session(engine, write=True) as s:
        now = utcnow()
        row = service.issue(
            s, settings=settings, award=samples.award(awarded_at=now), now=now, actor="bench"
        )
        s.commit()
    engine.dispose()
    return row.uuid


def request(conn: HTTPConnection, method: str, path: str, body: bytes | None = None) -> int:
    headers = {"Accept": "text/html"} if method == "GET" else {"Content-Type": "application/json"}
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    response.read()
    return response.status


def wait_ready(port: int, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the service exited with {proc.returncode}")
        try:
            conn = HTTPConnection("127.0.0.1", port, timeout=2)
            if request(conn, "GET", "/healthz") == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("the service did not start within the deadline")


def latencies(port: int, path: str, count: int) -> list[float]:
    conn = HTTPConnection("127.0.0.1", port, timeout=60)
    out = []
    for _ in range(count):
        start = time.perf_counter()
        status = request(conn, "GET", path)
        out.append(time.perf_counter() - start)
        assert status == 200, status
    conn.close()
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def hostile_families() -> dict[str, bytes]:
    def body(doc: dict[str, Any]) -> bytes:
        return json.dumps(doc).encode()

    return {
        "poison graph, 8 nodes (the review's)": body(hostile.poison_graph(8)),
        "poison graph, 12 nodes": body(hostile.poison_graph(12)),
        "100 poison graphs of 4 (work cap)": body(hostile.many_poison_graphs(100, 4)),
        "10 poison graphs of 16": body(hostile.many_poison_graphs(10, 16)),
        "630 values of one property (merge cap)": body(hostile.many_statements(2520)),
        "1,365 distinct objects (near the quad cap)": body(hostile.wide_tree(4, 5, ids=True)),
    }


def attack(
    port: int, payload: bytes | None, stop: threading.Event, counts: Counter[int], *, paced: bool
) -> None:
    """Post ``payload`` until ``stop``; ``paced``: wait out ``Retry-After`` after a 503
    (the verifier stays busy with hostile work), else resend at once (a flood). Without a
    payload: GET /healthz at once, over and over (the flood any endpoint can get)."""
    conn = HTTPConnection("127.0.0.1", port, timeout=120)
    while not stop.is_set():
        try:
            if payload is None:
                status = request(conn, "GET", "/healthz")
            else:
                status = request(conn, "POST", "/verify", payload)
        except OSError:
            status = 0
            conn.close()
            conn = HTTPConnection("127.0.0.1", port, timeout=120)
        counts[status] += 1
        if paced and status == 503:
            stop.wait(2.0)
    conn.close()


def under_attack(
    port: int, pid: int, page: str, payload: bytes | None, args: argparse.Namespace, *, paced: bool
) -> tuple[list[float], Counter[int], float]:
    stop = threading.Event()
    counts: Counter[int] = Counter()
    threads = [
        threading.Thread(target=attack, args=(port, payload, stop, counts), kwargs={"paced": paced})
        for _ in range(args.attackers)
    ]
    cpu_before = cpu_seconds(pid)
    for t in threads:
        t.start()
    time.sleep(2.0)  # let the attack reach its steady state
    samples: list[float] = []
    started = time.monotonic()
    try:
        while len(samples) < args.requests and time.monotonic() - started < args.seconds:
            samples += latencies(port, page, 10)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=150)
    return samples, counts, cpu_seconds(pid) - cpu_before


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--attackers", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0, help="most time under attack")
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "MICROCRED_ENVIRONMENT": "development",
            "MICROCRED_DATA_DIR": tmp,
            "MICROCRED_DATABASE_URL": f"sqlite:///{tmp}/bench.db",
            "MICROCRED_BASE_URL": f"http://127.0.0.1:{port}",
            "MICROCRED_LOG_LEVEL": "WARNING",
            "MICROCRED_VERIFY_RATE_LIMIT_PER_MINUTE": "0",
        }
        uuid = issue_credential(env)
        microcred = Path(sys.executable).parent / "microcred"
        proc = subprocess.Popen(
            [str(microcred), "serve", "--no-worker", "--port", str(port)],
            env={**os.environ, **env},
            cwd=tmp,
        )
        started: list[int] = []
        try:
            wait_ready(port, proc, time.monotonic() + 60)
            started = family(proc.pid)
            run(port, proc.pid, f"/credentials/{uuid}", args)
            started = family(proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                print("the service did not stop within 30 s; killed", file=sys.stderr)
                proc.kill()
                proc.wait(timeout=30)
            for pid in started[1:]:  # its verifier processes, should any outlive it
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)


def run(port: int, pid: int, page: str, args: argparse.Namespace) -> None:
    families = hostile_families()
    conn = HTTPConnection("127.0.0.1", port, timeout=120)
    request(conn, "POST", "/verify", families["poison graph, 8 nodes (the review's)"])  # warm
    latencies(port, page, 20)  # warm: templates, QR code, badge image
    print(f"{'hostile /verify request':<44} {'bytes':>9} {'status':>6} {'server CPU s':>13}")
    worst_name, worst_cpu = "", -1.0
    log = lambda text: print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr)  # noqa: E731
    for name, payload in families.items():
        best = []
        for _ in range(3):  # the least of three: other load on a shared machine only adds
            before = cpu_seconds(pid)
            status = request(conn, "POST", "/verify", payload)
            best.append(cpu_seconds(pid) - before)
        cpu = min(best)
        print(f"{name:<44} {len(payload):>9} {status:>6} {cpu:>13.3f}")
        if cpu > worst_cpu:
            worst_name, worst_cpu = name, cpu
    conn.close()
    print(f"worst case: {worst_name}, {worst_cpu:.3f} s of server CPU per request")

    log("idle latencies")
    idle = latencies(port, page, args.requests)
    p50_idle, p95_idle = statistics.median(idle), pct(idle, 0.95)
    print(
        f"credential page idle:       p50 {1000 * p50_idle:7.2f} ms  p95 {1000 * p95_idle:7.2f}"
        f" ms  ({len(idle)} requests)"
    )
    phases = [
        ("paced /verify attack", families[worst_name], True),
        ("flood of /verify", families[worst_name], False),
        ("flood of GET /healthz", None, False),
    ]
    for label, payload, paced in phases:
        log(label)
        hot, counts, cpu = under_attack(port, pid, page, payload, args, paced=paced)
        p50_hot, p95_hot = statistics.median(hot), pct(hot, 0.95)
        print(
            f"credential page, {label}: p50 {1000 * p50_hot:7.2f} ms  p95 "
            f"{1000 * p95_hot:7.2f} ms  ({len(hot)} requests, {args.attackers} clients)"
        )
        print(
            f"  ratio to idle: p50 {p50_hot / p50_idle:.2f}x  p95 {p95_hot / p95_idle:.2f}x"
            "  (target < 2x)"
        )
        answered = ", ".join(f"{k or 'error'}: {v}" for k, v in sorted(counts.items()))
        print(f"  answers: {answered}; service CPU meanwhile {cpu:.2f} s")


if __name__ == "__main__":
    main()
