"""``microcred --help`` and friends read as plain help (issue #17, CLI)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from sqlalchemy import Engine
from typer.testing import CliRunner

from service.cli import app
from service.settings import Settings


def _commands(group: typer.Typer, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for info in group.registered_commands:
        name = info.name or (info.callback.__name__ if info.callback else "")
        yield (*path, name.replace("_", "-"))
    for sub in group.registered_groups:
        assert sub.typer_instance is not None and sub.name
        yield from _commands(sub.typer_instance, (*path, sub.name))


ALL = sorted(set(_commands(app)))


@pytest.mark.parametrize("path", ALL, ids=lambda p: " ".join(p) or "microcred")
def test_help_has_no_type_labels_and_keeps_sentences_whole(path: tuple[str, ...]) -> None:
    out = CliRunner().invoke(app, [*path, "--help"], terminal_width=200)
    assert out.exit_code == 0, out.output
    assert not re.search(r"<(bool|str|int|float|path|list\[str\])>", out.output), out.output
    assert "{" not in out.output.split("\n", 1)[0], "usage line shows {ARG}"


def test_course_help_promises_only_commands_that_exist() -> None:
    out = CliRunner().invoke(app, ["course", "--help"], terminal_width=200).output
    said = out.split("Commands:", 1)[0]
    commands = [
        (info.name or "")
        for g in app.registered_groups
        if g.name == "course" and g.typer_instance
        for info in g.typer_instance.registered_commands
    ]
    for word in ("connect", "source"):
        if not any(word in c for c in commands):
            assert word not in said, said


def test_a_sentence_of_a_docstring_is_not_broken_where_the_source_broke_it() -> None:
    out = CliRunner().invoke(app, ["platform", "activate", "--help"], terminal_width=200).output
    assert (
        "Activate a platform that arrived by dynamic registration, after showing where it came "
        "from and asking" in out
    )


@pytest.fixture
def cli_env(cli_env: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("MICROCRED_LOG_LEVEL", "INFO")  # read when a command first asks
    return cli_env


def test_commands_print_no_alembic_info_lines(tmp_path: Path) -> None:
    env = os.environ | {
        "MICROCRED_DATA_DIR": str(tmp_path),
        "MICROCRED_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "MICROCRED_LOG_LEVEL": "INFO",
    }
    out = subprocess.run(
        [sys.executable, "-m", "service.cli", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    said = (out.stdout + out.stderr).splitlines()
    assert "database is at the latest migration" in out.stdout
    assert not [line for line in said if line.startswith("INFO alembic")], out.stderr


POLICY = """\
defaults:
  levels:
    beginning: 50%
    intermediate: 65%
    advanced: 85%
bounds:
  levels:
    advanced: {threshold: {min: 80%, max: 95%}}
"""


@pytest.mark.usefixtures("cli_env")
def test_institution_policy_import_show_export(engine: Engine, tmp_path: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["policy", "institution", "show"])
    assert out.exit_code == 2 and "no institution policy yet" in out.output
    assert "policy institution import" in out.output
    src = tmp_path / "institution.yaml"
    src.write_text(POLICY)
    out = runner.invoke(app, ["policy", "institution", "import", str(src), "--note", "first"])
    assert out.exit_code == 0, out.output
    assert "version 1 saved" in out.output
    out = runner.invoke(app, ["policy", "institution", "show"])
    assert out.exit_code == 0 and "version 1" in out.output and "85%" in out.output
    dest = tmp_path / "out.json"
    out = runner.invoke(app, ["policy", "institution", "export", "-o", str(dest)])
    assert out.exit_code == 0, out.output
    assert '"advanced"' in dest.read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(POLICY.replace("advanced: 85%", "advanced: 99%"))
    out = runner.invoke(app, ["policy", "institution", "import", str(bad)])
    assert out.exit_code == 2 and "advanced" in out.output
    out = runner.invoke(app, ["policy", "institution", "import", str(tmp_path / "none.yaml")])
    assert out.exit_code == 2 and "cannot be read" in out.output


@pytest.mark.usefixtures("cli_env")
def test_the_duplicate_platform_hint_names_commands_that_exist(engine: Engine) -> None:
    add = [
        "platform",
        "add",
        "--issuer",
        "https://moodle.example.edu",
        "--client-id",
        "abc",
        "--auth-url",
        "https://moodle.example.edu/mod/lti/auth.php",
        "--token-url",
        "https://moodle.example.edu/mod/lti/token.php",
        "--jwks-url",
        "https://moodle.example.edu/mod/lti/certs.php",
        "--deployment",
        "1",
    ]
    runner = CliRunner()
    first = runner.invoke(app, add)
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, add)
    assert again.exit_code == 2 and "hint:" in again.output
    assert "remove" not in again.output.lower(), "there is no remove command"
    named = re.findall(r"`microcred ([a-z-]+(?: [a-z-]+)?)", again.output)
    assert named
    for command in named:
        assert runner.invoke(app, [*command.split(), "--help"]).exit_code == 0, command
