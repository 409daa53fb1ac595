"""``microcred evaluate`` as a user runs it: example files, JSON out, errors with lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from service.cli import app
from service.policies import files
from tests.timing import HANG

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["evaluate", *args])
    return result.exit_code, result.stdout, result.stderr


def decisions(out: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["learner"], d["competency"]): d for d in json.loads(out)["decisions"]}


def test_course_example() -> None:
    code, out, err = run(
        "--policy",
        str(EXAMPLES / "course-policy.yaml"),
        "--evidence",
        str(EXAMPLES / "course-evidence.yaml"),
    )
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert data["evaluated_at"] == "2026-11-28T12:00:00Z"
    got = {key: d["level"] for key, d in decisions(out).items()}
    assert got == {
        ("ada", "data-cleaning"): "advanced",
        ("ada", "statistical-reasoning"): "intermediate",
        ("alan", "data-cleaning"): "beginning",
        ("alan", "statistical-reasoning"): "none",
        ("grace", "data-cleaning"): "intermediate",
        ("grace", "statistical-reasoning"): "intermediate",
    }
    grace = decisions(out)[("grace", "data-cleaning")]
    assert grace["failed"] == [
        "Advanced needs a supervised, identity-verified sitting; none of your 4 results was such "
        "a sitting; the best-verified was Final exam, part A: unsupervised (signed in "
        "through the LMS)."
    ]
    alan = decisions(out)[("alan", "data-cleaning")]
    assert (
        'Intermediate needs every rubric criterion rated "proficient" or above; '
        'Project: handling missing values was rated "developing".'
    ) in alan["failed"]
    assert data["summary"]["levels"] == {
        "none": 1,
        "beginning": 1,
        "intermediate": 3,
        "advanced": 1,
    }
    stacks = {(s["learner"], s["stack"]): s["awarded"] for s in data["stacks"]}
    assert stacks == {
        ("ada", "Data Analysis Foundations"): True,
        ("alan", "Data Analysis Foundations"): False,
        ("grace", "Data Analysis Foundations"): True,
    }
    assert {p["competency"] for p in data["policies"]} == {"data-cleaning", "statistical-reasoning"}


def test_quiz_example_in_json() -> None:
    code, out, _ = run(
        "--policy",
        str(EXAMPLES / "quiz-policy.json"),
        "--evidence",
        str(EXAMPLES / "quiz-evidence.json"),
        "--now",
        "2026-10-01T00:00:00Z",
    )
    assert code == 0
    got = decisions(out)
    assert {k[0]: d["level"] for k, d in got.items()} == {
        "u-101": "advanced",  # two supervised results of 90% or more
        "u-102": "none",  # attempt 3 beyond the limit; quiz B too old: one result, n = 2
        "u-103": "none",
    }
    u102 = got[("u-102", "spreadsheet-formulas")]
    assert [x["why"] for x in u102["excluded"]] == [
        "it is from 2025-06-01; only the last 365 days count",
        "only 2 attempts are allowed",
        "another attempt counts (the last one)",
    ]


def test_now_defaults_to_the_clock(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("levels: {beginning: 50%}\n")
    (tmp_path / "e.yaml").write_text("- {learner: a, item: q, score: 6, max: 10}\n")
    code, out, _ = run("--policy", str(tmp_path / "p.yaml"), "--evidence", str(tmp_path / "e.yaml"))
    assert code == 0
    [decision] = json.loads(out)["decisions"]
    assert (decision["competency"], decision["level"]) == ("competency", "beginning")


BAD_POLICY = """\
competency: stats
levels:
  beginning: 50%
  advanced:
    threshold: 85%
    verification: proctord
"""
EVIDENCE = """\
evidence:
  - learner: a
    competency: stats
    item: q1
    score: 5
    max: 10
  - learner: b
    competency: stats
    item: q1
    score: 12
    max: 10
"""


@pytest.mark.parametrize(
    ("policy", "evidence", "expected"),
    [
        (
            BAD_POLICY,
            EVIDENCE,
            "p.yaml, line 6, field \"levels.advanced.verification\": 'proctord' is not one of",
        ),
        (
            "levels:\n  beginning: 50%\n  intermediate: {treshold: 60}\n",
            EVIDENCE,
            'p.yaml, line 3, field "levels.intermediate.treshold": '
            "unknown field; did you mean 'threshold'?",
        ),
        (
            "levels: {beginning: 50%}\n",
            EVIDENCE,
            'e.yaml, line 10, field "evidence[1].score": '
            "must be between 0 and the maximum 10, not 12",
        ),
        (
            "levels: {beginning: 50%\n",
            EVIDENCE,
            "p.yaml, line 2: not valid YAML",
        ),
        (
            "competency: writing\nlevels: {beginning: 50%}\n",
            EVIDENCE.replace("12", "2"),
            "e.yaml, line 3, field \"evidence[0].competency\": no policy for competency 'stats'",
        ),
        (
            "levels: {beginning: {threshold: 10%, floor: mastered}}\n",
            "- {learner: a, item: c, rubric: {low: 1, high: 2}, rating: low}\n",
            'p.yaml, line 1, field "levels.beginning.floor": asks for "mastered"',
        ),
        (
            "levels: {beginning: 50%}\n",
            "- {learner: a, item: q, score: 1, max: 2, attempt: 1}\n"
            "- {learner: a, item: q, score: 2, max: 2, attempt: 1}\n",
            "e.yaml, line 2, field \"[1].attempt\": 'q' attempt 1 appears twice",
        ),
        (
            "levels:\n  beginning: 50%\n  intermediate: 60%\n  intermediate: 70%\n",
            EVIDENCE,
            "p.yaml, line 4, field \"levels.intermediate\": 'intermediate' is written twice "
            "(first on line 3); keep one",
        ),
        (
            "levels: {beginning: 50%}\n",
            "learners:\n  ada:\n    - {item: q, score: 5, max: 10}\n"
            "  bob:\n    - {item: q, score: 6, max: 10}\n"
            "  ada:\n    - {item: q, score: 9, max: 10}\n",
            "e.yaml, line 6, field \"learners.ada\": 'ada' is written twice (first on line 2)",
        ),
        ("", EVIDENCE, "p.yaml: the file is empty"),
    ],
)
def test_invalid_files_give_file_line_field_and_exit_2(
    tmp_path: Path, policy: str, evidence: str, expected: str
) -> None:
    (tmp_path / "p.yaml").write_text(policy)
    (tmp_path / "e.yaml").write_text(evidence)
    code, out, err = run(
        "--policy", str(tmp_path / "p.yaml"), "--evidence", str(tmp_path / "e.yaml")
    )
    assert code == 2
    assert out == ""
    assert err.startswith("error: ")
    assert expected in err


def test_json_syntax_error_has_its_line(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text('{"levels": {"beginning": "50%",\n  "intermediate": 60,}}\n')
    (tmp_path / "e.json").write_text("[]")
    code, _, err = run("--policy", str(tmp_path / "p.json"), "--evidence", str(tmp_path / "e.json"))
    assert code == 2
    assert "p.json, line 2: not valid JSON" in err


def test_a_key_written_twice_in_json_is_refused_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text(
        '{"levels": {"beginning": "50%",\n  "advanced": "80%",\n  "beginning": "40%"}}\n'
    )
    (tmp_path / "e.json").write_text("[]")
    code, _, err = run("--policy", str(tmp_path / "p.json"), "--evidence", str(tmp_path / "e.json"))
    assert code == 2
    assert (
        "p.json, line 3, field \"levels.beginning\": 'beginning' is written twice (first on line 1)"
        in err
    )


def test_yaml_merge_keys_may_be_overridden(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "base: &b {beginning: 50%, intermediate: 60%}\nlevels:\n  <<: *b\n  intermediate: 70%\n"
    )
    loaded = files.load(tmp_path / "p.yaml")
    assert loaded.data["levels"] == {"beginning": "50%", "intermediate": "70%"}


def test_bad_now_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("levels: {beginning: 50%}\n")
    (tmp_path / "e.yaml").write_text("[]\n")
    code, _, err = run(
        "--policy",
        str(tmp_path / "p.yaml"),
        "--evidence",
        str(tmp_path / "e.yaml"),
        "--now",
        "today",
    )
    assert code == 2 and "--now: must be a date and time" in err
    code, _, err = run(
        "--policy", str(tmp_path / "nope.yaml"), "--evidence", str(tmp_path / "e.yaml")
    )
    assert code == 2 and "nope.yaml: no such file" in err


def test_the_installed_command_runs_as_a_process() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "service.cli",
            "evaluate",
            "--policy",
            str(EXAMPLES / "quiz-policy.json"),
            "--evidence",
            str(EXAMPLES / "quiz-evidence.json"),
            "--now",
            "2026-10-01T00:00:00Z",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=HANG,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["summary"]["decisions"] == 3
