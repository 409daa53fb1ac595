"""Canvas REST API: assignment scores, rubric assessments and classic quiz submissions.

Endpoints (https://canvas.instructure.com/doc/api/, reference/lti.md §3.8):

- ``GET /api/v1/courses/:course_id/assignments`` -> [{id, name, points_possible, rubric:
  [{id, description, points, ratings: [{id, description, points}]}], quiz_id,
  is_quiz_assignment, published}]
- ``GET /api/v1/courses/:course_id/assignments/:id/submissions?include[]=rubric_assessment``
  -> [{user_id, score, attempt, submitted_at, graded_at, workflow_state, excused,
  rubric_assessment: {criterion_id: {points, rating_id, comments}}}]
- ``GET /api/v1/courses/:course_id/students/submissions?student_ids[]=all&graded_since=…
  &include[]=rubric_assessment`` -> [{assignment_id, user_id, score, …}]: an incremental
  pull (``fetch_course(..., since=...)``) reads only the submissions graded since then,
  in one list for the course, and the quiz submissions of the quizzes among them
  (Submissions API, "List submissions for multiple assignments"). Deletions are not
  visible that way: the scheduled sync pulls in full now and then.
- ``GET /api/v1/courses/:course_id/quizzes/:quiz_id/submissions`` -> {quiz_submissions:
  [{user_id, attempt, score, kept_score, quiz_points_possible, finished_at,
  workflow_state}]}
- ``GET /api/v1/courses/:course_id/users?enrollment_type[]=student&include[]=email`` for
  matching by e-mail when no ``person_link`` exists (the e-mail is never stored).

Lists are paginated with ``Link: <…>; rel="next"`` (Pagination docs); we follow it only
on the same origin so the token never goes elsewhere. Auth is an OAuth2 bearer token;
Canvas answers 401 with ``WWW-Authenticate`` when it expired, and we refresh once with
``grant_type=refresh_token`` at ``/login/oauth2/token`` (OAuth2 docs). Canvas throttles
with ``403 Forbidden (Rate Limit Exceeded)`` (Throttling docs), which we retry like 429.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from service import outbound
from service.sources.connectors.base import Fetched, RetryPolicy, send
from service.sources.errors import SourceAuthFailed, SourceDataError, SourceRefused
from service.sources.types import LearnerRef, Problem, RubricLevel, SourceKind, ordered_scale

__all__ = ["CanvasConnector", "TokenRefreshed"]

MAX_PAGES = 1000
TokenRefreshed = Callable[[str, dt.datetime | None], None]


def _throttled(response: httpx.Response) -> bool:
    return response.status_code == 429 or (
        response.status_code == 403 and "rate limit exceeded" in response.text.lower()
    )


def _when(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.astimezone(dt.UTC) if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _rating_points(rating: Mapping[str, Any] | None) -> float:
    return float((rating or {}).get("points") or 0)


class CanvasConnector:
    kind = "canvas"

    def __init__(
        self,
        *,
        base_url: str,
        access_token: str,
        refresh_token: str | None = None,
        client_id: str = "",
        client_secret: str | None = None,
        expires_at: dt.datetime | None = None,
        on_refresh: TokenRefreshed | None = None,
        origin: str = "canvas",
        client: httpx.Client | None = None,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.origin = origin
        self._access = access_token
        self._refresh = refresh_token
        self._client_id = client_id
        self._client_secret = client_secret
        self._expires_at = expires_at
        self._on_refresh = on_refresh
        self._client = client or outbound.client(outbound.default_policy(), timeout=30.0)
        self._policy = policy or RetryPolicy()
        self._sleep = sleep
        self._now = now
        self._requests = 0

    # -- auth ---------------------------------------------------------------------------

    def _can_refresh(self) -> bool:
        return bool(self._refresh and self._client_id and self._client_secret)

    def refresh(self) -> None:
        """Exchange the refresh token for a new access token (Canvas OAuth2 docs)."""
        request = self._client.build_request(
            "POST",
            f"{self.base_url}/login/oauth2/token",
            data={
                "grant_type": "refresh_token",
                "client_id": self._client_id,
                "client_secret": self._client_secret or "",
                "refresh_token": self._refresh or "",
            },
        )
        self._requests += 1
        response = send(
            self._client,
            request,
            what="Canvas token refresh",
            policy=self._policy,
            sleep=self._sleep,
        )
        body = self._json(response, "token refresh") if response.status_code == 200 else None
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise SourceAuthFailed(
                f"Canvas refused to refresh the access token (HTTP {response.status_code})",
                hint="The refresh token was revoked or the developer key changed; connect the "
                "Canvas account again.",
            )
        expires_in = body.get("expires_in") if isinstance(body, dict) else None
        self._access = token
        self._expires_at = (
            self._now() + dt.timedelta(seconds=int(expires_in))
            if isinstance(expires_in, int)
            else None
        )
        if self._on_refresh is not None:
            self._on_refresh(token, self._expires_at)

    # -- HTTP -----------------------------------------------------------------------------

    def _json(self, response: httpx.Response, what: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise SourceDataError(f"Canvas {what}: the answer is not JSON") from None

    def get(self, url: str, what: str, params: Any = None) -> httpx.Response:
        soon = self._now() + dt.timedelta(seconds=30)
        if self._expires_at is not None and self._expires_at <= soon and self._can_refresh():
            self.refresh()
        refreshed = False
        while True:
            request = self._client.build_request(
                "GET", url, params=params, headers={"Authorization": f"Bearer {self._access}"}
            )
            self._requests += 1
            response = send(
                self._client,
                request,
                what=f"Canvas {what}",
                policy=self._policy,
                sleep=self._sleep,
                throttled=_throttled,
            )
            # Canvas marks an invalid or expired token with WWW-Authenticate; a 401
            # without it means "user not authorized" for this resource (API basics docs).
            expired = "www-authenticate" in response.headers
            if response.status_code == 401 and expired and self._can_refresh() and not refreshed:
                self.refresh()
                refreshed = True
                continue
            break
        if response.status_code == 401 and not expired:
            raise SourceRefused(
                f"Canvas {what}: the token's user is not authorized (HTTP 401)",
                hint="The token's user needs a teacher or admin role in the course.",
            )
        if response.status_code == 401:
            raise SourceAuthFailed(
                f"Canvas {what}: the access token was rejected (HTTP 401)",
                hint="The token expired or was revoked and could not be refreshed; connect the "
                "Canvas account again.",
            )
        if response.status_code == 404:
            raise SourceRefused(
                f"Canvas {what}: not found (HTTP 404)",
                hint="Check the Canvas course id ($Canvas.course.id) of the connection.",
            )
        if response.status_code >= 400:
            raise SourceRefused(
                f"Canvas {what}: HTTP {response.status_code}",
                hint="The token's user needs a teacher or admin role in the course.",
            )
        return response

    def paged(self, path: str, what: str, params: Any = None, key: str = "") -> list[Any]:
        """Every item of a paginated list, following Link rel="next" on our origin only."""
        url: str | None = f"{self.base_url}{path}"
        origin = urlsplit(self.base_url)[:2]
        items: list[Any] = []
        for _page in range(MAX_PAGES):
            if url is None:
                return items
            response = self.get(url, what, params)
            body = self._json(response, what)
            page = body.get(key) if key and isinstance(body, dict) else body
            if not isinstance(page, list):
                raise SourceDataError(f"Canvas {what}: expected a list, got {type(body).__name__}")
            items += page
            nxt = response.links.get("next", {}).get("url")
            if nxt is not None and urlsplit(nxt)[:2] != origin:
                raise SourceDataError(
                    f"Canvas {what}: the next page points to another host; refusing to send "
                    "the token there"
                )
            url, params = nxt, None  # the next link carries the query
        raise SourceDataError(f"Canvas {what}: more than {MAX_PAGES} pages")

    # -- reading a course ---------------------------------------------------------------

    def fetch_course(self, lms_course_id: str, *, since: dt.datetime | None = None) -> Fetched:
        """Read every scored submission, rubric assessment and quiz submission of a course
        (with ``since``: the submissions graded since then)."""
        if not (lms_course_id.isascii() and lms_course_id.isdigit()):
            raise SourceRefused(
                f"{lms_course_id!r} is not a Canvas course id (a number)",
                hint="Pass the Canvas course id ($Canvas.course.id), not the LTI context id.",
            )
        try:
            return self._fetch(lms_course_id, since)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SourceDataError(
                f"Canvas answered without a field the documented shape has ({exc!r})",
                hint="Nothing was imported.",
            ) from exc

    def _fetch(self, cid: str, since: dt.datetime | None) -> Fetched:
        out = Fetched(self.origin, incremental=since is not None)
        base = f"/api/v1/courses/{cid}"
        users = self.paged(
            f"{base}/users",
            "course users",
            [("enrollment_type[]", "student"), ("include[]", "email"), ("per_page", "100")],
        )
        emails = {str(u["id"]): str(u.get("email") or "") for u in users}
        assignments = self.paged(f"{base}/assignments", "assignments", {"per_page": "100"})
        changed: dict[str, list[Any]] | None = None
        if since is not None:
            changed = {}
            for sub in self.paged(
                f"{base}/students/submissions",
                "submissions graded since the last pull",
                [
                    ("student_ids[]", "all"),
                    ("graded_since", since.astimezone(dt.UTC).isoformat()),
                    ("include[]", "rubric_assessment"),
                    ("per_page", "100"),
                ],
            ):
                changed.setdefault(str(sub["assignment_id"]), []).append(sub)
        for a in assignments:
            if a.get("published") is False:
                continue
            if changed is not None:
                if str(a["id"]) not in changed:
                    continue
                subs = changed[str(a["id"])]
            else:
                subs = self.paged(
                    f"{base}/assignments/{a['id']}/submissions",
                    f"submissions of assignment {a['id']}",
                    [("include[]", "rubric_assessment"), ("per_page", "100")],
                )
            quiz_id = a.get("quiz_id")
            if quiz_id:
                self._quiz(out, base, a, quiz_id, emails)
            for s in subs:
                self._submission(out, a, s, emails, skip_score=bool(quiz_id))
        out.requests = self._requests
        return out

    def _learner(self, user_id: Any, emails: Mapping[str, str]) -> LearnerRef:
        return LearnerRef(lms_user_id=str(user_id), email=emails.get(str(user_id), ""))

    def _quiz(
        self,
        out: Fetched,
        base: str,
        a: Mapping[str, Any],
        quiz_id: Any,
        emails: Mapping[str, str],
    ) -> None:
        subs = self.paged(
            f"{base}/quizzes/{quiz_id}/submissions",
            f"submissions of quiz {quiz_id}",
            {"per_page": "100"},
            key="quiz_submissions",
        )
        for q in subs:
            where = f"quiz {quiz_id} submission {q.get('id')}"
            if q.get("workflow_state") != "complete":
                continue  # untaken, pending_review (essay questions) or settings_only
            score, possible = q.get("score"), q.get("quiz_points_possible")
            if score is None or not possible:
                out.problems.append(Problem(where, "score", "complete but without a score"))
                continue
            out.add(
                where,
                kind=SourceKind.QUIZ,
                learner=self._learner(q["user_id"], emails),
                item_id=str(a["id"]),
                item_title=str(a.get("name", "")),
                score=float(score),
                max_score=float(possible),
                attempt=int(q.get("attempt") or 1),
                submitted_at=_when(q.get("finished_at")),
                graded_at=_when(q.get("finished_at")),
            )

    def _submission(
        self,
        out: Fetched,
        a: Mapping[str, Any],
        s: Mapping[str, Any],
        emails: Mapping[str, str],
        *,
        skip_score: bool,
    ) -> None:
        where = f"assignment {a['id']} submission {s.get('id')}"
        if s.get("excused") or s.get("workflow_state") != "graded":
            return
        learner = self._learner(s["user_id"], emails)
        attempt = int(s.get("attempt") or 1)
        possible = a.get("points_possible")
        if not skip_score and s.get("score") is not None:
            if not possible:
                out.problems.append(
                    Problem(where, "points_possible", "the assignment has no points possible")
                )
            else:
                out.add(
                    where,
                    kind=SourceKind.QUIZ
                    if a.get("is_quiz_lti_assignment")
                    else SourceKind.ASSIGNMENT,
                    learner=learner,
                    item_id=str(a["id"]),
                    item_title=str(a.get("name", "")),
                    score=float(s["score"]),
                    max_score=float(possible),
                    attempt=attempt,
                    submitted_at=_when(s.get("submitted_at")),
                    graded_at=_when(s.get("graded_at")),
                )
        self._criteria(out, a, s, learner, attempt=attempt, where=where)

    def _criteria(
        self,
        out: Fetched,
        a: Mapping[str, Any],
        s: Mapping[str, Any],
        learner: LearnerRef,
        *,
        attempt: int,
        where: str,
    ) -> None:
        """One result per assessed rubric criterion of a graded submission."""
        assessment = s.get("rubric_assessment")
        if not assessment:
            return
        rubric = {str(c["id"]): c for c in a.get("rubric") or []}
        if not rubric:
            out.problems.append(
                Problem(
                    where,
                    "rubric",
                    "has a rubric assessment but the assignment has no rubric any more",
                )
            )
            return
        for crit_id, filled in assessment.items():
            c = rubric.get(str(crit_id))
            if c is None:
                out.problems.append(
                    Problem(where, "rubric_assessment", f"criterion {crit_id} is not in the rubric")
                )
                continue
            ratings = c.get("ratings") or []
            scale = ordered_scale(
                (str(r["id"]), str(r.get("description", "")), float(r.get("points") or 0))
                for r in ratings
            )
            points = filled.get("points")
            rating = next((r for r in ratings if r["id"] == filled.get("rating_id")), None)
            if rating is None and points is None:
                out.problems.append(
                    Problem(where, f"criterion {crit_id}", "assessed without a rating or points")
                )
                continue
            level = RubricLevel(
                id=str(rating["id"]) if rating else f"points:{float(points):g}",
                name=str(rating.get("description", "")) if rating else "",
                points=float(points) if points is not None else _rating_points(rating),
                scale=scale,
            )
            out.add(
                f"{where} criterion {crit_id}",
                kind=SourceKind.RUBRIC_CRITERION,
                learner=learner,
                item_id=str(a["id"]),
                item_title=str(a.get("name", "")),
                criterion_id=str(crit_id),
                criterion_title=str(c.get("description", "")),
                level=level,
                attempt=attempt,
                submitted_at=_when(s.get("submitted_at")),
                graded_at=_when(s.get("graded_at")),
            )
