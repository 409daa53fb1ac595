"""Queries of the issuer tables (no commits: the request/CLI boundary commits)."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence

from sqlalchemy import true, update
from sqlmodel import Session, col, func, select
from sqlmodel.sql.expression import SelectOfScalar

from service.db import probes
from service.db.models import Credential, StatusList

__all__ = [
    "add_allocated",
    "credential_by_uuid",
    "free_indexes",
    "open_status_list",
    "status_list",
    "status_lists",
]


def credential_by_uuid(
    session: Session, uuid: str, *, for_update: bool = False
) -> Credential | None:
    """The credential with this public id, optionally locked for update."""
    query = select(Credential).where(Credential.uuid == uuid)
    if for_update:
        query = query.with_for_update()
    return session.exec(query).first()


def status_list(session: Session, list_id: int, *, for_update: bool = False) -> StatusList | None:
    """One status list, optionally locked for update."""
    query = select(StatusList).where(StatusList.id == list_id)
    if for_update:
        query = query.with_for_update()
    return session.exec(query).first()


def status_lists(session: Session, *, for_update: bool = False) -> Sequence[StatusList]:
    """Every status list, oldest first, optionally locked for update."""
    query = select(StatusList).order_by(col(StatusList.id))
    if for_update:
        query = query.with_for_update()
    return session.exec(query).all()


def open_status_list(
    session: Session, *, purpose: str, max_fill: float, pending: MutableMapping[int, int]
) -> tuple[StatusList, int] | None:
    """The newest list of ``purpose`` with less than ``max_fill`` of its entries taken, and
    how many are taken: its committed ``allocated`` count plus ``pending``, the entries this
    transaction gave out on it and not yet added (``add_allocated``). Not locked: issuers
    share it. A list found full this way gets its pending entries added now (taken off
    ``pending``), so that this transaction looks past it. No count of the credentials: that
    read every credential of the list once per batch, a cost growing with the list."""
    while True:
        row = session.exec(
            select(StatusList)
            .where(StatusList.purpose == purpose)
            .where(col(StatusList.allocated) < col(StatusList.size) * max_fill)
            .order_by(col(StatusList.id).desc())
            .limit(1)
            .execution_options(populate_existing=True)  # ``allocated`` as committed now
        ).first()
        if row is None:
            return None
        assert row.id is not None
        taken = row.allocated + pending.get(row.id, 0)
        if taken < row.size * max_fill:
            return row, taken
        add_allocated(session, {row.id: pending.pop(row.id)})


def add_allocated(session: Session, counts: Mapping[int, int]) -> None:
    """Add entries given out to their lists' ``allocated`` counts, in this transaction (it
    commits or rolls back with the credentials that hold them). Locks those list rows until
    the transaction ends: call it last, just before the commit."""
    for list_id, n in sorted(counts.items()):
        session.execute(
            update(StatusList)
            .where(col(StatusList.id) == list_id)
            .values(allocated=col(StatusList.allocated) + n)
            .execution_options(synchronize_session=False)
        )


def free_indexes(session: Session, list_id: int, candidates: Sequence[int]) -> list[int]:
    """The ``candidates`` (distinct) that no credential holds, in their order, and (on
    PostgreSQL) that no other transaction is giving out right now: those are reserved for
    this transaction (advisory locks until it ends, taken before the credentials are read),
    so issuers in parallel never pick the same one. Two statements for any number of
    candidates.
    """
    if not candidates:
        return []
    if session.get_bind().dialect.name == "postgresql":
        locks = [func.pg_try_advisory_xact_lock(list_id, i) for i in candidates]
        reserved = session.exec(select(*locks)).one()
        candidates = [i for i, ok in zip(candidates, reserved, strict=True) if ok]
        if not candidates:
            return []
        held = set(session.exec(_held_on_postgresql(list_id, candidates)).all())
    else:
        held = set(
            session.exec(
                select(col(Credential.status_index)).where(
                    col(Credential.status_list_id) == list_id,
                    col(Credential.status_index).in_(candidates),
                )
            ).all()
        )
    return [i for i in candidates if i not in held]


def _held_on_postgresql(list_id: int, candidates: Sequence[int]) -> SelectOfScalar[int]:
    """Which candidates a credential holds, one probe of the (list, index) key each
    (``db.probes``: ``status_index IN (...)`` read every credential of the list, per 16
    issued, on a table not analysed yet)."""
    wanted = probes.int_keys(candidates, "wanted")
    probe = (
        select(col(Credential.status_index))
        .where(col(Credential.status_list_id) == list_id)
        .where(col(Credential.status_index) == wanted.c.i)
        .limit(1)
        .lateral("held")
    )
    return select(wanted.c.i).select_from(wanted).join(probe, true())
