"""How fast the evidence store takes a CSV import: first import, re-import (all unchanged),
and a re-import where every score changed (updates + revisions), each after its dry run.
SQLite file by default; set MICROCRED_BENCH_DB to a PostgreSQL URL to measure there.

    .venv/bin/python bench/sources_import.py [ROWS]
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service import secretbox
from service.db import migrate
from service.db.engine import make_engine, session
from service.sources import csvimport
from tests import factories

NOW = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    learners = 100
    secretbox.configure(b"bench-master-key-" + b"0" * 32)
    url = os.environ.get("MICROCRED_BENCH_DB") or (f"sqlite:///{tempfile.mkdtemp()}/bench.db")
    migrate.upgrade(url)
    engine = make_engine(url)
    with session(engine, write=True) as s:
        plat = factories.platform(s)
        course = factories.course(s, factories.deployment(s, plat))
        for i in range(learners):
            factories.person(s, plat, sub=f"u{i}")
        s.commit()
        course_id = course.id or 0

    def csv(offset: int) -> bytes:
        lines = ["sub,kind,item_id,score,max_score,attempt"]
        lines += [
            f"u{i % learners},quiz,q{i // learners},{(i + offset) % 10},10,1" for i in range(rows)
        ]
        return ("\n".join(lines) + "\n").encode()

    steps: tuple[tuple[str, bytes, csvimport.Mode], ...] = (
        ("dry run, all new", csv(0), "dry_run"),
        ("first import", csv(0), "all"),
        ("dry run, unchanged", csv(0), "dry_run"),
        ("re-import, unchanged", csv(0), "all"),
        ("dry run, all changed", csv(1), "dry_run"),
        ("re-import, all changed", csv(1), "all"),
    )
    for label, data, mode in steps:
        start = time.perf_counter()
        with session(engine, write=True) as s:
            report = csvimport.import_csv(s, course_id=course_id, data=data, mode=mode, now=NOW)
            s.commit()
        took = time.perf_counter() - start
        print(
            f"{label:24s} {rows} rows in {took:6.2f} s = {rows / took:7.0f} rows/s "
            f"(new {report.new}, updated {report.updated}, unchanged {report.unchanged})"
        )
    start = time.perf_counter()
    csvimport.parse(csv(0))
    took = time.perf_counter() - start
    print(f"{'parse only':24s} {rows} rows in {took:6.2f} s = {rows / took:7.0f} rows/s")
    engine.dispose()


if __name__ == "__main__":
    main()
