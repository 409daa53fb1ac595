"""An independent platform: ``lti1p3platform`` (PyPI) drives login, signs the id_token, checks
our client assertions at its token endpoint and validates our deep-linking responses. Its
NRPS/AGS endpoints are a small FastAPI app that accepts only tokens lti1p3platform issued."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from lti1p3platform.ltiplatform import LTI1P3PlatformConfAbstract
from lti1p3platform.message_launch import LTIAdvantageMessageLaunchAbstract
from lti1p3platform.oidc_login import OIDCLoginAbstract
from lti1p3platform.registration import Registration

from tests.lti.platform import LAUNCH, TOOL, rsa_key

ISSUER = "https://peer-lms.test"
NRPS_URL = ISSUER + "/api/courses/c1/memberships"
LINEITEMS_URL = ISSUER + "/api/courses/c1/lineitems"


class PeerConf(LTI1P3PlatformConfAbstract):  # type: ignore[misc]
    def init_platform_config(self, **kwargs: Any) -> None:
        self._registration = kwargs["registration"]

    def get_registration_by_params(self, **kwargs: Any) -> Registration:
        return self._registration


class PeerLogin(OIDCLoginAbstract):  # type: ignore[misc]
    def set_lti_message_hint(self, **kwargs: Any) -> None:
        self._lti_message_hint = kwargs["hint"]

    def get_redirect(self, url: str) -> str:
        return url


class PeerLaunch(LTIAdvantageMessageLaunchAbstract):  # type: ignore[misc]
    def __init__(self, conf: PeerConf, preflight: dict[str, str]) -> None:
        super().__init__(None, conf)  # type: ignore[arg-type]
        self._preflight = preflight

    def get_preflight_response(self) -> dict[str, str]:
        return self._preflight

    def render_launch_form(self, launch_data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return launch_data


def _pem(index: int, *, private: bool) -> str:
    key = rsa_key(index)
    if private:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


class Peer:
    client_id = "peer-client"
    deployment_id = "peer-dep-1"

    def __init__(self) -> None:
        reg = Registration()
        reg.set_iss(ISSUER).set_client_id(self.client_id).set_deployment_id(self.deployment_id)
        reg.set_oidc_login_url(TOOL + "/lti/login").set_launch_url(LAUNCH)
        reg.set_deeplink_launch_url(LAUNCH)
        reg.set_platform_public_key(_pem(6, private=False))
        reg.set_platform_private_key(_pem(6, private=True))
        self.registration = reg
        self.conf = PeerConf(registration=reg)
        self.assertions: list[dict[str, Any]] = []
        self.scores: list[dict[str, Any]] = []
        self.line_items: list[dict[str, Any]] = []
        self.token_requests = 0
        self.app = self._service_app()

    def trust_tool_keys(self, jwks: dict[str, Any]) -> None:
        self.registration.set_tool_key_set(jwks)

    def login_url(self) -> str:
        login = PeerLogin(None, self.conf)
        login.set_lti_message_hint(hint="resource-1")
        url: str = login.initiate_login("peer-user-1")
        return url

    def launch_form(
        self, auth_request_url: str, *, deep_link: bool = False, roles: list[str] | None = None
    ) -> dict[str, Any]:
        preflight = {k: v[0] for k, v in parse_qs(urlsplit(auth_request_url).query).items()}
        launch = PeerLaunch(self.conf, preflight)
        launch.set_user_data(
            "peer-user-1",
            roles or ["http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"],
            full_name="Grace Hopper",
            email_address="grace@peer.test",
        )
        launch.set_resource_link_claim("peer-rl-1", title="Badges")
        launch.set_launch_context_claim("c1", context_title="Compilers", context_label="CS201")
        launch.set_ags(LINEITEMS_URL)
        launch.set_nrps(NRPS_URL)
        if deep_link:
            launch.set_dl(ISSUER + "/deep-link-return", title="Pick")
        data: dict[str, Any] = launch.lti_launch()
        return data

    # --- the platform's HTTP side -------------------------------------------------------

    def _authorised(self, request: Request, scope: str) -> bool:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return False
        try:
            return bool(self.conf.validate_token(auth[7:], allowed_scopes=[scope]))
        except Exception:
            return False

    def _service_app(self) -> FastAPI:
        app = FastAPI()
        members = [
            {
                "user_id": f"u{i}",
                "roles": ["http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"],
                "name": f"Learner {i}",
                "email": f"u{i}@peer.test",
                "status": "Active",
            }
            for i in range(5)
        ]

        @app.get("/jwks")
        def jwks() -> dict[str, Any]:
            return dict(self.conf.get_jwks())

        @app.post("/token")
        async def token(request: Request) -> Response:
            self.token_requests += 1
            form = dict((await request.form()).items())
            head, body, _ = str(form.get("client_assertion", "..")).split(".")
            self.assertions.append(json.loads(_unb64(body)) | {"_header": json.loads(_unb64(head))})
            try:
                answer = self.conf.get_access_token(form)
            except Exception as exc:
                return JSONResponse({"error": "invalid_client", "detail": str(exc)}, 400)
            return JSONResponse(dict(answer))

        @app.get("/api/courses/c1/memberships")
        def memberships(request: Request, page: int = 1) -> Response:
            if not self._authorised(
                request, "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
            ):
                return Response(status_code=401)
            chunk = members[(page - 1) * 2 : page * 2]
            headers = {}
            if page * 2 < len(members):
                headers["link"] = f'<{NRPS_URL}?page={page + 1}>; rel="next"'
            return JSONResponse(
                {"id": NRPS_URL, "context": {"id": "c1"}, "members": chunk},
                headers=headers,
                media_type="application/vnd.ims.lti-nrps.v2.membershipcontainer+json",
            )

        @app.get("/api/courses/c1/lineitems")
        def list_items(request: Request, tag: str = "") -> Response:
            if not self._authorised(
                request, "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem.readonly"
            ):
                return Response(status_code=401)
            items = [i for i in self.line_items if not tag or i.get("tag") == tag]
            return JSONResponse(items)

        @app.post("/api/courses/c1/lineitems")
        async def create_item(request: Request) -> Response:
            if not self._authorised(
                request, "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem"
            ):
                return Response(status_code=401)
            assert request.headers["content-type"] == "application/vnd.ims.lis.v2.lineitem+json"
            item = json.loads(await request.body())
            item["id"] = f"{LINEITEMS_URL}/{len(self.line_items) + 1}"
            self.line_items.append(item)
            return JSONResponse(item, status_code=201)

        @app.post("/api/courses/c1/lineitems/{n}/scores")
        async def score(request: Request, n: int) -> Response:
            if not self._authorised(request, "https://purl.imsglobal.org/spec/lti-ags/scope/score"):
                return Response(status_code=401)
            assert request.headers["content-type"] == "application/vnd.ims.lis.v1.score+json"
            self.scores.append(json.loads(await request.body()) | {"_item": n})
            return Response(status_code=204)

        return app


def _unb64(part: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
