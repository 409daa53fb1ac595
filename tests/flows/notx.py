"""A transport that checks, during every LMS request, that no database transaction is open."""

from __future__ import annotations

import sqlite3

import httpx
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

__all__ = ["CheckNoTransaction"]


class CheckNoTransaction(httpx.BaseTransport):
    """The LMS (the demo LMS over loopback, or ``inner``: a fake at the HTTP boundary);
    while it answers each request, another connection checks that the sync holds no
    transaction open (SQLite: the write lock can be taken at once; PostgreSQL: no session
    of this database is idle in a transaction)."""

    def __init__(self, engine: Engine, inner: httpx.BaseTransport | None = None) -> None:
        self._inner = inner or httpx.HTTPTransport()
        self._engine = engine
        self.checked = 0
        self.held: list[str] = []

    def _check(self, url: str) -> None:
        self.checked += 1
        if self._engine.dialect.name == "sqlite":
            path = make_url(str(self._engine.url)).database
            assert path
            conn = sqlite3.connect(path, timeout=5)
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")
            except sqlite3.OperationalError as exc:
                self.held.append(f"{url}: {exc}")
            finally:
                conn.close()
            return
        with self._engine.connect() as c:
            idle = c.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"
                )
            ).scalar()
        if idle:
            self.held.append(f"{url}: {idle} session(s) idle in a transaction")

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self._check(str(request.url.path))
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()
