"""Shared set-up for the sources tests: a course with two learners on one platform."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from service.db.engine import session
from service.db.models import EvidenceRevision
from tests import factories

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


@dataclass(frozen=True)
class World:
    platform_id: int
    course_id: int
    ada: int  # sub "u-ada", email ada@example.edu
    bob: int  # sub "42" (a Moodle user id), email bob@example.edu


def world(engine: Engine) -> World:
    with session(engine, write=True) as s:
        plat = factories.platform(s)
        dep = factories.deployment(s, plat)
        crs = factories.course(s, dep)
        ada = factories.person(s, plat, sub="u-ada", email="Ada@Example.edu")
        bob = factories.person(s, plat, sub="42", name="Bob", email="bob@example.edu")
        s.commit()
        assert plat.id and crs.id and ada.id and bob.id
        return World(plat.id, crs.id, ada.id, bob.id)


def history(s: Session, *, evidence_id: int) -> list[EvidenceRevision]:
    """Every stored version of one evidence row, oldest first."""
    query = select(EvidenceRevision).where(EvidenceRevision.evidence_id == evidence_id)
    return list(s.exec(query.order_by(col(EvidenceRevision.version))).all())
