"""OIDC login and launch validation, with the checks pylti1p3 leaves out.

Login (LTI Core §5.1.1, Security Framework §5.1.1): the platform sends iss, login_hint,
target_link_uri (+ client_id, lti_message_hint, lti_deployment_id, lti_storage_target). We
find the registration, check target_link_uri is ours, and record (state, nonce, platform,
target_link_uri) in ``launch_state``. The state is bound to the browser by a partitioned
cookie or, when the platform offers it, by LTI platform storage (postMessage).

Launch (Security Framework §5.1.3; security.md L1-L17), in ``validate_launch`` (read-only,
may fetch the platform's JWKS) and ``complete_launch`` (in the caller's write transaction):

- RS256 only, ``kid`` required and found in the registered key set (one rate-limited
  refetch on a miss); ``jku``/``x5u``/``jwk`` headers ignored.
- ``iss`` exact, ``aud`` our client_id and nothing else, ``azp`` equal to it when present;
  ``exp`` / ``iat`` within ``clock_skew_seconds``; ``iat`` no older than
  ``launch_max_age_seconds``.
- state known, unexpired, issued to the same platform, bound to this browser; nonce equal to
  the one issued with that state; both consumed exactly once by an atomic UPDATE.
- deployment known and active for (iss, client_id); platform active.
- message type in {LtiResourceLinkRequest, LtiDeepLinkingRequest}; version 1.3.0; sub,
  roles, resource link id as pylti1p3 validates.
- ``target_link_uri`` equals the login's and is one of our own URLs.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import secrets
import typing as t
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from sqlmodel import Session

from service import jws
from service.db.models import Deployment, LaunchState, Platform
from service.db.types import utcnow
from service.lti import adapter, jwks, origins, platforms, roles, store
from service.lti.errors import LaunchForbidden, LaunchRejected
from service.lti.types import AGS_ENDPOINT, CLAIM, DL_SETTINGS, NRPS_CLAIM, LaunchContext
from service.settings import Settings

__all__ = [
    "LaunchRequest",
    "Launched",
    "LoginStart",
    "PendingLaunch",
    "begin_login",
    "complete_launch",
    "is_own_url",
    "issue_storage_ticket",
    "launch_url",
    "redeem_storage_ticket",
    "validate_launch",
]

log = logging.getLogger(__name__)

SUPPORTED_MESSAGES = ("LtiResourceLinkRequest", "LtiDeepLinkingRequest")
MAX_ID_TOKEN = 64 * 1024
# login_hint and lti_message_hint go back to the platform in the authentication redirect: a
# Location header of 70 KB breaks HTTP clients and proxies (nginx answers 502).
MAX_LOGIN_HINT = 2048
STATE_COOKIE = "lti1p3-"  # + the state: the login's state cookie, as pylti1p3 named it
STORAGE_TICKET_SECONDS = 120


def launch_url(settings: Settings) -> str:
    return settings.public_base_url + "/lti/launch"


def is_own_url(url: str, settings: Settings) -> bool:
    """True when ``url`` points into this tool (same origin and base path)."""
    try:
        target, base = urlsplit(url), urlsplit(settings.public_base_url)
    except ValueError:
        return False
    base_path = base.path.rstrip("/")
    try:
        same_port = target.port == base.port
    except ValueError:
        return False
    same_host = target.netloc.lower() == base.netloc.lower() or (
        # a local setup reached as localhost or 127.0.0.1 is the same tool
        same_port
        and platforms.is_loopback(target.hostname or "")
        and platforms.is_loopback(base.hostname or "")
    )
    return (
        target.scheme == base.scheme
        and same_host
        and not target.username
        and (target.path == base_path or target.path.startswith(base_path + "/"))
    )


# --- login ---------------------------------------------------------------------------------


STATE_COOKIE_SECONDS = 5 * 60  # the login's state cookie (as pylti1p3 set it)


@dataclass
class LoginStart:
    auth_url: str
    state: str
    nonce: str
    storage_target: str
    auth_origin: str
    cookies: tuple[tuple[str, str, int], ...]  # (name, value, max-age): the state cookie
    frame_origins: tuple[str, ...] = ()  # who may frame the login's page (lti.origins)


def _platform_or_reject(platform: Platform | None) -> Platform:
    assert platform is not None
    if not platform.active:
        raise LaunchForbidden(
            f"The platform registration {platform.id} ({platform.name}) is not active yet.",
            hint=f"An administrator activates it with `microcred platform activate {platform.id}`"
            " after checking the registration.",
            code="platform_inactive",
        )
    return platform


def _param(params: Mapping[str, str], name: str) -> str:
    value = params.get(name, "")
    return value if isinstance(value, str) else ""


def _login_registration(
    session: store.Db, *, issuer: str, client_id: str, deployment_id: str | None
) -> store.Registration | None:
    """The registration a login names, with the deployment it names (None: unknown). A
    login without client_id finds the issuer's only registration (Canvas and other shared
    issuers must send client_id)."""
    if client_id:
        return store.registration(
            session, issuer=issuer, client_id=client_id, deployment_id=deployment_id
        )
    platform = store.issuer_platform(session, issuer)
    if platform is None:
        return None
    named = None
    if deployment_id:
        named = store.deployment(session, platform_id=platform.id or 0, deployment_id=deployment_id)
    return store.Registration(platform, named)


def _auth_url(
    platform: Platform, params: Mapping[str, str], *, state: str, nonce: str, redirect_uri: str
) -> str:
    """The OIDC authentication request (LTI Core §5.1.1.2 / OIDC §3.1.2.1): the browser's
    redirect to the platform's auth URL."""
    query = {
        "scope": "openid",
        "response_type": "id_token",
        "response_mode": "form_post",
        "prompt": "none",
        "client_id": platform.client_id,
        "redirect_uri": redirect_uri,
        "state": state,
        "nonce": nonce,
        "login_hint": _param(params, "login_hint"),
    }
    message_hint = _param(params, "lti_message_hint")
    if message_hint:
        query["lti_message_hint"] = message_hint
    auth = platform.auth_login_url
    return auth + ("&" if "?" in auth else "?") + urlencode(query)


def begin_login(
    session: store.Db, request: LaunchRequest, *, settings: Settings, now: dt.datetime
) -> LoginStart:
    """Validate a third-party initiated login and record state + nonce, in the caller's
    transaction (a Core connection: no ORM here). Caller commits."""
    params = request.params
    for name in ("iss", "login_hint", "target_link_uri"):
        if not _param(params, name):
            raise LaunchRejected(
                f"The login request has no '{name}' parameter.",
                hint="The platform must start the launch with an OIDC login initiation "
                "(LTI 1.3 Core §4.1): iss, login_hint and target_link_uri are required.",
                code="login_incomplete",
            )
    for name in ("login_hint", "lti_message_hint"):
        if len(_param(params, name)) > MAX_LOGIN_HINT:
            raise LaunchRejected(
                f"The login request's '{name}' is longer than {MAX_LOGIN_HINT} characters.",
                hint="Platforms send short hints; start the launch again from the course, "
                "and tell the platform's administrator if this keeps happening.",
                code="login_hint_too_long",
            )
    target = _param(params, "target_link_uri")
    if not is_own_url(target, settings):
        raise LaunchRejected(
            "The login asks to continue to a URL that is not part of microcred.",
            hint=f"The tool's target link URI must start with {settings.public_base_url}; "
            "check the tool URL configured in the platform.",
            code="foreign_target_link_uri",
        )
    storage_target = _param(params, "lti_storage_target")[:200]
    dep_hint = _param(params, "lti_deployment_id") or _param(params, "deployment_id")
    found = _login_registration(
        session,
        issuer=_param(params, "iss"),
        client_id=_param(params, "client_id"),
        deployment_id=dep_hint or None,
    )
    if found is None:
        raise LaunchRejected(
            "This platform is not registered with microcred "
            "(no registration for this issuer and client_id).",
            hint="An administrator registers it with `microcred platform add` or dynamic "
            "registration; Canvas and other shared issuers must send client_id.",
            code="unknown_platform",
        )
    platform = _platform_or_reject(found.platform)
    if found.deployment is not None and not found.deployment.active:
        _deployment_or_reject(platform, found.deployment, dep_hint)
    # An unknown deployment is refused at launch, where its id is signed and can be shown.
    # The state as pylti1p3 made them; the nonce 256 random bits (pylti1p3's uuid4 + uuid1
    # told every platform this host's MAC address and clock).
    state, nonce = f"state-{uuid.uuid4()}", secrets.token_urlsafe(32)
    store.record_login(
        session,
        platform_id=platform.id or 0,
        state=state,
        nonce=nonce,
        target_link_uri=target[:1000],
        storage_target=storage_target,
        created_at=now,
        expires_at=now + dt.timedelta(seconds=settings.login_state_ttl_seconds),
    )
    if secrets.randbelow(50) == 0:
        store.purge_expired(session, now=now)
    return LoginStart(
        auth_url=_auth_url(
            platform, params, state=state, nonce=nonce, redirect_uri=launch_url(settings)
        ),
        state=state,
        nonce=nonce,
        storage_target=storage_target,
        auth_origin=origins.origin(platform.auth_login_url) or "",
        cookies=((f"{STATE_COOKIE}{state}", state, STATE_COOKIE_SECONDS),),
        frame_origins=tuple(origins.platform_origins(platform)),
    )


def _deployment_or_reject(
    platform: Platform, row: Deployment | None, deployment_id: str
) -> Deployment:
    if row is None:
        raise LaunchForbidden(
            "The deployment this launch comes from is not registered in microcred.",
            hint=f"An administrator adds it with `microcred platform activate {platform.id} "
            f"--deployment {deployment_id[:255]}` after checking it belongs to the institution.",
            code="unknown_deployment",
        )
    if not row.active:
        raise LaunchForbidden(
            "The deployment this launch comes from is deactivated in microcred.",
            hint=f"An administrator re-activates it with `microcred platform activate "
            f"{platform.id} --deployment <deployment id>`.",
            code="deployment_inactive",
        )
    return row


# --- launch --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LaunchRequest:
    """What a launch request carries: its form and query fields, its cookies, and whether
    it came over https."""

    params: Mapping[str, str]
    cookies: Mapping[str, str]
    secure: bool


@dataclass
class PendingLaunch:
    """A launch whose token passed every check; ``complete_launch`` takes its login
    state."""

    claims: dict[str, t.Any]
    platform: Platform
    deployment: Deployment
    state: str
    browser_bound: bool
    auth_origin: str
    context: LaunchContext

    @property
    def nonce(self) -> t.Any:
        return self.claims.get("nonce")


@dataclass(frozen=True)
class Launched:
    """A launch whose login state was taken: its context, and the platform storage its
    login used ("" for none)."""

    context: LaunchContext
    storage_target: str


def _reject(detail: str, code: str, hint: str | None = None) -> LaunchRejected:
    return LaunchRejected(detail, code=code, hint=hint)


class _SignatureCheck:
    """Our replacement for pylti1p3's signature step (PyJWT, no refetch, no aud/azp/iat)."""

    def __init__(self, source: jwks.KeySetSource, settings: Settings, now: dt.datetime):
        self.source = source
        self.settings = settings
        self.now = now

    def __call__(self, message: adapter.DbMessageLaunch) -> dict[str, t.Any]:
        header = message.header
        reg = message.registration
        assert reg is not None
        # Before any fetch: an inactive registration (e.g. from dynamic registration, which
        # anyone can start) never makes us call its JWKS URL.
        _platform_or_reject(message.get_tool_conf().platform)
        if header.get("alg") != "RS256":
            # Security Framework §5.1.3 step 6 / Cert §4.2: RS256, never none or HMAC.
            raise _reject("The id_token is not signed with RS256.", "bad_algorithm")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _reject(
                "The id_token header has no key id (kid).",
                "missing_kid",
                hint="The platform must name its signing key (Security Framework §6.3).",
            )
        url = reg.get_key_set_url() or ""
        keys = jwks.keys_for(self.source, url, kid)
        if not any(k.kid == kid for k in keys):
            raise _reject(
                "The id_token is signed with a key the platform does not publish.",
                "unknown_kid",
                hint=f"The administrator should check the JWKS URL registered for this "
                f"platform ({url}); if the platform just rotated keys, retry in a minute.",
            )
        client_id = reg.get_client_id()
        try:
            claims = jws.verify(
                message.id_token,
                [k for k in keys if k.kid == kid],
                algorithms=["RS256"],
                audience=client_id,
                issuer=reg.get_issuer(),
                leeway=self.settings.clock_skew_seconds,
                now=self.now.timestamp(),
                require=("exp", "iat", "nonce"),
                max_age=self.settings.launch_max_age_seconds,
            )
        except jws.TokenError as exc:
            hint = None
            if exc.code == "token_expired" or "future" in exc.detail or "old" in exc.detail:
                hint = (
                    "Start the activity again. If it keeps failing, the administrator should "
                    "check that the clocks of the platform and microcred are synchronised (NTP)."
                )
            raise _reject(f"The id_token is not valid: {exc.detail}.", "bad_token", hint) from exc
        aud = claims.get("aud")
        azp = claims.get("azp")
        if isinstance(aud, list) and len(aud) > 1 and azp is None:
            raise _reject("The id_token has several audiences but no azp.", "bad_audience")
        if azp is not None and azp != client_id:
            raise _reject("The id_token's authorized party (azp) is not microcred.", "bad_azp")
        version = claims.get(CLAIM + "version")
        if version != "1.3.0":
            raise _reject(
                "The launch is not an LTI 1.3.0 message (version claim missing or wrong).",
                "bad_version",
            )
        message_type = claims.get(CLAIM + "message_type")
        if message_type not in SUPPORTED_MESSAGES:
            raise _reject(
                "microcred does not support this LTI message type (or it is missing).",
                "unsupported_message",
                hint="microcred accepts resource link and deep linking launches; check the "
                "placement configured in the platform.",
            )
        _check_shapes(claims)
        return claims


def _check_shapes(claims: dict[str, t.Any]) -> None:
    """Strict on the claims we use, tolerant of all others (LTI Core §5.4.7)."""
    roles_claim = claims.get(CLAIM + "roles")
    if roles_claim is not None and not (
        isinstance(roles_claim, list) and all(isinstance(r, str) for r in roles_claim)
    ):
        raise _reject("The roles claim is not a list of role URIs.", "invalid_message")
    if "sub" in claims and not (isinstance(claims["sub"], str) and 0 < len(claims["sub"]) <= 255):
        raise _reject("The user (sub) claim is not a valid identifier.", "invalid_message")
    if not isinstance(claims.get(CLAIM + "deployment_id"), str | None):
        raise _reject("The deployment_id claim is not a string.", "invalid_message")
    for name in ("context", "resource_link", "launch_presentation", "custom", "tool_platform"):
        if claims.get(CLAIM + name) is not None and not isinstance(claims[CLAIM + name], dict):
            raise _reject(f"The {name} claim is not an object.", "invalid_message")
    link = claims.get(CLAIM + "resource_link")
    if (
        isinstance(link, dict)
        and "id" in link
        and not (isinstance(link["id"], str) and 0 < len(link["id"]) <= 255)
    ):
        raise _reject("The resource_link claim's id is not a valid identifier.", "invalid_message")


def validate_launch(
    session: store.Db,
    request: LaunchRequest,
    *,
    keys: jwks.KeySetSource,
    settings: Settings,
    now: dt.datetime,
) -> PendingLaunch:
    """Every check of the launch's token and registration (reads only). Raises
    ``LaunchRejected`` (4xx) on any failure, ``jwks.FetchNeeded`` when ``keys`` has no
    client and the platform's key set must be fetched."""
    params = request.params
    error = params.get("error")
    if error and not params.get("id_token"):
        # Moodle (auth.php) posts protocol errors back without an id_token.
        desc = params.get("error_description", "")[:300]
        raise LaunchRejected(
            f"The platform refused the login: {error[:100]}{': ' + desc if desc else ''}.",
            hint="The administrator should check the tool's redirect URI "
            f"({launch_url(settings)}) and client id registered in the platform.",
            code="platform_error",
        )
    id_token = params.get("id_token", "")
    state = params.get("state", "")
    if not id_token:
        raise _reject("The launch carries no id_token.", "missing_id_token")
    if len(id_token) > MAX_ID_TOKEN:
        raise _reject("The id_token is too large.", "bad_token")
    if not state:
        raise _reject("The launch carries no state.", "missing_state")
    lti_request = adapter.FastApiRequest(params, request.cookies, request.secure)
    conf = adapter.DbToolConf(session)
    message = adapter.DbMessageLaunch(
        lti_request,
        conf,
        session_service=adapter.DbSessionService(lti_request),
        cookie_service=adapter.FastApiCookieService(lti_request),
        signature_check=_SignatureCheck(keys, settings, now),
    )
    try:
        message.validate()
    except LaunchRejected:
        raise
    except adapter.LIBRARY_ERRORS as exc:
        text = str(exc)
        if conf.platform is None or "Registration not found" in text:
            raise _reject(
                "This platform is not registered with microcred "
                "(no registration for the token's issuer and audience).",
                "unknown_platform",
            ) from exc
        if "deployment" in text.lower() and "Unable to find" in text:
            named = str(message.unverified_body.get(CLAIM + "deployment_id"))
            _deployment_or_reject(conf.platform, conf.deployment_row(named), named)
        raise _reject(f"The launch message is not valid: {text}.", "invalid_message") from exc
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        log.info("malformed launch: %s", type(exc).__name__)
        raise _reject("The launch message is malformed.", "invalid_message") from exc
    platform = _platform_or_reject(conf.platform)
    claims = message.verified_claims
    named = str(claims.get(CLAIM + "deployment_id"))
    deployment = _deployment_or_reject(platform, conf.deployment_row(named), named)
    cookie = lti_request.get_cookie(STATE_COOKIE + state)
    return PendingLaunch(
        claims=claims,
        platform=platform,
        deployment=deployment,
        state=state,
        browser_bound=cookie is not None and hmac.compare_digest(cookie.encode(), state.encode()),
        auth_origin=origins.origin(platform.auth_login_url) or "",
        context=_context(message.get_launch_id(), claims, platform, deployment),
    )


@dataclass(frozen=True)
class _Expect:
    """What the login's state row must match for this launch (from the verified token)."""

    platform_id: int
    nonce: t.Any  # the token's nonce claim (checked to be a string)
    target: t.Any  # the token's target_link_uri claim
    bound: bool  # the browser sent back the login's state cookie


def _check_state(
    row: LaunchState | None, expect: _Expect, *, now: dt.datetime, settings: Settings, taken: bool
) -> LaunchState:
    """Every check of the login's state row; ``taken``: this launch consumed it."""
    if row is None or row.expires_at <= now:
        raise _reject(
            "The launch does not match a login we started, or it took too long.", "unknown_state"
        )
    if row.used_at is not None and not taken:
        raise _reject("This launch was already used; it cannot be replayed.", "replayed")
    if row.platform_id != expect.platform_id:
        raise _reject("The launch comes from a different platform than its login.", "mixup")
    # compare_digest refuses non-ASCII str (TypeError): compare the UTF-8 bytes.
    if not isinstance(expect.nonce, str) or not hmac.compare_digest(
        expect.nonce.encode(), row.nonce.encode()
    ):
        raise _reject("The id_token's nonce is not the one issued at login.", "bad_nonce")
    target = expect.target
    if not isinstance(target, str) or not is_own_url(target, settings):
        raise _reject(
            "The launch's target_link_uri is missing or not a microcred URL.",
            "foreign_target_link_uri",
        )
    if row.target_link_uri and target != row.target_link_uri:
        # LTI Core §5.3.4: the signed claim must equal the login's target_link_uri.
        raise _reject(
            "The launch's target_link_uri differs from the login's.", "target_link_mismatch"
        )
    if not expect.bound and not row.storage_target:
        raise _reject(
            "Your browser did not send back the login cookie, so this launch cannot be "
            "tied to you.",
            "state_cookie_missing",
            hint="Allow cookies for this site or open the activity in a new window. The "
            "administrator can enable LTI platform storage in the platform, if it offers it.",
        )
    return row


def _take(
    session: store.Db, pending: PendingLaunch, *, now: dt.datetime, settings: Settings
) -> LaunchState:
    """The login's state row, taken for this launch (used once), after every check on it:
    the take carries the checks in its WHERE (``store.take_state``); when it takes nothing,
    the row is read to say why."""
    expect = _Expect(
        platform_id=pending.platform.id or 0,
        nonce=pending.nonce,
        target=pending.claims.get(CLAIM + "target_link_uri"),
        bound=pending.browser_bound,
    )
    if (
        isinstance(expect.nonce, str)
        and isinstance(expect.target, str)
        and is_own_url(expect.target, settings)
    ):
        taken = store.take_state(
            session,
            store.Take(
                state=pending.state,
                platform_id=expect.platform_id,
                nonce=expect.nonce,
                target_link_uri=expect.target,
                bound=expect.bound,
                now=now,
            ),
        )
        if taken is not None:
            return _check_state(taken, expect, now=now, settings=settings, taken=True)
    row = store.login_state(session, pending.state)
    _check_state(row, expect, now=now, settings=settings, taken=False)
    # Every check passed on the row read, yet the take found none: another launch of the
    # same token took it in between.
    raise _reject("This launch was already used; it cannot be replayed.", "replayed")


def complete_launch(
    session: store.Db, pending: PendingLaunch, *, settings: Settings, now: dt.datetime
) -> Launched:
    """Take the login state (exactly once, also under concurrency) and keep what a
    deep-linking launch needs later. In the caller's write transaction, committed once by
    the route."""
    row = _take(session, pending, now=now, settings=settings)
    context = pending.context
    if context.is_deep_linking:
        # The validated request, for the picker and the signed response that follow in this
        # session (``store.load_context``); a resource link launch keeps what it needs in its
        # person, course, enrolment and course setup rows.
        store.save_context(
            session,
            context,
            expires_at=now + dt.timedelta(seconds=settings.launch_data_ttl_seconds),
        )
    return Launched(context=context, storage_target=row.storage_target)


def _str(value: t.Any, limit: int = 500) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _dict(value: t.Any) -> dict[str, t.Any]:
    return value if isinstance(value, dict) else {}


def _context(
    launch_id: str,
    c: dict[str, t.Any],
    platform: Platform,
    deployment: Deployment,
) -> LaunchContext:
    context = _dict(c.get(CLAIM + "context"))
    link = c.get(CLAIM + "resource_link")
    link = link if isinstance(link, dict) else {}
    role_list = [r for r in c.get(CLAIM + "roles") or [] if isinstance(r, str)]
    platform_claim = _dict(c.get(CLAIM + "tool_platform"))
    presentation = _dict(c.get(CLAIM + "launch_presentation"))
    nrps = _dict(c.get(NRPS_CLAIM))
    custom = c.get(CLAIM + "custom")
    ags = c.get(AGS_ENDPOINT)
    dl = c.get(DL_SETTINGS)
    return LaunchContext(
        launch_id=launch_id,
        platform_id=platform.id or 0,
        deployment_pk=deployment.id or 0,
        issuer=platform.issuer,
        client_id=platform.client_id,
        deployment_id=deployment.deployment_id,
        message_type=str(c.get(CLAIM + "message_type")),
        sub=_str(c.get("sub"), 255),
        role=roles.course_role(role_list),
        roles=role_list[:50],
        name=_str(c.get("name"), 300),
        given_name=_str(c.get("given_name"), 200),
        family_name=_str(c.get("family_name"), 200),
        email=_str(c.get("email"), 320),
        context_id=_str(context.get("id"), 255),
        context_title=_str(context.get("title")),
        context_label=_str(context.get("label"), 200),
        resource_link_id=_str(link.get("id"), 255),
        resource_link_title=_str(link.get("title")),
        custom=custom if isinstance(custom, dict) else {},
        ags=ags if isinstance(ags, dict) else {},
        nrps_url=_str(nrps.get("context_memberships_url"), 1000),
        deep_linking=dl if isinstance(dl, dict) else {},
        return_url=_str(presentation.get("return_url"), 1000),
        # Moodle sends family_code, the spec product_family_code.
        product_family=_str(
            platform_claim.get("product_family_code") or platform_claim.get("family_code"), 100
        ),
    )


# --- platform storage (LTI client-side postMessages, lti-cs-oidc) ----------------------------


def issue_storage_ticket(
    session: store.Db, launched: Launched, pending: PendingLaunch, *, now: dt.datetime
) -> str:
    """After a launch whose state must be checked in platform storage: a one-time ticket."""
    ticket = secrets.token_urlsafe(32)
    store.save_ticket(
        session,
        f"ticket-{ticket}",
        {"context": launched.context.to_json(), "state": pending.state, "nonce": pending.nonce},
        expires_at=now + dt.timedelta(seconds=STORAGE_TICKET_SECONDS),
    )
    return ticket


def redeem_storage_ticket(
    session: Session, *, ticket: str, state: str, nonce: str, now: dt.datetime | None = None
) -> LaunchContext:
    """Check the values the browser read back from platform storage; the ticket works once."""
    now = now or utcnow()
    if "\x00" in ticket:
        raise _reject("The launch confirmation is malformed.", "unknown_ticket")
    key = f"ticket-{ticket}"[:300]
    value = store.read_ticket(session, key, now=now)
    if value is None:
        raise _reject("The launch confirmation is unknown or expired.", "unknown_ticket")
    if not store.drop_ticket(session, key):
        raise _reject("This launch was already used; it cannot be replayed.", "replayed")
    if not (
        hmac.compare_digest(state.encode(), str(value["state"]).encode())
        and hmac.compare_digest(nonce.encode(), str(value["nonce"]).encode())
    ):
        raise _reject(
            "The platform storage of this browser does not hold this launch's state.",
            "state_mismatch",
            hint="Start the activity again from the course, in the same browser window.",
        )
    return LaunchContext.from_json(value["context"])
