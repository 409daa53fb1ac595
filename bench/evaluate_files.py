"""``microcred evaluate`` on a large evidence file: where the time goes before the rules.

Writes a policy and an evidence file of N rows (default 10,000: 1,000 learners x 10 quiz
attempts, flat list as in docs/examples/quiz-evidence.json), in JSON and in YAML, then
times, per format, best of ``--repeat``:

- ``load``: reading the file as the command does now (``policies.files.load``; the node
  tree that maps fields to lines is built only when an error needs a line);
- ``load + node tree``: the same plus composing PyYAML's node tree with its pure-Python
  loader, what every valid file paid before (the reader built the tree eagerly for line
  numbers); "before" is the command's time with that tree added;
- ``evaluate``: the whole command without printing (``policies.dryrun.run``);
- ``error``: a file whose last row is invalid, so the tree is built (libyaml's composer
  where PyYAML has it) to name its line.

CPU time of the process (``time.process_time``): the machine is shared.

Run: python bench/evaluate_files.py [--rows 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml

from service.policies import dryrun, files

POLICY = {
    "competency": "spreadsheet-formulas",
    "aggregation": "average",
    "levels": {"beginning": "50%", "intermediate": "70%", "advanced": "90%"},
    "max_attempts": 3,
}


def _rows(n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        out.append(
            {
                "learner": f"u-{i // 10}",
                "item": f"quiz-{i % 5}",
                "label": f"Quiz {i % 5}",
                "score": 10 + (i * 7) % 11,
                "max": 20,
                "attempt": 1 + (i // 5) % 2,
                "at": "2026-09-10T10:00:00Z",
            }
        )
    return out


def _best(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        fn()
        best = min(best, time.process_time() - started)
    return best


def _eager(path: Path) -> None:
    """What the reader did for every file before: parse, then compose the node tree with
    PyYAML's pure-Python loader (``yaml.SafeLoader``)."""
    files.load(path)
    assert yaml.compose(path.read_text(), Loader=yaml.SafeLoader) is not None


def _error(path: Path) -> None:
    try:
        dryrun.run(Path(os.environ["BENCH_POLICY"]), path, now="2026-11-28T12:00:00Z")
    except files.FileError as exc:
        assert exc.line is not None
    else:  # pragma: no cover - the file is built to fail
        raise AssertionError("the bad row was accepted")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    policy = work / "policy.json"
    policy.write_text(json.dumps(POLICY))
    os.environ["BENCH_POLICY"] = str(policy)
    rows = _rows(args.rows)
    bad = [*rows[:-1], {**rows[-1], "score": "lots"}]
    print(f"load average {os.getloadavg()[0]:.2f}")
    for fmt in ("json", "yaml"):
        good, wrong = work / f"evidence.{fmt}", work / f"bad.{fmt}"
        if fmt == "json":
            good.write_text(json.dumps(rows, indent=1))
            wrong.write_text(json.dumps(bad, indent=1))
        else:
            good.write_text(yaml.safe_dump(rows, sort_keys=False))
            wrong.write_text(yaml.safe_dump(bad, sort_keys=False))
        load = _best(lambda g=good: files.load(g), args.repeat)  # type: ignore[misc]
        eager = _best(lambda g=good: _eager(g), args.repeat)  # type: ignore[misc]
        run = _best(
            lambda g=good: dryrun.run(policy, g, now="2026-11-28T12:00:00Z"),  # type: ignore[misc]
            args.repeat,
        )
        err = _best(lambda w=wrong: _error(w), args.repeat)  # type: ignore[misc]
        print(
            f"{fmt}: {args.rows} rows ({good.stat().st_size // 1024} KB): load {load:.2f} s, "
            f"load + node tree {eager:.2f} s, evaluate {run:.2f} s "
            f"(before: ~{run - load + eager:.2f} s), with an error on the last row {err:.2f} s "
            f"(CPU, best of {args.repeat}; load average {os.getloadavg()[0]:.2f})"
        )


if __name__ == "__main__":
    main()
