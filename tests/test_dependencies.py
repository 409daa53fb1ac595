"""pyproject.toml declares what the service imports, and the locks pin what it declares.

A user installs only ``[project].dependencies`` (from requirements/runtime.txt); the test
environment adds the ``test`` extra. A package the service imports but does not declare works
in the test environment when a test tool happens to bring it, and breaks for the user: these
tests name it. scripts/smoke.sh checks the same from the other side, by installing and running.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
RUNTIME = [Requirement(r) for r in PYPROJECT["dependencies"]]
# The locks' target (scripts/lock.sh): CPython 3.11 on Linux x86_64.
LOCK_ENV = {"python_version": "3.11", "sys_platform": "linux", "platform_machine": "x86_64"}
REFRESH = "run `bash scripts/lock.sh` and commit requirements/*.txt"

# Declared runtime dependencies that the service uses without importing them by name.
USED_WITHOUT_IMPORT = {
    "psycopg": "the PostgreSQL driver SQLAlchemy loads for postgresql+psycopg:// URLs",
    "python-multipart": "FastAPI parses form posts with it",
}


@functools.cache
def _top_level_imports(root: Path) -> dict[str, set[str]]:
    """Top-level module → the files of ``root`` that import it (absolute imports only)."""
    found: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def _third_party(modules: dict[str, set[str]]) -> dict[str, set[str]]:
    skip = set(sys.stdlib_module_names) | {"__future__", "service", "tests"}
    return {m: files for m, files in modules.items() if m not in skip}


@functools.cache
def _distributions() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _providers(module: str) -> set[str]:
    dists = _distributions().get(module, [])
    return {canonicalize_name(d) for d in dists}


def test_every_package_the_service_imports_is_a_declared_runtime_dependency() -> None:
    declared = {canonicalize_name(r.name) for r in RUNTIME}
    imported = _third_party(_top_level_imports(ROOT / "service"))
    assert "sqlalchemy" in imported and "fastapi" in imported  # the scan sees imports
    undeclared = {
        module: (sorted(_providers(module)) or ["not installed"], sorted(files)[:3])
        for module, files in imported.items()
        if not _providers(module) & declared
    }
    assert not undeclared, (
        f"service/ imports packages that pyproject.toml does not declare: {undeclared} "
        f"(module: (distributions, files)). Add them to [project].dependencies, then {REFRESH}."
    )


def test_every_declared_runtime_dependency_is_used_by_the_service() -> None:
    imported = _third_party(_top_level_imports(ROOT / "service"))
    provided = set().union(*(_providers(m) for m in imported))
    unused = [
        r.name
        for r in RUNTIME
        if canonicalize_name(r.name) not in provided
        and canonicalize_name(r.name) not in USED_WITHOUT_IMPORT
    ]
    assert not unused, (
        f"pyproject.toml declares runtime dependencies that service/ never imports: {unused}. "
        "What only tests or bench use belongs in the `test` or `bench` extra."
    )


def _runtime_closure() -> set[str]:
    """The distributions a user's install brings: pyproject's runtime requirements and
    theirs, recursively (with the extras asked for, as installed here)."""
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(r.name, frozenset(r.extras)) for r in RUNTIME if not r.marker or r.marker.evaluate()]
    while todo:
        name, extras = todo.pop()
        if (canonicalize_name(name), extras) in seen:
            continue
        seen.add((canonicalize_name(name), extras))
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue  # not installed here: it provides nothing that was imported
        for text in requires:
            req = Requirement(text)
            envs = [{"extra": extra} for extra in extras | {""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in envs):
                todo.append((req.name, frozenset(req.extras)))
    return {name for name, _ in seen}


IMPORT_EVERYTHING = """
import importlib, json, pkgutil, sys, sysconfig
before = set(sys.modules)  # what the interpreter loaded at start-up (site, .pth files)
import service
for info in pkgutil.walk_packages(service.__path__, "service."):
    if ".migrations." not in info.name + ".":
        importlib.import_module(info.name)
# the modules loaded from site-packages: the installed distributions'
sites = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
print(json.dumps(sorted({n.split(".")[0] for n, m in list(sys.modules.items())
                         if n not in before and any(
                             str(getattr(m, "__file__", None) or "").startswith(s + "/")
                             for s in sites)})))
"""


def test_importing_the_service_loads_only_packages_a_user_install_brings() -> None:
    # What the libraries themselves import when the service imports them (SQLAlchemy's
    # asyncio support imports greenlet, for one), not only what service/ names.
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERYTHING],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    loaded = set(json.loads(out))
    closure = _runtime_closure()
    assert {"sqlalchemy", "fastapi", "uvicorn", "h11"} <= closure  # the walk follows requirements
    outside = {m: sorted(_providers(m)) for m in sorted(loaded) if not _providers(m) & closure}
    assert not outside, (
        "importing the service loads modules that a user's install would not have (they come "
        f"from the test tools here): {outside}. Declare what the service needs in "
        f"[project].dependencies, then {REFRESH}."
    )


PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def _lock(name: str) -> dict[str, str]:
    """Pins of requirements/<name>; every one must carry hashes."""
    text = (ROOT / "requirements" / name).read_text()
    assert "bash scripts/lock.sh" in text.splitlines()[1], f"{name} was not made by scripts/lock.sh"
    pins: dict[str, str] = {}
    for block in re.split(r"\n(?=\S)", text):
        match = PIN.match(block)
        if match:
            assert "--hash=sha256:" in block, f"{name}: {match.group(0)} has no hash; {REFRESH}"
            pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def _unmet(requirements: list[Requirement], pins: dict[str, str]) -> list[str]:
    unmet = []
    for req in requirements:
        if req.marker and not req.marker.evaluate(LOCK_ENV | {"extra": ""}):
            continue
        pinned = pins.get(canonicalize_name(req.name))
        if pinned is None or not req.specifier.contains(pinned, prereleases=True):
            unmet.append(f"{req} (locked: {pinned or 'nothing'})")
    return unmet


@pytest.mark.parametrize(
    ("lock", "extras"), [("runtime.txt", []), ("test.txt", ["test"])], ids=["runtime", "test"]
)
def test_the_locks_pin_what_pyproject_declares(lock: str, extras: list[str]) -> None:
    wanted = RUNTIME + [
        Requirement(r) for extra in extras for r in PYPROJECT["optional-dependencies"][extra]
    ]
    unmet = _unmet(wanted, _lock(lock))
    assert not unmet, f"requirements/{lock} is out of date with pyproject.toml: {unmet}; {REFRESH}"


def test_the_test_lock_keeps_the_runtime_pins() -> None:
    runtime, test = _lock("runtime.txt"), _lock("test.txt")
    differ = {name: (v, test.get(name)) for name, v in runtime.items() if test.get(name) != v}
    assert not differ, f"the test lock runs other runtime versions: {differ}; {REFRESH}"


def test_every_package_the_tests_import_is_declared_for_them() -> None:
    declared = {canonicalize_name(r.name) for r in RUNTIME} | {
        canonicalize_name(Requirement(r).name) for r in PYPROJECT["optional-dependencies"]["test"]
    }
    imported = _third_party(_top_level_imports(ROOT / "tests"))
    assert "pytest" in imported
    undeclared = {m: sorted(_providers(m)) for m in imported if not _providers(m) & declared}
    assert not undeclared, (
        f"tests/ import packages that neither the runtime nor the `test` extra declares: "
        f"{undeclared}. Add them to the `test` extra in pyproject.toml, then {REFRESH}."
    )
