"""LTI protocol endpoints: OIDC login, the tool's JWKS, Canvas configuration, registration.

The launch itself (``POST /lti/launch``) lives in ``service.web.launch``: it runs the use
case (record the user, open a session, render the role's page) above ``flows``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy import Engine

from service.db.engine import call as db_call
from service.db.engine import connection as db_connection
from service.db.engine import session as db_session
from service.db.types import utcnow
from service.deps import EngineDep, SettingsDep
from service.lti import keys, launch, origins, pages, ratelimit, registration
from service.lti.cookies import set_iframe_cookie
from service.lti.http import LtiCallDep, get_async_http, request_params
from service.settings import Settings

router = APIRouter(prefix="/lti", tags=["lti"])


@router.api_route("/login", methods=["GET", "POST"], include_in_schema=False)
def login(request: Request, call: LtiCallDep) -> Response:
    """OIDC third-party initiated login (GET or POST)."""
    secure = request.url.scheme == "https"
    lti_request = launch.LaunchRequest(call.params, request.cookies, secure)
    # On PostgreSQL each statement commits by itself (no BEGIN, no COMMIT): the state's
    # INSERT is one statement, and a registration changed after its read is checked again
    # by the launch. SQLite takes its write lock for the read and the INSERT.
    with db_connection(call.engine, write=True, autocommit=True) as conn:
        start = launch.begin_login(conn, lti_request, settings=call.settings, now=utcnow())
        conn.commit()
    if start.storage_target:
        origins.allow(request, start.frame_origins)
        response: Response = HTMLResponse(
            pages.login_storage_page(
                auth_url=start.auth_url,
                state=start.state,
                nonce=start.nonce,
                target=start.storage_target,
                origin=start.auth_origin,
            )
        )
    else:
        response = Response(status_code=302, headers={"location": start.auth_url})
    for name, value, max_age in start.cookies:
        set_iframe_cookie(response, name, value, max_age=max_age, secure_request=secure)
    response.headers["cache-control"] = "no-store"
    return response


@router.get("/jwks")
def tool_jwks(engine: EngineDep, settings: SettingsDep) -> JSONResponse:
    """The tool's public keys (current and, during the grace period, retired ones)."""
    with db_session(engine) as s:
        data = keys.published_jwks(s, grace_days=settings.key_rotation_grace_days)
    if not data["keys"]:
        with db_session(engine, write=True) as s:
            keys.ensure_key(s)
            s.commit()
            data = keys.published_jwks(s, grace_days=settings.key_rotation_grace_days)
    return JSONResponse(data, headers={"cache-control": "public, max-age=300"})


@router.get("/config/canvas.json")
def canvas_config(settings: SettingsDep) -> JSONResponse:
    """Canvas developer key JSON (paste or use as the configuration URL)."""
    return JSONResponse(registration.canvas_developer_key(settings))


def _pending_room(engine: Engine, settings: Settings) -> None:
    with db_session(engine, autocommit=True) as session:
        registration.check_pending_room(session, settings)


def _store(
    engine: Engine,
    negotiated: registration.Negotiated,
    settings: Settings,
    origin: dict[str, str],
) -> registration.RegistrationResult:
    with db_session(engine, write=True) as session:
        result = registration.store(session, negotiated, settings=settings, origin=origin)
        session.commit()
    return result


@router.get("/register", include_in_schema=False)
async def register(request: Request) -> HTMLResponse:
    """LTI Dynamic Registration (Moodle and Canvas)."""
    await ratelimit.limit_registration(request)
    params = await request_params(request)
    engine: Engine = request.app.state.engine
    settings: Settings = request.app.state.settings
    config_url = params.get("openid_configuration", "")
    # The platform shows this page in its own frame; its OpenID configuration URL is on it.
    origins.allow(request, [config_url])
    registration.check_key(params.get("key", ""), settings)
    await db_call(engine, _pending_room, engine, settings)
    # async: the platform's two answers (bounded by the outbound deadline) hold no thread
    negotiated = await registration.negotiate(
        openid_configuration=config_url,
        registration_token=params.get("registration_token", ""),
        settings=settings,
        http=await get_async_http(request),
    )
    origin = {
        "source_ip": request.client.host if request.client else "",
        "openid_configuration": config_url[:2000],
    }
    result = await db_call(engine, _store, engine, negotiated, settings, origin)
    return HTMLResponse(registration.done_page(result), headers={"cache-control": "no-store"})
