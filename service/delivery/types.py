"""Value types shared by the worker and the connectors."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Protocol

from service.delivery.errors import NotConfigured
from service.delivery.outbox import AttemptRecord, Claimed

__all__ = ["Connector", "RepositoryConfig"]


@dataclasses.dataclass(frozen=True)
class RepositoryConfig:
    """A snapshot of one ``delivery_repository`` row with its secrets decrypted."""

    id: int
    kind: str
    name: str
    config: dict[str, Any]
    secret: str | None = dataclasses.field(default=None, repr=False)
    access_token: str | None = dataclasses.field(default=None, repr=False)
    refresh_token: str | None = dataclasses.field(default=None, repr=False)
    access_token_expires_at: dt.datetime | None = None

    def mapped_id(self, item: dict[str, Any], *, explicit: str, mapping: str, what: str) -> str:
        """The remote id for a competency level: the payload's own ``explicit`` field, else
        the repository's ``mapping`` of ``competency:level``; unmapped is a configuration
        error (the row dead-letters until an administrator adds it and retries)."""
        given = item.get(explicit)
        if given:
            return str(given)
        key = f"{item.get('competency', '')}:{item.get('level', '')}"
        table = self.config.get(mapping) or {}
        if key not in table:
            raise NotConfigured(
                f"repository {self.name!r} has no {what} for {key!r}; add it to the map, "
                "then retry the row"
            )
        return str(table[key])


class Connector(Protocol):
    """Delivers one kind family. ``deliver`` returns the result to store (e.g. the remote
    id) or raises a ``ConnectorError``; it notes each request on ``record``."""

    kinds: frozenset[str]

    def deliver(
        self, job: Claimed, repo: RepositoryConfig | None, record: AttemptRecord
    ) -> dict[str, Any]: ...
