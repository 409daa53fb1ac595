"""Workers SIGKILLed at random points: 0 lost, 0 duplicates, 0 early retries (R1)."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from tests.conftest import LANE
from tests.delivery import killharness
from tests.delivery.conftest import credly_repo, enqueue_many, statuses, unfinished
from tests.delivery.fakes import FakeCredly

# A few faults on top of the kills, with short Retry-After values to keep the run short.
FAULTS = {
    "500_applied": 0.02,
    "timeout_applied": 0.01,
    "reset_applied": 0.01,
    "429": 0.02,
    "500": 0.02,
}


def _run(
    engine: Engine,
    database_url: str,
    master_key: bytes,
    fake: FakeCredly,
    *,
    jobs: int,
    workers: int,
    kill_every_rows: float,
) -> killharness.Report:
    fake.configure(mix=FAULTS, ra_max=1, hang_seconds=1.0, latency_ms=5, seed=3)
    credly_repo(engine, fake)
    enqueue_many(engine, jobs)
    report = killharness.run(
        engine,
        database_url,
        master_key,
        fake,
        jobs=jobs,
        workers=workers,
        kill_every_rows=kill_every_rows,
        unfinished=unfinished,
        statuses=statuses,
    )
    print(report)
    return report


def _check(report: killharness.Report, *, min_kills: int) -> None:
    assert report.lost == 0, report
    assert report.duplicates == 0, report
    assert report.violations == 0, report
    assert report.statuses == {"delivered": report.jobs}, report
    assert report.kills >= min_kills, report
    assert report.lost_leases > 0, report  # kills did land mid-delivery


@pytest.mark.slow
@pytest.mark.skipif(LANE != "sqlite", reason="SQLite lane (the PostgreSQL lane runs its own)")
def test_kill_sqlite_2000_deliveries(
    engine: Engine, database_url: str, master_key: bytes, fake: FakeCredly
) -> None:
    report = _run(
        engine, database_url, master_key, fake, jobs=2000, workers=2, kill_every_rows=2000 / 150
    )
    _check(report, min_kills=100)


@pytest.mark.slow
@pytest.mark.postgres
def test_kill_postgres_2000_deliveries_4_workers(
    engine: Engine, database_url: str, master_key: bytes, fake: FakeCredly
) -> None:
    report = _run(
        engine, database_url, master_key, fake, jobs=2000, workers=4, kill_every_rows=2000 / 150
    )
    _check(report, min_kills=100)
