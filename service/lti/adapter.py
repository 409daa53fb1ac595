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

import datetime as dt
import json
import secrets
import time
import typing as t
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import sqlmodel
from pylti1p3.cookie import CookieService
from pylti1p3.deployment import Deployment as LtiDeployment
from pylti1p3.exception import LtiException, OIDCException
from pylti1p3.launch_data_storage.base import LaunchDataStorage
from pylti1p3.message_launch import MessageLaunch
from pylti1p3.oidc_login import OIDCLogin
from pylti1p3.redirect import Redirect
from pylti1p3.registration import Registration
from pylti1p3.request import Request
from pylti1p3.session import SessionService
from pylti1p3.tool_config.abstract import ToolConfAbstract
from sqlalchemy import (
    LABEL_STYLE_TABLENAME_PLUS_COL,
    Select,
    and_,
    bindparam,
    func,
    insert,
    literal_column,
    or_,
    select,
)
from sqlmodel import Session
from starlette.responses import HTMLResponse, RedirectResponse, Response

from service.db import prepared
from service.db.engine import dml_ctes
from service.db.models import Deployment, LaunchState, LtiCache, Platform
from service.db.types import utcnow
from service.lti.cookies import read_iframe_cookie, set_iframe_cookie

__all__ = [
    "LIBRARY_ERRORS",
    "DbLaunchDataStorage",
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


class DbLaunchDataStorage(LaunchDataStorage[t.Any]):
    """pylti1p3 launch data in the ``lti_cache`` table, with expiry, shared by all processes."""

    def __init__(self, session: Session) -> None:
        super().__init__()
        self._db = session

    def get_session_cookie_name(self) -> str | None:
        return None  # state and nonce are bound by our own table, not a session cookie

    def can_set_keys_expiration(self) -> bool:
        return True

    def get_value(self, key: str) -> t.Any:
        row = self._db.get(LtiCache, self._prepare_key(key))
        if row is None or row.expires_at <= utcnow():
            return None
        return row.value

    def set_value(self, key: str, value: t.Any, exp: int | None = None) -> None:
        expires = utcnow() + dt.timedelta(seconds=exp or 86400)
        self._db.merge(LtiCache(key=self._prepare_key(key), value=value, expires_at=expires))
        self._db.flush()

    def check_value(self, key: str) -> bool:
        return self.get_value(key) is not None


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


# Statements of every login and launch, built once and run on the DBAPI cursor
# (``db.prepared``): through the ORM each cost more than the rest of the lookup.
def _platform_query() -> Select[t.Any]:
    platform = prepared.table(Platform)
    return select(platform).where(
        platform.c.issuer == bindparam("iss"), platform.c.client_id == bindparam("cid")
    )


def _platform_deployment_query() -> Select[t.Any]:
    platform = prepared.table(Platform)
    deployment = prepared.table(Deployment)
    return (
        select(platform, deployment)
        .outerjoin(
            deployment,
            and_(
                deployment.c.platform_id == platform.c.id,
                deployment.c.deployment_id == bindparam("dep"),
            ),
        )
        .where(platform.c.issuer == bindparam("iss"), platform.c.client_id == bindparam("cid"))
    )


def _platform_deployment_versions_query() -> Select[t.Any]:
    """``_platform_deployment_query`` and the row versions (PostgreSQL's ``xmin``, which
    every UPDATE of a row renews) of both rows, for ``Registrations``."""
    platform = prepared.table(Platform)
    deployment = prepared.table(Deployment)
    return _platform_deployment_query().add_columns(
        literal_column(f"{platform.name}.xmin::text"),
        literal_column(f"{deployment.name}.xmin::text"),
    )


@dataclass(frozen=True)
class Registered:
    """A platform and one of its deployments as read, with their row versions: a launch
    that used this copy takes its login state only if both rows are unchanged since
    (``launch._guarded_take_statement``), so a deactivation, a new key set URL or any other
    change of either row takes effect at once."""

    platform: Platform
    deployment: Deployment
    platform_version: str
    deployment_version: str


class Registrations:
    """The web process's copy of the registrations its launches used (PostgreSQL): a
    returning platform's launch skips the lookup's round trip. Entries live ``ttl``
    seconds; a launch whose take finds a row changed drops the entry and runs again on a
    fresh read (``launch.validate_launch``)."""

    def __init__(self, ttl: float = 60.0, size: int = 1000) -> None:
        self._ttl, self._size = ttl, size
        self._entries: dict[tuple[str, str, str], tuple[float, Registered]] = {}

    def get(self, key: tuple[str, str, str]) -> Registered | None:
        found = self._entries.get(key)
        if found is None or found[0] <= time.monotonic():
            return None
        return found[1]

    def put(self, key: tuple[str, str, str], value: Registered) -> None:
        if len(self._entries) >= self._size:
            self._entries.clear()  # many platforms: start over rather than grow
        self._entries[key] = (time.monotonic() + self._ttl, value)

    def drop(self, key: tuple[str, str, str]) -> None:
        self._entries.pop(key, None)


def _recording(lookup: Select[t.Any], *, deployment: bool) -> Select[t.Any]:
    """``lookup`` (platform, or platform + deployment) that also records the login's state
    for the platform it finds, if that platform and the deployment the login names (when
    known) are active, as the login then requires: one round trip where two cost two. The
    INSERT is a data-modifying CTE (PostgreSQL); the last column says whether it ran."""
    found = lookup.set_label_style(LABEL_STYLE_TABLENAME_PLUS_COL).cte("found")
    states = prepared.table(LaunchState)
    allowed: list[t.Any] = [found.c.platform_active]
    if deployment:
        # labels: the deployment's own id is deployment_id_1 (deployment_deployment_id is
        # the LTI deployment id)
        allowed.append(or_(found.c.deployment_id_1.is_(None), found.c.deployment_active))
    values = [
        found.c.platform_id if name == "platform_id" else bindparam(f"s_{name}", type_=c.type)
        for name in _RECORDED
        for c in [states.c[name]]
    ]
    recorded = (
        insert(states)
        .from_select(list(_RECORDED), select(*values).where(*allowed))
        .returning(states.c.state)
        .cte("recorded")
    )
    count = select(func.count()).select_from(recorded).scalar_subquery()
    return select(found, count.label("recorded"))


_RECORDED = (
    "state",
    "nonce",
    "platform_id",
    "target_link_uri",
    "storage_target",
    "created_at",
    "expires_at",
)


def _platform_query_recording() -> Select[t.Any]:
    return _recording(_platform_query(), deployment=False)


def _platform_deployment_query_recording() -> Select[t.Any]:
    return _recording(_platform_deployment_query(), deployment=True)


def _deployment_query() -> Select[t.Any]:
    deployment = prepared.table(Deployment)
    return select(deployment).where(
        deployment.c.platform_id == bindparam("pid"), deployment.c.deployment_id == bindparam("dep")
    )


class DbToolConf(ToolConfAbstract[FastApiRequest]):
    """Registrations from the ``platform`` table: one issuer may have many client_ids.

    Inactive platforms and deployments are found too (so the caller can say *why* a launch
    is refused); ``platform`` remembers the row behind the last registration found.

    ``record``: a login's ``launch_state`` values but its platform. On PostgreSQL the
    lookup by issuer and client_id records them too, in the same statement, when the login
    may go on (``recorded``); elsewhere, or when it did not, the caller inserts the row.
    """

    def __init__(
        self,
        session: Session,
        *,
        record: Mapping[str, t.Any] | None = None,
        registrations: Registrations | None = None,
    ) -> None:
        super().__init__()
        self.issuers_relation_types = {}
        self._db = session
        self._registrations = registrations
        # the copy the lookup used (``registrations``), whether it was read just now or not
        self.registered: Registered | None = None
        self.registered_key: tuple[str, str, str] | None = None
        self.registered_cached = False
        self.platform: Platform | None = None
        self._record = None
        if record is not None and dml_ctes(session):
            self._record = {f"s_{name}": value for name, value in record.items()}
        self.recorded = False
        # pylti1p3's deployment check and ours look up the same row: read it once.
        self._deployments: dict[tuple[int | None, str], Deployment | None] = {}

    def check_iss_has_one_client(self, iss: str) -> bool:
        return False

    def check_iss_has_many_clients(self, iss: str) -> bool:
        return True

    def find_registration_by_issuer(  # type: ignore[override]  # None = not found
        self, iss: str, *args: t.Any, **kwargs: t.Any
    ) -> Registration | None:
        rows = self._db.exec(sqlmodel.select(Platform).where(Platform.issuer == iss)).all()
        if len(rows) != 1:
            return None  # unknown, or ambiguous: the platform must name its client_id
        self.platform = rows[0]
        return _registration(rows[0])

    def find_registration_by_params(  # type: ignore[override]  # None = not found
        self, iss: str, client_id: str, *args: t.Any, **kwargs: t.Any
    ) -> Registration | None:
        if not client_id:
            return self.find_registration_by_issuer(iss)
        hint = _deployment_hint(kwargs)
        record = self._record or {}
        if hint is None:
            build = _platform_query_recording if record else _platform_query
            found = prepared.one(self._db, build, iss=iss, cid=client_id, **record)
            row = prepared.model(Platform, found)
        elif self._registrations is not None and not record:
            found = None
            row = self._registered(iss, client_id, hint)
        else:
            # The deployment the request names comes with the platform in one statement
            # (outer join: an unknown deployment is found as None and refused later).
            build = _platform_deployment_query_recording if record else _platform_deployment_query
            found = prepared.one(self._db, build, iss=iss, cid=client_id, dep=hint, **record)
            row = None
            if found is not None:
                row, deployment = prepared.models(found, Platform, Deployment)
                self._deployments[(row.id, hint)] = deployment
        self.recorded = bool(record) and found is not None and bool(found[-1])
        if row is None:
            return None
        self.platform = row
        return _registration(row)

    def _registered(self, iss: str, client_id: str, hint: str) -> Platform | None:
        """The platform (and the named deployment) from ``registrations``, or read with
        their row versions and kept there when both exist."""
        assert self._registrations is not None
        key = (iss, client_id, hint)
        entry = self._registrations.get(key)
        self.registered_cached = entry is not None
        if entry is None:
            found = prepared.one(
                self._db, _platform_deployment_versions_query, iss=iss, cid=client_id, dep=hint
            )
            if found is None:
                return None
            *rows, platform_version, deployment_version = tuple(found)
            platform: Platform | None
            deployment: Deployment | None
            platform, deployment = prepared.models(rows, Platform, Deployment)
            if platform is None:
                return None
            self._deployments[(platform.id, hint)] = deployment
            if deployment is None:
                return platform  # refused later (unknown deployment): nothing to keep
            entry = Registered(platform, deployment, platform_version, deployment_version)
            self._registrations.put(key, entry)
        self._deployments[(entry.platform.id, hint)] = entry.deployment
        self.registered, self.registered_key = entry, key
        return entry.platform

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
            found = prepared.one(
                self._db, _deployment_query, pid=self.platform.id, dep=deployment_id
            )
            self._deployments[key] = prepared.model(Deployment, found)
        return self._deployments[key]


class DbOIDCLogin(
    OIDCLogin[FastApiRequest, DbToolConf, DbSessionService, FastApiCookieService, Response]
):
    """Step 2 of the OIDC flow: the authentication request back to the platform, with the
    state and nonce the caller made (``new_state``, ``new_nonce``), so that they can be
    recorded by the registration lookup itself (``DbToolConf(record=)``)."""

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
