"""Gradebook write-back (AGS): ``ags_poster`` wires delivery's AGS connector to the LTI AGS
client, creating each course's line item once."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid as uuidlib
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import Engine, delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from service.db.engine import session as db_session
from service.db.models import AgsLineItem, Platform
from service.db.types import utcnow
from service.delivery import errors as delivery_errors
from service.delivery.outbox import AttemptRecord
from service.delivery.types import ScorePoster
from service.lti import services as lti_services
from service.lti.errors import PlatformCallFailed


def ags_poster(
    engine_: Engine, http: httpx.Client, *, clock: Callable[[], dt.datetime] = utcnow
) -> ScorePoster:
    """The poster delivery's AGS connector calls: find or create the competency's line item
    in the course (AGS 2.0 §3.2, one per competency, ``resourceId`` ``microcred:<key>``),
    then post the level as the score (§3.4; scores are "latest wins", so a retry after an
    uncertain attempt is harmless).

    The line item is created once even when several deliveries write a competency's first
    scores at the same time: its URL is kept in ``ags_line_item`` (unique per platform,
    course and competency), and a delivery claims that row before it creates the line
    item; the others wait (retried) and then use the URL the first one stored.
    """

    def post(payload: dict[str, Any], record: AttemptRecord) -> dict[str, Any]:
        ags = payload.get("ags") or {}
        with db_session(engine_) as s:
            platform = s.get(Platform, int(ags.get("platform_id") or 0))
        if platform is None or not platform.active:
            raise delivery_errors.NotConfigured("the platform of this gradebook is not active")
        client = lti_services.ServiceClient(engine_, http, platform)
        key = _line_item_key(platform.id, str(ags["lineitems"]), str(ags["resource_id"]))
        try:
            url = _line_item_url(engine_, key)
            if url is None:
                found = lti_services.line_items(
                    client, ags["lineitems"], resource_id=ags["resource_id"]
                )
                record.note(f"GET line items resource_id={ags['resource_id']}", status=200)
                if found:
                    url = _keep_line_item(engine_, key, ags, str(found[0]["id"]), now=clock())
                else:
                    url = _create_line_item_once(engine_, client, key, ags, record, now=clock())
            try:
                lti_services.post_score(
                    client,
                    url,
                    user_id=str(ags["user_id"]),
                    score_given=float(ags["score"]),
                    score_maximum=float(ags["maximum"]),
                    timestamp=clock(),
                    comment=str(ags.get("comment", "")),
                )
            except PlatformCallFailed as exc:
                if exc.status not in (404, 410):
                    raise
                # The column was deleted in the LMS: forget it; the next attempt makes it.
                _forget_line_item(engine_, key, url)
                raise delivery_errors.RetryableError(
                    f"the gradebook column {url} no longer exists in the LMS; it is created "
                    "again on the next attempt",
                    status=exc.status,
                ) from exc
            record.note("POST score", status=200)
        except PlatformCallFailed as exc:
            error = (
                delivery_errors.RetryableError
                if lti_services.is_retryable(exc)
                else delivery_errors.Rejected
            )
            raise error(exc.detail, status=exc.status) from exc
        return {"line_item": url}

    return post


LINE_ITEM_CLAIM = dt.timedelta(minutes=2)  # longer than the create request's timeout


def _line_item_key(platform_id: int | None, lineitems: str, resource_id: str) -> str:
    return hashlib.sha256(f"{platform_id}\n{lineitems}\n{resource_id}".encode()).hexdigest()


def _line_item_url(engine_: Engine, key: str) -> str | None:
    with db_session(engine_) as s:
        url = s.exec(
            select(AgsLineItem.url).where(AgsLineItem.key == key, AgsLineItem.url != "")
        ).first()
    return url or None


def _keep_line_item(
    engine_: Engine, key: str, ags: dict[str, Any], url: str, *, now: dt.datetime
) -> str:
    """Remember a line item found on the platform; returns the one remembered (the first)."""
    with db_session(engine_, write=True) as s:
        row = s.exec(select(AgsLineItem).where(AgsLineItem.key == key)).first()
        if row is not None and row.url:
            return row.url
        if row is None:
            row = _line_item_row(key, ags, now=now)
        row.url, row.claim_token, row.claimed_until = url, "", None
        s.add(row)
        try:
            s.commit()
        except IntegrityError:  # remembered by another delivery meanwhile: either will do
            s.rollback()
    return url


def _line_item_row(key: str, ags: dict[str, Any], *, now: dt.datetime) -> AgsLineItem:
    return AgsLineItem(
        key=key,
        platform_id=int(ags.get("platform_id") or 0) or None,
        lineitems_url=str(ags["lineitems"])[:1000],
        resource_id=str(ags["resource_id"])[:300],
        created_at=now,
    )


def _claim_line_item(
    engine_: Engine, key: str, ags: dict[str, Any], *, now: dt.datetime
) -> tuple[str, str]:
    """Claim the right to create the line item: ``(claim token, "")``, or ``("", URL)``
    when it exists already; raises ``NotReady`` while another delivery holds the claim."""
    token = str(uuidlib.uuid4())
    busy = delivery_errors.NotReady(
        "another delivery is creating this competency's gradebook column right now; "
        "this score follows once it exists"
    )
    with db_session(engine_, write=True) as s:
        row = s.exec(select(AgsLineItem).where(AgsLineItem.key == key)).first()
        if row is not None and row.url:
            return "", row.url
        if row is not None and row.claimed_until is not None and row.claimed_until > now:
            raise busy
        if row is None:
            row = _line_item_row(key, ags, now=now)
        # A claim whose holder died (it expired) is taken over: that holder's create, if
        # it happened, was looked up on the platform just before this.
        row.claim_token, row.claimed_until = token, now + LINE_ITEM_CLAIM
        s.add(row)
        try:
            s.commit()
        except IntegrityError:  # PostgreSQL: another delivery inserted the claim first
            s.rollback()
            raise busy from None
    return token, ""


def _create_line_item_once(
    engine_: Engine,
    client: lti_services.ServiceClient,
    key: str,
    ags: dict[str, Any],
    record: AttemptRecord,
    *,
    now: dt.datetime,
) -> str:
    token, existing = _claim_line_item(engine_, key, ags, now=now)
    if existing:
        return existing
    try:
        url = str(
            lti_services.create_line_item(
                client,
                ags["lineitems"],
                label=ags["label"],
                score_maximum=float(ags["maximum"]),
                resource_id=ags["resource_id"],
                tag="microcred",
            )["id"]
        )
    except BaseException:
        # Let the next attempt try again (it looks on the platform first, so a create that
        # did happen is found, not repeated).
        with db_session(engine_, write=True) as s:
            s.execute(
                delete(AgsLineItem).where(
                    col(AgsLineItem.key) == key,
                    col(AgsLineItem.claim_token) == token,
                    col(AgsLineItem.url) == "",
                )
            )
            s.commit()
        raise
    record.note("POST line item", status=201)
    with db_session(engine_, write=True) as s:
        s.execute(
            update(AgsLineItem)
            .where(col(AgsLineItem.key) == key, col(AgsLineItem.claim_token) == token)
            .values(url=url, claim_token="", claimed_until=None)
        )
        s.commit()
    return url


def _forget_line_item(engine_: Engine, key: str, url: str) -> None:
    with db_session(engine_, write=True) as s:
        s.execute(
            delete(AgsLineItem).where(col(AgsLineItem.key) == key, col(AgsLineItem.url) == url)
        )
        s.commit()
