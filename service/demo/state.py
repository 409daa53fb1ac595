"""The demo platform's mutable state, in memory for the process lifetime.

Every read-modify-write happens under one lock, so concurrent requests (FastAPI runs sync
routes in a thread pool) never lose an update or accept a one-time value twice.
"""

from __future__ import annotations

import datetime as dt
import itertools
import secrets
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Literal

__all__ = ["AccessToken", "DemoState", "LaunchIntent", "LineItem", "PlacedLink", "Score"]

MessageType = Literal["LtiResourceLinkRequest", "LtiDeepLinkingRequest"]


@dataclass(frozen=True)
class LaunchIntent:
    """What an ``lti_message_hint`` stands for: who launches what, issued by the course page."""

    user_id: str
    message_type: MessageType
    resource_link_id: str
    expires_at: float
    target_link_uri: str = ""


@dataclass(frozen=True)
class AccessToken:
    client_id: str
    scopes: frozenset[str]
    expires_at: float


@dataclass(frozen=True)
class LineItem:
    id: str
    label: str
    score_maximum: float
    resource_id: str = ""
    tag: str = ""
    resource_link_id: str = ""
    start_date_time: str | None = None
    end_date_time: str | None = None


@dataclass(frozen=True)
class Score:
    user_id: str
    score_given: float | None
    score_maximum: float | None
    activity_progress: str
    grading_progress: str
    timestamp: dt.datetime
    comment: str | None = None


@dataclass(frozen=True)
class PlacedLink:
    """A resource link the tool returned through deep linking."""

    id: str
    title: str
    url: str | None
    text: str | None
    custom: dict[str, str] = field(default_factory=dict)


class DemoState:
    """All mutable platform data. Methods are atomic."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._intents: dict[str, LaunchIntent] = {}
        self._tokens: dict[str, AccessToken] = {}
        self._jtis: dict[str, float] = {}
        self._dl_data: dict[str, float] = {}
        self._line_items: dict[str, LineItem] = {}
        self._scores: dict[tuple[str, str], Score] = {}
        self._links: list[PlacedLink] = []
        self._last_claims: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)

    # --- launch intents (lti_message_hint) ---

    def add_intent(self, intent: LaunchIntent, *, now: float) -> str:
        hint = secrets.token_urlsafe(24)
        with self._lock:
            self._prune(now)
            self._intents[hint] = intent
        return hint

    def intent(self, hint: str, *, now: float) -> LaunchIntent | None:
        # Not single-use: a tool may restart its login within the TTL (a cookie check, a new
        # window), and the id_token it gets is bound to its own nonce anyway.
        with self._lock:
            found = self._intents.get(hint)
        if found is None or found.expires_at < now:
            return None
        return found

    # --- deep linking `data` values we issued (echoed back in the response) ---

    def add_dl_data(self, *, expires_at: float) -> str:
        value = secrets.token_urlsafe(16)
        with self._lock:
            self._dl_data[value] = expires_at
        return value

    def take_dl_data(self, value: str, *, now: float) -> bool:
        with self._lock:
            expires = self._dl_data.pop(value, None)
        return expires is not None and expires >= now

    # --- OAuth2 client credentials ---

    def use_jti(self, jti: str, *, expires_at: float, now: float) -> bool:
        """Record an assertion ``jti``; False if it was seen and has not expired (RFC 7523 §3)."""
        with self._lock:
            self._prune(now)
            if jti in self._jtis:
                return False
            self._jtis[jti] = expires_at
            return True

    def issue_token(self, token: AccessToken) -> str:
        value = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[value] = token
        return value

    def token(self, value: str, *, now: float) -> AccessToken | None:
        with self._lock:
            found = self._tokens.get(value)
        if found is None or found.expires_at < now:
            return None
        return found

    def _prune(self, now: float) -> None:
        # Called with the lock held; keeps the maps from growing without bound.
        for store in (self._jtis, self._dl_data):
            for key in [k for k, exp in store.items() if exp < now]:
                del store[key]
        for key in [k for k, t in self._tokens.items() if t.expires_at < now]:
            del self._tokens[key]
        for key in [k for k, i in self._intents.items() if i.expires_at < now]:
            del self._intents[key]

    # --- AGS ---

    def add_line_item(self, **fields: Any) -> LineItem:
        with self._lock:
            item = LineItem(id=str(next(self._ids)), **fields)
            self._line_items[item.id] = item
        return item

    def line_items(self) -> list[LineItem]:
        with self._lock:
            return sorted(self._line_items.values(), key=lambda i: int(i.id))

    def line_item(self, item_id: str) -> LineItem | None:
        with self._lock:
            return self._line_items.get(item_id)

    def update_line_item(self, item_id: str, **fields: Any) -> LineItem | None:
        with self._lock:
            item = self._line_items.get(item_id)
            if item is None:
                return None
            item = replace(item, **fields)
            self._line_items[item_id] = item
            return item

    def delete_line_item(self, item_id: str) -> bool:
        with self._lock:
            if self._line_items.pop(item_id, None) is None:
                return False
            for key in [k for k in self._scores if k[0] == item_id]:
                del self._scores[key]
            return True

    def put_score(self, item_id: str, score: Score) -> Literal["stored", "stale", "gone"]:
        """Store a score unless a newer one is on record (AGS 2.0 §3.4: timestamps only move on)."""
        with self._lock:
            if item_id not in self._line_items:
                return "gone"
            current = self._scores.get((item_id, score.user_id))
            if current is not None and current.timestamp >= score.timestamp:
                return "stale"
            self._scores[(item_id, score.user_id)] = score
            return "stored"

    def scores(self, item_id: str) -> list[Score]:
        with self._lock:
            return sorted(
                (s for (i, _), s in self._scores.items() if i == item_id), key=lambda s: s.user_id
            )

    # --- what the LMS last sent each member (shown on the course page) ---

    def record_claims(self, user_id: str, claims: dict[str, Any]) -> None:
        with self._lock:
            self._last_claims[user_id] = claims

    def last_claims(self, user_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._last_claims.get(user_id)

    # --- deep-linked content ---

    def add_links(self, links: list[PlacedLink]) -> None:
        with self._lock:
            self._links.extend(links)

    def links(self) -> list[PlacedLink]:
        with self._lock:
            return list(self._links)

    def link(self, link_id: str) -> PlacedLink | None:
        with self._lock:
            return next((link for link in self._links if link.id == link_id), None)
