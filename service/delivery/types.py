"""Value types shared by the worker, the award path and the providers, and the one
interface every repository provider implements (``Provider``)."""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Protocol, cast

from service.delivery.errors import NotConfigured
from service.delivery.outbox import AttemptRecord, Claimed

__all__ = [
    "Clock",
    "ConnectionCheck",
    "Connector",
    "ConnectorDeps",
    "CredentialSnapshot",
    "Provider",
    "RepositoryConfig",
    "SaveTokens",
    "ScorePoster",
    "Secret",
    "Setting",
    "TokenSet",
]

Clock = Callable[[], dt.datetime]


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

    def mapped_id(self, item: dict[str, Any], *, mapping: str, what: str) -> str:
        """The remote id for a competency level: the repository's ``mapping`` of
        ``competency:level``; unmapped is a configuration error (the row dead-letters until
        an administrator adds it and retries)."""
        key = f"{item.get('competency', '')}:{item.get('level', '')}"
        table = self.config.get(mapping) or {}
        if key not in table:
            raise NotConfigured(
                f"repository {self.name!r} has no {what} for {key!r}; add it to the map, "
                "then retry the row"
            )
        return str(table[key])


@dataclasses.dataclass(frozen=True)
class CredentialSnapshot:
    """Everything the connectors need about one credential at one level."""

    credential_id: str
    person_id: int | None
    recipient_email: str
    given_name: str
    family_name: str
    competency: str
    level: str
    issued_at: dt.datetime
    credential_url: str
    competency_name: str = ""
    expires_at: dt.datetime | None = None
    # Opaque to delivery: what the injected AGS poster needs (line item, user id, score).
    ags: dict[str, Any] | None = None

    def payload(self) -> dict[str, Any]:
        if self.issued_at.tzinfo is None:
            raise ValueError("issued_at must be timezone-aware (Credly needs the offset)")
        p: dict[str, Any] = {
            "credential_id": self.credential_id,
            "recipient_email": self.recipient_email,
            "given_name": self.given_name,
            "family_name": self.family_name,
            "competency": self.competency,
            "competency_name": self.competency_name,
            "level": self.level,
            "issued_at": self.issued_at.isoformat(),
            "credential_url": self.credential_url,
            # Credly's earner id: stable per credential and level (our idempotency key).
            "issuer_earner_id": f"{self.credential_id}:{self.level}",
        }
        if self.expires_at:
            p["expires_at"] = self.expires_at.isoformat()
        return p


class Connector(Protocol):
    """Delivers one kind family. ``deliver`` returns the result to store (e.g. the remote
    id) or raises a ``ConnectorError``; it notes each request on ``record``."""

    kinds: frozenset[str]

    def deliver(
        self, job: Claimed, repo: RepositoryConfig | None, record: AttemptRecord
    ) -> dict[str, Any]: ...


class ConnectionCheck(Protocol):
    """A connector that can test a repository without changing anything: how many of the
    things it checked there are, and a line for each problem found."""

    def check_connection(self, repo: RepositoryConfig) -> tuple[int, list[str]]: ...

    def close(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class TokenSet:
    """A repository's OAuth2 tokens (stored encrypted on its row, shared by every worker)."""

    access: str
    refresh: str | None
    expires_at: dt.datetime


# save(repository_id, tokens): persist a repository's new OAuth2 tokens (encrypted).
SaveTokens = Callable[[int, TokenSet], None]
# poster(payload, record) -> result dict; raises service.delivery.errors.ConnectorError.
ScorePoster = Callable[[dict[str, Any], AttemptRecord], dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class ConnectorDeps:
    """What a provider may need to build its connector (the worker wires them)."""

    clock: Clock
    save_tokens: SaveTokens | None = None
    ags_poster: ScorePoster | None = None  # the LTI gradebook poster (service.flows)


@dataclasses.dataclass(frozen=True)
class Setting:
    """A value of a repository's configuration that its administrator gives: a field of the
    administrator page's add form (named ``key``) and a ``microcred repository add`` option."""

    key: str  # the config key it is stored under
    label: str  # the add form's words
    option: str = ""  # the ``repository add`` option when not ``key`` (``org_id``: --org-id)
    choices: tuple[tuple[str, str], ...] = ()  # a list to pick from: (value, words)
    default: str = ""  # stored when the form leaves it empty
    # the empty box's hint; with ``choices``, the list's first entry, chosen until the
    # administrator picks another (an empty value: ``check_config`` says what to choose)
    placeholder: str = ""
    maxlength: int = 200
    on_page: bool = True  # False: only ``repository add`` sets it


@dataclasses.dataclass(frozen=True)
class Secret:
    """What a repository's secret is, in the words of each place that asks for it."""

    prompt: str  # ``repository add``: "secret (organisation token)"
    label: str  # the add form's list of secrets: "the API token (Credly)"
    missing: str  # the add form without one: "secret: give the organisation's API token"


class Provider(abc.ABC):
    """One kind of repository (Credly, Canvas Credentials, a webhook, the gradebook): how it
    is configured, which outbox rows an award queues for it, and the connector that
    delivers them. Each is one module of ``service.delivery.providers`` holding a
    ``PROVIDER`` instance (docs/delivery.md, "Adding a repository provider")."""

    kind: ClassVar[str]
    title: ClassVar[str]  # its name for people, e.g. "Credly"
    # The administrator's page adds and changes it (False: the server wires it, as the LMS
    # gradebook), at ``rank`` in the page's list of kinds.
    addable: ClassVar[bool] = True
    rank: ClassVar[int] = 99
    # What the repository's secret is, to ask for it; None: this kind has none.
    secret: ClassVar[Secret | None] = None
    # Days a new secret lasts when no expiry is given (warnings start 14 days before).
    secret_days: ClassVar[int | None] = None
    # Config key of the COMPETENCY:LEVEL -> remote id map, if the kind has one.
    map_key: ClassVar[str | None] = None
    map_id: ClassVar[str] = "TEMPLATE_ID"  # what the map's values are, for the form's example
    # What the connection test does, for the administrator's page, and what it reports
    # after its connector's ``check_connection`` ({count}: how many things it checked);
    # "" while this kind has no test (``test_connection`` returns None).
    test_description: ClassVar[str] = ""
    test_summary: ClassVar[str] = ""
    # What its administrator gives besides the name, the secret and the map.
    settings: ClassVar[tuple[Setting, ...]] = ()
    # A third party that knows the earner by e-mail: the repository's consent policy holds
    # the issues, and an LMS e-mail changed after delivery is flagged for re-sending.
    by_email: ClassVar[bool] = False
    issue_kind: ClassVar[str]
    revoke_kind: ClassVar[str | None] = None  # None: a revocation leaves it alone
    # An upgrade queues one row that issues the new level and revokes the old ...
    replace_kind: ClassVar[str | None] = None
    # ... or an event of its own; with neither, it revokes (if it can), then issues.
    upgrade_kind: ClassVar[str | None] = None

    @property
    def issue_kinds(self) -> frozenset[str]:
        """The row kinds that put a credential there."""
        return frozenset(k for k in (self.issue_kind, self.replace_kind, self.upgrade_kind) if k)

    @property
    def kinds(self) -> frozenset[str]:
        return self.issue_kinds | ({self.revoke_kind} if self.revoke_kind else set())

    def describe(self, config: Mapping[str, Any]) -> tuple[str, str, str] | None:
        """Where a repository of this kind is, for the administrator's page: a term, a value
        shown as code ("" none) and the words after it; None: the page says nothing."""
        return None

    def check_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """The configuration to store; raises ``BadInput`` naming what is wrong."""
        return config

    def payload(self, snapshot: CredentialSnapshot) -> dict[str, Any] | None:
        """The payload of an issue row; None: this credential does not go there."""
        return snapshot.payload()

    def revoke_payload(
        self, *, reason: str, credential_id: str, targets: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """The payload of a revoke row: ``targets`` are the badges it may hold."""
        return {"reason": reason, "targets": targets}

    def pause_scope(self, payload: dict[str, Any]) -> str:
        """What a rate limit met by a row with this payload pauses: "" the whole
        repository (one Credly organisation, one account, one receiver), or a part of it
        with limits of its own."""
        return ""

    @abc.abstractmethod
    def connector(self, deps: ConnectorDeps) -> Connector | None:
        """The connector delivering this kind's rows; None: not wired in this process."""

    def test_connection(self, repo: RepositoryConfig, clock: Clock) -> tuple[str, list[str]] | None:
        """Check a repository without changing anything: a summary and the problems found
        (None: this kind has no test). Raises ``ConnectorError`` when it does not work."""
        if not self.test_summary:
            return None
        connector = cast(ConnectionCheck, self.connector(ConnectorDeps(clock=clock)))
        try:
            count, problems = connector.check_connection(repo)
        finally:
            connector.close()
        return self.test_summary.format(count=count), problems

    def erasure(self, config: Mapping[str, Any], name: str, ref: str) -> str:
        """How the learner's data sent there is erased (the learner data export)."""
        return f"Ask the operator of {name} to erase what it was sent{ref}."
