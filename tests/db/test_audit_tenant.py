"""Audit rows say whose they are (service.audit): new rows from their subject or the caller's
scope, old rows by the backfill of migration core_0003."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlmodel import select

from service import audit
from service.db import migrate
from service.db.engine import session as db_session
from service.db.models import AuditEvent, Award
from tests import factories
from tests.conftest import scratch_database


def test_new_rows_get_the_tenant_of_their_subject(engine: Engine) -> None:
    with db_session(engine, write=True) as s:
        plat = factories.platform(s)
        dep = factories.deployment(s, plat)
        course = factories.course(s, dep)
        learner = factories.person(s, plat)
        award = Award(
            course_id=course.id or 0,
            person_id=learner.id or 0,
            line_key="competency:x",
            level="beginning",
            state="issued",
            credential_uuid="c0ffee00-0000-4000-8000-000000000001",
        )
        s.add(award)
        s.flush()
        tenant = (plat.id, dep.id, course.id)
        cases = {
            f"course:{course.id}": tenant,
            f"policy:course:{course.id}": tenant,
            f"policy:course:{course.id}/competency:3": tenant,
            f"credential:{award.credential_uuid}": tenant,
            f"platform:{plat.id}": (plat.id, None, None),
            "credential:unknown": (None, None, None),
            "competency:digital-literacy": (None, None, None),
            "policy:institution": (None, None, None),
            "course:not-a-number": (None, None, None),
            "course:\u00b2": (None, None, None),  # a digit to str.isdigit, not to int()
            "": (None, None, None),
        }
        for subject in cases:
            audit.record(s, actor="test", action="x.y", subject=subject)
        # a caller that knows the course says so (the award's credential before its row)
        audit.record(
            s,
            audit.Scope(course_id=course.id),
            actor="system",
            action="credential.issued",
            subject="credential:not-yet-linked",
        )
        s.commit()
        rows = {r.subject: r for r in s.exec(select(AuditEvent))}
    for subject, want in cases.items():
        row = rows[subject]
        assert (row.platform_id, row.deployment_id, row.course_id) == want, subject
    linked = rows["credential:not-yet-linked"]
    assert (linked.platform_id, linked.deployment_id, linked.course_id) == tenant


@pytest.fixture
def empty_url(tmp_path: Path) -> Iterator[str]:
    """A database of its own on this test lane (SQLite file, or a new PostgreSQL database)."""
    with scratch_database("microcred_backfill", tmp_path / "old.db") as url:
        yield url


@pytest.mark.db
def test_the_migration_backfills_old_rows_from_their_subject(empty_url: str) -> None:
    url = empty_url
    migrate.upgrade(url, "core_0002")  # before audit rows had a tenant
    old: Engine = create_engine(url)
    with old.begin() as conn:
        for statement in (
            "INSERT INTO platform (id, uuid, name, issuer, client_id, auth_login_url, "
            "auth_token_url, key_set_url, product_family, active, created_at) VALUES "
            "(4, 'p4', 'LMS', 'https://lms.test', 'c', 'https://lms.test/a', "
            "'https://lms.test/t', 'https://lms.test/k', '', TRUE, '2026-11-30 10:00:00')",
            "INSERT INTO deployment (id, platform_id, deployment_id, active, created_at) "
            "VALUES (5, 4, 'd', TRUE, '2026-11-30 10:00:00')",
            "INSERT INTO course (id, deployment_id, context_id, title, label, created_at) "
            "VALUES (6, 5, 'ctx', 'T', 'L', '2026-11-30 10:00:00')",
            "INSERT INTO person (id, platform_id, sub, name, given_name, family_name, email, "
            "created_at, updated_at) VALUES (7, 4, 's', '', '', '', '', "
            "'2026-11-30 10:00:00', '2026-11-30 10:00:00')",
            "INSERT INTO award (id, course_id, person_id, line_key, level, state, "
            "credential_uuid, delivery_key, review, approved_by, created_at, updated_at) VALUES "
            "(8, 6, 7, 'competency:x', 'beginning', 'issued', 'cred-8', 'cred-8', '', '', "
            "'2026-11-30 10:00:00', '2026-11-30 10:00:00')",
        ):
            conn.execute(text(statement))
        subjects = [
            "course:6",
            "policy:course:6",
            "policy:course:6/competency:2",
            "policy:course:60",  # another course: not course 6
            "credential:cred-8",
            "platform:4",
            "competency:x",
            "course:999",
        ]
        for i, subject in enumerate(subjects, start=1):
            conn.execute(
                text(
                    "INSERT INTO audit_event (id, at, actor, action, subject, detail) "
                    "VALUES (:id, '2026-11-30 10:00:00', 'cli', 'x.y', :subject, '{}')"
                ),
                {"id": i, "subject": subject},
            )
    old.dispose()
    migrate.upgrade(url)
    new = create_engine(url)
    with new.connect() as conn:
        got = {
            row[0]: tuple(row[1:])
            for row in conn.execute(
                text("SELECT subject, platform_id, deployment_id, course_id FROM audit_event")
            )
        }
    new.dispose()
    assert got == {
        "course:6": (4, 5, 6),
        "policy:course:6": (4, 5, 6),
        "policy:course:6/competency:2": (4, 5, 6),
        "policy:course:60": (None, None, None),
        "credential:cred-8": (4, 5, 6),
        "platform:4": (4, None, None),
        "competency:x": (None, None, None),
        "course:999": (None, None, None),
    }
