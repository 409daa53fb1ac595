"""The pylti1p3 seam: FastAPI request, cookies, database tool configuration and the message
launch.

This is the only module that imports pylti1p3 (an import-linter contract holds it). Routes
are sync ``def`` functions, because pylti1p3 is synchronous: the route reads the form first
and hands a plain mapping to ``FastApiRequest``.

What pylti1p3 does here: JWT format parsing, registration and deployment lookup through
``DbToolConf``, message validators (sub, version, roles, resource link, deep-linking
settings). Its launch-data
storage is not used for launches (``service.lti.launch`` stores the validated context
itself). What it does not do (lti.md §1.7) is done by ``service.lti.launch``: signature
verification with our own key-set cache, aud/azp, iat/exp skew, one-time state and nonce,
target_link_uri. The OIDC login (``launch.begin_login``) needs none of it: its
authentication request is nine query parameters and a state cookie.
"""

from __future__ import annotations

import json
import typing as t
from collections.abc import Callable, Mapping

from pylti1p3.cookie import CookieService
from pylti1p3.deployment import Deployment as LtiDeployment
from pylti1p3.exception import LtiException, OIDCException
from pylti1p3.message_launch import MessageLaunch
from pylti1p3.registration import Registration
from pylti1p3.request import Request
from pylti1p3.session import SessionService
from pylti1p3.tool_config.abstract import ToolConfAbstract

from service.db.models import Deployment, Platform
from service.lti import store
from service.lti.cookies import read_iframe_cookie

__all__ = [
    "LIBRARY_ERRORS",
    "DbMessageLaunch",
    "DbSessionService",
    "DbToolConf",
    "FastApiCookieService",
    "FastApiRequest",
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
    """The request's cookies for pylti1p3; the launch sets none (the state cookie is the
    login's, ``launch.begin_login``)."""

    def __init__(self, request: FastApiRequest) -> None:
        self._request = request

    def get_cookie(self, name: str) -> str | None:
        return self._request.get_cookie(f"{self._cookie_prefix}-{name}")

    def set_cookie(self, name: str, value: str | int, exp: int | None = 3600) -> None:
        raise RuntimeError("pylti1p3 set a cookie during a launch")


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
    """The deployment id a launch's registration lookup names: the (not yet verified)
    claim. Only used to read the row with the platform."""
    body = kwargs.get("jwt_body")
    if isinstance(body, dict):
        value = body.get(DEPLOYMENT_CLAIM)
        return value if isinstance(value, str) else None
    return None


class DbToolConf(ToolConfAbstract[FastApiRequest]):
    """Registrations from the ``platform`` table (``lti.store``): one issuer may have many
    client_ids.

    Inactive platforms and deployments are found too (so the caller can say *why* a launch
    is refused); ``platform`` remembers the row behind the last registration found.
    """

    def __init__(self, session: store.Db) -> None:
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
        self.platform = store.issuer_platform(self._db, iss)
        return None if self.platform is None else _registration(self.platform)

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
