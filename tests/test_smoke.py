"""The smoke step (scripts/smoke.py) fails, with a message that says what to do, when a
runtime dependency is missing from the environment, and passes when nothing is missing.

Each test builds a throwaway environment from this one (a venv whose site-packages links to
this environment's packages, less the distribution removed; no download), so the check
runs offline and costs a demo start, not an install.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def throwaway_env(where: Path, *, without: str | None) -> Path:
    """A venv with this environment's packages but ``without``; returns its microcred."""
    venv.EnvBuilder(with_pip=False, symlinks=True).create(where)
    python = where / "bin" / "python"
    target = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    removed: set[str] = set()
    if without is not None:
        files = importlib.metadata.distribution(without).files or []
        removed = {f.parts[0] for f in files if f.parts and f.parts[0] != ".."}
        assert removed, f"{without} installs no files here"
    source = Path(sysconfig.get_paths()["purelib"])
    for entry in source.iterdir():
        if entry.name not in removed:
            (target / entry.name).symlink_to(entry)
    # The console script as pip writes it, from microcred's own entry point.
    (entry_point,) = importlib.metadata.entry_points(group="console_scripts", name="microcred")
    module, func = entry_point.value.split(":")
    launcher = where / "bin" / "microcred"
    launcher.write_text(
        f"#!{python}\nimport sys\nfrom {module} import {func}\nsys.exit({func}())\n"
    )
    launcher.chmod(0o755)
    return launcher


def smoke(microcred: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "smoke.py"), "--microcred", str(microcred)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_smoke_fails_clearly_when_a_runtime_dependency_is_missing(tmp_path: Path) -> None:
    # orjson: imported when the service starts, and brought by no test tool's absence here
    result = smoke(throwaway_env(tmp_path / "env", without="orjson"))
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert "smoke: FAILED: microcred demo exited with status 1 before it served" in out
    assert "No module named 'orjson'" in out
    assert "A runtime dependency is missing from the installed environment." in out
    assert "declare the distribution that provides it in pyproject.toml" in out
    assert "run `bash scripts/lock.sh`" in out


@pytest.mark.slow
def test_smoke_names_any_missing_module(tmp_path: Path) -> None:
    result = smoke(throwaway_env(tmp_path / "env", without="segno"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "ModuleNotFoundError: No module named 'segno'" in result.stdout
    assert "A runtime dependency is missing" in result.stdout


@pytest.mark.slow
def test_smoke_launches_as_a_learner_when_nothing_is_missing(tmp_path: Path) -> None:
    result = smoke(throwaway_env(tmp_path / "env", without=None))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "smoke: OK" in result.stdout
    assert "learner launch over HTTP: Amara Okafor's page at http://127.0.0.1:" in result.stdout
    assert "/app shows levels " in result.stdout
