"""LTI Dynamic Registration (lti-dr v1.0) in Moodle's and Canvas's flavours, and the Canvas
developer-key JSON.

Flow (lti-dr §3): the platform opens ``/lti/register?openid_configuration=…&registration_token=…``
in a window. We fetch the platform's OpenID configuration (Canvas requires the token as Bearer
on that GET too), POST our tool configuration to its ``registration_endpoint`` with the token
as Bearer, store the platform INACTIVE (an administrator activates it) and answer with a page
that posts ``org.imsglobal.lti.close``.

The URL is public, so (docs/security.md): production requires the registration key; each
client address may register a few times a minute; at most
``MICROCRED_DYNAMIC_REGISTRATION_MAX_PENDING`` platforms wait for activation; the calls go
through ``service.outbound`` (no private addresses in production, a deadline, a byte cap);
nothing is stored unless the platform accepted the registration.

Quirks handled (lti.md §2.6, §3.6): Moodle lists ``messages_supported`` as strings, returns the
deployment id in the tool configuration and shares name/email only when the claims are asked
for; Canvas lists messages as objects with placements, defaults to the "anonymous" privacy
level unless ``…/lti/privacy_level`` says otherwise, and creates deployments only when the
tool is installed (so its deployment is added at activation).
"""

from __future__ import annotations

import hmac
import html
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlmodel import Session, col, func, select

from service import outbound
from service.db.models import Platform
from service.errors import BadInput, ServiceError
from service.lti import pages, platforms
from service.lti.errors import RegistrationFailed
from service.settings import Settings

__all__ = [
    "Negotiated",
    "RegistrationResult",
    "canvas_developer_key",
    "check_key",
    "check_pending_room",
    "done_page",
    "negotiate",
    "require_key_in_production",
    "store",
    "tool_configuration",
]

PLATFORM_CONFIG = "https://purl.imsglobal.org/spec/lti-platform-configuration"
TOOL_CONFIG = "https://purl.imsglobal.org/spec/lti-tool-configuration"
CANVAS_PRIVACY = "https://canvas.instructure.com/lti/privacy_level"

SCOPES = [
    "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem",
    "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem.readonly",
    "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly",
    "https://purl.imsglobal.org/spec/lti-ags/scope/score",
    "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly",
]
CLAIMS = ["iss", "sub", "name", "given_name", "family_name", "email"]
TOOL_NAME = "microcred"
DESCRIPTION = "Competency levels from rubric and quiz results, issued as Open Badges 3.0."


# Canvas placements (placement, message type, menu text); other platforms take none.
PLACEMENTS = (
    ("course_navigation", "LtiResourceLinkRequest", "Micro-credentials"),
    ("link_selection", "LtiDeepLinkingRequest", TOOL_NAME),
    ("assignment_selection", "LtiDeepLinkingRequest", TOOL_NAME),
)
CANVAS_CUSTOM = {
    "canvas_user_id": "$Canvas.user.id",
    "canvas_course_id": "$Canvas.course.id",
    "canvas_api_domain": "$Canvas.api.domain",
}


def _urls(settings: Settings) -> dict[str, str]:
    base = settings.public_base_url
    return {
        "login": base + "/lti/login",
        "launch": base + "/lti/launch",
        "jwks": base + "/lti/jwks",
        "domain": urlsplit(base).netloc,
    }


def tool_configuration(settings: Settings, *, product_family: str) -> dict[str, Any]:
    """The registration request body (lti-dr §3.5.2)."""
    u = _urls(settings)
    canvas = product_family == "canvas"
    messages: list[dict[str, Any]] = []
    for kind in ("LtiResourceLinkRequest", "LtiDeepLinkingRequest"):
        message: dict[str, Any] = {"type": kind, "target_link_uri": u["launch"], "label": TOOL_NAME}
        if canvas:
            message["placements"] = [p for p, k, _ in PLACEMENTS if k == kind]
        messages.append(message)
    config: dict[str, Any] = {
        "domain": u["domain"],
        "target_link_uri": u["launch"],
        "description": DESCRIPTION,
        "claims": CLAIMS,
        "messages": messages,
    }
    if canvas:
        config[CANVAS_PRIVACY] = "public"
        config["custom_parameters"] = CANVAS_CUSTOM
    return {
        "application_type": "web",
        "response_types": ["id_token"],
        "grant_types": ["implicit", "client_credentials"],
        "initiate_login_uri": u["login"],
        "redirect_uris": [u["launch"]],
        "client_name": TOOL_NAME,
        "jwks_uri": u["jwks"],
        "token_endpoint_auth_method": "private_key_jwt",
        "scope": " ".join(SCOPES),
        TOOL_CONFIG: config,
    }


@dataclass(frozen=True)
class RegistrationResult:
    platform_id: int
    name: str
    issuer: str
    client_id: str
    deployment_id: str


def _fail(detail: str, hint: str | None = None) -> RegistrationFailed:
    return RegistrationFailed(
        detail,
        hint=hint
        or "Start the registration again from the platform. If it keeps failing, check that "
        "microcred can reach the platform over HTTPS.",
    )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _checked_url(url: str, what: str) -> str:
    try:
        return platforms.check_url(url, what=what)
    except BadInput as exc:
        raise _fail(exc.detail) from exc


def _json(resp: httpx.Response, what: str) -> dict[str, Any]:
    try:
        data = resp.json()
    except ValueError as exc:
        raise _fail(f"The platform's {what} is not JSON (HTTP {resp.status_code}).") from exc
    if not isinstance(data, dict):
        raise _fail(f"The platform's {what} is not a JSON object.")
    return data


def check_key(key: str, settings: Settings) -> None:
    """When ``MICROCRED_DYNAMIC_REGISTRATION_KEY`` is set, the registration URL the
    administrator pastes into the platform must carry it (``/lti/register?key=…``): the URL is
    public, and each registration makes microcred call URLs the caller chose."""
    expected = settings.dynamic_registration_key
    if expected is None:
        return
    if not hmac.compare_digest(key.encode(), expected.get_secret_value().encode()):
        raise RegistrationFailed(
            "This registration URL is missing its key or the key is wrong.",
            hint="Paste the registration URL with its key, as your microcred administrator "
            "gave it: …/lti/register?key=…",
        )


def require_key_in_production(settings: Settings) -> None:
    """Production does not start without ``MICROCRED_DYNAMIC_REGISTRATION_KEY``: without it
    anyone could make microcred call URLs of their choosing and store platforms."""
    if settings.environment == "production" and settings.dynamic_registration_key is None:
        raise RegistrationFailed(
            "MICROCRED_DYNAMIC_REGISTRATION_KEY is not set; production needs it.",
            hint="Set MICROCRED_DYNAMIC_REGISTRATION_KEY to a long random value (e.g. `python -c "
            "'import secrets; print(secrets.token_urlsafe(32))'`) and give administrators of "
            "the platforms the URL …/lti/register?key=<that value>.",
        )


@dataclass(frozen=True)
class Negotiated:
    """What the platform told us: its configuration and its answer to our registration."""

    conf: dict[str, Any]
    family: str
    client_id: str
    deployment_id: str
    name: str


async def negotiate(
    *,
    openid_configuration: str,
    registration_token: str,
    settings: Settings,
    http: httpx.AsyncClient,
) -> Negotiated:
    """Fetch the platform's configuration and POST our registration (lti-dr §3.4-3.6).

    ``async`` with a client from ``service.outbound``: the two calls hold no worker thread,
    and each is bounded by the outbound deadline and byte cap.
    """
    if not openid_configuration:
        raise _fail(
            "This page is the dynamic registration URL; it must be opened by the platform.",
            hint="In Moodle (Site administration > Plugins > External tool > Manage tools) or "
            "Canvas (Admin > Developer keys > LTI Registration) paste "
            f"{settings.public_base_url}/lti/register as the tool URL.",
        )
    config_url = _checked_url(openid_configuration, "openid_configuration")
    headers = {"accept": "application/json"}
    if registration_token:
        headers["authorization"] = f"Bearer {registration_token}"
    try:
        resp = await http.get(config_url, headers=headers)
    except httpx.HTTPError as exc:
        raise _fail(
            f"The platform's configuration could not be fetched: {outbound.describe(exc)}."
        ) from exc
    if resp.status_code != 200:
        raise _fail(f"The platform's configuration answered HTTP {resp.status_code}.")
    conf = _json(resp, "OpenID configuration")
    required = (
        "issuer",
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "registration_endpoint",
    )
    missing = [k for k in required if not isinstance(conf.get(k), str) or not conf.get(k)]
    if missing:
        raise _fail(f"The platform's configuration lacks {', '.join(missing)}.")
    platform_conf = _dict(conf.get(PLATFORM_CONFIG))
    family = str(platform_conf.get("product_family_code") or "")[:100]
    reg_url = _checked_url(conf["registration_endpoint"], "registration_endpoint")
    body = tool_configuration(settings, product_family=family)
    try:
        resp = await http.post(reg_url, json=body, headers=headers)
    except httpx.HTTPError as exc:
        raise _fail(f"The registration request failed: {outbound.describe(exc)}.") from exc
    if resp.status_code not in (200, 201):
        raise _fail(f"The platform refused the registration (HTTP {resp.status_code}).")
    answer = _json(resp, "registration response")
    client_id = answer.get("client_id")
    if not isinstance(client_id, str) or not client_id:
        raise _fail("The platform's registration response has no client_id.")
    tool_conf = _dict(answer.get(TOOL_CONFIG))
    deployment_id = tool_conf.get("deployment_id")
    deployment_id = str(deployment_id) if isinstance(deployment_id, str | int) else ""
    name = str(
        platform_conf.get("account_name")
        or platform_conf.get("product_family_code")
        or urlsplit(conf["issuer"]).netloc
    )[:200]
    return Negotiated(
        conf=conf, family=family, client_id=client_id, deployment_id=deployment_id, name=name
    )


# pg_advisory_xact_lock key of the pending-registration count (any constant of our own)
_PENDING_LOCK = 0x6D637265_67


def check_pending_room(session: Session, settings: Settings) -> None:
    """Refuse a registration while ``MICROCRED_DYNAMIC_REGISTRATION_MAX_PENDING`` platforms
    already wait for activation (each registration would otherwise add a row)."""
    cap = settings.dynamic_registration_max_pending
    if session.get_bind().dialect.name == "postgresql":
        # Two registrations counting at once would both see room for one: they take turns
        # until the transaction ends (SQLite's BEGIN IMMEDIATE already makes writers do so).
        session.exec(select(func.pg_advisory_xact_lock(_PENDING_LOCK)))
    pending = session.exec(
        select(func.count()).select_from(Platform).where(col(Platform.active).is_(False))
    ).one()
    if pending >= cap:
        raise RegistrationFailed(
            f"{pending} registered platforms are waiting for activation; microcred accepts no "
            "more registrations until an administrator activates or removes some.",
            hint="Ask your microcred administrator to review the pending platforms "
            "(`microcred platform list`), or to raise MICROCRED_DYNAMIC_REGISTRATION_MAX_PENDING.",
        )


def store(
    session: Session,
    negotiated: Negotiated,
    *,
    settings: Settings,
    origin: dict[str, str] | None = None,
) -> RegistrationResult:
    """Keep the registered platform, inactive until an institution administrator activates
    it (``microcred platform activate``, which shows the URL and address recorded here).

    ``origin`` (the caller's address and the openid_configuration URL) is kept in the
    ``platform.registered`` audit event. Caller commits."""
    check_pending_room(session, settings)
    conf, deployment_id = negotiated.conf, negotiated.deployment_id
    try:
        row = platforms.add_platform(
            session,
            issuer=conf["issuer"],
            client_id=negotiated.client_id,
            auth_login_url=conf["authorization_endpoint"],
            auth_token_url=conf["token_endpoint"],
            key_set_url=conf["jwks_uri"],
            deployment_ids=[deployment_id] if deployment_id else [],
            name=negotiated.name,
            active=False,
            auth_audience=conf.get("authorization_server")
            if isinstance(conf.get("authorization_server"), str)
            else None,
            product_family=negotiated.family,
            actor="dynamic-registration",
            origin=origin,
        )
    except ServiceError as exc:
        raise _fail(exc.detail, hint=exc.hint) from exc
    return RegistrationResult(
        platform_id=row.id or 0,
        name=row.name,
        issuer=row.issuer,
        client_id=row.client_id,
        deployment_id=deployment_id,
    )


def done_page(result: RegistrationResult) -> str:
    """Tell the administrator what happens next; the frame closes when they click Close
    (lti-dr §3.6), never by itself, so the activation command can be copied first."""
    e = html.escape
    dep = (
        f"<li>Deployment: <code>{e(result.deployment_id)}</code></li>"
        if result.deployment_id
        else "<li>Deployment: created when the tool is installed in the platform</li>"
    )
    activate = f"microcred platform activate {result.platform_id}" + (
        "" if result.deployment_id else " --deployment DEPLOYMENT_ID"
    )
    body = (
        "<section class='card'><h1>microcred is registered</h1>"
        f"<p>Platform <strong>{e(result.name)}</strong> was registered as number "
        f"{result.platform_id}. It stays <strong>inactive</strong> until the institution's "
        "microcred administrator checks where it came from and activates it on the microcred "
        "server.</p>"
        f"<ul><li>Issuer: <code>{e(result.issuer)}</code></li>"
        f"<li>Client id: <code>{e(result.client_id)}</code></li>{dep}</ul>"
        f"<p>To activate, run on the microcred server (copy it before closing): "
        f"<code>{e(activate)}</code></p>"
        "<p><button type='button' id='close'>Close</button></p></section>"
    )
    return pages.page("Registered · microcred", body, scripts=("lti-close.js",))


def canvas_developer_key(settings: Settings) -> dict[str, Any]:
    """Canvas LTI developer key configuration (doc/api/lti_dev_key_config.md)."""
    u = _urls(settings)
    return {
        "title": TOOL_NAME,
        "description": DESCRIPTION,
        "oidc_initiation_url": u["login"],
        "target_link_uri": u["launch"],
        "public_jwk_url": u["jwks"],
        "redirect_uris": [u["launch"]],
        "scopes": SCOPES,
        "custom_fields": CANVAS_CUSTOM,
        "extensions": [
            {
                "domain": u["domain"],
                "tool_id": TOOL_NAME,
                "platform": "canvas.instructure.com",
                "privacy_level": "public",
                "settings": {
                    "text": TOOL_NAME,
                    "placements": [
                        {
                            "placement": placement,
                            "message_type": kind,
                            "target_link_uri": u["launch"],
                            "text": text,
                        }
                        for placement, kind, text in PLACEMENTS
                    ],
                },
            }
        ],
    }
