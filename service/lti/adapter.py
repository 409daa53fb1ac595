"""The pylti1p3 seam: FastAPI request, cookies, redirects, database tool configuration,
launch-data storage, OIDC login and message launch.

This is the only module that imports pylti1p3 (an import-linter contract holds it). Routes
are sync ``def`` functions, because pylti1p3 is synchronous: the route reads the form first
and hands a plain mapping to ``FastApiRequest``.

What pylti1p3 does here: the OIDC authentication request (state cookie, nonce, auth URL),
JWT format parsing, registration and deployment lookup through ``DbToolConf``, message
validators (sub, version, roles, resource link, deep-linking settings). Its launch-data
storage is not used for launches (``service.lti.launch`` stores the validated context
itself). What it does not do (lti.md §1.7) is done by ``service.lti.launch``: signature
verification with our own key-set cache, aud/azp, iat/exp skew, one-time state and nonce,
target_link_uri.
"""

from __future__ import annotations

import json
import secrets
import typing as t
import uuid
from collections.abc import Callable, Mapping
from urllib.parse import parse_qs, urlsplit

from pylti1p3.cookie import CookieService
from pylti1p3.deployment import Deployment as LtiDeployment
from pylti1p3.exception import LtiException, OIDCException
from pylti1p3.message_launch import MessageLaunch
from pylti1p3.oidc_login import OIDCLogin
from pylti1p3.redirect import Redirect
from pylti1p3.registration import Registration
from pylti1p3.request import Request
from pylti1p3.session import SessionService
from pylti1p3.tool_config.abstract import ToolConfAbstract
from sqlmodel import Session
from starlette.responses import HTMLResponse, RedirectResponse, Response

from service.db.models import Deployment, Platform
from service.lti import store
from service.lti.cookies import read_iframe_cookie, set_iframe_cookie

__all__ = [
    "LIBRARY_ERRORS",
    "DbMessageLaunch",
    "DbOIDCLogin",
    "DbSessionService",
    "DbToolConf",
    "FastApiCookieService",
    "FastApiRequest",
    "new_nonce",
    "new_state",
]

DEPLOYMENT_CLAIM = "https://purl.imsglobal.org/spec/lti/claim/deployment_id"

# Everything pylti1p3 raises for bad input; mapped to a 4xx page by the callers.
LIBRARY_ERRORS: tuple[type[Exception], ...] = (LtiException, OIDCException)


class FastApiRequest(Request):
    """A pre-read request: query and form merged, cookies, and whether it came over https."""

    def __init__(self, params: Mapping[str, str], cookies: Mapping[str, str], secure: bool):
        self._params = dict(params)
        self._cookies = dict(cookies)
        self._secure = secure

    @property
    def session(self) -> dict[str, t.Any]:
        return {}  # unused: all state is in the database

    def is_secure(self) -> bool:
        return self._secure

    def get_param(self, key: str) -> str:
        value = self._params.get(key, "")
        return value if isinstance(value, str) else ""

    def get_cookie(self, key: str) -> str | None:
        return read_iframe_cookie(self._cookies, key)


class FastApiCookieService(CookieService):
    """Queues cookies set by pylti1p3 and writes them as iframe cookies on the response."""

    def __init__(self, request: FastApiRequest) -> None:
        self._request = request
        self._queued: list[tuple[str, str, int | None]] = []

    def _name(self, name: str) -> str:
        return f"{self._cookie_prefix}-{name}"

    def get_cookie(self, name: str) -> str | None:
        return self._request.get_cookie(self._name(name))

    def set_cookie(self, name: str, value: str | int, exp: int | None = 3600) -> None:
        self._queued.append((self._name(name), str(value), exp))

    def update_response(self, response: Response) -> None:
        for name, value, exp in self._queued:
            set_iframe_cookie(
                response, name, value, max_age=exp, secure_request=self._request.is_secure()
            )


class FastApiRedirect(Redirect[Response]):
    def __init__(self, location: str, cookie_service: FastApiCookieService) -> None:
        self._location = location
        self._cookies = cookie_service

    def do_redirect(self) -> Response:
        response = RedirectResponse(self._location, status_code=302)
        self._cookies.update_response(response)
        return response

    def do_js_redirect(self) -> Response:
        raise NotImplementedError("the login page template does the JS navigation")

    def set_redirect_url(self, location: str) -> None:
        self._location = location

    def get_redirect_url(self) -> str:
        return self._location


class DbSessionService(SessionService):
    """Nonces live in ``launch_state`` (consumed once), so pylti1p3 need not keep them."""

    def save_nonce(self, nonce: str) -> None:
        return None


def _registration(row: Platform) -> Registration:
    reg = Registration()
    reg.set_issuer(row.issuer).set_client_id(row.client_id).set_key_set_url(row.key_set_url)
    reg.set_auth_login_url(row.auth_login_url).set_auth_token_url(row.auth_token_url)
    if row.auth_audience:
        reg.set_auth_audience(row.auth_audience)
    return reg


def _deployment_hint(kwargs: Mapping[str, t.Any]) -> str | None:
    """The deployment id a registration lookup's request names: the (not yet verified)
    launch claim, or the login's ``lti_deployment_id``. Only used to prefetch the row."""
    body = kwargs.get("jwt_body")
    if isinstance(body, dict):
        value = body.get(DEPLOYMENT_CLAIM)
        return value if isinstance(value, str) else None
    request = kwargs.get("request")
    if isinstance(request, FastApiRequest):
        value = request.get_param("lti_deployment_id") or request.get_param("deployment_id")
        return value or None
    return None


class DbToolConf(ToolConfAbstract[FastApiRequest]):
    """Registrations from the ``platform`` table (``lti.store``): one issuer may have many
    client_ids.

    Inactive platforms and deployments are found too (so the caller can say *why* a launch
    is refused); ``platform`` remembers the row behind the last registration found.
    """

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.issuers_relation_types = {}
        self._db = session
        self.platform: Platform | None = None
        # pylti1p3's deployment check and ours look up the same row: read it once.
        self._deployments: dict[tuple[int | None, str], Deployment | None] = {}

    def check_iss_has_one_client(self, iss: str) -> bool:
        return False

    def check_iss_has_many_clients(self, iss: str) -> bool:
        return True

    def find_registration_by_issuer(  # type: ignore[override]  # None = not found
        self, iss: str, *args: t.Any, **kwargs: t.Any
    ) -> Registration | None:
        rows = store.issuer_platforms(self._db, iss)
        if len(rows) != 1:
            return None  # unknown, or ambiguous: the platform must name its client_id
        self.platform = rows[0]
        return _registration(rows[0])

    def find_registration_by_params(  # type: ignore[override]  # None = not found
        self, iss: str, client_id: str, *args: t.Any, **kwargs: t.Any
    ) -> Registration | None:
        if not client_id:
            return self.find_registration_by_issuer(iss)
        # The deployment the request names comes with the platform in one statement (an
        # unknown deployment is found as None and refused later).
        hint = _deployment_hint(kwargs)
        found = store.registration(self._db, issuer=iss, client_id=client_id, deployment_id=hint)
        if found is None:
            return None
        if hint is not None:
            self._deployments[(found.platform.id, hint)] = found.deployment
        self.platform = found.platform
        return _registration(found.platform)

    def find_deployment(self, iss: str, deployment_id: str) -> LtiDeployment | None:
        return None  # one-client-per-issuer lookups are never used

    def find_deployment_by_params(
        self, iss: str, deployment_id: str, client_id: str, *args: t.Any, **kwargs: t.Any
    ) -> LtiDeployment | None:
        row = self.deployment_row(deployment_id)
        if row is None:
            return None
        return LtiDeployment().set_deployment_id(row.deployment_id)

    def deployment_row(self, deployment_id: str) -> Deployment | None:
        if self.platform is None or not isinstance(deployment_id, str):
            return None
        key = (self.platform.id, deployment_id)
        if key not in self._deployments:
            self._deployments[key] = store.deployment(
                self._db, platform_id=self.platform.id or 0, deployment_id=deployment_id
            )
        return self._deployments[key]


class DbOIDCLogin(
    OIDCLogin[FastApiRequest, DbToolConf, DbSessionService, FastApiCookieService, Response]
):
    """Step 2 of the OIDC flow: the authentication request back to the platform, with the
    state and nonce the caller made (``new_state``, ``new_nonce``), so that they can be
    recorded by the caller (``lti.launch.begin_login``)."""

    def __init__(self, *args: t.Any, state: str, nonce: str, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self._state, self._nonce = state, nonce

    def _get_uuid(self) -> str:
        return self._state.removeprefix("state-")  # pylti1p3 names the state "state-" + this

    def _generate_nonce(self) -> str:
        return self._nonce

    def get_redirect(self, url: str) -> FastApiRedirect:
        return FastApiRedirect(url, self._cookie_service)

    def get_response(self, html: str) -> Response:
        return HTMLResponse(html)

    def prepare(self, launch_url: str) -> tuple[str, str, str]:
        """Build the auth request URL; returns (url, state, nonce). Cookies stay queued."""
        url: str = self._prepare_redirect_url(launch_url)
        auth = self._registration.get_auth_login_url() or ""
        if "?" in auth and url.startswith(auth + "?"):
            # pylti1p3 2.0.0 appends "?..." even when the auth URL has a query already.
            url = auth + "&" + url[len(auth) + 1 :]
        query = parse_qs(urlsplit(url).query)
        return url, query["state"][-1], query["nonce"][-1]


def new_state() -> str:
    """A login's state, as pylti1p3 makes them ("state-" + a random UUID)."""
    return f"state-{uuid.uuid4()}"


def new_nonce() -> str:
    """A login's nonce. pylti1p3's is uuid4 + uuid1: the uuid1 half tells every platform
    this host's MAC address and clock, and costs a lock and ~20 us. 256 random bits."""
    return secrets.token_urlsafe(32)


SignatureCheck = Callable[["DbMessageLaunch"], dict[str, t.Any]]


class _NoHttp:
    """pylti1p3's HTTP session for a launch: never used (jwks.py fetches key sets)."""

    def __getattr__(self, name: str) -> t.NoReturn:
        raise RuntimeError(f"pylti1p3 tried an HTTP call ({name}); key sets come from jwks.py")


_NO_HTTP = _NoHttp()


class DbMessageLaunch(
    MessageLaunch[FastApiRequest, DbToolConf, DbSessionService, FastApiCookieService]
):
    """Step 4: the launch. ``validate`` runs pylti1p3's format, registration, deployment and
    message checks around our own signature check; state and nonce are ours (see launch.py).
    """

    def __init__(
        self,
        request: FastApiRequest,
        tool_config: DbToolConf,
        *,
        session_service: DbSessionService,
        cookie_service: FastApiCookieService,
        signature_check: SignatureCheck,
    ) -> None:
        super().__init__(
            request,
            tool_config,
            session_service=session_service,
            cookie_service=cookie_service,
            # else pylti1p3 builds a requests.Session per launch (~1 % of a launch's CPU)
            # for key-set fetches that our signature check makes instead (jwks.py, httpx)
            requests_session=t.cast(t.Any, _NO_HTTP),
        )
        self._signature_check = signature_check
        self.verified_claims: dict[str, t.Any] = {}

    def _get_request_param(self, key: str) -> str:
        value: str = self._request.get_param(key)
        return value

    def get_client_id(self) -> str:
        # pylti1p3 takes aud[0]; an aud list is only acceptable when it names one party
        # (Security Framework §5.1.3 step 3), which the signature check enforces.
        aud = self._jwt.get("body", {}).get("aud")
        if isinstance(aud, list):
            return str(aud[0]) if aud and isinstance(aud[0], str) else ""
        return aud if isinstance(aud, str) else ""

    @property
    def header(self) -> dict[str, t.Any]:
        return dict(self._jwt.get("header", {}))

    @property
    def unverified_body(self) -> dict[str, t.Any]:
        return dict(self._jwt.get("body", {}))

    @property
    def id_token(self) -> str:
        token: str = self._get_id_token()
        return token

    @property
    def registration(self) -> Registration | None:
        return self._registration

    def validate_jwt_signature(self) -> DbMessageLaunch:
        self.verified_claims = self._signature_check(self)
        return self

    def validate(self) -> DbMessageLaunch:
        self._validated = True
        try:
            self.validate_jwt_format()
            if not isinstance(self._jwt.get("header"), dict) or not isinstance(
                self._jwt.get("body"), dict
            ):
                raise LtiException("Invalid JWT format: header and body must be JSON objects")
            body = self._jwt["body"]
            if "\\u0000" in json.dumps([self._jwt["header"], body]):
                # NUL cannot be stored (PostgreSQL text/JSONB) and no valid claim holds one.
                raise LtiException("The token contains a NUL character")
            aud = body.get("aud")
            if not isinstance(body.get("iss"), str) or not body["iss"]:
                raise LtiException("The iss claim must be a non-empty string")
            if not (
                isinstance(aud, str)
                or (isinstance(aud, list) and aud and all(isinstance(a, str) for a in aud))
            ):
                raise LtiException("The aud claim must be a string or a list of strings")
            self.validate_registration()
            self.validate_jwt_signature()
            self.validate_deployment()
            self.validate_message()
        except Exception:
            self._validated = False
            raise
        return self
