"""Credly connector (reference/credentials.md §4.1).

Issue: ``POST /organizations/{org}/badges`` with ``issuer_earner_id`` = our idempotency
key. Credly has no Idempotency-Key header, so exactly-once rests on two checks:

- after an uncertain attempt (timeout, reset, 5xx once the request was sent, a worker
  that died mid-attempt) list ``GET …/badges?filter=issuer_earner_id::<id>`` first, and
  treat a live badge on the same template as already delivered;
- a duplicate refusal (422 "… already has this badge …") is success once the same list
  finds the badge (the refusal alone could come from a badge issued by someone else).

Revoke: ``PUT …/badges/{id}/revoke`` with a reason, on the badge id stored when the
badge was issued (the earner id's list only when no id was ever learned); a revocation
that Credly does not show done is an ``Unconfirmed`` dead letter, never "delivered".
Replace (a higher level reached): issue the new level's badge first, then revoke the old
one, so the learner is never left without a badge; each step checks state first, so a
retried replace is harmless.

Auth is HTTP Basic with the organisation token as user name. Tokens last 180 days; the
repository records when it expires and the admin API warns 14 days ahead.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from service.delivery import http
from service.delivery.errors import NotConfigured, Rejected, Unconfirmed
from service.delivery.outbox import AttemptRecord, Claimed
from service.delivery.types import ConnectorDeps, Provider, RepositoryConfig, Secret, Setting
from service.errors import BadInput

__all__ = [
    "BASE_URLS",
    "PROVIDER",
    "TOKEN_LIFETIME_DAYS",
    "CredlyConnector",
    "base_url",
    "template_for",
]

BASE_URLS = {
    "production": "https://api.credly.com/v1",
    "sandbox": "https://sandbox-api.credly.com/v1",
}
TOKEN_LIFETIME_DAYS = 180
LIVE_STATES = frozenset({"pending", "accepted"})
# States in which the earner no longer holds the badge: nothing left to revoke.
GONE_STATES = frozenset({"revoked", "rejected"})
MAX_PAGES = 20


def template_for(repo: RepositoryConfig, item: dict[str, Any]) -> str:
    """The badge template for a competency level, from the repository's map."""
    return repo.mapped_id(item, mapping="templates", what="Credly badge template")


def _credly_time(iso: str) -> str:
    # Credly's documented format, e.g. "2014-04-01 09:41:00 -0500".
    return dt.datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S %z")


class CredlyConnector(http.HttpConnector):
    """Issues, revokes and replaces Credly badges."""

    kinds = frozenset({"credly.issue_badge", "credly.revoke_badge", "credly.replace_badge"})

    # -- plumbing --------------------------------------------------------------------------

    def _base(self, repo: RepositoryConfig) -> str:
        org = repo.config.get("organization_id")
        if not org:
            raise NotConfigured(f"repository {repo.name!r} has no Credly organization_id")
        if not repo.secret:
            raise NotConfigured(f"repository {repo.name!r} has no Credly organisation token")
        base = repo.config.get("base_url") or BASE_URLS.get(
            str(repo.config.get("environment", "production"))
        )
        if not base:
            raise NotConfigured(
                f"repository {repo.name!r}: environment must be sandbox or production"
            )
        return f"{str(base).rstrip('/')}/organizations/{org}"

    def _send(
        self, repo: RepositoryConfig, record: AttemptRecord, method: str, path: str, **kw: Any
    ) -> httpx.Response:
        assert repo.secret is not None
        try:
            return http.request(
                self._client,
                method,
                self._base(repo) + path,
                record=record,
                clock=self._clock,
                auth=(repo.secret, ""),
                headers={"Accept": "application/json"},
                **kw,
            )
        except Rejected as exc:
            if exc.status in (401, 403):
                exc.detail += (
                    f" - the organisation token of {repo.name!r} was refused (expired after "
                    "180 days, or revoked): create a new one in Credly (Developers settings), "
                    "run `microcred repository update ID --new-secret`, then retry the rows"
                )
            raise

    def _pages(
        self, repo: RepositoryConfig, record: AttemptRecord, path: str, what: str, **params: str
    ) -> Iterator[Any]:
        """The JSON body of each page of a Credly list, up to the last (``MAX_PAGES`` at most)."""
        for page in range(1, MAX_PAGES + 1):
            resp = self._send(
                repo, record, "GET", path, params=params | {"page": str(page)}, what=what
            )
            body = http.json_of(resp, record=record, who="Credly")
            yield body
            if not ((body.get("metadata") or {}) if isinstance(body, dict) else {}).get(
                "next_page_url"
            ):
                break

    def find(
        self, repo: RepositoryConfig, record: AttemptRecord, *, issuer_earner_id: str
    ) -> list[dict[str, Any]]:
        """All badges Credly holds for this earner id (every state)."""
        found: list[dict[str, Any]] = []
        earner = f"issuer_earner_id::{issuer_earner_id}"
        for body in self._pages(repo, record, "/badges", "check", filter=earner):
            found.extend(b for b in body.get("data", []) if isinstance(b, dict))
        return found

    @staticmethod
    def _live(badges: list[dict[str, Any]], template_id: str) -> dict[str, Any] | None:
        for b in badges:
            tmpl = b.get("badge_template") or {}
            tid = str(tmpl.get("id", b.get("badge_template_id", "")))
            if tid == template_id and b.get("state") in LIVE_STATES:
                return b
        return None

    def check_connection(self, repo: RepositoryConfig) -> tuple[int, list[str]]:
        """Test a repository without changing anything: list the organisation's badge
        templates. Returns how many are active and, for each template-map entry whose id is
        not one of them, a line saying so. Raises ``ConnectorError`` (wrong base URL, token
        refused, unreachable) with the same plain detail deliveries would record."""
        record = AttemptRecord(started_at=self._clock())
        active: set[str] = set()
        for body in self._pages(repo, record, "/badge_templates", "test"):
            for t in body.get("data", []) if isinstance(body, dict) else []:
                if isinstance(t, dict) and t.get("state", "active") == "active":
                    active.add(str(t.get("id")))
        problems = [
            f"{key}: template {tid} is not an active badge template of organisation "
            f"{repo.config.get('organization_id')}"
            for key, tid in sorted((repo.config.get("templates") or {}).items())
            if str(tid) not in active
        ]
        return len(active), problems

    # -- effects ---------------------------------------------------------------------------

    def issue(
        self, repo: RepositoryConfig, item: dict[str, Any], record: AttemptRecord, *, check: bool
    ) -> dict[str, Any]:
        """Issue one badge, exactly once for its ``issuer_earner_id``."""
        template_id = template_for(repo, item)
        earner = str(item["issuer_earner_id"])
        if check:
            live = self._live(self.find(repo, record, issuer_earner_id=earner), template_id)
            if live is not None:
                return {"badge_id": live.get("id"), "state": live.get("state"), "found": True}
            record.checked = True
        body: dict[str, Any] = {
            "recipient_email": item["recipient_email"],
            "issued_to_first_name": item.get("given_name") or "-",
            "issued_to_last_name": item.get("family_name") or "-",
            "badge_template_id": template_id,
            "issued_at": _credly_time(item["issued_at"]),
            "issuer_earner_id": earner,
            "suppress_badge_notification_email": bool(
                repo.config.get("suppress_notification", False)
            ),
        }
        if item.get("expires_at"):
            body["expires_at"] = _credly_time(item["expires_at"])
        url = item.get("credential_url")
        if url:
            # Evidence kinds per the Credly docs (URL evidence); exact field names unverified.
            body["evidence"] = [
                {"type": "UrlEvidence", "name": "Verifiable credential", "url": url}
            ]
        try:
            resp = self._send(repo, record, "POST", "/badges", json=body, what="issue")
        except Rejected as exc:
            text = exc.excerpt.lower()
            if exc.status not in (409, 422) or not ("already" in text or "duplicate" in text):
                raise
            # Duplicate refusal: success only if the badge is ours (same earner id).
            live = self._live(self.find(repo, record, issuer_earner_id=earner), template_id)
            if live is None:
                raise Rejected(
                    f"Credly refused the badge as a duplicate ({exc.status}), but no badge with "
                    f"earner id "
                    f"{earner} exists: the recipient {item['recipient_email']} already holds "
                    "this template from another issuance",
                    status=422,
                    excerpt=exc.excerpt,
                ) from exc
            return {"badge_id": live.get("id"), "state": live.get("state"), "found": True}
        data = (http.json_of(resp, record=record, who="Credly") or {}).get("data") or {}
        return {"badge_id": data.get("id"), "state": data.get("state")}

    def revoke(
        self, repo: RepositoryConfig, target: dict[str, Any], reason: str, record: AttemptRecord
    ) -> list[str]:
        """Revoke the badge a delivery created; returns the ids Credly shows revoked.

        The badge is the one whose id microcred stored when it was issued (``badge_id``).
        Without one (the issue's outcome was never learned), the earner id's badges are
        listed and each live one is revoked by its id. Anything short of Credly showing
        the badge revoked raises ``Unconfirmed``: the row is never "delivered" with
        nothing revoked.
        """
        earner = str(target.get("issuer_earner_id", ""))
        if target.get("badge_id"):
            return [self._revoke_id(repo, str(target["badge_id"]), target, reason, record)]
        listed = [
            b
            for b in self.find(repo, record, issuer_earner_id=earner)
            if earner and str(b.get("issuer_earner_id", "")) == earner and b.get("id")
        ]
        revoked: list[str] = []
        for b in listed:
            if b.get("state") in GONE_STATES:
                revoked.append(str(b["id"]))  # revoked already (an earlier attempt), or refused
                continue
            revoked.append(self._revoke_id(repo, str(b["id"]), target, reason, record))
        if not revoked:
            raise Unconfirmed(
                f"nothing was revoked on Credly for earner id {earner} "
                f"({target.get('recipient_email', '')}, {target.get('competency', '')} "
                f"{target.get('level', '')}): microcred holds no Credly badge id for it (its "
                "issue never completed) and Credly lists no badge with that earner id. Look "
                "at the earner's badges in Credly: if one from this credential is live, "
                "revoke it there; then cancel this row (`microcred outbox cancel ID`)"
            )
        return revoked

    def _revoke_id(
        self,
        repo: RepositoryConfig,
        badge_id: str,
        target: dict[str, Any],
        reason: str,
        record: AttemptRecord,
    ) -> str:
        try:
            resp = self._send(
                repo,
                record,
                "PUT",
                f"/badges/{badge_id}/revoke",
                json={"reason": reason, "suppress_revoke_notification_email": False},
                what="revoke",
            )
        except Rejected as exc:
            # Revoked meanwhile (e.g. by an earlier attempt whose answer was lost).
            if exc.status == 422 and "revoked" in exc.excerpt.lower():
                return badge_id
            if exc.status == 404:
                raise Unconfirmed(
                    f"Credly has no badge {badge_id} (issued for earner id "
                    f"{target.get('issuer_earner_id', '')}, {target.get('recipient_email', '')})"
                    ": it may have been deleted in Credly. Look at the earner's badges in "
                    "Credly: if one from this credential is live, revoke it there; then "
                    "cancel this row (`microcred outbox cancel ID`)",
                    status=404,
                    excerpt=exc.excerpt,
                ) from exc
            raise
        try:
            data = (resp.json() or {}).get("data") or {}
        except ValueError:
            data = {}
        state = data.get("state") if isinstance(data, dict) else None
        if state is not None and state != "revoked":
            raise Unconfirmed(
                f"Credly answered the revocation of badge {badge_id} with the badge still "
                f"{state!r}. Look at the badge in Credly and revoke it there if it is live; "
                "then cancel this row (`microcred outbox cancel ID`), or retry it "
                "(`microcred outbox retry ID`)",
                status=resp.status_code,
                excerpt=resp.text[:500],
            )
        return badge_id

    def deliver(
        self, job: Claimed, repo: RepositoryConfig | None, record: AttemptRecord
    ) -> dict[str, Any]:
        if repo is None:
            raise NotConfigured("Credly rows need a repository")
        p = job.payload
        if job.kind == "credly.issue_badge":
            return self.issue(repo, p, record, check=job.uncertain)
        if job.kind == "credly.revoke_badge":
            ids: list[str] = []
            for target in p.get("targets", []):
                ids += self.revoke(repo, target, str(p.get("reason", "Revoked")), record)
            return {"revoked": ids}
        if job.kind == "credly.replace_badge":
            # New badge first (always checked: this row has several steps), then the old.
            issued = self.issue(repo, p, record, check=True)
            ids = []
            for target in p.get("replaces", []):
                ids += self.revoke(repo, target, str(p.get("reason", "Replaced")), record)
            return issued | {"revoked": ids}
        raise NotConfigured(f"the Credly connector does not handle {job.kind}")


def base_url(given: str) -> str:
    """The Credly API base URL ending in ``/v1``, from one given with or without it.

    Credly answers every path outside ``/v1`` with a bare 404, so a base URL with any other
    path is refused here rather than dead-lettering every delivery later.
    """
    parts = urlsplit(given.strip())
    path = parts.path.rstrip("/")
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.query:
        raise BadInput(
            f"the Credly base URL {given!r} is not an http(s) address: give the API host, "
            f"e.g. {BASE_URLS['sandbox']}"
        )
    if path not in ("", "/v1"):
        raise BadInput(
            f"the Credly base URL {given!r} has the path {parts.path!r}; Credly's API lives "
            f"under /v1 (e.g. {BASE_URLS['sandbox']}): give the host with or without "
            "/v1, nothing else"
        )
    return urlunsplit((parts.scheme, parts.netloc, "/v1", "", ""))


class CredlyProvider(Provider):
    kind = "credly"
    title = "Credly"
    rank = 1
    test_description = "Lists the organisation's badge templates; changes nothing at Credly."
    test_summary = "connected; {count} active badge template(s)"
    secret = Secret("organisation token", "the API token (Credly)", "organisation's API token")
    secret_days = TOKEN_LIFETIME_DAYS
    map_key = "templates"
    settings = (
        Setting("organization_id", "Organisation id", option="org_id"),
        Setting(
            "environment",
            "Environment",
            choices=(("sandbox", "sandbox (for trying out)"), ("production", "production")),
            default="sandbox",
        ),
    )
    by_email = True
    issue_kind = "credly.issue_badge"
    revoke_kind = "credly.revoke_badge"
    replace_kind = "credly.replace_badge"

    def check_config(self, config: dict[str, Any]) -> dict[str, Any]:
        if not config.get("organization_id"):
            raise BadInput("a Credly repository needs config.organization_id")
        if config.get("base_url"):
            config = {**config, "base_url": base_url(str(config["base_url"]))}
        if not config.get("base_url") and config.get("environment") not in BASE_URLS:
            raise BadInput("a Credly repository needs config.environment: sandbox or production")
        return config

    def describe(self, config: Mapping[str, Any]) -> tuple[str, str, str]:
        where = config.get("base_url") or config.get("environment", "production")
        return "Organisation", str(config.get("organization_id", "?")), f" · {where}"

    def connector(self, deps: ConnectorDeps) -> CredlyConnector:
        return CredlyConnector(clock=deps.clock)

    def erasure(self, config: Mapping[str, Any], name: str, ref: str) -> str:
        return (
            f"Credly holds the badge{ref}. An administrator of the Credly organisation "
            f"{config.get('organization_id', '')} deletes it (Credly's badge DELETE is data "
            "erasure, where revoking keeps it); the learner's own Credly account is theirs to "
            "delete through Credly's privacy request."
        )


PROVIDER = CredlyProvider()
