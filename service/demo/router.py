"""HTTP routes of the demo LMS: course pages, OIDC, token, JWKS, NRPS, AGS, deep linking."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from service.demo import pages
from service.demo.config import Scope
from service.demo.platform import AuthRequestError, DemoPlatform
from service.demo.services import (
    MediaType,
    Page,
    filter_lineitems,
    lineitem_json,
    memberships,
    paginate,
    parse_lineitem,
    parse_score,
    results,
)
from service.demo.state import LineItem
from service.errors import BadInput, NotFound, ServiceError

router = APIRouter()

READ_LINEITEMS = {Scope.LINEITEM, Scope.LINEITEM_READONLY}


def _platform(request: Request) -> DemoPlatform:
    platform: DemoPlatform = request.app.state.platform
    return platform


PlatformDep = Annotated[DemoPlatform, Depends(_platform)]


class UnsupportedMediaType(ServiceError):
    code = "unsupported_media_type"
    status_code = 415
    title = "Unsupported media type"


def _json_body(request_body: bytes, content_type: str | None, expected: str) -> Any:
    media = (content_type or "").split(";")[0].strip().lower()
    if media != expected:
        raise UnsupportedMediaType(f"Content-Type must be {expected}, not {media or 'missing'}")
    try:
        return json.loads(request_body)
    except ValueError as exc:
        raise BadInput(f"the body is not valid JSON: {exc}") from exc


def _paged(
    request: Request, body: Any, media_type: str, chunk: Page[Any], status_code: int = 200
) -> Response:
    headers = {}
    if chunk.next_page is not None:
        # NRPS 2.0 §2.4 / AGS 2.0 §3.2.5: the next page is announced in a Link header.
        query = dict(request.query_params) | {"page": str(chunk.next_page)}
        url = str(request.url.replace(query=urlencode(query)))
        headers["Link"] = f'<{url}>; rel="next"'
    return JSONResponse(body, status_code=status_code, media_type=media_type, headers=headers)


def _service_call(
    platform: DemoPlatform, request: Request, context_id: str, scopes: set[str]
) -> None:
    """A service call's checks: its bearer token carries one of ``scopes``; the course exists."""
    platform.authorise_service(request.headers.get("authorization"), any_of=scopes, now=time.time())
    if context_id != platform.course.context_id:
        raise NotFound(f"course {context_id} does not exist")


def _line_item(
    platform: DemoPlatform, item_id: str, item: LineItem | None, status_code: int = 200
) -> Response:
    """Line item ``item_id`` as JSON (AGS 2.0 §3.2); 404 when it does not exist."""
    if item is None:
        raise NotFound(f"line item {item_id} does not exist")
    body = lineitem_json(platform.config, platform.course, item)
    return JSONResponse(body, status_code=status_code, media_type=MediaType.LINEITEM)


# --- course pages ---


@router.get("/", response_class=HTMLResponse)
def home(request: Request, platform: PlatformDep) -> HTMLResponse:
    """The course home page: who you can launch the tool as."""
    return pages.render("home.html", platform=platform, active="home")


@router.get("/course/tool", response_class=HTMLResponse)
def course_tool(
    request: Request,
    platform: PlatformDep,
    as_user: Annotated[str, Query(alias="as")],
    message: Literal["resource", "deeplink"] = "resource",
    link: str = "",
) -> HTMLResponse:
    """The course page with the tool in an iframe, launched as one member."""
    member = platform.course.member(as_user)
    if member is None:
        raise NotFound("no such member in this course", hint="Pick someone on the course home.")
    placed = platform.state.link(link) if link else None
    if link and placed is None:
        raise NotFound("no such link in this course", hint="Pick a link on the course home.")
    query = {"as": as_user, "message": message} | ({"link": link} if link else {})
    return pages.render(
        "tool.html",
        platform=platform,
        member=member,
        launch_src="/launch?" + urlencode(query),
        message=message,
        placed=placed,
        active="tool",
    )


@router.get("/launch", response_class=HTMLResponse)
def launch(
    platform: PlatformDep,
    as_user: Annotated[str, Query(alias="as")],
    message: Literal["resource", "deeplink"] = "resource",
    link: str = "",
) -> HTMLResponse:
    """Start a launch: auto-POST the login initiation to the tool (LTI Core §4.1)."""
    fields = platform.login_initiation(
        user_id=as_user,
        message_type="LtiDeepLinkingRequest" if message == "deeplink" else "LtiResourceLinkRequest",
        now=time.time(),
        link_id=link or None,
    )
    return pages.autopost(platform.config.tool.login_url, fields, label="Starting the tool…")


@router.get("/launches/last")
def last_launch(platform: PlatformDep, as_user: Annotated[str, Query(alias="as")]) -> JSONResponse:
    """The claims of the last id_token signed for a member (to show what the LMS sent)."""
    claims = platform.state.last_claims(as_user)
    if claims is None:
        raise NotFound("no launch yet for this member")
    return JSONResponse(
        {"kid": platform.key.kid, "claims": claims}, headers={"Cache-Control": "no-store"}
    )


@router.get("/grades", response_class=HTMLResponse)
def grades(request: Request, platform: PlatformDep) -> HTMLResponse:
    """The gradebook: the tool's line items and the scores it posted."""
    items = platform.state.line_items()
    scores = {item.id: {s.user_id: s for s in platform.state.scores(item.id)} for item in items}
    return pages.render(
        "grades.html", platform=platform, items=items, scores=scores, active="grades"
    )


@router.get("/storage-frame", response_class=HTMLResponse)
def storage_frame(platform: PlatformDep) -> HTMLResponse:
    """The named frame that answers LTI platform-storage postMessages (lti-pm-s)."""
    return pages.render("storage_frame.html", platform=platform)


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness."""
    return {"status": "ok"}


# --- OIDC / OAuth2 / keys ---


async def _params(request: Request) -> dict[str, str]:
    if request.method == "POST":
        form = await request.form()
        return {k: v for k, v in form.items() if isinstance(v, str)}
    return dict(request.query_params)


@router.api_route("/auth", methods=["GET", "POST"], response_class=HTMLResponse)
def auth(
    platform: PlatformDep, params: Annotated[dict[str, str], Depends(_params)]
) -> HTMLResponse:
    """OIDC authentication endpoint; answers with a form_post to the tool."""
    answer = platform.authorize(params, now=time.time())
    return pages.autopost(answer.redirect_uri, answer.fields, label="Opening the tool…")


@router.post("/token")
def token(platform: PlatformDep, form: Annotated[dict[str, str], Depends(_params)]) -> JSONResponse:
    """OAuth2 client-credentials grant with a JWT bearer assertion (RFC 7523)."""
    body = platform.grant_token(form, now=time.time())
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


@router.get("/jwks")
def jwks(platform: PlatformDep) -> JSONResponse:
    """The platform's public keys."""
    return JSONResponse(platform.jwks(), headers={"Cache-Control": "max-age=300"})


@router.get("/.well-known/openid-configuration")
def openid_configuration(platform: PlatformDep) -> dict[str, Any]:
    """Platform OpenID configuration (LTI Dynamic Registration §3.5, for reference)."""
    cfg = platform.config
    return {
        "issuer": cfg.issuer,
        "authorization_endpoint": cfg.auth_url,
        "token_endpoint": cfg.token_url,
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256"],
        "jwks_uri": cfg.jwks_url,
        "scopes_supported": ["openid", *sorted(cfg.tool.scopes)],
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "claims_supported": ["sub", "iss", "name", "given_name", "family_name", "email"],
    }


# --- NRPS ---


@router.get("/api/lti/courses/{context_id}/names_and_roles")
def names_and_roles(
    request: Request,
    platform: PlatformDep,
    context_id: str,
    role: str | None = None,
    rlid: str | None = None,
    limit: int | None = None,
    page: int = 1,
) -> Response:
    """Membership container (NRPS 2.0)."""
    _service_call(platform, request, context_id, {Scope.NRPS})
    if rlid is not None and rlid not in platform.resource_link_ids():
        # NRPS 2.0 §2.3.2: members of one resource link; every member can open every link here.
        raise BadInput(f"rlid {rlid[:80]!r} is not a resource link of this course")
    body, chunk = memberships(platform.config, platform.course, role=role, limit=limit, page=page)
    return _paged(request, body, MediaType.MEMBERSHIPS, chunk)


# --- AGS ---


@router.get("/api/lti/courses/{context_id}/line_items")
def list_line_items(
    request: Request,
    platform: PlatformDep,
    context_id: str,
    limit: int | None = None,
    page: int = 1,
) -> Response:
    """Line item container (AGS 2.0 §3.2)."""
    _service_call(platform, request, context_id, READ_LINEITEMS)
    items = filter_lineitems(platform.state.line_items(), request.query_params)
    chunk = paginate(items, limit=limit, page=page, max_limit=platform.config.page_size_limit)
    body = [lineitem_json(platform.config, platform.course, i) for i in chunk.items]
    return _paged(request, body, MediaType.LINEITEMS, chunk)


@router.post("/api/lti/courses/{context_id}/line_items")
async def create_line_item(request: Request, context_id: str) -> Response:
    """Create a line item (AGS 2.0 §3.2.2)."""
    platform = _platform(request)
    _service_call(platform, request, context_id, {Scope.LINEITEM})
    body = _json_body(await request.body(), request.headers.get("content-type"), MediaType.LINEITEM)
    item = platform.state.add_line_item(**parse_lineitem(body, platform.resource_link_ids()))
    return _line_item(platform, item.id, item, status_code=201)


@router.get("/api/lti/courses/{context_id}/line_items/{item_id}")
def get_line_item(
    request: Request, platform: PlatformDep, context_id: str, item_id: str
) -> Response:
    """One line item."""
    _service_call(platform, request, context_id, READ_LINEITEMS)
    return _line_item(platform, item_id, platform.state.line_item(item_id))


@router.put("/api/lti/courses/{context_id}/line_items/{item_id}")
async def update_line_item(request: Request, context_id: str, item_id: str) -> Response:
    """Replace a line item's fields."""
    platform = _platform(request)
    _service_call(platform, request, context_id, {Scope.LINEITEM})
    body = _json_body(await request.body(), request.headers.get("content-type"), MediaType.LINEITEM)
    fields = parse_lineitem(body, platform.resource_link_ids())
    return _line_item(platform, item_id, platform.state.update_line_item(item_id, **fields))


@router.delete("/api/lti/courses/{context_id}/line_items/{item_id}", status_code=204)
def delete_line_item(
    request: Request, platform: PlatformDep, context_id: str, item_id: str
) -> Response:
    """Delete a line item and its results."""
    _service_call(platform, request, context_id, {Scope.LINEITEM})
    if not platform.state.delete_line_item(item_id):
        raise NotFound(f"line item {item_id} does not exist")
    return Response(status_code=204)


@router.post("/api/lti/courses/{context_id}/line_items/{item_id}/scores")
async def post_score(request: Request, context_id: str, item_id: str) -> Response:
    """Publish a score (AGS 2.0 §3.4)."""
    platform = _platform(request)
    _service_call(platform, request, context_id, {Scope.SCORE})
    body = _json_body(await request.body(), request.headers.get("content-type"), MediaType.SCORE)
    score = parse_score(body, platform.course)
    outcome = platform.state.put_score(item_id, score)
    if outcome == "gone":
        raise NotFound(f"line item {item_id} does not exist")
    if outcome == "stale":
        # AGS 2.0 §3.4.8: a score older than the one on record must not replace it.
        return JSONResponse(
            {"error": "stale_score", "detail": "a score with a later timestamp is on record"},
            status_code=409,
        )
    return Response(status_code=204)


@router.get("/api/lti/courses/{context_id}/line_items/{item_id}/results")
def get_results(
    request: Request,
    platform: PlatformDep,
    context_id: str,
    item_id: str,
    user_id: str | None = None,
    limit: int | None = None,
    page: int = 1,
) -> Response:
    """Result container (AGS 2.0 §3.3)."""
    _service_call(platform, request, context_id, {Scope.RESULT_READONLY})
    body, chunk = results(
        platform.config,
        platform.course,
        platform.state,
        item_id,
        user_id=user_id,
        limit=limit,
        page=page,
    )
    return _paged(request, body, MediaType.RESULTS, chunk)


# --- Deep Linking ---


@router.post("/deep_linking/return", response_class=HTMLResponse)
def deep_linking_return(
    platform: PlatformDep, jwt: Annotated[str, Form(alias="JWT")] = ""
) -> HTMLResponse:
    """Receive the tool's LtiDeepLinkingResponse (Deep Linking 2.0 §4.5)."""
    if not jwt:
        raise AuthRequestError("the deep-linking response has no JWT field")
    links = platform.accept_deep_link(jwt, now=time.time())
    return pages.render("deep_link_done.html", platform=platform, links=links)


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> Response:
    return RedirectResponse("/static/favicon.svg")
