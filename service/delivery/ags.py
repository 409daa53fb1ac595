"""LMS gradebook write-back (LTI AGS) through the outbox.

The delivery package does not import ``lti``: the poster that actually sends a score is
injected (``service.flows`` wires the LTI AGS client). It receives the row's payload
(line item, user, level as score) and raises a connector error on failure; an AGS score
is "latest wins", so a retry after an uncertain attempt is harmless.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from service.delivery.outbox import AttemptRecord, Claimed
from service.delivery.types import RepositoryConfig

__all__ = ["AgsConnector", "ScorePoster"]

# poster(payload, record) -> result dict; raises service.delivery.errors.ConnectorError.
ScorePoster = Callable[[dict[str, Any], AttemptRecord], dict[str, Any]]


class AgsConnector:
    kinds = frozenset({"ags.post_score"})

    def __init__(self, poster: ScorePoster) -> None:
        self._poster = poster

    def deliver(
        self, job: Claimed, repo: RepositoryConfig | None, record: AttemptRecord
    ) -> dict[str, Any]:
        return self._poster(job.payload, record)
