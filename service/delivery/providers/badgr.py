"""Canvas Credentials / Badgr v2 connector (reference/credentials.md §4.2).

Auth: OAuth2 bearer tokens from ``POST /o/token`` — the password grant with the
repository's account (user name in config, password encrypted as the secret), refreshed
with the refresh grant before expiry or after a 401, then persisted (encrypted) through
the ``save_tokens`` callback so every worker shares them.

Issue: ``POST /v2/badgeclasses/{id}/assertions`` with the recipient e-mail, issue date,
evidence (credential URL plus narrative) and ``allowDuplicateAwards: false``. Badgr has no
earner id, so an assertion on the same badge class for the same recipient that is not
revoked is ours: it is looked up before retrying an uncertain attempt, and a "previous
award … already exists" refusal counts as success once found.
Revoke: ``DELETE /v2/assertions/{entityId}`` with ``revocation_reason``, on the
assertion id stored when it was issued (``entity_id``); only a row that never learned
one (its issue's outcome was lost, or it was delivered by an older version) looks the
recipient's assertions of the badge class up. A revocation that Badgr does not show done
is an ``Unconfirmed`` dead letter, never "delivered" with nothing revoked.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Mapping
from typing import Any

import httpx

from service.delivery import http
from service.delivery.errors import NotConfigured, Rejected, Unconfirmed
from service.delivery.outbox import AttemptRecord, Claimed
from service.delivery.types import (
    Clock,
    ConnectorDeps,
    Provider,
    RepositoryConfig,
    SaveTokens,
    Secret,
    Setting,
    TokenSet,
)
from service.errors import BadInput

__all__ = ["BASE_URLS", "PROVIDER", "REGIONS", "BadgrConnector"]

# Canvas Credentials' regional servers, each with its own accounts (Instructure's developer
# docs, "Credentials" > "Environments"): (region, its name for people, API base URL). A
# repository without one (`repository add` without --environment) is in the US.
REGIONS = (
    ("us", "United States", "https://api.badgr.io"),
    ("eu", "Europe", "https://api.eu.badgr.io"),
    ("ca", "Canada", "https://api.ca.badgr.io"),
    ("au", "Australia", "https://api.au.badgr.io"),
    ("sg", "Singapore", "https://api.sg.badgr.io"),
    ("test", "Instructure's test server", "https://api.test.badgr.com"),
)
BASE_URLS = {region: url for region, _, url in REGIONS}
SCOPE = "rw:issuer"


def _host(region: str) -> str:
    return BASE_URLS[region].removeprefix("https://")


class BadgrConnector(http.HttpConnector):
    """Issues and revokes Badgr assertions; keeps OAuth2 tokens fresh."""

    kinds = frozenset({"badgr.issue_assertion", "badgr.revoke_assertion"})

    def __init__(
        self,
        client: httpx.Client | None = None,
        *,
        clock: Clock,
        save_tokens: SaveTokens | None = None,
    ) -> None:
        super().__init__(client, clock=clock)
        self._save = save_tokens
        self._lock = threading.Lock()
        self._tokens: dict[int, TokenSet] = {}

    def _base(self, repo: RepositoryConfig) -> str:
        base = repo.config.get("base_url") or BASE_URLS.get(str(repo.config.get("region", "us")))
        if not base:
            raise NotConfigured(f"repository {repo.name!r}: unknown Badgr region")
        return str(base).rstrip("/")

    # -- OAuth2 ----------------------------------------------------------------------------

    def _token(self, repo: RepositoryConfig, record: AttemptRecord, *, stale: str | None) -> str:
        """A valid access token; ``stale`` is one the server just refused."""
        now = self._clock()
        with self._lock:
            tok = self._tokens.get(repo.id)
            if tok is None and repo.access_token and repo.access_token_expires_at:
                tok = TokenSet(repo.access_token, repo.refresh_token, repo.access_token_expires_at)
            fresh = (
                tok is not None
                and tok.access != stale
                and tok.expires_at > now + dt.timedelta(seconds=60)
            )
            if tok is not None and fresh:
                return tok.access
            new = None
            if tok is not None and tok.refresh:
                try:
                    new = self._grant(
                        repo,
                        record,
                        {"grant_type": "refresh_token", "refresh_token": tok.refresh},
                    )
                except Rejected:
                    new = None  # refresh token expired or revoked: fall back to the password
            if new is None:
                username = repo.config.get("username")
                if not username or not repo.secret:
                    raise NotConfigured(
                        f"repository {repo.name!r} needs a Badgr user name and password"
                    )
                new = self._grant(
                    repo,
                    record,
                    {
                        "grant_type": "password",
                        "username": str(username),
                        "password": repo.secret,
                        "scope": SCOPE,
                    },
                )
            self._tokens[repo.id] = new
            if self._save is not None:
                self._save(repo.id, new)
            return new.access

    def _grant(
        self, repo: RepositoryConfig, record: AttemptRecord, form: dict[str, str]
    ) -> TokenSet:
        if repo.config.get("client_id"):
            form = form | {"client_id": str(repo.config["client_id"])}
        resp = http.request(
            self._client,
            "POST",
            self._base(repo) + "/o/token",
            record=record,
            clock=self._clock,
            data=form,
            what=f"token ({form['grant_type']} grant)",
        )
        body = http.json_of(resp, record=record, who="Canvas Credentials")
        # Default lifetime of the open-source server is 86400 s when none is returned.
        expires_in = float(body.get("expires_in") or 86400)
        return TokenSet(
            str(body["access_token"]),
            body.get("refresh_token"),
            self._clock() + dt.timedelta(seconds=expires_in),
        )

    def _api(
        self, repo: RepositoryConfig, record: AttemptRecord, method: str, path: str, **kw: Any
    ) -> httpx.Response:
        token = self._token(repo, record, stale=None)
        for again in (True, False):
            try:
                return http.request(
                    self._client,
                    method,
                    self._base(repo) + path,
                    record=record,
                    clock=self._clock,
                    headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                    **kw,
                )
            except Rejected as exc:
                if exc.status != 401 or not again:
                    raise
                token = self._token(repo, record, stale=token)
        raise AssertionError("unreachable")

    # -- effects ---------------------------------------------------------------------------

    def _badge_class(self, repo: RepositoryConfig, item: dict[str, Any]) -> str:
        return repo.mapped_id(item, mapping="badge_classes", what="Badgr badge class")

    def find_all(
        self, repo: RepositoryConfig, record: AttemptRecord, *, badge_class: str, email: str
    ) -> list[dict[str, Any]]:
        """The recipient's assertions of this badge class, revoked ones included."""
        resp = self._api(
            repo,
            record,
            "GET",
            f"/v2/badgeclasses/{badge_class}/assertions",
            params={"recipient": email},
            what="check",
        )
        found = []
        for a in http.json_of(resp, record=record, who="Canvas Credentials").get("result", []):
            recipient = a.get("recipient") or {}
            who = recipient.get("plaintextIdentity") or recipient.get("identity")
            if str(who).lower() == email.lower():
                found.append(dict(a))
        return found

    def find(
        self, repo: RepositoryConfig, record: AttemptRecord, *, badge_class: str, email: str
    ) -> dict[str, Any] | None:
        """The recipient's assertion of this badge class that is not revoked, if any."""
        for a in self.find_all(repo, record, badge_class=badge_class, email=email):
            if not a.get("revoked"):
                return a
        return None

    def issue(
        self, repo: RepositoryConfig, item: dict[str, Any], record: AttemptRecord, *, check: bool
    ) -> dict[str, Any]:
        badge_class = self._badge_class(repo, item)
        email = str(item["recipient_email"])
        if check:
            found = self.find(repo, record, badge_class=badge_class, email=email)
            if found is not None:
                return {"entity_id": found.get("entityId"), "found": True}
            record.checked = True
        evidence: dict[str, str] = {}
        if item.get("credential_url"):
            evidence["url"] = str(item["credential_url"])
        evidence["narrative"] = f"Reached level {item.get('level', '')}."
        body: dict[str, Any] = {
            "recipient": {"identity": email, "type": "email", "hashed": True},
            "issuedOn": item["issued_at"],
            "evidence": [evidence],
            "notify": bool(repo.config.get("notify", True)),
            "allowDuplicateAwards": False,
        }
        if item.get("expires_at"):
            body["expires"] = item["expires_at"]
        try:
            resp = self._api(
                repo,
                record,
                "POST",
                f"/v2/badgeclasses/{badge_class}/assertions",
                json=body,
                what="issue",
            )
        except Rejected as exc:
            if exc.status != 400 or "already exists" not in exc.excerpt:
                raise
            found = self.find(repo, record, badge_class=badge_class, email=email)
            if found is None:
                raise
            return {"entity_id": found.get("entityId"), "found": True}
        result = http.json_of(resp, record=record, who="Canvas Credentials").get("result") or [{}]
        return {
            "entity_id": result[0].get("entityId"),
            "open_badge_id": result[0].get("openBadgeId"),
        }

    def revoke(
        self, repo: RepositoryConfig, target: dict[str, Any], reason: str, record: AttemptRecord
    ) -> list[str]:
        """Revoke the assertion a delivery created; returns the ids Badgr shows revoked.

        The assertion is the one whose id microcred stored when it was issued
        (``entity_id``). Without one, the recipient's assertions of the badge class are
        listed and each one not yet revoked is revoked by its id. Anything short of Badgr
        showing the assertion revoked raises ``Unconfirmed``: the row is never "delivered"
        with nothing revoked.
        """
        if target.get("entity_id"):
            return [self._revoke_id(repo, str(target["entity_id"]), target, reason, record)]
        email = str(target["recipient_email"])
        badge_class = self._badge_class(repo, target)
        revoked: list[str] = []
        for a in self.find_all(repo, record, badge_class=badge_class, email=email):
            if not a.get("entityId"):
                continue
            if a.get("revoked"):
                revoked.append(str(a["entityId"]))  # revoked already (an earlier attempt)
                continue
            revoked.append(self._revoke_id(repo, str(a["entityId"]), target, reason, record))
        if not revoked:
            raise Unconfirmed(
                f"nothing was revoked on Canvas Credentials for {email} "
                f"({target.get('competency', '')} {target.get('level', '')}, badge class "
                f"{badge_class}): microcred holds no assertion id for it (its issue never "
                "completed, or it was delivered by an older version) and Canvas Credentials "
                "lists no assertion of that badge class for the recipient. Look at the "
                "recipient's assertions there: if one from this credential is live, revoke "
                "it there; then cancel this row (`microcred outbox cancel ID`)"
            )
        return revoked

    def _assertion(
        self, repo: RepositoryConfig, entity: str, record: AttemptRecord
    ) -> dict[str, Any] | None:
        """The assertion with this id as Badgr shows it now; None when it has none."""
        try:
            resp = self._api(repo, record, "GET", f"/v2/assertions/{entity}", what="check")
        except Rejected as exc:
            if exc.status == 404:
                return None
            raise
        result = http.json_of(resp, record=record, who="Canvas Credentials").get("result")
        return dict(result[0]) if isinstance(result, list) and result else None

    def _revoke_id(
        self,
        repo: RepositoryConfig,
        entity: str,
        target: dict[str, Any],
        reason: str,
        record: AttemptRecord,
    ) -> str:
        try:
            self._api(
                repo,
                record,
                "DELETE",
                f"/v2/assertions/{entity}",
                json={"revocation_reason": reason},
                what="revoke",
            )
        except Rejected as exc:
            if exc.status not in (400, 404):
                raise
            # Revoked meanwhile (an earlier attempt whose answer was lost), or gone: ask.
            now = self._assertion(repo, entity, record)
            if now is not None and now.get("revoked"):
                return entity
            if now is None:
                raise Unconfirmed(
                    f"Canvas Credentials has no assertion {entity} (issued to "
                    f"{target.get('recipient_email', '')}, {target.get('competency', '')} "
                    f"{target.get('level', '')}): it may have been deleted there. Look at the "
                    "recipient's assertions in Canvas Credentials: if one from this "
                    "credential is live, revoke it there; then cancel this row "
                    "(`microcred outbox cancel ID`)",
                    status=exc.status,
                    excerpt=exc.excerpt,
                ) from exc
            raise
        return entity

    def check_connection(self, repo: RepositoryConfig) -> tuple[int, list[str]]:
        """Test a repository without changing anything: take a token with the account's
        user name and password, then read each badge class of the map. Returns how many the
        map names and, for each one the account cannot read, a line saying so. Raises
        ``ConnectorError`` (wrong base URL, password refused, unreachable) with the same
        plain detail deliveries would record."""
        record = AttemptRecord(started_at=self._clock())
        self._token(repo, record, stale=None)
        mapped = repo.config.get(BadgrProvider.map_key) or {}
        problems = []
        for key, badge_class in sorted(mapped.items()):
            try:
                self._api(repo, record, "GET", f"/v2/badgeclasses/{badge_class}", what="test")
            except Rejected as exc:
                if exc.status not in (403, 404):
                    raise
                problems.append(
                    f"{key}: badge class {badge_class} is not one this account can issue "
                    f"(Canvas Credentials answered {exc.status})"
                )
        return len(mapped), problems

    def deliver(
        self, job: Claimed, repo: RepositoryConfig | None, record: AttemptRecord
    ) -> dict[str, Any]:
        if repo is None:
            raise NotConfigured("Badgr rows need a repository")
        p = job.payload
        if job.kind == "badgr.issue_assertion":
            return self.issue(repo, p, record, check=job.uncertain)
        if job.kind == "badgr.revoke_assertion":
            ids: list[str] = []
            for target in p.get("targets", []):
                ids += self.revoke(repo, target, str(p.get("reason", "Revoked")), record)
            return {"revoked": ids}
        raise NotConfigured(f"the Badgr connector does not handle {job.kind}")


class BadgrProvider(Provider):
    kind = "badgr"
    title = "Canvas Credentials (Badgr)"
    rank = 2
    secret = Secret("account password", "the password (Badgr)", "account's password")
    map_key = "badge_classes"
    map_id = "BADGE_CLASS_ID"
    settings = (
        # No default on the page: the region decides where in the world the learners'
        # e-mails are sent, so the administrator picks it (the CLI keeps us when not given).
        Setting(
            "region",
            "Region",
            option="environment",
            choices=tuple((key, f"{words} ({_host(key)})") for key, words, _ in REGIONS),
            placeholder="choose where the account is",
        ),
        Setting("username", "Account user name", maxlength=300),
    )
    by_email = True
    issue_kind = "badgr.issue_assertion"
    revoke_kind = "badgr.revoke_assertion"
    test_description = (
        "Signs in with the account and reads each badge class of the map; changes nothing "
        "in Canvas Credentials."
    )
    test_summary = "connected; {count} badge class(es) in the map checked"

    def check_config(self, config: dict[str, Any]) -> dict[str, Any]:
        region = config.get("region")
        if config.get("base_url"):  # its host replaces the region's
            return config if region else {k: v for k, v in config.items() if k != "region"}
        if region == "":
            raise BadInput(
                "region: choose the Canvas Credentials region the account is in (where its "
                "administrators sign in): learners' e-mails go to that region's server"
            )
        if region is not None and region not in BASE_URLS:
            raise BadInput(
                f"region: Canvas Credentials has no region {region!r}; choose one of "
                f"{', '.join(BASE_URLS)}"
            )
        return config

    def describe(self, config: Mapping[str, Any]) -> tuple[str, str, str]:
        user = config.get("username") or "?"
        # a base URL replaces the region's host: show the one the connector uses
        region = str(config.get("region", "us"))
        host = _host(region) if region in BASE_URLS else "not a Canvas Credentials region"
        where = config.get("base_url") or f"region {region} ({host})"
        return "Account", "", f"{user} · {where}"

    def connector(self, deps: ConnectorDeps) -> BadgrConnector:
        return BadgrConnector(clock=deps.clock, save_tokens=deps.save_tokens)

    def erasure(self, config: Mapping[str, Any], name: str, ref: str) -> str:
        return (
            f"Canvas Credentials (Badgr) holds the assertion{ref}. An issuer administrator there "
            "deletes it; deleting a Canvas Credentials account is not a GDPR erasure, so the "
            "learner asks Instructure's privacy team for that."
        )


PROVIDER = BadgrProvider()
