"""Signed webhooks for any other system (receivers: see docs/webhooks.md).

Each event is POSTed as JSON with three headers, after Stripe and Standard Webhooks:

- ``Microcred-Event-Id``: the same on every retry of one event (receivers de-duplicate);
- ``Microcred-Event-Type``: e.g. ``credential.issued``;
- ``Microcred-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}.{body}")>``.

The timestamp is signed with the body so a captured request cannot be replayed later;
receivers reject signatures older than 5 minutes. During secret rotation ``v1=`` appears
once per active secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from service.delivery import http
from service.delivery.errors import NotConfigured
from service.delivery.outbox import AttemptRecord, Claimed
from service.delivery.types import ConnectorDeps, Provider, RepositoryConfig, Secret, Setting
from service.errors import BadInput

__all__ = ["PROVIDER", "WebhookConnector", "sign", "verify"]

EVENT_TYPES = {
    "webhook.credential_issued": "credential.issued",
    "webhook.credential_revoked": "credential.revoked",
    "webhook.credential_upgraded": "credential.upgraded",
}
TOLERANCE_SECONDS = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``f"{timestamp}.".encode() + body``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return mac.hexdigest()


def verify(secret: str, header: str, body: bytes, *, now: int) -> bool:
    """Receiver-side check of a ``Microcred-Signature`` header (also used by our tests)."""
    parts = [p.split("=", 1) for p in header.split(",") if "=" in p]
    stamps = [v for k, v in parts if k.strip() == "t"]
    if len(stamps) != 1 or not (stamps[0].isascii() and stamps[0].isdigit()):
        return False
    t = int(stamps[0])
    if abs(now - t) > TOLERANCE_SECONDS:
        return False
    expected = sign(secret, t, body)
    return any(
        k.strip() == "v1" and hmac.compare_digest(v.encode(), expected.encode()) for k, v in parts
    )


class WebhookConnector(http.HttpConnector):
    """POSTs signed events; any 2xx is delivery."""

    kinds = frozenset(EVENT_TYPES)

    def deliver(
        self, job: Claimed, repo: RepositoryConfig | None, record: AttemptRecord
    ) -> dict[str, Any]:
        if repo is None or not repo.config.get("url"):
            raise NotConfigured("webhook rows need a repository with a url")
        event = {
            "id": job.uuid,
            "type": EVENT_TYPES[job.kind],
            "credential_id": job.credential_id,
            "data": job.payload,
        }
        return {"status": self.post(repo, event, record)}

    def ping(self, repo: RepositoryConfig) -> int:
        """Send a signed ``ping`` event (no credential): the receiver's connection test."""
        event: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "type": "ping",
            "credential_id": None,
            "data": {},
        }
        return self.post(repo, event, AttemptRecord(started_at=self._clock()))

    def check_connection(self, repo: RepositoryConfig) -> tuple[int, list[str]]:
        """The connection test: the status the receiver answered a ping with."""
        return self.ping(repo), []

    def post(self, repo: RepositoryConfig, event: dict[str, Any], record: AttemptRecord) -> int:
        """POST one signed event; any 2xx is success (else ``ConnectorError``)."""
        if not repo.secret:
            raise NotConfigured(f"webhook {repo.name!r} has no signing secret")
        body = json.dumps(event, separators=(",", ":"), sort_keys=True).encode()
        t = int(self._clock().timestamp())
        headers = {
            "Content-Type": "application/json",
            "Microcred-Event-Id": str(event["id"]),
            "Microcred-Event-Type": str(event["type"]),
            "Microcred-Signature": f"t={t},v1={sign(repo.secret, t, body)}",
        }
        resp = http.request(
            self._client,
            "POST",
            str(repo.config["url"]),
            record=record,
            clock=self._clock,
            content=body,
            headers=headers,
            what=str(event["type"]),
        )
        return resp.status_code


class WebhookProvider(Provider):
    kind = "webhook"
    title = "Webhook"
    rank = 3
    secret = Secret(
        "signing secret", "the signing secret (webhook)", "signing secret the receiver checks"
    )
    settings = (Setting("url", "Receiver URL", placeholder="https://…", maxlength=1000),)
    issue_kind = "webhook.credential_issued"
    revoke_kind = "webhook.credential_revoked"
    upgrade_kind = "webhook.credential_upgraded"
    test_description = "Sends the receiver a signed ping event (no credential, no learner data)."
    test_summary = "the receiver answered {count} to a signed ping event"

    def check_config(self, config: dict[str, Any]) -> dict[str, Any]:
        if not str(config.get("url", "")).startswith(("https://", "http://")):
            raise BadInput("a webhook repository needs config.url (https://…)")
        return config

    def describe(self, config: Mapping[str, Any]) -> tuple[str, str, str]:
        return "Receiver", str(config.get("url", "?")), ""

    def revoke_payload(
        self, *, reason: str, credential_id: str, targets: list[dict[str, Any]]
    ) -> dict[str, Any]:
        return {"reason": reason, "credential_id": credential_id}

    def connector(self, deps: ConnectorDeps) -> WebhookConnector:
        return WebhookConnector(clock=deps.clock)

    def erasure(self, config: Mapping[str, Any], name: str, ref: str) -> str:
        host = urlsplit(str(config.get("url", ""))).netloc or "the receiver"
        return (
            f"The webhook receiver at {host} was sent the credential, with the learner's name "
            "and e-mail: ask its operator to erase them."
        )


PROVIDER = WebhookProvider()
