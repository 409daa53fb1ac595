"""The tool's own session after an LTI launch, and who the current user is.

After a launch we open a server-side session (``web_session``; the table keeps only the
SHA-256 of the token) and hand the browser its token in a ``SameSite=None; Secure;
HttpOnly; Partitioned`` cookie. When the browser blocks even partitioned cookies, the token
travels with the page instead: links get ``?mc_session=…`` and forms a hidden field
(``user.link(path)``, ``user.hidden_fields``); pages send ``Referrer-Policy: no-referrer``.

Use in routes::

    from service.web import auth

    @router.get("/course/thing")
    def thing(user: auth.UserDep) -> ...: ...          # any launched user
    def edit(user: auth.InstructorDep) -> ...: ...     # instructor or admin of the course
    def admin(user: auth.AdminDep) -> ...: ...         # administrator of the tenant

Unsafe methods (POST, PUT, PATCH, DELETE) must carry ``csrf`` (form field) or
``X-CSRF-Token`` equal to ``user.csrf_token``; a form that carries the session token itself
is accepted as well (the token is the secret an attacker lacks). Authorization is per course
context: ``user.course_id`` is the only course a session may act on. An administrator
(institution or system Administrator role, ``lti.roles.is_administrator``) administers the
session's tenant only: ``user.platform_id`` and ``user.deployment_id``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlmodel import Session
from starlette.responses import RedirectResponse, Response

from service.db.engine import session as db_session
from service.db.models import Course, Person, Platform
from service.db.types import utcnow
from service.errors import Forbidden, ServiceError
from service.lti import origins, store
from service.lti import roles as lti_roles
from service.lti.cookies import read_iframe_cookie, set_iframe_cookie
from service.lti.store import LaunchRecord
from service.lti.types import LaunchContext
from service.secretbox import token_hash
from service.settings import Settings

__all__ = [
    "SESSION_COOKIE",
    "TOKEN_PARAM",
    "AdminDep",
    "CurrentUser",
    "InstructorDep",
    "NotSignedIn",
    "SentDep",
    "UserDep",
    "current_user",
    "require_admin",
    "require_instructor",
    "set_session_cookie",
    "signed_in",
    "start_session",
    "without_carried_token",
]

SESSION_COOKIE = "__Host-microcred_session"
TOKEN_PARAM = "mc_session"  # noqa: S105  (a parameter name, not a secret)
TOKEN_HEADER = "x-microcred-session"  # noqa: S105
_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
_TOUCH_EVERY = dt.timedelta(seconds=60)


class NotSignedIn(ServiceError):
    code = "not_signed_in"
    status_code = 401
    title = "Please open microcred from your course"

    def __init__(self, detail: str = "There is no microcred session for this page.") -> None:
        super().__init__(
            detail,
            hint="Open microcred again from the link in your course. Sessions end after two "
            "hours without activity.",
        )


@dataclass(frozen=True)
class CurrentUser:
    person_id: int
    platform_id: int
    deployment_id: int  # deployment.id (table key), not the LTI deployment_id string
    course_id: int | None
    role: str  # admin | instructor | learner, in this course
    roles: tuple[str, ...]
    launch_id: str
    token: str
    via_cookie: bool
    # Rows read with the session on this request (one joined SELECT), for pages that show
    # them; not part of the user's identity. The platform is the one checked active.
    platform: Platform | None = field(default=None, compare=False, repr=False)
    person: Person | None = field(default=None, compare=False, repr=False)
    course: Course | None = field(default=None, compare=False, repr=False)

    @property
    def is_instructor(self) -> bool:
        # "admin": a course Administrator's session recorded before lti.roles made it
        # an instructor (sessions live two hours)
        return self.role in ("instructor", "admin")

    @property
    def is_admin(self) -> bool:
        """Administrator of this session's tenant (platform and deployment), from the
        launch's institution or system roles; a course role never makes one."""
        return lti_roles.is_administrator(self.roles)

    @property
    def actor(self) -> str:
        """Who acted, as the audit log and the rules' authors name a person."""
        return f"person:{self.person_id}"

    @property
    def csrf_token(self) -> str:
        return hashlib.sha256(b"csrf:" + self.token.encode()).hexdigest()

    def link(self, path: str) -> str:
        """``path`` with the session token added when the browser refuses our cookie."""
        if self.via_cookie:
            return path
        parts = urlsplit(path)
        query = (parts.query + "&" if parts.query else "") + urlencode({TOKEN_PARAM: self.token})
        return urlunsplit(parts._replace(query=query))

    @property
    def hidden_fields(self) -> dict[str, str]:
        """Hidden form fields every form of ours posts (CSRF, and the token if needed)."""
        fields = {"csrf": self.csrf_token}
        if not self.via_cookie:
            fields[TOKEN_PARAM] = self.token
        return fields


def new_token() -> str:
    """A session's secret token (only its SHA-256 is stored)."""
    return secrets.token_urlsafe(32)


def _session_values(
    token: str, launch: LaunchContext, settings: Settings, now: dt.datetime
) -> dict[str, Any]:
    # a web_session row but its person and course
    return {
        "id": token_hash(token),
        "platform_id": launch.platform_id,
        "deployment_id": launch.deployment_pk,
        "role": launch.role,
        "roles": list(launch.roles),
        "launch_id": launch.launch_id,
        "frame_origin": origins.launch_origin(launch) or "",
        "created_at": now,
        "last_seen_at": now,
        "expires_at": now + dt.timedelta(seconds=settings.web_session_idle_seconds),
    }


def start_session(
    session: store.Db,
    *,
    record: LaunchRecord,
    launch: LaunchContext,
    settings: Settings,
    now: dt.datetime | None = None,
) -> str:
    """Open a session for a recorded launch; returns its new secret token. Caller commits."""
    now = now or utcnow()
    token = new_token()
    values = _session_values(token, launch, settings, now)
    values["role"] = record.role
    store.open_session(session, person_id=record.person_id, course_id=record.course_id, **values)
    return token


def set_session_cookie(
    response: Response, token: str, *, request: Request, settings: Settings
) -> None:
    set_iframe_cookie(
        response,
        SESSION_COOKIE,
        token,
        max_age=settings.web_session_idle_seconds,
        secure_request=request.url.scheme == "https",
    )


@dataclass(frozen=True)
class _Loaded:
    row: store.SessionRow
    platform: Platform
    person: Person | None
    course: Course | None


def _load(
    engine: Engine, token: str, settings: Settings, now: dt.datetime, session: Session | None
) -> _Loaded:
    if session is not None:
        found = store.session_of(session, token_hash(token))
    else:
        with db_session(engine, autocommit=True) as s:
            found = store.session_of(s, token_hash(token))
    if found is None or found.session.expires_at <= now:
        raise NotSignedIn("Your microcred session has ended or is unknown.")
    row, platform = found.session, found.platform
    # Re-check the tenant on every request (security.md §1.3 account-state bypass).
    if platform is None or not platform.active or not found.deployment_active:
        raise Forbidden(
            "The platform or deployment of this session has been deactivated.",
            hint="Ask your microcred administrator.",
        )
    if now - row.last_seen_at > _TOUCH_EVERY:
        expires = now + dt.timedelta(seconds=settings.web_session_idle_seconds)
        with db_session(engine, write=True) as s:
            store.touch_session(s, row.id, now=now, expires_at=expires)
            s.commit()
    return _Loaded(row=row, platform=platform, person=found.person, course=found.course)


@dataclass(frozen=True)
class _Sent:
    """What a request carries to sign in: the session token (cookie, header, form field or
    query parameter), and the CSRF token a form posted."""

    token: str
    cookie_token: str | None
    form_token: str | None
    form_csrf: str | None


async def _sent(request: Request) -> _Sent:
    # async: it may await the form; the session lookup is ``signed_in``, in the thread pool
    cookie_token = read_iframe_cookie(request.cookies, SESSION_COOKIE)
    form_token = form_csrf = None
    if request.method in _UNSAFE and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        raw_token, raw_csrf = form.get(TOKEN_PARAM), form.get("csrf")
        form_token = raw_token if isinstance(raw_token, str) else None
        form_csrf = raw_csrf if isinstance(raw_csrf, str) else None
    carried = (
        request.headers.get(TOKEN_HEADER) or form_token or request.query_params.get(TOKEN_PARAM)
    )
    token = cookie_token or carried
    if not token or len(token) > 200:
        raise NotSignedIn()
    return _Sent(token, cookie_token, form_token, form_csrf)


def signed_in(request: Request, sent: _Sent, session: Session | None = None) -> CurrentUser:
    """The user of ``sent``'s session (sync: database work), read in the route's
    ``session`` when given (the landing page: one transaction, not two), else in a short
    one of its own."""
    now = utcnow()
    settings: Settings = request.app.state.settings
    loaded = _load(request.app.state.engine, sent.token, settings, now, session)
    row, token = loaded.row, sent.token
    origins.allow(request, origins.platform_origins(loaded.platform, also=[row.frame_origin]))
    user = CurrentUser(
        person_id=row.person_id,
        platform_id=row.platform_id,
        deployment_id=row.deployment_id,
        course_id=row.course_id,
        role=row.role,
        roles=tuple(row.roles),
        launch_id=row.launch_id,
        token=token,
        via_cookie=sent.cookie_token is not None and token == sent.cookie_token,
        platform=loaded.platform,
        person=loaded.person,
        course=loaded.course,
    )
    if request.method in _UNSAFE:
        posted = request.headers.get("x-csrf-token") or sent.form_csrf or ""
        carried_in_body = sent.form_token is not None and hmac.compare_digest(
            sent.form_token.encode(), token.encode()
        )
        if not carried_in_body and not hmac.compare_digest(
            posted.encode(), user.csrf_token.encode()
        ):
            raise Forbidden(
                "This form was not sent from a microcred page (missing or wrong CSRF token).",
                hint="Reload the page and try again.",
            )
    return user


SentDep = Annotated[_Sent, Depends(_sent)]


def current_user(request: Request, sent: SentDep) -> CurrentUser:
    """The launched user of this request (cookie, header, or carried token)."""
    return signed_in(request, sent)


def without_carried_token(request: Request) -> Response | None:
    """For a page a launch lands on: when the URL carries the session token and the cookie
    carries the same one, the browser keeps our cookie, so a redirect to the same URL
    without the token takes it out of the frame's address and history (a redirect leaves
    no history entry). ``None`` otherwise: cookies blocked, the token stays in the URL."""
    carried = request.query_params.get(TOKEN_PARAM)
    cookie = read_iframe_cookie(request.cookies, SESSION_COOKIE)
    if not carried or cookie is None or not hmac.compare_digest(carried.encode(), cookie.encode()):
        return None
    query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != TOKEN_PARAM])
    return RedirectResponse(
        request.url.path + ("?" + query if query else ""),
        status_code=303,
        headers={"cache-control": "no-store", "referrer-policy": "no-referrer"},
    )


async def require_instructor(user: Annotated[CurrentUser, Depends(current_user)]) -> CurrentUser:
    """Dependency: the current user teaches (or administers) the session's course."""
    if not user.is_instructor:
        raise Forbidden(
            "Your role in this course does not allow this page.",
            hint="Instructors and administrators of the course can open it.",
        )
    return user


async def require_admin(user: Annotated[CurrentUser, Depends(current_user)]) -> CurrentUser:
    """Dependency: the current user administers the session's tenant."""
    if not user.is_admin:
        raise Forbidden(
            "Only an administrator of your institution's learning platform can open "
            "microcred administration.",
            hint="Your platform must send an institution or system Administrator role with "
            "the launch (a Moodle site administrator, a Canvas account administrator). A "
            "course's Administrator or Instructor role is not enough. Ask your platform's "
            "administrator, then open microcred again from the platform.",
        )
    return user


UserDep = Annotated[CurrentUser, Depends(current_user)]
InstructorDep = Annotated[CurrentUser, Depends(require_instructor)]
AdminDep = Annotated[CurrentUser, Depends(require_admin)]
