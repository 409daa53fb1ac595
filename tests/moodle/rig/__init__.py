"""A fresh, real Moodle 5.1 on loopback for the end-to-end lane (tests/moodle/).

The Moodle source is a test fixture that never enters this repository: a tarball in
``shared/moodle/`` beside the repository's checkout (CI checks the repository out next to
``shared/``, like ``/work/main`` and ``/work/shared``), or wherever
``MICROCRED_MOODLE_TARBALL`` points. Facts about running it: ``shared/moodle/README.md``.

``Moodle.start`` untars it into a temporary folder, writes ``config.php`` (PostgreSQL on
127.0.0.1:5432, a database of its own, wwwroot on a free loopback port), installs it with
``admin/cli/install_database.php``, applies the loopback settings, creates the course
(``moodle.php course``: users, enrolments, a quiz, a rubric-graded assignment and the
web-service user, role, service and token) and serves it with PHP's built-in server.
``Moodle.stop`` stops the server and drops the database. Run this file to get a Moodle to
look at by hand: ``python -m tests.moodle.rig`` (Ctrl-C drops it).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[3]
RIG = Path(__file__).resolve().parent
PHP_PACKAGES = [
    f"php8.2-{p}"
    for p in (
        *("cli", "pgsql", "xml", "mbstring", "curl", "zip", "gd"),
        *("intl", "soap", "opcache", "readline", "bcmath"),
    )
]
PHP_FLAGS = ["-d", "max_input_vars=5000", "-d", "memory_limit=1024M"]
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
ADMIN_PASSWORD = "Admin-pass-1"  # a throw-away site on loopback
PASSWORD = "Pass-word-1"

# What the sync needs from Moodle's web services, and the capabilities the service user
# holds in the whole site (a system role): it is not enrolled in the courses it reads.
# Exactly what docs/evidence-sources.md lists (the lane checks both against this Moodle).
WS_FUNCTIONS = [
    "gradereport_user_get_grade_items",
    "mod_quiz_get_quizzes_by_courses",
    "mod_quiz_get_user_attempts",
    "mod_assign_get_assignments",
    "mod_assign_get_grades",
    "core_grading_get_definitions",
    "core_grading_get_gradingform_instances",
]
WS_CAPABILITIES = [
    "webservice/rest:use",
    "moodle/course:view",
    "mod/quiz:view",
    "mod/quiz:viewreports",
    "mod/assign:view",
    "mod/assign:viewgrades",
    "moodle/grade:viewall",
    "gradereport/user:view",
    "moodle/grade:managegradingforms",
]


def documented_grants() -> tuple[set[str], set[str], bool]:
    """The web-service functions and the capabilities docs/evidence-sources.md tells a
    Moodle administrator to give microcred's web-service user (not the conditional ones),
    and whether it says to restrict the service to authorised users with the user authorised."""
    text = (ROOT / "docs" / "evidence-sources.md").read_text()
    moodle = text[text.index("**Moodle** (web services") : text.index("**Canvas**")]
    functions = set(re.findall(r"^\| `(\w+)` \|", moodle, re.M))
    roles = moodle[moodle.index("The user is not enrolled") : moodle.index("A course with")]
    words = " ".join(moodle.split())
    restricted = "*Authorised users only*" in words and "*Authorised users* page" in words
    return functions, set(re.findall(r"`([a-z]+/[a-z_]+:[a-z_]+)`", roles)), restricted


TEACHER = {
    "username": "teacher",
    "firstname": "Tess",
    "lastname": "Teacher",
    "role": "editingteacher",
}
STUDENTS = [
    {"username": "ada", "firstname": "Ada", "lastname": "Lovelace", "role": "student"},
    {"username": "ben", "firstname": "Ben", "lastname": "Okafor", "role": "student"},
    {"username": "cleo", "firstname": "Cleo", "lastname": "Rossi", "role": "student"},
]
QUIZ = {
    "name": "Statistics quiz",
    "grade": 10,
    "questions": [
        {"text": "The median is the middle value of sorted data.", "answer": True},
        {"text": "A mean is never affected by outliers.", "answer": False},
        {"text": "A sample of one measures spread.", "answer": False},
        {"text": "A histogram shows a distribution.", "answer": True},
    ],
}
ASSIGNMENT = {
    "name": "Data report",
    "grade": 100,
    "criteria": [
        {
            "description": "Frames the question",
            "levels": [["Not yet", 0], ["Developing", 2], ["Secure", 4]],
        },
        {
            "description": "Explains the findings",
            "levels": [["Not yet", 0], ["Developing", 2], ["Secure", 4]],
        },
    ],
}


def tarball() -> Path:
    """The Moodle tarball: ``MICROCRED_MOODLE_TARBALL``, else ``../shared/moodle/`` beside
    the repository's checkout."""
    env = os.environ.get("MICROCRED_MOODLE_TARBALL")
    return Path(env) if env else ROOT.parent / "shared" / "moodle" / "moodle-5.1.tgz"


def ensure_php() -> str | None:
    """PHP 8.2 with Moodle's extensions: installed with apt-get when missing and root (as
    scripts/suite.sh does for Chromium). Returns why it cannot be had, or None."""
    if shutil.which("php") is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, capture_output=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PHP_PACKAGES],
            check=False,
            env=env,
            capture_output=True,
        )
    if shutil.which("php") is None:
        return "no php (apt-get install " + " ".join(PHP_PACKAGES) + ")"
    mods = subprocess.run(["php", "-m"], capture_output=True, text=True, check=False).stdout
    missing = [
        m for m in ("pgsql", "intl", "xml", "mbstring", "curl", "zip", "gd") if m not in mods
    ]
    return f"php lacks the modules {missing}" if missing else None


def unavailable() -> str | None:
    """Why the real-Moodle lane cannot run here, or None."""
    if not tarball().is_file():
        return f"no Moodle tarball at {tarball()} (set MICROCRED_MOODLE_TARBALL)"
    if shutil.which("psql") is None and shutil.which("pg_isready") is None:
        return "no PostgreSQL client tools"
    try:
        with socket.create_connection((PG["host"], PG["port"]), timeout=2):
            pass
    except OSError:
        return "no PostgreSQL on 127.0.0.1:5432"
    return ensure_php()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _psql(sql: str) -> None:
    subprocess.run(
        ["psql", "-h", PG["host"], "-p", str(PG["port"]), "-U", PG["user"], "-qc", sql],
        check=True,
        capture_output=True,
    )


@dataclass
class Moodle:
    """One running Moodle: its URL, folder, database and what ``moodle.php course`` made."""

    workdir: Path
    port: int = field(default_factory=free_port)
    database: str = field(default_factory=lambda: f"moodle_e2e_{uuid.uuid4().hex[:10]}")
    server: subprocess.Popen[bytes] | None = None
    made: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def root(self) -> Path:
        return self.workdir / "moodle"

    def php(self, action: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run one action of moodle.php; its answer is the JSON on the last line."""
        done = subprocess.run(
            ["php", *PHP_FLAGS, str(RIG / "moodle.php"), action, json.dumps(args or {})],
            cwd=self.root,
            env={**os.environ, "MOODLE_DIR": str(self.root)},
            capture_output=True,
            text=True,
            check=False,
        )
        lines = [ln for ln in done.stdout.splitlines() if ln.strip()]
        if done.returncode != 0 or not lines or not lines[-1].startswith("{"):
            raise RuntimeError(
                f"moodle.php {action} failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                f"{done.stderr[-3000:]}"
            )
        result: dict[str, Any] = json.loads(lines[-1])
        return result

    def _timed(self, name: str, start: float) -> None:
        self.timings[name] = round(time.monotonic() - start, 1)

    def start(self) -> Moodle:
        t = time.monotonic()
        with tarfile.open(tarball()) as tar:
            tar.extractall(self.workdir, filter="tar")
        self._timed("untar", t)
        data = self.workdir / "moodledata"
        data.mkdir()
        (self.root / "config.php").write_text(
            f"""<?php
unset($CFG);
global $CFG;
$CFG = new stdClass();
$CFG->dbtype = 'pgsql';
$CFG->dblibrary = 'native';
$CFG->dbhost = '{PG["host"]}';
$CFG->dbname = '{self.database}';
$CFG->dbuser = '{PG["user"]}';
$CFG->dbpass = '';
$CFG->prefix = 'mdl_';
$CFG->dboptions = ['dbport' => {PG["port"]}];
$CFG->wwwroot = '{self.url}';
$CFG->dataroot = '{data}';
$CFG->directorypermissions = 02777;
$CFG->routerconfigured = false;
// The login form's CSRF token lives in the session, which the page's own asset requests
// race for on a loaded machine ("Invalid login"); a loopback test site does without it.
$CFG->disablelogintoken = true;
require_once(__DIR__ . '/lib/setup.php');
"""
        )
        _psql(f'CREATE DATABASE "{self.database}"')
        t = time.monotonic()
        install = subprocess.run(
            [
                "php",
                *PHP_FLAGS,
                "admin/cli/install_database.php",
                "--agree-license",
                f"--adminpass={ADMIN_PASSWORD}",
                "--adminemail=admin@example.org",
                "--fullname=microcred e2e",
                "--shortname=e2e",
                "--supportemail=admin@example.org",
            ],
            cwd=self.root,
            capture_output=True,
            text=True,
            check=False,
        )
        if install.returncode != 0:
            raise RuntimeError(f"Moodle install failed:\n{install.stdout[-3000:]}")
        self._timed("install", t)
        t = time.monotonic()
        self.php("settings")
        users = [
            {**u, "password": PASSWORD, "email": f"{u['username']}@example.org"}
            for u in (TEACHER, *STUDENTS)
        ]
        self.made = self.php(
            "course",
            {
                "users": users,
                "course": {"fullname": "Data Literacy 101", "shortname": "DL101"},
                "quiz": QUIZ,
                "assignment": ASSIGNMENT,
                "ws": {
                    "user": {
                        "username": "microcredws",
                        "password": PASSWORD,
                        "firstname": "microcred",
                        "lastname": "sync",
                        "email": "microcredws@example.org",
                    },
                    "outsider": {
                        "username": "otherws",
                        "password": PASSWORD,
                        "firstname": "other",
                        "lastname": "client",
                        "email": "otherws@example.org",
                    },
                    "capabilities": WS_CAPABILITIES,
                    "functions": WS_FUNCTIONS,
                },
            },
        )
        self._timed("course", t)
        with (self.workdir / "php-server.log").open("wb") as log:
            self.server = subprocess.Popen(
                ["php", *PHP_FLAGS, "-S", f"127.0.0.1:{self.port}", "-t", "public"],
                cwd=self.root,
                env={**os.environ, "PHP_CLI_SERVER_WORKERS": "4"},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its workers are stopped with it (stop)
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/login/index.php", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.server.poll() is not None:
                raise RuntimeError("Moodle's PHP server did not answer")
            time.sleep(0.3)
        return self

    def stop(self) -> None:
        if self.server is not None:
            # PHP_CLI_SERVER_WORKERS forks workers that outlive their parent: stop the
            # server's own process group (start_new_session), not just its first process.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.server.pid, signal.SIGTERM)
            try:
                self.server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.server.pid, signal.SIGKILL)
                self.server.wait()
            self.server = None
        _psql(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    def query(self, sql: str) -> str:
        """One SQL query on Moodle's database; its rows, one a line (or psql's error)."""
        done = subprocess.run(
            [
                *("psql", "-h", PG["host"], "-p", str(PG["port"]), "-U", PG["user"]),
                *("-d", self.database, "-Atc", sql),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout.strip() or done.stderr.strip()

    def login_failures(self) -> str:
        """Moodle's own record of the last failed logins (user, reason code)."""
        return self.query(
            "SELECT other FROM mdl_logstore_standard_log WHERE eventname LIKE "
            "'%user_login_failed' ORDER BY id DESC LIMIT 3"
        )

    def ws_grants(self) -> tuple[set[str], set[str], bool]:
        """What Moodle itself holds for the sync's web-service user: the functions of its
        external service, the capabilities its roles allow (everything the token can do), and
        whether that service is for authorised users only with this user authorised on it."""
        userid = int(self.made["ws"]["userid"])
        functions = self.query(
            "SELECT f.functionname FROM mdl_external_services_functions f "
            "JOIN mdl_external_tokens t ON t.externalserviceid = f.externalserviceid "
            f"WHERE t.userid = {userid}"
        )
        capabilities = self.query(
            "SELECT rc.capability FROM mdl_role_capabilities rc "
            "JOIN mdl_role_assignments ra ON ra.roleid = rc.roleid "
            f"WHERE ra.userid = {userid} AND rc.permission = 1"
        )
        # One line per service the user's tokens are on: restrictedusers, then whether the
        # user is among the service's authorised users.
        access = self.query(
            "SELECT DISTINCT s.restrictedusers, su.id IS NOT NULL FROM mdl_external_services s "
            "JOIN mdl_external_tokens t ON t.externalserviceid = s.id "
            "LEFT JOIN mdl_external_services_users su "
            f"ON su.externalserviceid = s.id AND su.userid = t.userid WHERE t.userid = {userid}"
        )
        return set(functions.split()), set(capabilities.split()), access == "1|t"

    def ws(self, function: str, token: str | None = None, **params: Any) -> Any:
        """Call a Moodle web-service function (REST, JSON) with the sync user's token."""
        data = {
            "wstoken": token or self.made["ws"]["token"],
            "wsfunction": function,
            "moodlewsrestformat": "json",
            **params,
        }
        answer = httpx.post(self.url + "/webservice/rest/server.php", data=data, timeout=60)
        answer.raise_for_status()
        return answer.json()


def main() -> None:
    reason = unavailable()
    if reason:
        raise SystemExit(f"cannot run Moodle here: {reason}")
    work = Path(tempfile.mkdtemp(prefix="moodle-e2e-"))
    moodle = Moodle(work)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # clean up on kill too
    try:
        moodle.start()
        site = {"url": moodle.url, "workdir": str(work), "database": moodle.database}
        print(json.dumps({**site, "timings": moodle.timings, "made": moodle.made}, indent=1))
        print(f"admin / {ADMIN_PASSWORD}; users: {PASSWORD}. Ctrl-C stops and drops it.")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        moodle.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
