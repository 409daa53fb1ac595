"""NRPS 2.0 and AGS 2.0 resources of the demo platform: JSON shapes, filters, paging.

Pure functions over the platform state; ``router.py`` adds HTTP (media types, Link headers).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeGuard, TypeVar

from service.demo.config import DemoConfig
from service.demo.course import Course
from service.demo.state import DemoState, LineItem, Score
from service.errors import BadInput, NotFound

__all__ = [
    "ACTIVITY_PROGRESS",
    "GRADING_PROGRESS",
    "MediaType",
    "Page",
    "lineitem_json",
    "memberships",
    "parse_lineitem",
    "parse_score",
    "results",
]

T = TypeVar("T")


class MediaType:
    MEMBERSHIPS = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"
    LINEITEM = "application/vnd.ims.lis.v2.lineitem+json"
    LINEITEMS = "application/vnd.ims.lis.v2.lineitemcontainer+json"
    SCORE = "application/vnd.ims.lis.v1.score+json"
    RESULTS = "application/vnd.ims.lis.v2.resultcontainer+json"


# AGS 2.0 §3.4.6 and §3.4.7
ACTIVITY_PROGRESS = frozenset({"Initialized", "Started", "InProgress", "Submitted", "Completed"})
GRADING_PROGRESS = frozenset({"FullyGraded", "Pending", "PendingManual", "Failed", "NotReady"})


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_page: int | None


def paginate(rows: Sequence[T], *, limit: int | None, page: int, max_limit: int) -> Page[T]:
    if page < 1:
        raise BadInput("page must be 1 or more")
    if limit is None:
        return Page(list(rows), None)
    if limit < 1:
        raise BadInput("limit must be 1 or more")
    limit = min(limit, max_limit)
    start = (page - 1) * limit
    chunk = list(rows[start : start + limit])
    return Page(chunk, page + 1 if start + limit < len(rows) else None)


def memberships(
    config: DemoConfig, course: Course, *, role: str | None, limit: int | None, page: int
) -> tuple[dict[str, Any], Page[Any]]:
    """The membership container (NRPS 2.0 §2.2), optionally filtered by role (§2.3.1)."""
    members = list(course.members)
    if role:
        # The filter is a full role URI or its short name (NRPS 2.0 §2.3.1).
        members = [m for m in members if any(r == role or r.endswith("#" + role) for r in m.roles)]
    chunk = paginate(members, limit=limit, page=page, max_limit=config.page_size_limit)
    body = {
        "id": config.memberships_url(course.context_id),
        "context": {"id": course.context_id, "label": course.label, "title": course.title},
        "members": [
            {
                "status": "Active",
                "user_id": m.user_id,
                "name": m.name,
                "given_name": m.given_name,
                "family_name": m.family_name,
                "email": m.email,
                "roles": m.roles,
            }
            for m in chunk.items
        ],
    }
    return body, chunk


def lineitem_json(config: DemoConfig, course: Course, item: LineItem) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": config.lineitem_url(course.context_id, item.id),
        "label": item.label,
        "scoreMaximum": item.score_maximum,
    }
    for key, value in (
        ("resourceId", item.resource_id),
        ("tag", item.tag),
        ("resourceLinkId", item.resource_link_id),
        ("startDateTime", item.start_date_time),
        ("endDateTime", item.end_date_time),
    ):
        if value:
            body[key] = value
    return body


def filter_lineitems(items: list[LineItem], query: Mapping[str, str | None]) -> list[LineItem]:
    """AGS 2.0 §3.2.4 filters: resource_link_id, resource_id, tag."""
    for name in ("resource_link_id", "resource_id", "tag"):
        value = query.get(name)
        if value is not None:
            items = [i for i in items if getattr(i, name) == value]
    return items


def parse_lineitem(body: Any, resource_link_ids: set[str]) -> dict[str, Any]:
    """Validate a line item (AGS 2.0 §3.2.2); returns the fields to store."""
    if not isinstance(body, dict):
        raise BadInput("the line item must be a JSON object")
    label = body.get("label")
    if not isinstance(label, str) or not label.strip():
        raise BadInput("label is required and must be a non-empty string")
    maximum = body.get("scoreMaximum")
    if not _number(maximum) or maximum <= 0:
        raise BadInput("scoreMaximum is required and must be a number greater than 0")
    link = body.get("resourceLinkId") or ""
    if link and link not in resource_link_ids:
        raise BadInput(f"resourceLinkId {link!r} is not a resource link of this course")
    fields: dict[str, Any] = {"label": label.strip(), "score_maximum": float(maximum)}
    for key, attr in (("resourceId", "resource_id"), ("tag", "tag")):
        value = body.get(key, "")
        if not isinstance(value, str):
            raise BadInput(f"{key} must be a string")
        fields[attr] = value
    fields["resource_link_id"] = link
    for key, attr in (("startDateTime", "start_date_time"), ("endDateTime", "end_date_time")):
        value = body.get(key)
        if value is not None:
            _timestamp(value, key)
            fields[attr] = value
    return fields


def _number(value: Any) -> TypeGuard[float]:
    """A finite JSON number (``true`` is not one)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _timestamp(value: Any, name: str) -> dt.datetime:
    if not isinstance(value, str):
        raise BadInput(f"{name} must be an ISO 8601 string with a time zone")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadInput(f"{name} is not an ISO 8601 timestamp: {value[:40]!r}") from exc
    if parsed.tzinfo is None:
        raise BadInput(f"{name} must carry a time zone offset")
    return parsed


def parse_score(body: Any, course: Course) -> Score:
    """Validate a score publish (AGS 2.0 §3.4)."""
    if not isinstance(body, dict):
        raise BadInput("the score must be a JSON object")
    user_id = body.get("userId")
    if not isinstance(user_id, str) or course.member(user_id) not in course.members:
        # Canvas answers 422 when the user is not in the course; so do we.
        raise BadInput("userId is not a member of this course")
    activity = body.get("activityProgress")
    grading = body.get("gradingProgress")
    if activity not in ACTIVITY_PROGRESS:
        raise BadInput(f"activityProgress must be one of {sorted(ACTIVITY_PROGRESS)}")
    if grading not in GRADING_PROGRESS:
        raise BadInput(f"gradingProgress must be one of {sorted(GRADING_PROGRESS)}")
    given, maximum = body.get("scoreGiven"), body.get("scoreMaximum")
    for name, value in (("scoreGiven", given), ("scoreMaximum", maximum)):
        if value is not None and not _number(value):
            raise BadInput(f"{name} must be a number")
    if given is not None and maximum is None:
        raise BadInput("scoreMaximum is required when scoreGiven is present")
    if given is not None and given < 0:
        raise BadInput("scoreGiven must not be negative")
    if maximum is not None and maximum <= 0:
        raise BadInput("scoreMaximum must be greater than 0")
    comment = body.get("comment")
    if comment is not None and not isinstance(comment, str):
        raise BadInput("comment must be a string")
    return Score(
        user_id=user_id,
        score_given=None if given is None else float(given),
        score_maximum=None if maximum is None else float(maximum),
        activity_progress=str(activity),
        grading_progress=str(grading),
        timestamp=_timestamp(body.get("timestamp"), "timestamp"),
        comment=comment,
    )


def results(
    config: DemoConfig,
    course: Course,
    state: DemoState,
    item_id: str,
    *,
    user_id: str | None,
    limit: int | None,
    page: int,
) -> tuple[list[dict[str, Any]], Page[Score]]:
    """The result container of one line item (AGS 2.0 §3.3)."""
    item = state.line_item(item_id)
    if item is None:
        raise NotFound(f"line item {item_id} does not exist")
    scores = state.scores(item_id)
    if user_id is not None:
        scores = [s for s in scores if s.user_id == user_id]
    chunk = paginate(scores, limit=limit, page=page, max_limit=config.page_size_limit)
    item_url = config.lineitem_url(course.context_id, item_id)
    out = []
    for s in chunk.items:
        row: dict[str, Any] = {
            "id": f"{item_url}/results/{s.user_id}",
            "scoreOf": item_url,
            "userId": s.user_id,
        }
        if s.score_given is not None and s.score_maximum and s.grading_progress == "FullyGraded":
            # Results are reported on the line item's scale (AGS 2.0 §3.3.5).
            row["resultScore"] = round(s.score_given / s.score_maximum * item.score_maximum, 6)
            row["resultMaximum"] = item.score_maximum
        if s.comment:
            row["comment"] = s.comment
        out.append(row)
    return out, chunk
