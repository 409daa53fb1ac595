"""Launch benchmark: OIDC login + launch + landing page, round trips per second.

One platform client (the demo LMS's key and signing through service/jws.py) drives, over
HTTP (aiohttp) and with N concurrent browsers (each its own cookies):

  floor      a FastAPI endpoint that only verifies an RS256 id_token (bench/floor_app.py)
  ltijs      npm ltijs 5.x + ltijs-sequelize on PostgreSQL (bench/ltijs_tool.js)
  sqlite     one `microcred serve --no-worker` process on SQLite, with uvicorn's httptools
             protocol as the deploy files run it behind their TLS proxy
  postgres   the same on PostgreSQL (127.0.0.1:5432)
  sqlite-h11, postgres-h11   the same with h11, `microcred serve`'s default

For each target it prints launches/s, latency percentiles and server CPU per launch (from
/proc; ltijs's figure excludes the PostgreSQL server, microcred's too), then the ratios the
targets name: microcred >= 2x ltijs launches/s, and launch cost <= 3x the floor. The floor
is one request that verifies an id_token, so its counterpart is the launch request (the
id_token POST) of the flow: --steps N then runs N logins, their N launches and their N
landing pages as three separate phases and reads each step's server CPU per request.
The whole flow's ratio to the floor (3 requests against 1) is printed beside it.

Each target is driven at every concurrency in --concurrency (default 4,8,16,32 browsers);
its best launches/s is reported, since a server's peak sits at a different concurrency for
each (Node's event loop waits on I/O where microcred's work waits on the GIL).

Run: .venv/bin/python bench/launch.py [--duration 10] [--concurrency 4,8,16,32] [--only a,b]
Needs: npm install ltijs@5 ltijs-sequelize@2 pg pg-hstore in bench/.work (see README).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import aiohttp
import httpx
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service import jws  # noqa: E402
from service.demo import keys  # noqa: E402

WORK = ROOT / "bench" / ".work"
PY = sys.executable
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
LTI = "https://purl.imsglobal.org/spec/lti/claim/"
CLIENT_ID = "bench-client"
DEPLOYMENT = "1"
USERS = 200
TICKS = os.sysconf("SC_CLK_TCK")
# e.g. MICROCRED_BENCH_PYSPY="--gil": sample only the thread holding the GIL (Python CPU).
PY_SPY_EXTRA = os.environ.get("MICROCRED_BENCH_PYSPY", "").split()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_backends_cpu(database: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend serving ``database`` (same machine)."""
    admin = create_engine(PG_ADMIN)
    try:
        with admin.connect() as conn:
            pids = conn.execute(
                text("SELECT pid FROM pg_stat_activity WHERE datname = :d"), {"d": database}
            ).scalars()
            out = {}
            for pid in pids:
                with contextlib.suppress(OSError):
                    out[int(pid)] = cpu_seconds(int(pid))
            return out
    finally:
        admin.dispose()


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its reaped children (for `npm`-style wrappers)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


@dataclass
class Platform:
    """The LMS side: issuer URLs, the signing key, the key set served over HTTP."""

    issuer: str
    key: jws.PrivateKey
    jwks_url: str
    jwks_path: Path

    def id_token(self, *, user: int, nonce: str, client_id: str, target: str) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": client_id,
            "azp": client_id,
            "sub": f"user-{user}",
            "iat": now,
            "exp": now + 300,
            "nonce": nonce,
            "name": f"Learner {user}",
            "given_name": "Learner",
            "family_name": str(user),
            "email": f"learner{user}@bench.test",
            LTI + "message_type": "LtiResourceLinkRequest",
            LTI + "version": "1.3.0",
            LTI + "deployment_id": DEPLOYMENT,
            LTI + "target_link_uri": target,
            LTI + "resource_link": {"id": "rl-1", "title": "Bench"},
            LTI + "roles": ["http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"],
            LTI + "context": {
                "id": "ctx-bench",
                "label": "BENCH",
                "title": "Bench course",
                "type": ["http://purl.imsglobal.org/vocab/lis/v2/course#CourseOffering"],
            },
        }
        return jws.sign(claims, self.key, headers={"typ": "JWT"})


@dataclass
class Target:
    name: str
    base: str
    login_path: str | None  # None: the floor, one POST of a signed token
    launch_path: str
    pid: int
    note: str = ""
    pg_database: str | None = None  # its PostgreSQL backends' CPU is measured too


@dataclass
class Result:
    name: str
    launches: int
    errors: int
    seconds: float
    concurrency: int = 0
    latencies: list[float] = field(default_factory=list)
    steps: dict[str, list[float]] = field(default_factory=dict)
    server_cpu: float = 0.0
    db_cpu: float | None = None
    client_cpu: float = 0.0
    first_error: str = ""
    note: str = ""
    step_cpu: dict[str, float] = field(default_factory=dict)  # measure_steps

    @property
    def rate(self) -> float:
        return self.launches / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms_per_launch(self) -> float:
        return 1000 * self.server_cpu / self.launches if self.launches else float("nan")

    @property
    def db_cpu_ms_per_launch(self) -> float:
        if self.db_cpu is None or not self.launches:
            return float("nan")
        return 1000 * self.db_cpu / self.launches

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        return 1000 * statistics.quantiles(self.latencies, n=100)[int(q) - 1]


class LaunchError(Exception):
    pass


class Browser:
    """One browser: its own keep-alive connections and cookies, on aiohttp (about a quarter
    of httpx's client CPU per request, which shares the two cores with the server). Every
    target sets its cookies on one host, so a name -> value map is the whole jar."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http
        self.cookies: dict[str, str] = {}

    async def send(
        self, method: str, url: str, data: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        """(status, location or "", body) of one request; redirects are not followed."""
        headers = {"cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        async with self.http.request(
            method, url, data=data, headers=headers if self.cookies else None,
            allow_redirects=False,
        ) as resp:  # fmt: skip
            body = await resp.text()
            for raw in resp.headers.getall("set-cookie", ()):
                pair, _, attributes = raw.partition(";")
                name, _, value = pair.partition("=")
                if "max-age=0" in attributes.lower() or "1970" in attributes:
                    self.cookies.pop(name.strip(), None)
                else:
                    self.cookies[name.strip()] = value.strip()
            return resp.status, resp.headers.get("location", ""), body


async def one_launch(
    browser: Browser,
    target: Target,
    platform: Platform,
    user: int,
    steps: dict[str, float],
) -> None:
    launch_url = target.base + target.launch_path
    if target.login_path is None:
        token = platform.id_token(
            user=user, nonce=uuid.uuid4().hex, client_id=CLIENT_ID, target=launch_url
        )
        status, _, body = await browser.send("POST", launch_url, {"id_token": token})
        if status != 200:
            raise LaunchError(f"floor: {status} {body[:200]}")
        return
    t0 = time.perf_counter()
    status, location, body = await browser.send(
        "POST",
        target.base + target.login_path,
        {
            "iss": platform.issuer,
            "login_hint": f"user-{user}",
            "target_link_uri": launch_url,
            "lti_message_hint": uuid.uuid4().hex,
            "client_id": CLIENT_ID,
            "lti_deployment_id": DEPLOYMENT,
        },
    )
    if status not in (302, 303):
        raise LaunchError(f"login: {status} {body[:300]}")
    auth = parse_qs(urlsplit(location).query)
    nonce, state = auth["nonce"][0], auth["state"][0]
    redirect_uri = auth["redirect_uri"][0]
    token = platform.id_token(
        user=user, nonce=nonce, client_id=auth["client_id"][0], target=launch_url
    )
    t1 = time.perf_counter()
    status, location, body = await browser.send(
        "POST", redirect_uri, {"id_token": token, "state": state}
    )
    t2 = time.perf_counter()
    url, hops = redirect_uri, 0
    while status in (302, 303) and hops < 3:
        hops += 1
        url = urljoin(url, location)
        status, location, body = await browser.send("GET", url)
    steps["login"] = t1 - t0
    steps["launch"] = t2 - t1
    steps["landing"] = time.perf_counter() - t2
    if status != 200:
        raise LaunchError(f"launch: {status} {body[:300]}")


async def prime(target: Target, platform: Platform, *, concurrency: int = 8) -> None:
    """Launch each of the USERS once, then wait for the server to go quiet: what every
    level and round measures is returning users. A first launch creates the user's rows
    and, in microcred, evaluates them afterwards in the thread pool; left to run into a
    measured window, that work is charged to the returning users' launches."""
    users = list(range(USERS))

    async def worker() -> None:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=2), cookie_jar=aiohttp.DummyCookieJar()
        ) as http:
            browser = Browser(http)
            while users:
                user = users.pop()
                browser.cookies.clear()
                await one_launch(browser, target, platform, user, {})

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        before = cpu_seconds(target.pid)
        await asyncio.sleep(0.5)
        if cpu_seconds(target.pid) - before < 0.02:  # under 4 % of a core: quiet
            break


async def drive(
    target: Target,
    platform: Platform,
    *,
    concurrency: int,
    warmup: float,
    duration: float,
    profile: Path | None = None,
) -> Result:
    result = Result(target.name, 0, 0, duration, concurrency, note=target.note)
    measuring = False
    stop = False
    counter = 0

    async def worker(i: int) -> None:
        nonlocal counter
        connector = aiohttp.TCPConnector(limit=2)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()
        ) as http:
            browser = Browser(http)
            while not stop:
                counter += 1
                user = counter % USERS
                browser.cookies.clear()
                t0 = time.perf_counter()
                steps: dict[str, float] = {}
                try:
                    await one_launch(browser, target, platform, user, steps)
                except (TimeoutError, LaunchError, aiohttp.ClientError, KeyError) as exc:
                    if measuring:
                        result.errors += 1
                        result.first_error = result.first_error or repr(exc)[:400]
                    continue
                if measuring:
                    result.launches += 1
                    result.latencies.append(time.perf_counter() - t0)
                    for step, seconds in steps.items():
                        result.steps.setdefault(step, []).append(seconds)

    tasks = [asyncio.create_task(worker(i)) for i in range(concurrency)]
    await asyncio.sleep(warmup)
    spy = None
    if profile is not None:
        # py-spy samples the server during the measured window (sampling costs it a little CPU).
        spy = subprocess.Popen(
            [str(Path(PY).with_name("py-spy")), "record", "--pid", str(target.pid),
             "--duration", str(int(duration)), "--rate", "250", "--format", "raw",
             "--output", str(profile), "--nonblocking", *PY_SPY_EXTRA],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    measuring = True
    db0 = pg_backends_cpu(target.pg_database) if target.pg_database else {}
    cpu0, ccpu0, t0 = cpu_seconds(target.pid), time.process_time(), time.perf_counter()
    await asyncio.sleep(duration)
    measuring = False
    result.seconds = time.perf_counter() - t0
    result.server_cpu = cpu_seconds(target.pid) - cpu0
    result.client_cpu = time.process_time() - ccpu0
    if target.pg_database:
        # Backends that ended during the window are missed; pools keep theirs open.
        db1 = pg_backends_cpu(target.pg_database)
        result.db_cpu = sum(cpu - db0.get(pid, 0.0) for pid, cpu in db1.items())
    stop = True
    await asyncio.gather(*tasks)
    if spy is not None:
        spy.wait(timeout=60)
    return result


async def measure_steps(
    target: Target, platform: Platform, *, count: int, concurrency: int
) -> dict[str, float]:
    """Server CPU ms per request of each step, each step measured on its own: in batches of
    250, the batch's logins, then their launches, then their landing pages, ``concurrency``
    at a time, with the batch's id_tokens signed between the phases (the floor: its one
    request only). Batches keep every id_token younger than ltijs accepts (10 s) on a slow
    host; each step's CPU adds up over the batches."""
    spent: dict[str, float] = {}
    for first in range(0, count, STEP_BATCH):
        # launch i is by user i % USERS: returning users, as in drive
        batch = list(range(first, min(first + STEP_BATCH, count)))
        for name, seconds in (await _measure_batch(target, platform, batch, concurrency)).items():
            spent[name] = spent.get(name, 0.0) + seconds
    return {name: 1000 * seconds / count for name, seconds in spent.items()}


STEP_BATCH = 250


async def _measure_batch(
    target: Target, platform: Platform, users: list[int], concurrency: int
) -> dict[str, float]:
    """CPU seconds of each step of ``measure_steps`` over one batch of users."""
    launch_url = target.base + target.launch_path
    out: dict[str, float] = {}

    async def phase(name: str, work: Any) -> None:
        queue = list(users)

        async def worker() -> None:
            connector = aiohttp.TCPConnector(limit=2)
            async with aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar()
            ) as http:
                browser = Browser(http)
                while queue:
                    await work(browser, queue.pop())

        db0 = pg_backends_cpu(target.pg_database) if target.pg_database else {}
        cpu0 = cpu_seconds(target.pid)
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        out[name] = cpu_seconds(target.pid) - cpu0
        if target.pg_database:
            db1 = pg_backends_cpu(target.pg_database)
            out[name + " (PostgreSQL)"] = sum(cpu - db0.get(pid, 0.0) for pid, cpu in db1.items())

    if target.login_path is None:
        tokens = {
            u: platform.id_token(
                user=u, nonce=uuid.uuid4().hex, client_id=CLIENT_ID, target=launch_url
            )
            for u in users
        }

        async def floor(browser: Browser, user: int) -> None:
            status, _, body = await browser.send("POST", launch_url, {"id_token": tokens[user]})
            if status != 200:
                raise LaunchError(f"floor: {status} {body[:200]}")

        await phase("launch", floor)
        return out

    logins: dict[int, tuple[dict[str, str], dict[str, list[str]]]] = {}
    launches: dict[int, tuple[dict[str, str], str, str]] = {}

    async def login(browser: Browser, user: int) -> None:
        browser.cookies = {}
        status, location, body = await browser.send(
            "POST",
            target.base + target.login_path,  # type: ignore[operator]
            {
                "iss": platform.issuer, "login_hint": f"user-{user % USERS}",
                "target_link_uri": launch_url, "lti_message_hint": uuid.uuid4().hex,
                "client_id": CLIENT_ID, "lti_deployment_id": DEPLOYMENT,
            },
        )  # fmt: skip
        if status not in (302, 303):
            raise LaunchError(f"login: {status} {body[:300]}")
        logins[user] = (browser.cookies, parse_qs(urlsplit(location).query))

    await phase("login", login)
    forms = {}
    for user, (_, auth) in logins.items():
        token = platform.id_token(
            user=user % USERS,
            nonce=auth["nonce"][0],
            client_id=auth["client_id"][0],
            target=launch_url,
        )
        forms[user] = {"id_token": token, "state": auth["state"][0]}

    async def launch(browser: Browser, user: int) -> None:
        cookies, auth = logins[user]
        browser.cookies = dict(cookies)
        redirect_uri = auth["redirect_uri"][0]
        status, location, body = await browser.send("POST", redirect_uri, forms[user])
        if status not in (302, 303):
            raise LaunchError(f"launch: {status} {body[:300]}")
        launches[user] = (browser.cookies, redirect_uri, location)

    await phase("launch", launch)

    async def landing(browser: Browser, user: int) -> None:
        cookies, url, location = launches[user]
        browser.cookies = dict(cookies)
        status, hops = 303, 0
        while status in (302, 303) and hops < 3:
            hops += 1
            url = urljoin(url, location)
            status, location, body = await browser.send("GET", url)
        if status != 200:
            raise LaunchError(f"landing: {status} {body[:300]}")

    await phase("landing", landing)
    return out


# --- processes ---


@contextlib.contextmanager
def process(
    cmd: list[str],
    *,
    env: dict[str, str],
    ready_url: str,
    log: Path,
    timeout: float = 60,
    cwd: Path = ROOT,
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, env=os.environ | env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{cmd[0]} exited: {log.read_text()[-2000:]}")
                try:
                    if httpx.get(ready_url, timeout=2).status_code < 500:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{cmd} not ready: {log.read_text()[-2000:]}")
                time.sleep(0.2)
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def pg_database(name: str) -> Iterator[str]:
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextlib.contextmanager
def jwks_server(platform_dir: Path) -> Iterator[str]:
    """The platform's key set, served by its own process (ltijs fetches it on every launch)."""
    port = free_port()
    cmd = [
        PY,
        "-m",
        "http.server",
        str(port),
        "--bind",
        "127.0.0.1",
        "--directory",
        str(platform_dir),
    ]
    url = f"http://127.0.0.1:{port}/jwks.json"
    with process(cmd, env={}, ready_url=url, log=platform_dir.parent / "jwks.log"):
        yield url


# --- targets ---


@contextlib.contextmanager
def floor_target(run: Path, platform: Platform) -> Iterator[Target]:
    port = free_port()
    env = {
        "FLOOR_JWKS": str(platform.jwks_path),
        "FLOOR_ISS": platform.issuer,
        "FLOOR_AUD": CLIENT_ID,
    }
    cmd = [
        PY,
        "-m",
        "uvicorn",
        "bench.floor_app:app",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    base = f"http://127.0.0.1:{port}"
    with process(cmd, env=env, ready_url=base + "/docs", log=run / "floor.log") as proc:
        yield Target("floor (FastAPI + RS256 verify)", base, None, "/launch", proc.pid, "1 request")


@contextlib.contextmanager
def floor_flow_target(run: Path, platform: Platform) -> Iterator[Target]:
    port = free_port()
    env = {
        "FLOOR_JWKS": str(platform.jwks_path),
        "FLOOR_ISS": platform.issuer,
        "FLOOR_AUD": CLIENT_ID,
    }
    cmd = [PY, "-m", "uvicorn", "bench.floor_app:app", "--port", str(port),
           "--log-level", "warning", "--no-access-log"]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    with process(cmd, env=env, ready_url=base + "/docs", log=run / "floor-flow.log") as proc:
        yield Target(
            "floor-flow (3 requests, no DB)", base, "/flow/login", "/flow/launch", proc.pid,
            "3 requests",
        )  # fmt: skip


@contextlib.contextmanager
def ltijs_target(run: Path, platform: Platform) -> Iterator[Target]:
    node_modules = WORK / "node_modules" / "ltijs"
    if not node_modules.exists():
        raise RuntimeError(
            "ltijs is not installed: cd bench/.work && "
            "npm install ltijs@5 ltijs-sequelize@2 pg pg-hstore"
        )
    port = free_port()
    with pg_database(f"bench_ltijs_{os.getpid()}") as url:
        env = {
            "PORT": str(port),
            "PGDATABASE": url.rsplit("/", 1)[1],
            "PLATFORM_ISS": platform.issuer,
            "CLIENT_ID": CLIENT_ID,
            "AUTH_URL": platform.issuer + "/auth",
            "TOKEN_URL": platform.issuer + "/token",
            "JWKS_URL": platform.jwks_url,
        }
        base = f"http://127.0.0.1:{port}"
        cmd = ["node", str(ROOT / "bench" / "ltijs_tool.js")]
        with process(cmd, env=env, ready_url=base + "/keys", log=run / "ltijs.log") as proc:
            time.sleep(1.0)  # registerPlatform runs after the server listens
            version = json.loads((node_modules / "package.json").read_text())["version"]
            yield Target(
                f"ltijs {version} (PostgreSQL)",
                base,
                "/login",
                "/",
                proc.pid,
                "3 requests",
                pg_database=env["PGDATABASE"],
            )


@contextlib.contextmanager
def microcred_target(
    run: Path, platform: Platform, db: str, tree: Path | None = None, *, http: str = "httptools"
) -> Iterator[Target]:
    """One ``microcred serve`` process; ``tree``: the server's code from another checkout
    (``--baseline``), which migrates its own database: its schema is part of the code.
    ``http``: uvicorn's protocol (``MICROCRED_HTTP_PROTOCOL``), httptools as the deploy files
    run it behind their proxy, or h11, ``microcred serve``'s default (a checkout from before
    the setting ignores it and runs h11)."""
    port = free_port()
    label = (db if http == "httptools" else f"{db}-{http}") if tree is None else f"{db}-baseline"
    data_dir = run / f"microcred-{label}"
    data_dir.mkdir()
    with contextlib.ExitStack() as stack:
        if db == "sqlite":
            url = f"sqlite:///{data_dir / 'microcred.db'}"
        else:
            suffix = "" if tree is None else "_baseline"
            url = stack.enter_context(pg_database(f"bench_microcred_{os.getpid()}{suffix}"))
        base = f"http://127.0.0.1:{port}"
        env = prepare_microcred(platform, url=url, data_dir=data_dir, base=base, cwd=tree or ROOT)
        env["MICROCRED_HTTP_PROTOCOL"] = http
        cmd = [PY, "-m", "service.cli", "serve", "--port", str(port), "--no-worker"]
        with process(
            cmd,
            env=env,
            ready_url=base + "/healthz",
            log=run / f"microcred-{label}.log",
            cwd=tree or ROOT,
        ) as proc:
            yield Target(
                f"microcred ({'SQLite' if db == 'sqlite' else 'PostgreSQL'})"
                + (f" {http}" if tree is None else f" {tree.name}"),
                base,
                "/lti/login",
                "/lti/launch",
                proc.pid,
                "3 requests",
                pg_database=None if db == "sqlite" else url.rsplit("/", 1)[1],
            )


def prepare_microcred(
    platform: Platform, *, url: str, data_dir: Path, base: str, cwd: Path = ROOT
) -> dict[str, str]:
    """Migrate a fresh database and register the bench platform; returns the server's env."""
    env = {
        "MICROCRED_DATABASE_URL": url,
        "MICROCRED_DATA_DIR": str(data_dir),
        "MICROCRED_BASE_URL": base,
        "MICROCRED_LOG_LEVEL": "WARNING",
        "MICROCRED_SECRET_KEY": "bench-master-key-" + "0" * 32,
        # one client address drives every launch: the per-IP limit would refuse them
        "MICROCRED_LTI_RATE_LIMIT_PER_MINUTE": "0",
    }
    cli = [PY, "-m", "service.cli"]
    for args in (
        ["migrate"],
        [
            "platform", "add",
            "--issuer", platform.issuer,
            "--client-id", CLIENT_ID,
            "--auth-url", platform.issuer + "/auth",
            "--token-url", platform.issuer + "/token",
            "--jwks-url", platform.jwks_url,
            "--deployment", DEPLOYMENT,
            "--name", "bench platform",
        ],
    ):  # fmt: skip
        done = subprocess.run(
            cli + args, env=os.environ | env, cwd=cwd, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"microcred {' '.join(args[:2])} failed: {done.stderr[-2000:]}")
    return env


def count_statements(
    run: Path, platform: Platform, db: str, *, verbose: bool, cprofile: int = 0
) -> None:
    """In process, no timing: SQL statements, transactions and pool checkouts of one
    login + launch + landing, for a new and for a returning user. With ``cprofile``, then
    that many more launches of 50 returning users under yappi, every thread (the test
    client's own work included; ``pip install -e ".[bench]"``), printing the functions
    with the most time."""
    import warnings

    from sqlalchemy import event
    from sqlalchemy.pool import Pool

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette's TestClient-on-httpx notice
        from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    data_dir = run / f"count-{db}"
    data_dir.mkdir()
    with contextlib.ExitStack() as stack:
        if db == "sqlite":
            url = f"sqlite:///{data_dir / 'microcred.db'}"
        else:
            url = stack.enter_context(pg_database(f"bench_count_{os.getpid()}"))
        base = "http://127.0.0.1:8999"
        env = prepare_microcred(platform, url=url, data_dir=data_dir, base=base)
        os.environ.update(env)  # this process only: the settings come from the environment
        app = create_app(Settings())
        engine = app.state.engine
        log: list[tuple[str, str]] = []

        # Statements are counted at the driver (SQLite's trace callback, psycopg's cursor).
        def note(statement: str) -> None:
            text_ = " ".join(statement.split())
            if text_ == "SELECT 1":  # the idle-connection check (db.engine._ping_when_idle)
                log.append(("ping", ""))
            elif not text_.upper().startswith(("COMMIT", "ROLLBACK")):
                log.append(("sql", text_[:100]))

        def on_connect(dbapi_conn: Any, _record: Any) -> None:
            if db == "sqlite":
                dbapi_conn.set_trace_callback(note)  # every statement SQLite runs
                return

            class Counted(dbapi_conn.cursor_factory):  # type: ignore[misc, name-defined]
                def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
                    note(str(query))
                    return super().execute(query, *args, **kwargs)

            dbapi_conn.cursor_factory = Counted

        event.listen(engine, "connect", on_connect)
        engine.dispose()  # connections made from here on are counted
        event.listen(
            engine,
            "begin",
            lambda _c: log.append(("begin", "")) if db != "sqlite" else None,
        )
        event.listen(Pool, "checkout", lambda *_a: log.append(("checkout", "")))
        client = stack.enter_context(TestClient(app, base_url=base))

        def one(user: int) -> None:
            client.cookies.clear()
            log.append(("step", "login"))
            login = client.post(
                "/lti/login",
                data={
                    "iss": platform.issuer, "login_hint": f"user-{user % USERS}",
                    "target_link_uri": base + "/lti/launch", "client_id": CLIENT_ID,
                    "lti_deployment_id": DEPLOYMENT,
                },
                follow_redirects=False,
            )  # fmt: skip
            auth = parse_qs(urlsplit(login.headers["location"]).query)
            token = platform.id_token(
                user=user, nonce=auth["nonce"][0], client_id=CLIENT_ID, target=base + "/lti/launch"
            )
            log.append(("step", "launch"))
            resp = client.post(
                "/lti/launch", data={"id_token": token, "state": auth["state"][0]},
                follow_redirects=False,
            )  # fmt: skip
            log.append(("step", "landing"))
            page = client.get(resp.headers["location"])
            if page.status_code != 200:
                raise LaunchError(f"landing: {page.status_code} {page.text[:300]}")

        one(1)  # warm-up: key set fetched, caches filled
        if cprofile:
            import yappi  # every thread: sync routes run in the thread pool

            for user in range(50):
                one(100 + user)
            yappi.set_clock_type("cpu")
            yappi.start()
            for i in range(cprofile):
                one(100 + i % 50)
            yappi.stop()
            stats = yappi.get_func_stats()
            print(f"   {db}: {cprofile} launches of returning users, CPU ms per launch")
            for order in ("ttot", "tsub"):
                stats.sort(order)
                print(f"   -- by {'inclusive' if order == 'ttot' else 'own'} time")
                for f in list(stats)[:70]:
                    where = f"{f.module.rsplit('/', 2)[-1]}:{f.lineno}"
                    print(
                        f"   {1000 * f.ttot / cprofile:8.3f} {1000 * f.tsub / cprofile:8.3f} "
                        f"{f.ncall / cprofile:7.1f}  {f.name} ({where})"
                    )
            return
        for label in ("new user", "returning user"):
            log.clear()
            one(2)
            kinds = ("sql", "begin", "checkout", "ping")
            n = {k: sum(1 for kind, _ in log if kind == k) for k in kinds}
            if db == "sqlite":  # SQLite's own BEGINs are among the statements it ran
                n["begin"] = sum(1 for kind, t in log if kind == "sql" and t.startswith("BEGIN"))
            print(
                f"   {db} {label}: {n['sql']} SQL statements, {n['begin']} transactions, "
                f"{n['checkout']} pool checkouts" + (f", {n['ping']} pings" if n["ping"] else "")
            )
            if verbose:
                for kind, text_ in log:
                    if kind in ("step", "sql"):
                        print(f"      {'--' if kind == 'step' else '  '} {text_}")


def summarise_profile(path: Path, top: int = 25) -> None:
    """Print where the server spent its samples: inclusive share per project/library function."""
    if not path.exists():
        print(f"   no profile at {path} (is py-spy installed and allowed to ptrace?)")
        return
    inclusive: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        seen = set()
        for frame in stack.split(";"):
            func, _, where = frame.partition(" (")
            name = f"{func} ({where.split(':')[0].rsplit('/', 2)[-1]})"
            if name not in seen:
                seen.add(name)
                inclusive[name] = inclusive.get(name, 0) + n
    idle = sum(v for k, v in inclusive.items() if k.startswith(("select ", "wait ", "_worker ")))
    print(f"   profile {path.name}: {total} samples ({idle} idle-ish)")
    for name, n in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]:
        print(f"   {100 * n / total:5.1f}%  {name}")


def report(
    results: dict[str, Result], args: argparse.Namespace, rounds: list[dict[str, float]]
) -> None:
    print()
    print(
        f"launch benchmark  {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  "
        f"best of concurrency {args.concurrency}, {args.duration:.0f} s per level, "
        f"{os.cpu_count()} cores (shared)"
    )
    head = (
        f"{'target':36} {'launches/s':>10} {'conc':>5} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'srv CPU ms/launch':>18} {'PG CPU ms':>9} {'client CPU ms':>13} {'errors':>7}  flow"
    )
    print(head)
    print("-" * len(head))
    for r in results.values():
        print(
            f"{r.name:36} {r.rate:10.1f} {r.concurrency:5d} {r.pct(50):8.1f} {r.pct(95):8.1f} "
            f"{r.cpu_ms_per_launch:18.2f} {r.db_cpu_ms_per_launch:9.2f} "
            f"{1000 * r.client_cpu / max(r.launches, 1):13.2f} {r.errors:7d}  {r.note}"
        )
        if r.steps:
            medians = ", ".join(
                f"{k} {1000 * statistics.median(v):.1f}" for k, v in r.steps.items()
            )
            print(f"    median ms per step: {medians}")
        if r.step_cpu:
            per_step = ", ".join(f"{k} {v:.2f}" for k, v in r.step_cpu.items())
            print(f"    server CPU ms per request, each step on its own: {per_step}")
        if r.first_error:
            print(f"    first error: {r.first_error}")
    floor, ltijs = results.get("floor"), results.get("ltijs")
    if rounds:
        print()
        print(f"{len(rounds)} rounds, each target at its best concurrency, back to back:")
        for name, r in results.items():
            rates = [x[name] for x in rounds if name in x]
            cpu = [x[f"{name} cpu_ms"] for x in rounds if f"{name} cpu_ms" in x]
            if rates:
                print(
                    f"    {r.name:36} median {statistics.median(rates):7.1f} launches/s "
                    f"(range {min(rates):.1f}-{max(rates):.1f}), "
                    f"server CPU {statistics.median(cpu):.2f} ms/launch"
                )
    print()
    for key in [k for k in results if k.startswith(("sqlite", "postgres"))]:
        mc = results.get(key)
        if mc is None or not mc.launches:
            continue
        paired = [x[key] / x["ltijs"] for x in rounds if x.get("ltijs") and key in x]
        if paired:
            ratio = statistics.median(paired)
            print(
                f"{mc.name}: {ratio:.2f}x ltijs launches/s, median of {len(paired)} rounds "
                f"({', '.join(f'{p:.2f}' for p in paired)}) (target >= 2): "
                f"{'MET' if ratio >= 2 else 'MISSED'}"
            )
            if ltijs and ltijs.launches:
                print(f"    at the best levels alone: {mc.rate / ltijs.rate:.2f}x")
        elif ltijs and ltijs.launches:
            ratio = mc.rate / ltijs.rate
            print(
                f"{mc.name}: {ratio:.2f}x ltijs launches/s (target >= 2): "
                f"{'MET' if ratio >= 2 else 'MISSED'}"
            )
        if floor and floor.step_cpu and mc.step_cpu:
            # The floor is one request that verifies an id_token; the launch request is the
            # same request in the real flow (verify, check, consume, record, open a session).
            ratio = mc.step_cpu["launch"] / floor.step_cpu["launch"]
            print(
                f"{mc.name}: launch cost, the launch request (id_token POST) against the "
                f"floor's, by server CPU: {ratio:.2f}x ({mc.step_cpu['launch']:.2f} vs "
                f"{floor.step_cpu['launch']:.2f} ms) (target <= 3): "
                f"{'MET' if ratio <= 3 else 'MISSED'}"
            )
        if floor and floor.launches:
            print(
                f"{mc.name}: whole flow (login + launch + landing: 3 requests against the "
                f"floor's 1): {floor.rate / mc.rate:.2f}x the floor by throughput, "
                f"{mc.cpu_ms_per_launch / floor.cpu_ms_per_launch:.2f}x by server CPU"
            )
        flow = results.get("floor-flow")
        if flow and flow.launches:
            print(
                f"{mc.name}: {flow.rate / mc.rate:.2f}x floor-flow by throughput, "
                f"{mc.cpu_ms_per_launch / flow.cpu_ms_per_launch:.2f}x by server CPU "
                "(same 3 round trips without a database)"
            )
    if ltijs and floor and ltijs.launches and floor.launches:
        print(
            f"ltijs: launch cost {floor.rate / ltijs.rate:.2f}x the floor by throughput, "
            f"{ltijs.cpu_ms_per_launch / floor.cpu_ms_per_launch:.2f}x by server CPU"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--duration", type=float, default=10.0, help="measured seconds per target and level"
    )
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument(
        "--concurrency", default="4,8,16,32", help="comma-separated numbers of browsers"
    )
    parser.add_argument("--only", default="floor,floor-flow,ltijs,sqlite,postgres")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--profile", type=Path, help="py-spy the microcred server into this folder (raw stacks)"
    )
    parser.add_argument(
        "--count-sql",
        action="store_true",
        help="only count SQL statements per launch (in process, sqlite/postgres of --only)",
    )
    parser.add_argument("--verbose", action="store_true", help="with --count-sql: list them")
    parser.add_argument(
        "--steps",
        type=int,
        default=2000,
        metavar="N",
        help="then N logins, N launches, N landings, each step's server CPU on its own (0: no)",
    )
    parser.add_argument(
        "--cprofile",
        type=int,
        default=0,
        metavar="N",
        help="with --count-sql: profile N in-process launches of returning users",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="then R rounds of every target at its best concurrency, back to back; the "
        "ratios reported are the medians of the rounds' (0: the best levels' ratios)",
    )
    parser.add_argument("--round-duration", type=float, default=6.0, help="seconds per target")
    parser.add_argument(
        "--step-rounds",
        type=int,
        default=1,
        metavar="R",
        help="measure --steps R times per target, the targets taking turns (each round in "
        "another order), and report each step's median: an A/B on a shared host, where "
        "other load moves between one target's steps and the next's",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another checkout (e.g. `git worktree add /tmp/base main`): adds targets "
        "sqlite-baseline and postgres-baseline whose server runs that code, for --only",
    )
    args = parser.parse_args()
    levels = [int(x) for x in str(args.concurrency).split(",") if x.strip()]
    if not shutil.which("node") and "ltijs" in args.only:
        sys.exit("node is required for the ltijs reference (or pass --only floor,sqlite,postgres)")

    run = WORK / f"run-{os.getpid()}"
    platform_dir = run / "platform"
    platform_dir.mkdir(parents=True)
    key = keys.load_or_create(WORK / "platform-key.pem")
    jwks_path = platform_dir / "jwks.json"
    jwks_path.write_text(json.dumps({"keys": [key.public.jwk]}))
    results: dict[str, Result] = {}
    try:
        with jwks_server(platform_dir) as jwks_url:
            platform = Platform("https://lms.bench.test", key, jwks_url, jwks_path)
            targets = {
                "floor": lambda: floor_target(run, platform),
                "floor-flow": lambda: floor_flow_target(run, platform),
                "ltijs": lambda: ltijs_target(run, platform),
                "sqlite": lambda: microcred_target(run, platform, "sqlite"),
                "postgres": lambda: microcred_target(run, platform, "postgres"),
                # microcred serve's default protocol (the deploy files run httptools)
                "sqlite-h11": lambda: microcred_target(run, platform, "sqlite", http="h11"),
                "postgres-h11": lambda: microcred_target(run, platform, "postgres", http="h11"),
            }
            if args.baseline is not None:
                # the same targets with the server's code from another checkout (A/B)
                for db in ("sqlite", "postgres"):
                    targets[f"{db}-baseline"] = functools.partial(
                        microcred_target, run, platform, db, args.baseline.resolve()
                    )
            if args.count_sql:
                for name in args.only.split(","):
                    if name in ("sqlite", "postgres"):
                        count_statements(
                            run, platform, name, verbose=args.verbose, cprofile=args.cprofile
                        )
                return
            # Every target is up for the whole run (an idle server costs nothing), so the
            # rounds below can alternate between them.
            stack = contextlib.ExitStack()
            opened: dict[str, Target] = {}
            with stack:
                for name in args.only.split(","):
                    print(f"== {name}", flush=True)
                    try:
                        opened[name] = target = stack.enter_context(targets[name]())
                        asyncio.run(prime(target, platform))
                    except (RuntimeError, LaunchError) as exc:
                        print(f"   {name} could not run: {exc}", flush=True)
                        continue
                    profile = (
                        args.profile / f"{name}.txt"
                        if args.profile and name.startswith(("sqlite", "postgres"))
                        else None
                    )
                    for level in levels:
                        r = asyncio.run(
                            drive(
                                target,
                                platform,
                                concurrency=level,
                                warmup=args.warmup,
                                duration=args.duration,
                                profile=profile,
                            )
                        )
                        print(
                            f"   concurrency {level:3d}: {r.rate:7.1f} launches/s, "
                            f"{r.cpu_ms_per_launch:6.2f} ms server CPU/launch, "
                            f"{r.errors} errors",
                            flush=True,
                        )
                        best = results.get(name)
                        if best is None or r.rate > best.rate:
                            results[name] = r
                    if args.steps and name in results and args.step_rounds <= 1:
                        try:
                            results[name].step_cpu = asyncio.run(
                                measure_steps(target, platform, count=args.steps, concurrency=8)
                            )
                        except LaunchError as exc:
                            print(f"   steps could not run: {exc}", flush=True)
                        steps = ", ".join(f"{k} {v:.2f}" for k, v in results[name].step_cpu.items())
                        print(f"   server CPU ms per request, each step on its own: {steps}")
                    if profile is not None:
                        summarise_profile(profile)
                if args.steps and args.step_rounds > 1:
                    interleaved_steps(opened, results, platform, args)
                rounds = run_rounds(opened, results, platform, args)
    finally:
        shutil.rmtree(run, ignore_errors=True)
    report(results, args, rounds)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    k: {
                        "rate": v.rate,
                        "concurrency": v.concurrency,
                        "p50_ms": v.pct(50),
                        "p95_ms": v.pct(95),
                        "cpu_ms": v.cpu_ms_per_launch,
                        "pg_cpu_ms": v.db_cpu_ms_per_launch,
                        "errors": v.errors,
                    }
                    for k, v in results.items()
                }
                | {"rounds": rounds},
                indent=2,
            )
        )


def interleaved_steps(
    opened: dict[str, Target],
    results: dict[str, Result],
    platform: Platform,
    args: argparse.Namespace,
) -> None:
    """``--steps`` ``--step-rounds`` times per target, the targets taking turns; each
    step's median over the rounds becomes the target's ``step_cpu``."""
    names = [n for n in opened if n in results]
    seen: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for r in range(args.step_rounds):
        for name in _turn(names, r):
            try:
                steps = asyncio.run(
                    measure_steps(opened[name], platform, count=args.steps, concurrency=8)
                )
            except LaunchError as exc:
                print(f"   {name} steps could not run: {exc}", flush=True)
                continue
            seen[name].append(steps)
            shown = ", ".join(f"{k} {v:.2f}" for k, v in steps.items())
            total = sum(steps.values())
            print(f"   step round {r + 1} {name}: {total:.2f} ms ({shown})", flush=True)
    for name, got in seen.items():
        if got:
            results[name].step_cpu = {k: statistics.median(g[k] for g in got) for k in got[0]}


def _turn(names: list[str], i: int) -> list[str]:
    """Round ``i``'s order: turned by ``i``, and backwards every other round. Turning alone
    keeps neighbours in one order (``postgres`` always right before ``postgres-baseline``),
    so a host warming or cooling within a round favoured one of them every time."""
    if not names:
        return []
    order = names[i % len(names) :] + names[: i % len(names)]
    return order[::-1] if i % 2 else order


def run_rounds(
    opened: dict[str, Target],
    results: dict[str, Result],
    platform: Platform,
    args: argparse.Namespace,
) -> list[dict[str, float]]:
    """``--rounds``: each target again at its best concurrency, one after the other, round
    after round (the order turning, and reversing, each round: ``_turn``). On a shared
    machine the speed of the host drifts by tens of percent within minutes; targets measured
    back to back see the same host, so each round's ratios are fair, and their median is the
    figure reported."""
    names = [n for n in opened if n in results]
    rounds: list[dict[str, float]] = []
    for i in range(args.rounds):
        rates: dict[str, float] = {}
        for name in _turn(names, i):
            r = asyncio.run(
                drive(
                    opened[name],
                    platform,
                    concurrency=results[name].concurrency,
                    warmup=min(args.warmup, 2.0),
                    duration=args.round_duration,
                    profile=None,
                )
            )
            rates[name] = r.rate
            rates[f"{name} cpu_ms"] = r.cpu_ms_per_launch
        rounds.append(rates)
        shown = ", ".join(f"{n} {rates[n]:.1f}/s" for n in names)
        ratios = ", ".join(
            f"{n} {rates[n] / rates['ltijs']:.2f}x ltijs"
            for n in names
            if n.startswith(("sqlite", "postgres")) and rates.get("ltijs")
        )
        print(f"== round {i + 1}: {shown}" + (f"; {ratios}" if ratios else ""), flush=True)
    return rounds


if __name__ == "__main__":
    main()
