"""The launch route and the pages a launch lands on.

``POST /lti/launch`` validates the launch (``service.lti.launch``), records the person,
course and enrolment (``lti.store.record_user``), opens the tool session (``auth``) and
sends the browser to the page for its role. Deep-linking requests go to the picker, whose
answer is a signed LtiDeepLinkingResponse auto-posted to the platform.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Engine
from sqlmodel import Session

from service.db.engine import connection as db_connection
from service.db.engine import session as db_session
from service.db.types import utcnow
from service.deps import EngineDep, SessionDep, SettingsDep, WriteSessionDep
from service.errors import BadInput, Forbidden
from service.flows import launching
from service.lti import deep_linking, jwks, origins, pages, ratelimit, store
from service.lti import http as lti_http
from service.lti import launch as lti_launch
from service.lti.errors import LaunchRejected
from service.lti.store import LaunchRecord
from service.lti.types import LaunchContext
from service.settings import Settings
from service.web import auth
from service.web.appshell import NO_STORE, signed_in_rows
from service.web.templating import render

router = APIRouter(tags=["launch"], include_in_schema=False)


def _landing(
    request: Request, settings: Settings, token: str, context: LaunchContext, *, cookie_works: bool
) -> Response:
    """The redirect to the launch's first page, setting the session cookie.

    ``cookie_works``: the browser sent back the login's state cookie (same attributes, same
    frame), so it keeps the session cookie too and the token stays out of the URL, where it
    would sit in the frame's address and history. Otherwise (the state came back through
    platform storage: cookies are blocked) the token rides in the URL, and the landing
    page drops it still if the cookie arrives after all (``auth.without_carried_token``).
    """
    path = "/app/deep-link" if context.is_deep_linking else "/app"
    if not cookie_works:
        path += "?" + urlencode({auth.TOKEN_PARAM: token})
    response = RedirectResponse(path, status_code=303, headers=NO_STORE)
    auth.set_session_cookie(response, token, request=request, settings=settings)
    return response


def _finish(
    request: Request,
    s: store.Db,
    pending: lti_launch.PendingLaunch,
    settings: Settings,
    now: dt.datetime,
) -> tuple[Response, LaunchRecord | None]:
    """Take the login state, record the user, open the tool session (in ``s``, committed
    here): the redirect to the landing page. A launch whose login used platform storage and
    whose browser sent no state cookie gets the storage check page instead."""
    launched = lti_launch.complete_launch(s, pending, settings=settings, now=now)
    context = launched.context
    if pending.browser_bound:
        record = store.record_user(s, launch=context, now=now)
        token = auth.start_session(s, record=record, launch=context, settings=settings, now=now)
        s.commit()
        return _landing(request, settings, token, context, cookie_works=True), record
    # No state cookie, but the login used platform storage: the browser must prove it holds
    # the state and nonce there (lti-cs-oidc). The token is consumed now, so it cannot be
    # replayed; the one-time ticket finishes the launch.
    ticket = lti_launch.issue_storage_ticket(s, launched, pending, now=now)
    s.commit()
    origins.allow(
        request, origins.platform_origins(pending.platform, also=[origins.launch_origin(context)])
    )
    page = render(
        request,
        "lti/storage_check.html",
        config_json=pages.json_block(
            {
                "target": launched.storage_target,
                "origin": pending.auth_origin,
                "state_key": f"lti_state_{pending.state}",
                "nonce_key": f"lti_nonce_{pending.nonce}",
            }
        ),
        ticket=ticket,
    )
    return page, None


def _after_launch(
    engine: Engine, settings: Settings, record: LaunchRecord, now: dt.datetime
) -> None:
    # A pull from the LMS or an evaluation is due now and then (launching.after_launch).
    if launching.after_launch_due(settings=settings, record=record, now=now):
        launching.after_launch(engine, settings=settings, record=record, now=now)


@router.post("/lti/launch")
def launch(request: Request, call: lti_http.LtiCallDep) -> Response:
    """LTI 1.3 launch (OIDC authentication response): validated, recorded and committed in
    one write transaction, on the platform's cached key set; one that must be fetched is
    fetched first, outside any transaction."""
    now = utcnow()
    engine, settings = call.engine, call.settings
    lti_request = lti_launch.LaunchRequest(
        call.params, request.cookies, secure=request.url.scheme == "https"
    )
    cached = jwks.KeySetSource(engine, None, settings)

    def attempt() -> tuple[Response, LaunchRecord | None]:
        # a Core connection: the ORM joins it only for a first launch's rows (lti.store)
        with db_connection(engine, write=True) as conn:
            pending = lti_launch.validate_launch(
                conn, lti_request, keys=cached, settings=settings, now=now
            )
            return _finish(request, conn, pending, settings, now)

    try:
        result = attempt()
    except jwks.FetchNeeded as needed:
        # The key set is fetched with no session open (no connection held, no transaction
        # across the call), then the launch runs again on the cached keys.
        fetching = jwks.KeySetSource(engine, call.http, settings)
        jwks.prefetch(fetching, needed)
        try:
            result = attempt()
        except jwks.FetchNeeded:
            # Still missing (a refetch refused by the rate limit): validated with the client,
            # which says why, in autocommit reads; then completed.
            with db_session(engine, autocommit=True) as s:
                pending = lti_launch.validate_launch(
                    s, lti_request, keys=fetching, settings=settings, now=now
                )
            with db_session(engine, write=True) as s:
                result = _finish(request, s, pending, settings, now)
    response, record = result
    if record is not None:
        _after_launch(engine, settings, record, now)
    return response


@router.post("/lti/launch/confirm", dependencies=[Depends(ratelimit.limit_lti)])
def confirm(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    ticket: Annotated[str, Form(max_length=200)],
    state: Annotated[str, Form(max_length=200)] = "",
    nonce: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Finish a launch whose state was checked in platform storage."""
    now = utcnow()
    with db_session(engine, write=True) as s:
        try:
            context = lti_launch.redeem_storage_ticket(
                s, ticket=ticket, state=state, nonce=nonce, now=now
            )
        except LaunchRejected:
            s.commit()  # a wrong answer burns the ticket too: no second guess
            raise
        record = store.record_user(s, launch=context, now=now)
        token = auth.start_session(s, record=record, launch=context, settings=settings, now=now)
        s.commit()
    response = _landing(request, settings, token, context, cookie_works=False)
    _after_launch(engine, settings, record, utcnow())
    return response


@router.get("/app")
def home(request: Request, sent: auth.SentDep, session: SessionDep) -> Response:
    """The page a launch lands on, chosen by the user's role in the course."""
    from service.web import admin, instructor, learner  # the role pages (flows)

    clean = auth.without_carried_token(request)
    if clean is not None:
        return clean
    user = auth.signed_in(request, sent, session)
    if user.is_admin and user.course_id is None:
        return admin.admin_page(request, session, user)
    if user.course_id is None:
        template = "lti/home_instructor.html" if user.is_instructor else "lti/home_learner.html"
        response = render(request, template, **signed_in_rows(session, user))
        response.headers.update(NO_STORE)
        return response
    if user.is_instructor:
        return instructor.learners_page(request, session, user)
    return learner.my_progress(request, session, user)


def _deep_link_context(session: Session, user: auth.CurrentUser) -> LaunchContext:
    if not user.is_instructor:
        raise Forbidden(
            "Only instructors can add microcred to a course.",
            hint="Ask an instructor of the course to add the link.",
        )
    # only a deep-linking launch keeps its validated request (``CurrentUser.launch_id``)
    context = store.load_context(session, user.launch_id, now=utcnow())
    if context is None or not context.is_deep_linking:
        raise BadInput(
            "This session did not start from a deep-linking request.",
            hint="Use 'Add activity' / 'Add external tool' in the course to place microcred.",
        )
    return context


@router.get("/app/deep-link")
def deep_link_picker(request: Request, session: SessionDep, user: auth.UserDep) -> Response:
    """Pick what to place in the course."""
    clean = auth.without_carried_token(request)
    if clean is not None:
        return clean
    context = _deep_link_context(session, user)
    response = render(
        request,
        "lti/deep_link.html",
        **signed_in_rows(session, user),
        settings_title=context.deep_linking.get("title") or "",
        accept_multiple=bool(context.deep_linking.get("accept_multiple", True)),
        choices=DEEP_LINK_CHOICES,
    )
    response.headers.update(NO_STORE)
    return response


DEEP_LINK_CHOICES = {
    "home": ("Micro-credentials", "Progress and credentials for this course."),
}


@router.post("/app/deep-link")
def deep_link_respond(
    session: WriteSessionDep,
    settings: SettingsDep,
    user: auth.UserDep,
    choice: Annotated[str, Form(max_length=50)] = "home",
    title: Annotated[str, Form(max_length=200)] = "",
) -> HTMLResponse:
    """Sign the LtiDeepLinkingResponse and post it back to the platform."""
    context = _deep_link_context(session, user)
    if choice not in DEEP_LINK_CHOICES:
        raise BadInput("unknown choice")
    label, text = DEEP_LINK_CHOICES[choice]
    item = deep_linking.resource_link(
        url=lti_launch.launch_url(settings),
        title=title.strip() or label,
        text=text,
        custom={"microcred_view": choice},
    )
    token = deep_linking.response_jwt(session, context=context, items=[item], now=utcnow())
    session.commit()
    return HTMLResponse(
        deep_linking.auto_post_page(
            return_url=str(context.deep_linking["deep_link_return_url"]), token=token
        ),
        headers=NO_STORE,
    )
