"""LMS gradebook write-back (LTI AGS) through the outbox.

The delivery package does not import ``lti``: the poster that actually sends a score is
injected (``service.flows`` wires the LTI AGS client). It receives the row's payload
(line item, user, level as score) and raises a connector error on failure; an AGS score
is "latest wins", so a retry after an uncertain attempt is harmless.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from service.delivery.outbox import AttemptRecord, Claimed
from service.delivery.types import (
    ConnectorDeps,
    CredentialSnapshot,
    Provider,
    RepositoryConfig,
    ScorePoster,
)

__all__ = ["PROVIDER", "AgsConnector"]


class AgsConnector:
    kinds = frozenset({"ags.post_score"})

    def __init__(self, poster: ScorePoster) -> None:
        self._poster = poster

    def deliver(
        self, job: Claimed, repo: RepositoryConfig | None, record: AttemptRecord
    ) -> dict[str, Any]:
        return self._poster(job.payload, record)


class AgsProvider(Provider):
    """The course gradebook: the new level's score; a revocation leaves it (the LMS owns
    its grades)."""

    kind = "ags"
    title = "LMS gradebook"
    addable = False  # the server wires it
    issue_kind = "ags.post_score"

    def payload(self, snapshot: CredentialSnapshot) -> dict[str, Any] | None:
        if snapshot.ags is None:
            return None  # not from an LTI course
        return snapshot.payload() | {"ags": snapshot.ags}

    def pause_scope(self, payload: dict[str, Any]) -> str:
        # One "repository" serves every LMS: a 429 from one platform's gradebook pauses
        # the writes to that platform only.
        platform = (payload.get("ags") or {}).get("platform_id")
        return f"platform:{platform}" if platform is not None else ""

    def connector(self, deps: ConnectorDeps) -> AgsConnector | None:
        return AgsConnector(deps.ags_poster) if deps.ags_poster is not None else None

    def erasure(self, config: Mapping[str, Any], name: str, ref: str) -> str:
        return (
            "The LMS gradebook holds the score: the LMS's administrator erases it with the "
            "learner's LMS account."
        )


PROVIDER = AgsProvider()
