"""Where the demo platform and the tool it launches live, and what the tool may do."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["ALL_SCOPES", "DemoConfig", "Scope", "ToolEndpoints", "origin_of"]


class Scope:
    """OAuth2 scopes of LTI Advantage services (AGS 2.0 §3.1, NRPS 2.0 §3)."""

    LINEITEM = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem"
    LINEITEM_READONLY = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem.readonly"
    RESULT_READONLY = "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly"
    SCORE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"
    NRPS = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"


ALL_SCOPES = frozenset(
    {Scope.LINEITEM, Scope.LINEITEM_READONLY, Scope.RESULT_READONLY, Scope.SCORE, Scope.NRPS}
)


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class ToolEndpoints:
    """The tool as registered in the platform (what an LMS admin types into its tool form)."""

    base_url: str
    client_id: str = "microcred-demo"
    deployment_id: str = "1"
    scopes: frozenset[str] = ALL_SCOPES

    @property
    def login_url(self) -> str:
        return self.base_url.rstrip("/") + "/lti/login"

    @property
    def launch_url(self) -> str:
        return self.base_url.rstrip("/") + "/lti/launch"

    @property
    def jwks_url(self) -> str:
        return self.base_url.rstrip("/") + "/lti/jwks"

    @property
    def redirect_uris(self) -> tuple[str, ...]:
        return (self.launch_url,)

    @property
    def origin(self) -> str:
        return origin_of(self.base_url)


@dataclass(frozen=True)
class DemoConfig:
    """The demo LMS at ``issuer`` (its base URL) and the one tool it has installed."""

    issuer: str
    tool: ToolEndpoints
    data_dir: Path
    # Canvas names its forwarding frame like this; None turns platform storage off.
    storage_target: str | None = "post_message_forwarding"
    id_token_ttl: int = 300
    access_token_ttl: int = 3600
    launch_hint_ttl: int = 600
    page_size_limit: int = 100

    @property
    def base(self) -> str:
        return self.issuer.rstrip("/")

    @property
    def auth_url(self) -> str:
        return self.base + "/auth"

    @property
    def token_url(self) -> str:
        return self.base + "/token"

    @property
    def jwks_url(self) -> str:
        return self.base + "/jwks"

    @property
    def deep_link_return_url(self) -> str:
        return self.base + "/deep_linking/return"

    def memberships_url(self, context_id: str) -> str:
        return f"{self.base}/api/lti/courses/{context_id}/names_and_roles"

    def lineitems_url(self, context_id: str) -> str:
        return f"{self.base}/api/lti/courses/{context_id}/line_items"

    def lineitem_url(self, context_id: str, item_id: str) -> str:
        return f"{self.lineitems_url(context_id)}/{item_id}"

    @property
    def key_path(self) -> Path:
        return self.data_dir / "demo" / "platform-key.pem"
