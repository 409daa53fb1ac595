"""Queries of the issuer tables (no commits: the request/CLI boundary commits)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, col, func, select

from service.db.models import Credential, StatusList

__all__ = [
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
    session: Session, *, purpose: str, max_fill: float
) -> tuple[StatusList, int] | None:
    """The newest list of ``purpose`` with less than ``max_fill`` of its entries taken, and
    how many are taken. Not locked: issuers share it. A list found full is marked so
    (``allocated``) and never looked at again."""
    while True:
        row = session.exec(
            select(StatusList)
            .where(StatusList.purpose == purpose)
            .where(col(StatusList.allocated) < col(StatusList.size) * max_fill)
            .order_by(col(StatusList.id).desc())
            .limit(1)
        ).first()
        if row is None:
            return None
        taken = session.exec(select(func.count()).where(Credential.status_list_id == row.id)).one()
        if taken < row.size * max_fill:
            return row, int(taken)
        row.allocated = int(taken)
        session.add(row)
        session.flush()


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
    held = set(
        session.exec(
            select(col(Credential.status_index)).where(
                col(Credential.status_list_id) == list_id,
                col(Credential.status_index).in_(candidates),
            )
        ).all()
    )
    return [i for i in candidates if i not in held]
