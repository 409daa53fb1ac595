"""What every page inside the LMS frame shares: who is signed in, the tabs, no caching."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from service.db.models import Course, Person, Platform
from service.errors import ServiceError
from service.web import auth
from service.web.templating import render

__all__ = ["NO_STORE", "back", "page", "signed_in_rows", "submit"]

# Pages carry the session token in links when cookies are blocked: never cache or refer.
NO_STORE = {"cache-control": "no-store", "referrer-policy": "no-referrer"}

# Messages a redirect may ask the next page to show (codes only: no input is reflected).
NOTICES = {
    "sync_requested": "A pull from the LMS is queued; the worker runs it within seconds and "
    "evaluates the learners whose results changed. Reload to see them.",
    "connected": "Connected to the LMS. The worker pulls the roster and results within "
    "seconds, then on its schedule.",
    "queued": "Re-evaluating {n} learners: the worker evaluates them and issues what they "
    "reached; this page updates itself as it finishes.",
    "saved": "Saved. The preview below uses the new rules.",
    "saved_queued": "Saved. The preview below uses the new rules; re-evaluating {n} learners…",
    "added": "Competency added. Map rubric criteria and quizzes to it below.",
    "attested": "Sitting recorded; the learner is re-evaluated within seconds.",
    "approved": "Approved: the credential is issued and on its way.",
    "revoked": "Revoked everywhere it went. Re-evaluating does not issue it again.",
    "allowed": "Re-award allowed; the learner is re-evaluated within seconds.",
    "kept": "Kept as it is; the review flag is cleared.",
    "rules": "Award rules saved.",
    "rules_queued": "Award rules saved; re-evaluating {n} learners…",
    "consent": "Your choice is saved.",
    "retried": "Delivery queued again.",
    "resent": "Credential queued again to the new address.",
    "platform_renamed": "Name saved.",
    "badge_saved": "Badge saved. Credentials issued from now on carry it; those issued "
    "before keep theirs.",
    "repository_added": "Repository added. Test its connection below before the first "
    "credential goes there.",
    "repository_saved": "Repository saved.",
    "test_queued": "Connection test queued; the result appears here when the worker has run it.",
    "thresholds_saved": "Thresholds saved as a new version; {n} learners are being evaluated "
    "again by the workers.",
}


def signed_in_rows(session: Session, user: auth.CurrentUser) -> dict[str, Any]:
    """The user, and the person, course and platform a page shows: as read with the sign-in
    on this request (``auth.current_user``), else read here."""
    if user.person is not None and user.platform is not None:
        return {
            "user": user,
            "person": user.person,
            "course": user.course,
            "platform": user.platform,
        }
    return {
        "user": user,
        "person": session.get(Person, user.person_id),
        "course": session.get(Course, user.course_id) if user.course_id else None,
        "platform": session.get(Platform, user.platform_id),
    }


def page(
    request: Request,
    session: Session,
    user: auth.CurrentUser,
    template: str,
    *,
    tab: str,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Render a page of the app with the signed-in user, course and tabs."""
    tabs = []
    if user.course_id is not None and user.is_instructor:
        tabs += [("course", "Learners", "/app/course"), ("setup", "Competencies", "/app/setup")]
    if user.course_id is not None and not user.is_instructor:
        tabs += [("me", "My progress", "/app/me")]
    if user.is_admin:
        tabs += [("admin", "Administration", "/app/admin")]
    notice = NOTICES.get(request.query_params.get("done", ""))
    count = request.query_params.get("n", "")[:6] if notice else ""
    if notice is not None and "{n}" in notice:  # a count of learners, not of credentials
        notice, count = notice.replace("{n}", count if count.isdigit() else "the"), ""
    response = render(
        request,
        template,
        status_code=status_code,
        **signed_in_rows(session, user),
        tab=tab,
        tabs=tabs,
        notice=notice,
        count=count,
        **context,
    )
    response.headers.update(NO_STORE)
    return response


def back(user: auth.CurrentUser, path: str, done: str, **extra: str | int) -> RedirectResponse:
    """Post/redirect/get back to ``path`` with a notice code (and the token if needed)."""
    query = urlencode({"done": done, **{k: str(v) for k, v in extra.items()}})
    return RedirectResponse(user.link(f"{path}?{query}"), status_code=303, headers=NO_STORE)


def submit(
    session: Session,
    user: auth.CurrentUser,
    work: Callable[[], int | None],
    *,
    to: str,
    done: str,
    failed: Callable[[ServiceError], Response],
    queued: str | None = None,
) -> Response:
    """The one shape of a form post: ``work`` (the use case, in the request's write
    session) is committed once, then the browser goes back to ``to`` with the notice
    ``done``. When ``work`` returns a count of learners it rides along (``n``), under the
    notice ``queued`` instead when one is given and the count is not 0. A ``ServiceError``
    rolls the transaction back and answers ``failed(error)``: the page again, with it."""
    try:
        count = work()
        session.commit()
    except ServiceError as exc:
        session.rollback()
        response = failed(exc)
        session.rollback()  # the page's reads: no lock held while the response is sent
        return response
    if count is None or (queued is not None and not count):
        return back(user, to, done)
    return back(user, to, queued or done, n=count)
