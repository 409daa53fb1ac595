"""The LTI 1.3 platform side: launches, id_tokens, service tokens, deep-linking returns.

``DemoPlatform`` holds the signing key, the sample course, the in-memory state and a cache
of the tool's public keys. Routes in ``router.py`` translate HTTP to these methods.

Errors:

ServiceError
 ├── AuthRequestError   the OIDC auth request cannot be answered at its redirect_uri
 │                      (unknown client or redirect_uri): shown as a page, never redirected
 ├── OAuthError         token endpoint errors (RFC 6749 §5.2 codes)
 ├── ServiceAuthError   bad or missing bearer token (401) or missing scope (403), RFC 6750 §3
 └── DeepLinkError      a deep-linking response that does not verify
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from service import jws
from service.demo import keys
from service.demo.config import DemoConfig, Scope, origin_of
from service.demo.course import Course, Member
from service.demo.state import (
    AccessToken,
    DemoState,
    LaunchIntent,
    MessageType,
    PlacedLink,
)
from service.errors import ServiceError

__all__ = [
    "AuthRequestError",
    "DeepLinkError",
    "DemoPlatform",
    "OAuthError",
    "ServiceAuthError",
]

LTI = "https://purl.imsglobal.org/spec/lti/claim/"
AGS_CLAIM = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"
NRPS_CLAIM = "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"
DL = "https://purl.imsglobal.org/spec/lti-dl/claim/"
COURSE_OFFERING = "http://purl.imsglobal.org/vocab/lis/v2/course#CourseOffering"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CLOCK_SKEW = 60
MAX_ASSERTION_LIFETIME = 3600


class AuthRequestError(ServiceError):
    code = "invalid_auth_request"
    status_code = 400
    title = "The tool sent an authentication request this LMS cannot answer"


class OAuthError(ServiceError):
    status_code = 400
    title = "Token request refused"

    def __init__(self, code: str, detail: str, *, status_code: int = 400) -> None:
        super().__init__(detail, code=code)
        self.status_code = status_code


class ServiceAuthError(ServiceError):
    status_code = 401
    title = "Not authorised"

    def __init__(self, code: str, detail: str, *, status_code: int = 401) -> None:
        super().__init__(detail, code=code)
        self.status_code = status_code


class DeepLinkError(ServiceError):
    code = "invalid_deep_linking_response"
    status_code = 400
    title = "The tool's deep-linking response was refused"


@dataclass(frozen=True)
class AuthResponse:
    """Where and what to POST back to the tool (OIDC response_mode=form_post)."""

    redirect_uri: str
    fields: dict[str, str]


class _ToolKeys:
    """The tool's key set, fetched over HTTP and cached; refetched (rate-limited) on a kid miss."""

    def __init__(self, url: str, http: httpx.Client, *, min_refetch_seconds: float = 5.0) -> None:
        self._url = url
        self._http = http
        self._min_refetch = min_refetch_seconds
        self._lock = threading.Lock()
        self._keys: list[jws.PublicKey] = []
        self._fetched_at = float("-inf")

    def keys_for(self, kid: str | None) -> list[jws.PublicKey]:
        with self._lock:
            known = [k for k in self._keys if kid is None or k.kid == kid]
            if known or time.monotonic() - self._fetched_at < self._min_refetch:
                return known
            self._fetched_at = time.monotonic()
            try:
                resp = self._http.get(self._url, headers={"Accept": "application/json"})
                resp.raise_for_status()
                data = resp.json()
            except (httpx.HTTPError, ValueError) as exc:
                raise OAuthError(
                    "invalid_client",
                    f"the tool's key set at {self._url} could not be fetched: {exc}",
                    status_code=401,
                ) from exc
            fresh: list[jws.PublicKey] = []
            for entry in data.get("keys", []) if isinstance(data, dict) else []:
                try:
                    fresh.append(jws.public_key_from_jwk(entry))
                except jws.TokenError:
                    continue  # keys we cannot use (e.g. encryption keys) are skipped
            self._keys = fresh
            return [k for k in fresh if kid is None or k.kid == kid]


class DemoPlatform:
    """One LMS with one course and one installed tool."""

    def __init__(
        self,
        config: DemoConfig,
        course: Course,
        *,
        state: DemoState | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        self.config = config
        self.course = course
        self.state = state or DemoState()
        self.key = keys.load_or_create(config.key_path)
        self._http = http or httpx.Client(timeout=10.0)
        self._tool_keys = _ToolKeys(config.tool.jwks_url, self._http)

    def close(self) -> None:
        self._http.close()

    def resource_link_ids(self) -> set[str]:
        """The course's own microcred link and every link placed by deep linking."""
        return {self.course.resource_link_id} | {link.id for link in self.state.links()}

    # --- keys ---

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.key.public.jwk]}

    # --- step 1: the course page starts a launch (LTI Core §4.1, third-party initiated login) ---

    def login_initiation(
        self,
        *,
        user_id: str,
        message_type: MessageType,
        now: float,
        link_id: str | None = None,
    ) -> dict[str, str]:
        """The form fields the browser POSTs to the tool's login initiation URL.

        ``link_id`` launches a link the tool placed by deep linking; otherwise the course's
        own microcred link is launched.
        """
        member = self.course.member(user_id)
        if member is None:
            raise AuthRequestError(f"no member {user_id!r} in this course")
        if message_type == "LtiDeepLinkingRequest" and member.role != "instructor":
            raise AuthRequestError("only instructors can add content to the course")
        tool = self.config.tool
        resource_link_id, target = self.course.resource_link_id, tool.launch_url
        if link_id:
            placed = self.state.link(link_id)
            if placed is None:
                raise AuthRequestError(f"no link {link_id!r} in this course")
            resource_link_id, target = placed.id, placed.url or tool.launch_url
        intent = LaunchIntent(
            user_id=user_id,
            message_type=message_type,
            resource_link_id=resource_link_id,
            expires_at=now + self.config.launch_hint_ttl,
            target_link_uri=target,
        )
        hint = self.state.add_intent(intent, now=now)
        fields = {
            "iss": self.config.issuer,
            "login_hint": user_id,
            "lti_message_hint": hint,
            "target_link_uri": target,
            "client_id": tool.client_id,
            "lti_deployment_id": tool.deployment_id,
        }
        if self.config.storage_target:
            # Canvas-style advertisement of LTI platform storage (lti-cs-oidc §3).
            fields["lti_storage_target"] = self.config.storage_target
        return fields

    # --- step 2: the OIDC authentication request from the tool ---

    def authorize(self, params: Mapping[str, str], *, now: float) -> AuthResponse:
        """Answer an authentication request (LTI Core §5.1.1, Security Framework §5.1.1).

        An unknown client or redirect_uri is an error page (never redirect to an unverified
        URI); any other problem is POSTed back to the tool as ``error`` with the ``state``.
        """
        tool = self.config.tool
        client_id = params.get("client_id", "")
        redirect_uri = params.get("redirect_uri", "")
        if client_id != tool.client_id:
            raise AuthRequestError(
                f"unknown client_id {client_id!r}",
                hint="The tool must send the client_id this LMS registered for it.",
            )
        if redirect_uri not in tool.redirect_uris:
            raise AuthRequestError(
                "redirect_uri is not registered for this tool",
                hint=f"Registered: {', '.join(tool.redirect_uris)} (exact match).",
            )
        state = params.get("state", "")

        def fail(error: str, description: str) -> AuthResponse:
            fields = {"error": error, "error_description": description}
            if state:
                fields["state"] = state
            return AuthResponse(redirect_uri, fields)

        if params.get("scope") != "openid":
            return fail("invalid_scope", "scope must be 'openid'")
        if params.get("response_type") != "id_token":
            return fail("unsupported_response_type", "response_type must be 'id_token'")
        if params.get("response_mode") != "form_post":
            return fail("invalid_request", "response_mode must be 'form_post'")
        if params.get("prompt", "none") != "none":
            return fail("invalid_request", "prompt must be 'none'")
        if not state:
            # The tool's CSRF defence (Security Framework §5.1.1.1, §7.3.1); we insist on it.
            return fail("invalid_request", "state is required")
        nonce = params.get("nonce", "")
        if not nonce:
            return fail("invalid_request", "nonce is required")
        intent = self.state.intent(params.get("lti_message_hint", ""), now=now)
        if intent is None:
            return fail("invalid_request", "lti_message_hint is unknown or expired")
        if params.get("login_hint") != intent.user_id:
            return fail("login_required", "login_hint does not match the launching user")
        member = self.course.member(intent.user_id)
        assert member is not None  # intents are only made for members
        claims = self.id_token_claims(member, intent=intent, nonce=nonce, now=now)
        self.state.record_claims(member.user_id, claims)
        fields = {"id_token": jws.sign(claims, self.key, headers={"typ": "JWT"}), "state": state}
        if self.config.storage_target:
            fields["lti_storage_target"] = self.config.storage_target
        return AuthResponse(redirect_uri, fields)

    def id_token_claims(
        self, member: Member, *, intent: LaunchIntent, nonce: str, now: float
    ) -> dict[str, Any]:
        """The id_token of a resource-link or deep-linking launch (LTI Core §5.3, DL 2.0 §4.4)."""
        cfg, tool, course = self.config, self.config.tool, self.course
        iat = int(now)
        claims: dict[str, Any] = {
            "iss": cfg.issuer,
            "aud": tool.client_id,
            "azp": tool.client_id,
            "sub": member.user_id,
            "iat": iat,
            "exp": iat + cfg.id_token_ttl,
            "nonce": nonce,
            "name": member.name,
            "given_name": member.given_name,
            "family_name": member.family_name,
            "email": member.email,
            LTI + "message_type": intent.message_type,
            LTI + "version": "1.3.0",
            LTI + "deployment_id": tool.deployment_id,
            LTI + "target_link_uri": intent.target_link_uri or tool.launch_url,
            LTI + "roles": member.roles,
            LTI + "context": {
                "id": course.context_id,
                "label": course.label,
                "title": course.title,
                "type": [COURSE_OFFERING],
            },
            LTI + "tool_platform": {
                "guid": "microcred-demo-lms",
                "name": "microcred demo LMS",
                "product_family_code": "microcred-demo",
                "version": "1",
            },
            LTI + "launch_presentation": {
                "document_target": "iframe",
                "locale": "en",
                "return_url": cfg.base + "/",
            },
            LTI + "custom": {"context_title": course.title},  # placed links add theirs below
            AGS_CLAIM: {
                "scope": sorted(
                    tool.scopes
                    & {Scope.LINEITEM, Scope.LINEITEM_READONLY, Scope.RESULT_READONLY, Scope.SCORE}
                ),
                "lineitems": cfg.lineitems_url(course.context_id),
            },
            NRPS_CLAIM: {
                "context_memberships_url": cfg.memberships_url(course.context_id),
                "service_versions": ["2.0"],
            },
        }
        if intent.message_type == "LtiResourceLinkRequest":
            placed = self.state.link(intent.resource_link_id)
            claims[LTI + "resource_link"] = {
                "id": intent.resource_link_id,
                "title": placed.title if placed else course.resource_link_title,
            }
            if placed is not None:
                claims[LTI + "custom"] = claims[LTI + "custom"] | placed.custom
        else:
            claims[DL + "deep_linking_settings"] = {
                "deep_link_return_url": cfg.deep_link_return_url,
                "accept_types": ["ltiResourceLink"],
                "accept_presentation_document_targets": ["iframe", "window"],
                "accept_multiple": True,
                "auto_create": True,
                "title": "Competency credentials",
                "text": "Progress and micro-credentials for this course",
                "data": self.state.add_dl_data(expires_at=now + cfg.launch_hint_ttl),
            }
        return claims

    # --- OAuth2 client credentials with a JWT bearer assertion (Security Framework §4.1) ---

    def grant_token(self, form: Mapping[str, str], *, now: float) -> dict[str, Any]:
        if form.get("grant_type") != "client_credentials":
            raise OAuthError("unsupported_grant_type", "grant_type must be client_credentials")
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise OAuthError("invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}")
        assertion = form.get("client_assertion", "")
        if not assertion:
            raise OAuthError("invalid_request", "client_assertion is missing")
        claims = self._verify_assertion(assertion, now=now)
        requested = set(form.get("scope", "").split())
        granted = requested & self.config.tool.scopes
        if not granted:
            raise OAuthError(
                "invalid_scope",
                "none of the requested scopes is granted to this tool",
            )
        if not self.state.use_jti(
            str(claims["jti"]), expires_at=float(claims["exp"]) + CLOCK_SKEW, now=now
        ):
            raise OAuthError(
                "invalid_client", "client_assertion jti was already used", status_code=401
            )
        ttl = self.config.access_token_ttl
        token = self.state.issue_token(
            AccessToken(
                client_id=self.config.tool.client_id,
                scopes=frozenset(granted),
                expires_at=now + ttl,
            )
        )
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": ttl,
            "scope": " ".join(sorted(granted)),
        }

    def _verify_assertion(self, assertion: str, *, now: float) -> dict[str, Any]:
        client_id = self.config.tool.client_id
        try:
            kid = jws.unverified_header(assertion).get("kid")
            if not kid:
                raise jws.TokenError("the assertion header has no kid")
            claims = jws.verify(
                assertion,
                self._tool_keys.keys_for(str(kid)),
                algorithms=["RS256"],
                # RFC 7523 §3 and its 7523bis update: aud is this token endpoint, one value.
                audience=self.config.token_url,
                issuer=client_id,
                leeway=CLOCK_SKEW,
                now=now,
                require=("exp", "iat", "jti", "sub"),
            )
        except jws.TokenError as exc:
            raise OAuthError(
                "invalid_client", f"client_assertion rejected: {exc.detail}", status_code=401
            ) from exc
        if claims.get("sub") != client_id:
            raise OAuthError(
                "invalid_client", "client_assertion sub must be the client_id", status_code=401
            )
        if float(claims["exp"]) - now > MAX_ASSERTION_LIFETIME:
            raise OAuthError(
                "invalid_client", "client_assertion expires too far in the future", status_code=401
            )
        return claims

    def authorise_service(self, authorization: str | None, *, any_of: set[str], now: float) -> None:
        """Check a bearer token carries one of ``any_of`` scopes (RFC 6750 §3.1 errors)."""
        scheme, _, value = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise ServiceAuthError("invalid_request", "a Bearer access token is required")
        token = self.state.token(value.strip(), now=now)
        if token is None:
            raise ServiceAuthError("invalid_token", "the access token is unknown or expired")
        if not token.scopes & any_of:
            raise ServiceAuthError(
                "insufficient_scope",
                f"the access token lacks a scope for this call (one of {sorted(any_of)})",
                status_code=403,
            )

    # --- Deep Linking 2.0 §4.5: the tool's response ---

    def accept_deep_link(self, token: str, *, now: float) -> list[PlacedLink]:
        tool = self.config.tool
        try:
            kid = jws.unverified_header(token).get("kid")
            claims = jws.verify(
                token,
                self._tool_keys.keys_for(str(kid) if kid else None),
                algorithms=["RS256"],
                audience=self.config.issuer,
                issuer=tool.client_id,
                leeway=CLOCK_SKEW,
                now=now,
                require=("exp", "iat", "nonce"),
            )
        except (jws.TokenError, OAuthError) as exc:
            raise DeepLinkError(f"the response JWT does not verify: {exc.detail}") from exc
        if claims.get(LTI + "message_type") != "LtiDeepLinkingResponse":
            raise DeepLinkError("message_type must be LtiDeepLinkingResponse")
        if claims.get(LTI + "version") != "1.3.0":
            raise DeepLinkError("version must be 1.3.0")
        if claims.get(LTI + "deployment_id") != tool.deployment_id:
            raise DeepLinkError("deployment_id does not match the launch")
        data = claims.get(DL + "data")
        if not isinstance(data, str) or not self.state.take_dl_data(data, now=now):
            raise DeepLinkError("the data value from the request is missing or was already used")
        items = claims.get(DL + "content_items", [])
        if not isinstance(items, list):
            raise DeepLinkError("content_items must be a list")
        links: list[PlacedLink] = []
        for item in items:
            if not isinstance(item, dict) or item.get("type") != "ltiResourceLink":
                raise DeepLinkError("only ltiResourceLink content items are accepted")
            url = item.get("url")
            if url is not None and (not isinstance(url, str) or origin_of(url) != tool.origin):
                # A placed link launches the installed tool, never another site.
                raise DeepLinkError(f"content item url must be on the tool's site {tool.origin}")
            custom = item.get("custom") or {}
            links.append(
                PlacedLink(
                    id=f"rl-{uuid.uuid4().hex[:10]}",
                    title=str(item.get("title") or "microcred"),
                    url=str(item["url"]) if item.get("url") else None,
                    text=str(item["text"]) if item.get("text") else None,
                    custom={str(k): str(v) for k, v in custom.items()}
                    if isinstance(custom, dict)
                    else {},
                )
            )
        self.state.add_links(links)
        return links
