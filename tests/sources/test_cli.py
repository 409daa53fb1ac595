"""The `microcred token create` and `microcred import csv` commands, end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import select
from typer.testing import CliRunner

from service import cli
from service.db.engine import session
from service.db.models import ApiToken, Evidence
from tests.sources.helpers import world


def test_token_create_prints_the_token_once(runner: CliRunner, engine: Engine) -> None:
    args = ["token", "create", "--name", "proctor", "--scope", "evidence:write"]
    r = runner.invoke(cli.app, args)
    assert r.exit_code == 0, r.output
    plaintext = r.output.strip().splitlines()[-1]
    with session(engine) as s:
        [row] = s.exec(select(ApiToken)).all()
    assert plaintext.startswith("mct_") and plaintext not in row.token_hash
    r = runner.invoke(cli.app, ["token", "create", "--name", "proctor"])
    assert r.exit_code == 2 and "exists" in r.output
    r = runner.invoke(cli.app, ["token", "create", "--name", "x", "--scope", "root"])
    assert r.exit_code == 2 and "unknown scope" in r.output


def test_import_csv_reports_lines_and_is_all_or_nothing(
    runner: CliRunner, engine: Engine, tmp_path: Path
) -> None:
    w = world(engine)
    f = tmp_path / "r.csv"
    f.write_text("sub,kind,item_id,score,max_score\nu-ada,quiz,q1,3,4\n42,quiz,q1,x,4\n")
    args = ["import", "csv", "--course", str(w.course_id), str(f)]
    r = runner.invoke(cli.app, args)
    assert r.exit_code == 1
    assert "line 3, column score: 'x' is not a number" in r.output
    assert "NOT imported" in r.output
    r = runner.invoke(cli.app, [*args, "--dry-run"])
    assert r.exit_code == 0 and "dry run, nothing written: 1 new" in r.output
    with session(engine) as s:
        assert s.exec(select(Evidence)).all() == []
    r = runner.invoke(cli.app, [*args, "--partial"])
    assert r.exit_code == 0 and "1 new" in r.output
    r = runner.invoke(cli.app, [*args, "--partial"])
    assert "0 new, 0 updated, 1 unchanged" in r.output
    with session(engine) as s:
        assert len(s.exec(select(Evidence)).all()) == 1


def test_source_add_keeps_the_token_encrypted_and_sync_errors_are_clear(
    runner: CliRunner, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world(engine)
    monkeypatch.setenv("MICROCRED_SOURCE_TOKEN", "s3cret-moodle-token")
    args = ["source", "add", "--name", "moodle", "--kind", "moodle"]
    r = runner.invoke(cli.app, [*args, "--base-url", "https://moodle.test"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli.app, [*args, "--base-url", "https://moodle.test"])
    assert r.exit_code == 2 and "exists" in r.output
    r = runner.invoke(
        cli.app,
        ["source", "add", "--name", "x", "--kind", "blackboard", "--base-url", "https://x.test"],
    )
    assert r.exit_code == 2 and "moodle, canvas" in r.output
    r = runner.invoke(cli.app, ["source", "list"])
    assert "moodle\tmoodle\thttps://moodle.test\tactive" in r.output
    assert "s3cret" not in r.output
    with session(engine) as s:
        raw = s.connection().exec_driver_sql("SELECT access_token FROM source_connection").scalar()
    assert "s3cret" not in str(raw)
    r = runner.invoke(cli.app, ["sync", "--course", str(w.course_id), "--source", "nope"])
    assert r.exit_code == 2 and "no source connection named 'nope'" in r.output
