"""Platform key sets: cached in the database and per process, refetched on an unknown kid.

Security Framework §6.3-6.4 and security.md L10/L11: keys come only from the registered JWKS
URL; the cache honours ``Cache-Control: max-age`` clamped to [5 min, 24 h]; a ``kid`` that is
not in the cached set triggers a refetch, at most ``jwks_refetch_burst`` per URL per
``jwks_refetch_interval_seconds`` across all processes (claimed by atomic UPDATEs in the
database) and, within a process, one at a time (a lock per URL: single flight). A small burst
rather than one: a single probe with a bogus kid must not block a real key rotation that
follows it within the minute.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import Engine, or_, update
from sqlmodel import col, select

from service import jws, outbound
from service.db.engine import session as db_session
from service.db.models import PlatformKeySet
from service.db.types import utcnow
from service.lti.errors import LaunchRejected
from service.settings import Settings

__all__ = ["FetchNeeded", "KeySetSource", "keys_for", "prefetch"]

log = logging.getLogger(__name__)

MAX_JWKS_BYTES = 1_000_000


@dataclass
class _Entry:
    keys: list[jws.PublicKey]
    expires_at: dt.datetime


_mem: dict[str, _Entry] = {}
_mem_lock = threading.Lock()
_url_locks: dict[str, threading.Lock] = {}


def _lock_for(url: str) -> threading.Lock:
    with _mem_lock:
        return _url_locks.setdefault(url, threading.Lock())


def _parse(data: Any) -> list[jws.PublicKey]:
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError("not a JWKS document (no 'keys' list)")
    out: list[jws.PublicKey] = []
    for item in data["keys"]:
        if not isinstance(item, dict) or not item.get("kid"):
            continue  # Security Framework §6.3: every key carries a kid
        if item.get("use", "sig") != "sig":
            continue
        try:
            out.append(jws.public_key_from_jwk(item))
        except (jws.TokenError, ValueError, TypeError, KeyError):
            continue  # unusable keys, or algorithms we never accept, are skipped
    return out


def _max_age(headers: httpx.Headers, settings: Settings) -> int:
    match = re.search(r"max-age=(\d+)", headers.get("cache-control", ""))
    age = int(match.group(1)) if match else settings.jwks_cache_min_seconds
    return max(settings.jwks_cache_min_seconds, min(age, settings.jwks_cache_max_seconds))


class FetchNeeded(Exception):
    """The key set of ``url`` must be fetched (``kid``: after a miss of this key id), and the
    source has no client. Nothing was claimed or changed: fetch it with a client, outside
    any transaction (``prefetch``), and try again."""

    def __init__(self, url: str, kid: str | None = None) -> None:
        super().__init__(url)
        self.url, self.kid = url, kid


class KeySetSource:
    """Fetches and caches the key set of one JWKS URL.

    ``http=None``: the keys this process holds in memory only; reading the database's copy, a
    fetch or a refetch raises ``FetchNeeded`` instead.
    """

    def __init__(self, engine: Engine, http: httpx.Client | None, settings: Settings) -> None:
        self.engine = engine
        self.http = http
        self.settings = settings

    def _client(self, url: str, kid: str | None = None) -> httpx.Client:
        if self.http is None:
            raise FetchNeeded(url, kid)
        return self.http

    def _fetch(self, url: str, now: dt.datetime) -> _Entry:
        http = self._client(url)
        try:
            resp = http.get(url, headers={"accept": "application/json"})
        except httpx.HTTPError as exc:
            raise LaunchRejected(
                f"The platform's key set could not be fetched: {outbound.describe(exc)}.",
                hint=f"The administrator should check the JWKS URL registered for this "
                f"platform ({url}) and that microcred can reach it.",
                code="jwks_unreachable",
            ) from exc
        if resp.status_code != 200 or len(resp.content) > MAX_JWKS_BYTES:
            raise LaunchRejected(
                f"The platform's key set answered HTTP {resp.status_code}.",
                hint=f"The administrator should check the JWKS URL registered ({url}).",
                code="jwks_unreachable",
            )
        try:
            data = resp.json()
            keys = _parse(data)
        except ValueError as exc:
            raise LaunchRejected(
                "The platform's key set is not a valid JWKS document.",
                hint=f"The administrator should check the JWKS URL registered ({url}).",
                code="jwks_invalid",
            ) from exc
        expires = now + dt.timedelta(seconds=_max_age(resp.headers, self.settings))
        with db_session(self.engine, write=True) as s:
            row = s.exec(select(PlatformKeySet).where(PlatformKeySet.url == url)).first()
            row = row or PlatformKeySet(url=url, keys=data, expires_at=expires)
            row.keys, row.fetched_at, row.expires_at = data, now, expires
            s.add(row)
            s.commit()
        entry = _Entry(keys=keys, expires_at=expires)
        with _mem_lock:
            _mem[url] = entry
        return entry

    def _cached(self, url: str, now: dt.datetime) -> _Entry | None:
        entry = _mem.get(url)
        if entry is not None and entry.expires_at > now:
            return entry
        if self.http is None:
            # The database's copy is read by ``prefetch``, with no session of the caller's
            # open: a launch holding a connection never asks the pool for a second one
            # (with every thread doing so at once, the pool ran dry: a 30 s stall).
            raise FetchNeeded(url)
        with db_session(self.engine) as s:
            row = s.exec(select(PlatformKeySet).where(PlatformKeySet.url == url)).first()
        if row is None or row.expires_at <= now:
            return None
        entry = _Entry(keys=_parse(row.keys), expires_at=row.expires_at)
        with _mem_lock:
            _mem[url] = entry
        return entry

    def keys(self, url: str, *, now: dt.datetime | None = None) -> list[jws.PublicKey]:
        now = now or utcnow()
        entry = self._cached(url, now)
        if entry is not None:
            return entry.keys
        self._client(url)
        with _lock_for(url):
            entry = self._cached(url, now)  # another thread may have fetched meanwhile
            return (entry or self._fetch(url, now)).keys

    def _claim_refetch(self, url: str, now: dt.datetime) -> bool:
        """Atomically take one of the refetches this interval allows (all processes); a URL
        with no stored key set has spent none (the fetch stores it)."""
        limit = now - dt.timedelta(seconds=self.settings.jwks_refetch_interval_seconds)
        with db_session(self.engine, write=True) as s:
            window = s.exec(  # a new window: the first refetch in it
                update(PlatformKeySet)
                .where(col(PlatformKeySet.url) == url)
                .where(
                    or_(
                        col(PlatformKeySet.refetched_at).is_(None),
                        col(PlatformKeySet.refetched_at) < limit,
                    )
                )
                .values(refetched_at=now, refetch_count=1)
            )
            claimed = window.rowcount == 1
            if not claimed:  # inside the window: one more while the burst allows
                more = s.exec(
                    update(PlatformKeySet)
                    .where(col(PlatformKeySet.url) == url)
                    .where(col(PlatformKeySet.refetch_count) < self.settings.jwks_refetch_burst)
                    .values(refetch_count=PlatformKeySet.refetch_count + 1)
                )
                claimed = more.rowcount == 1
            if not claimed:  # no row at all: nothing was fetched, let alone refetched, lately
                # (this process's copy outlived the database's: a restored database)
                stored = select(PlatformKeySet.id).where(col(PlatformKeySet.url) == url)
                claimed = s.exec(stored).first() is None
            s.commit()
        return bool(claimed)

    def keys_after_miss(
        self, url: str, kid: str, *, now: dt.datetime | None = None
    ) -> list[jws.PublicKey]:
        """Keys after a kid miss: one refetch if this URL has not been refetched lately."""
        now = now or utcnow()
        with _lock_for(url):
            entry = _mem.get(url)
            if entry is not None and any(k.kid == kid for k in entry.keys):
                return entry.keys  # a concurrent refetch already brought it
            self._client(url, kid)  # before claiming: the retry with a client claims
            if not self._claim_refetch(url, now):
                log.info("kid miss on %s: refetch skipped (rate limit)", url)
                return entry.keys if entry else []
            log.info("kid miss on %s: refetching the key set", url)
            return self._fetch(url, now).keys


def keys_for(source: KeySetSource, url: str, kid: str) -> list[jws.PublicKey]:
    """Trusted keys of ``url`` that may verify a token with header ``kid``."""
    keys = source.keys(url)
    if any(k.kid == kid for k in keys):
        return keys
    return source.keys_after_miss(url, kid)


def prefetch(source: KeySetSource, needed: FetchNeeded) -> None:
    """What ``needed`` asks for, with ``source``'s client: the key set, or a refetch after a
    kid miss (within the refetch limit)."""
    if needed.kid is None:
        source.keys(needed.url)
    else:
        source.keys_after_miss(needed.url, needed.kid)


def forget_memory_cache() -> None:
    """Tests: drop the per-process layer (the database layer stays)."""
    with _mem_lock:
        _mem.clear()
