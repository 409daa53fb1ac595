"""LTI Advantage service clients: OAuth2 client-credentials tokens, NRPS and AGS.

Tokens (Security Framework §4.1, RFC 7523): the assertion has iss = sub = client_id, one
``aud`` string (the platform's declared audience, else its token endpoint; never a list —
rfc7523bis), a short ``exp``, a unique ``jti``, and the tool key's ``kid``. Access tokens are
cached in the database per (platform, scope set) until 60 s before ``expires_in`` runs out,
so every process shares them; a 401 from a service drops the cached token and retries once.

Connector errors: ``PlatformCallFailed`` with ``status`` (None for network errors);
retryable are network errors, 408, 429 and 5xx (``is_retryable``).

NRPS 2.0 (membership container, Link-header paging) and AGS 2.0 (line items, scores,
results) use the media types of lti.md §1.8.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from service import jws, outbound
from service.db.engine import session as db_session
from service.db.models import Platform, ServiceToken
from service.db.types import utcnow
from service.lti import keys
from service.lti.errors import PlatformCallFailed

__all__ = [
    "AGS_LINEITEM",
    "AGS_LINEITEM_READONLY",
    "AGS_SCORE",
    "NRPS_READ",
    "Member",
    "ServiceClient",
    "create_line_item",
    "is_retryable",
    "line_items",
    "post_score",
    "roster",
]

log = logging.getLogger(__name__)

AGS_LINEITEM = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem"
AGS_LINEITEM_READONLY = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem.readonly"
AGS_SCORE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"
NRPS_READ = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"

MT_LINEITEM = "application/vnd.ims.lis.v2.lineitem+json"
MT_LINEITEMS = "application/vnd.ims.lis.v2.lineitemcontainer+json"
MT_SCORE = "application/vnd.ims.lis.v1.score+json"
MT_MEMBERS = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"

ASSERTION_SECONDS = 300
MAX_PAGES = 200


def is_retryable(exc: PlatformCallFailed) -> bool:
    return exc.status is None or exc.status in (408, 425, 429) or exc.status >= 500


class ServiceClient:
    """Authorised calls to one platform's services."""

    def __init__(self, engine: Engine, http: httpx.Client, platform: Platform) -> None:
        self.engine = engine
        self.http = http
        self.platform_id = platform.id or 0
        self.client_id = platform.client_id
        self.token_url = platform.auth_token_url
        self.audience = platform.auth_audience or platform.auth_token_url

    # --- tokens ---------------------------------------------------------------------------

    def assertion(self, *, now: dt.datetime | None = None) -> str:
        now = now or utcnow()
        with db_session(self.engine, write=True) as s:
            key = keys.signing_key(s)
            s.commit()
        issued = int(now.timestamp())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.audience,
            "iat": issued,
            "exp": issued + ASSERTION_SECONDS,
            "jti": str(uuid.uuid4()),
        }
        return jws.sign(claims, key, headers={"typ": "JWT"})

    def access_token(self, scopes: Iterable[str], *, now: dt.datetime | None = None) -> str:
        now = now or utcnow()
        scope_key = " ".join(sorted(set(scopes)))
        with db_session(self.engine) as s:
            cached = self._stored(s, scope_key)
        if cached is not None and cached.expires_at > now + dt.timedelta(seconds=60):
            return cached.access_token
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": self.assertion(now=now),
            "scope": scope_key,
        }
        resp = self._send("POST", self.token_url, data=form, headers={"accept": "application/json"})
        try:
            data = resp.json()
            token = data["access_token"]
            expires_in = int(data.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError) as exc:
            raise PlatformCallFailed(
                "The platform's token endpoint answered without an access token.",
                hint="Check the token URL registered for this platform.",
                status=resp.status_code,
            ) from exc
        if not isinstance(token, str) or not token:
            raise PlatformCallFailed("The platform returned an empty access token.")
        self._store(scope_key, token, now + dt.timedelta(seconds=max(expires_in, 0)))
        return token

    def _stored(self, s: Session, scope_key: str) -> ServiceToken | None:
        """This platform's stored token for ``scope_key``, if any."""
        return s.exec(
            select(ServiceToken).where(
                ServiceToken.platform_id == self.platform_id,
                ServiceToken.scope_key == scope_key,
            )
        ).first()

    def _store(self, scope_key: str, token: str, expires_at: dt.datetime) -> None:
        try:
            with db_session(self.engine, write=True) as s:
                row = self._stored(s, scope_key)
                row = row or ServiceToken(
                    platform_id=self.platform_id,
                    scope_key=scope_key,
                    access_token=token,
                    expires_at=expires_at,
                )
                row.access_token, row.expires_at = token, expires_at
                s.add(row)
                s.commit()
        except IntegrityError:
            pass  # another process stored a token for this scope set first; both are valid

    def _forget(self, scope_key: str) -> None:
        with db_session(self.engine, write=True) as s:
            row = self._stored(s, scope_key)
            if row is not None:
                s.delete(row)
                s.commit()

    # --- calls ----------------------------------------------------------------------------

    def _send(self, method: str, url: str, **kw: Any) -> httpx.Response:
        try:
            resp = self.http.request(method, url, **kw)
        except httpx.HTTPError as exc:
            raise PlatformCallFailed(
                f"Calling the platform failed: {outbound.describe(exc)}.", status=None
            ) from exc
        if resp.status_code >= 400:
            raise PlatformCallFailed(
                f"The platform answered HTTP {resp.status_code} to {method} {urlsplit(url).path}.",
                status=resp.status_code,
            )
        return resp

    def call(
        self,
        method: str,
        url: str,
        *,
        scopes: Iterable[str],
        accept: str,
        json_body: Any = None,
        content_type: str | None = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        scope_list = list(scopes)
        headers = {"accept": accept}
        kw: dict[str, Any] = {"headers": headers, "params": params}
        if json_body is not None:
            kw["content"] = json.dumps(json_body).encode()
            headers["content-type"] = content_type or "application/json"
        for attempt in (1, 2):
            headers["authorization"] = f"Bearer {self.access_token(scope_list)}"
            try:
                return self._send(method, url, **kw)
            except PlatformCallFailed as exc:
                if exc.status != 401 or attempt == 2:
                    raise
                self._forget(" ".join(sorted(set(scope_list))))
        raise AssertionError("unreachable")

    def pages(
        self, url: str, *, scopes: Iterable[str], accept: str, params: dict[str, str] | None = None
    ) -> Iterator[httpx.Response]:
        """Follow ``Link: <…>; rel="next"`` (bounded)."""
        next_url: str | None = url
        for _ in range(MAX_PAGES):
            if not next_url:
                return
            resp = self.call("GET", next_url, scopes=scopes, accept=accept, params=params)
            params = None  # a next link carries its own query
            yield resp
            next_url = resp.links.get("next", {}).get("url")


# --- NRPS ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    user_id: str
    roles: list[str]
    status: str = "Active"
    name: str = ""
    given_name: str = ""
    family_name: str = ""
    email: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def roster(client: ServiceClient, url: str, *, resource_link_id: str = "") -> list[Member]:
    """All members of the context (every page)."""
    params = {"rlid": resource_link_id} if resource_link_id else None
    out: list[Member] = []
    for resp in client.pages(url, scopes=[NRPS_READ], accept=MT_MEMBERS, params=params):
        try:
            members = resp.json()["members"]
        except (ValueError, KeyError, TypeError) as exc:
            raise PlatformCallFailed("The roster is not a membership container.") from exc
        for m in members if isinstance(members, list) else []:
            if not isinstance(m, dict) or not isinstance(m.get("user_id"), str):
                continue
            named = {f: str(m.get(f) or "") for f in ("name", "given_name", "family_name", "email")}
            out.append(
                Member(
                    user_id=m["user_id"],
                    roles=[r for r in m.get("roles") or [] if isinstance(r, str)],
                    status=str(m.get("status") or "Active"),
                    raw=m,
                    **named,
                )
            )
    return out


# --- AGS ----------------------------------------------------------------------------------


def _sub_url(url: str, suffix: str) -> str:
    """``{lineitem}/scores`` keeping the query (Moodle: ``…/lineitem?type_id=2``)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + suffix))


def _listed(
    client: ServiceClient, url: str, *, scopes: list[str], accept: str, params: dict[str, str]
) -> list[dict[str, Any]]:
    """The JSON objects of every page of a container (line items, results)."""
    out: list[dict[str, Any]] = []
    for resp in client.pages(url, scopes=scopes, accept=accept, params=params or None):
        data = resp.json()
        if isinstance(data, list):
            out.extend(x for x in data if isinstance(x, dict))
    return out


def _given(**values: str) -> dict[str, str]:
    return {k: v for k, v in values.items() if v}


def line_items(
    client: ServiceClient,
    url: str,
    *,
    resource_link_id: str = "",
    tag: str = "",
    resource_id: str = "",
) -> list[dict[str, Any]]:
    params = _given(resource_link_id=resource_link_id, tag=tag, resource_id=resource_id)
    return _listed(client, url, scopes=[AGS_LINEITEM_READONLY], accept=MT_LINEITEMS, params=params)


def create_line_item(
    client: ServiceClient,
    url: str,
    *,
    label: str,
    score_maximum: float,
    resource_id: str = "",
    tag: str = "",
    resource_link_id: str = "",
) -> dict[str, Any]:
    body: dict[str, Any] = {"label": label, "scoreMaximum": score_maximum}
    body |= _given(resourceId=resource_id, tag=tag, resourceLinkId=resource_link_id)
    resp = client.call(
        "POST",
        url,
        scopes=[AGS_LINEITEM],
        accept=MT_LINEITEM,
        json_body=body,
        content_type=MT_LINEITEM,
    )
    data = resp.json()
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise PlatformCallFailed("The created line item has no id.", status=resp.status_code)
    return data


def post_score(
    client: ServiceClient,
    line_item_url: str,
    *,
    user_id: str,
    score_given: float,
    score_maximum: float,
    timestamp: dt.datetime,
    comment: str = "",
) -> None:
    body: dict[str, Any] = {
        "userId": user_id,
        "scoreGiven": score_given,
        "scoreMaximum": score_maximum,
        "activityProgress": "Completed",
        "gradingProgress": "FullyGraded",
        "timestamp": timestamp.astimezone(dt.UTC).isoformat(timespec="milliseconds"),
    }
    if comment:
        body["comment"] = comment
    client.call(
        "POST",
        _sub_url(line_item_url, "/scores"),
        scopes=[AGS_SCORE],
        accept="application/json",
        json_body=body,
        content_type=MT_SCORE,
    )
