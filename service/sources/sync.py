"""Pull a course's results from an LMS data API into the evidence store.

The connector reads everything first; only when every HTTP call succeeded does the store
write, in the caller's transaction. A failed call raises a ``SourceError`` with a message
an administrator can act on, and nothing of that sync is written. Records the connector
could not normalise (ungraded attempts, fillings of a changed rubric) are reported as
rejected with their reason; the rest is written.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

import httpx
from sqlmodel import Session, select

from service.db.models import ImportRun, SourceConnection
from service.errors import BadInput, NotFound
from service.sources import store
from service.sources.connectors.base import Connector
from service.sources.connectors.canvas import CanvasConnector
from service.sources.connectors.moodle import MoodleConnector
from service.sources.types import Problem, SyncReport

__all__ = ["KINDS", "connector_for", "get_connection", "sync_course"]

KINDS = ("moodle", "canvas")


def get_connection(session: Session, *, name: str) -> SourceConnection:
    row = session.exec(select(SourceConnection).where(SourceConnection.name == name)).first()
    if row is None:
        raise NotFound(f"no source connection named {name!r}")
    if not row.active:
        raise BadInput(f"source connection {name!r} is not active")
    return row


def connector_for(
    session: Session | None,
    connection: SourceConnection,
    *,
    client: httpx.Client | None = None,
    on_refresh: Callable[[str, dt.datetime | None], None] | None = None,
    sleep: Callable[[float], None] | None = None,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> Connector:
    """The connector for a stored connection. A refreshed Canvas token goes to
    ``on_refresh`` (which saves it in a transaction of its own), else onto the row in
    ``session`` for the caller to commit."""
    origin = f"{connection.kind}:{connection.id}"
    if connection.kind == "moodle":
        return MoodleConnector(
            base_url=connection.base_url,
            token=connection.access_token,
            origin=origin,
            client=client,
            sleep=sleep or time.sleep,
        )
    if connection.kind == "canvas":

        def saved(token: str, expires_at: dt.datetime | None) -> None:
            connection.access_token = token
            connection.token_expires_at = expires_at
            connection.updated_at = now()
            if on_refresh is not None:
                on_refresh(token, expires_at)
            elif session is not None:
                session.add(connection)

        return CanvasConnector(
            base_url=connection.base_url,
            access_token=connection.access_token,
            refresh_token=connection.refresh_token,
            client_id=connection.client_id,
            client_secret=connection.client_secret,
            expires_at=connection.token_expires_at,
            on_refresh=saved,
            origin=origin,
            client=client,
            now=now,
            sleep=sleep or time.sleep,
        )
    raise BadInput(f"unknown source kind {connection.kind!r}; known: {', '.join(KINDS)}")


def sync_course(
    session: Session,
    *,
    course_id: int,
    connector: Connector,
    now: dt.datetime,
    lms_course_id: str | None = None,
    connection_id: int | None = None,
    actor: str = "system",
) -> SyncReport:
    """Pull every result of a course through ``connector`` and store it.

    ``lms_course_id`` is the LMS's own course id; it defaults to the LTI context id,
    which is the course id in Moodle. Canvas needs ``$Canvas.course.id``.
    Raises ``SourceError`` (nothing written) when the LMS cannot be read. Results of this
    connection the LMS no longer has are deleted (when the pull read the whole course, not
    only what changed: ``Fetched.incremental``).
    """
    course, _platform = store.platform_of_course(session, course_id=course_id)
    fetched = connector.fetch_course(lms_course_id or course.context_id)
    run = ImportRun(
        course_id=course_id,
        kind="sync",
        origin=connector.origin,
        source_connection_id=connection_id,
        actor=actor,
        status="running",
        started_at=now,
    )
    session.add(run)
    problems = list(fetched.problems)
    # An incremental pull read what changed: what it did not read was not deleted.
    remove = fetched.complete and not fetched.incremental
    if not fetched.complete and not fetched.incremental:
        problems.append(
            Problem(
                f"{connector.origin}",
                "removed",
                "results no longer in the LMS were kept: part of the course could not be "
                "read (see the warnings above)",
            )
        )
    return store.apply(
        session,
        course_id=course_id,
        results=fetched.results,
        problems=problems,
        run=run,
        keep="always",
        now=now,
        remove_missing=connector.origin if remove else None,
    )
