"""Award latency against a real Moodle 5.1: from a grade saved in Moodle to the credential
issued, for a learner who never opens the tool, with the default sync interval.

Each round is one run of the real-Moodle lane (tests/moodle: a fresh Moodle from the rig,
microcred registered through Moodle's UI, `microcred serve` with its in-process worker).
Its last journey step has the teacher grade the rubric of a student who never launches and
waits until the scheduled sync has brought her credentials; the lane records the time from
the grade to the last of those credentials (``award_latency_seconds`` in timings.json).
This script runs the lane ROUNDS times and prints each figure with the machine's load.

    .venv/bin/python bench/moodle_latency.py [ROUNDS]

Needs what the lane needs (the Moodle tarball, PHP 8.2, PostgreSQL, Chromium).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTEST_ARGS = ["-q", "-x", "-p", "no:cacheprovider", "-m", "moodle", "tests/moodle"]


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def one_round(n: int) -> dict[str, float]:
    shots = Path(tempfile.mkdtemp(prefix=f"moodle-latency-{n}-"))
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *PYTEST_ARGS],
        cwd=ROOT,
        env={**os.environ, "MICROCRED_MOODLE_LANE": "1", "MICROCRED_MOODLE_SHOTS": str(shots)},
        capture_output=True,
        text=True,
        check=False,
    )
    figures = shots / "moodle-e2e-shots" / "timings.json"
    if done.returncode != 0 or not figures.exists():
        raise SystemExit(f"round {n}: the lane failed\n{done.stdout[-4000:]}")
    out: dict[str, float] = json.loads(figures.read_text())
    out["lane_seconds"] = round(time.monotonic() - started, 1)
    return out


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    latencies = []
    for n in range(1, rounds + 1):
        before = load()
        figures = one_round(n)
        latencies.append(figures["award_latency_seconds"])
        print(
            f"round {n}: award latency {figures['award_latency_seconds']:.1f} s; lane "
            f"{figures['lane_seconds']:.0f} s (Moodle install {figures['install']:.0f} s); "
            f"load average before {before}, after {load()}",
            flush=True,
        )
    print(
        f"award latency over {rounds} rounds: median {statistics.median(latencies):.1f} s, "
        f"max {max(latencies):.1f} s (target < 120 s)"
    )


if __name__ == "__main__":
    main()
