"""Configuration from the environment (``MICROCRED_*``), loaded once per process."""

from __future__ import annotations

import functools
import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the service. Each field maps to ``MICROCRED_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="MICROCRED_", env_file=".env", extra="ignore")

    environment: Literal["development", "production", "test"] = "development"
    data_dir: Path = Path("var")
    database_url: str = ""
    db_pool_size: int = Field(
        default=15,
        ge=1,
        description="Database connections each process keeps open (web or worker). With "
        "PostgreSQL, (web processes + workers) x (db_pool_size + db_max_overflow) must stay "
        "under the server's max_connections with room for migrations and psql "
        "(docs/architecture.md).",
    )
    web_threads: int = Field(
        default=0,
        ge=0,
        description="Threads a web process runs its routes' database work in. 0: 2 on "
        "SQLite (one writer at a time; more threads only wait in SQLite's busy handler and "
        "contend for the GIL: bench/README.md, Launch, 8 Dec), AnyIO's 40 on PostgreSQL.",
    )
    db_max_overflow: int = Field(
        default=0,
        ge=0,
        description="Connections a process may open past db_pool_size at busy times, each "
        "opened and closed around one use.",
    )
    base_url: str = "http://localhost:8000"
    secret_key: SecretStr | None = Field(
        default=None,
        description="Master key for secrets at rest (32+ random bytes, urlsafe base64). "
        "Generated into DATA_DIR/secret.key in development when unset; required in production.",
    )
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="text, or json: one JSON object per line (time, level, logger, message, "
        "request_id), for a log collector.",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token that GET /metrics (Prometheus) requires; unset, /metrics is "
        "off (404).",
    )
    launch_data_ttl_seconds: int = 86400
    clock_skew_seconds: int = 60
    key_rotation_grace_days: int = 14
    worker_poll_seconds: float = 1.0
    evaluation_inline_learners: int = Field(
        default=200,
        ge=0,
        description="A re-evaluation after `microcred sources import`/`evaluate` of at most "
        "this many learners runs at once in the command's process; more are queued for the "
        "workers (docs/scale.md). Requests (pages, API push, CSV upload) always queue.",
    )
    evaluation_lease_seconds: float = Field(
        default=300.0,
        gt=0,
        description="How long a worker holds a batch of evaluation jobs; a killed worker's "
        "jobs wait this long before another worker takes them.",
    )
    # lti
    login_state_ttl_seconds: int = 600
    web_session_idle_seconds: int = 7200
    jwks_refetch_interval_seconds: int = 60
    jwks_refetch_burst: int = 3
    jwks_cache_min_seconds: int = 300
    jwks_cache_max_seconds: int = 86400
    launch_max_age_seconds: int = 300
    lti_rate_limit_per_minute: int = Field(
        default=300,
        ge=0,
        description="OIDC logins and launches per client IP and minute (a burst of as many is "
        "allowed); more get 429 with Retry-After. 0 turns the limit off. A campus behind one "
        "NAT address launches a whole lecture at once, so keep it well above class sizes.",
    )
    lti_http_timeout_seconds: float = 10.0
    # request bodies (service/bodylimit.py)
    max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=64 * 1024,  # a launch's id_token form is a few KB; below this, launches break
        description="Largest request body of any route but the few that need more (413 "
        "above it, before sign-in or parsing). 1 MiB holds a posted credential for /verify "
        "(1,000,000 bytes at most), a launch and every form.",
    )
    max_push_body_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=64 * 1024,
        description="Largest body of POST /api/evidence (a push batch holds at most 1,000 "
        "results and 1,000 verifications: about 1 to 1.5 MB of JSON with rubric scales).",
    )
    # serving (service/serving.py)
    http_protocol: Literal["h11", "httptools"] = Field(
        default="h11",
        description="uvicorn's HTTP parser for `microcred serve`. h11 refuses a request line "
        "plus headers over 64 KiB (400); httptools costs less CPU per request but keeps "
        "any request head in memory: only for a server that a proxy alone reaches, one that "
        "bounds request heads itself (nginx: large_client_header_buffers). The deploy files "
        "use httptools.",
    )
    otel: bool = Field(
        default=False,
        description="FastAPI's built-in OpenTelemetry (request spans, metrics, logs and "
        "operation spans) for an OpenTelemetry SDK the deployment configures; off, FastAPI "
        "records nothing and skips its per-request checks.",
    )
    extra_frame_ancestors: str = Field(
        default="",
        description="Space-separated origins that may also frame microcred's LMS pages, for a "
        "platform that serves courses from a host other than its issuer, auth URL and "
        "launch return URL (reference: service/web/framing.py).",
    )
    # flows: scheduled LMS pulls (the worker) and what a learner's launch refreshes
    sync_interval_seconds: int = Field(
        default=60,
        ge=5,
        description="The worker pulls each connected course's roster and results when its "
        "last pull is older than this (a course may set its own). With the default a grade "
        "saved in the LMS reaches a credential in about a minute, for learners who never "
        "open the tool.",
    )
    sync_full_interval_seconds: int = Field(
        default=3600,
        ge=0,
        description="Scheduled pulls in between read only what changed since the last "
        "successful pull (Moodle's and Canvas's since filters, with a few minutes of "
        "overlap); a pull older than this reads the whole course, so results deleted in the "
        "LMS are deleted here too (0: every pull in full).",
    )
    launch_sync_interval_seconds: int = Field(
        default=300,
        ge=0,
        description="A learner's launch asks the worker for a pull of the course (never "
        "pulling in the request) when the last pull is older than this (0: on every launch).",
    )
    launch_evaluation_max_age_seconds: int = Field(
        default=3600,
        ge=0,
        description="Queue a learner's evaluation on launch when their inputs are unchanged "
        "but their last evaluation is older than this (time-dependent rules: recency, expiry).",
    )
    # issuer
    verify_rate_limit_per_minute: int = Field(
        default=30,
        ge=0,
        description="Credentials one client IP may post to /verify per minute (a burst of as "
        "many is allowed); more get 429 with Retry-After. 0 turns the limit off.",
    )
    verify_concurrency: int = Field(
        default=2,
        ge=1,
        description="Verifications of posted credentials that run at once, in their own "
        "threads; while all are busy, /verify answers 503 with Retry-After (no queue).",
    )
    issuer_name: str = Field(default="microcred", description="Awarding body name (EU element 4).")
    issuer_url: str = Field(default="", description="Awarding body web site; base_url if empty.")
    issuer_country: str = Field(
        default="NL", description="ISO 3166-1 alpha-2 country of the awarding body (EU element 3)."
    )
    issuer_region: str = ""
    issuer_email: str = ""
    issuer_description: str = ""
    issuer_image_url: str = ""
    issuer_other_identifiers: dict[str, str] = Field(
        default_factory=dict, description='identifierType -> identifier, e.g. {"ext:EU-PIC": "…"}'
    )
    issuer_jwt_algorithm: Literal["ES256", "RS256"] = "ES256"
    status_list_size: int = Field(
        default=131072, ge=131072, multiple_of=8, description="Entries per revocation list."
    )
    dynamic_registration_key: SecretStr | None = Field(
        default=None,
        description="Key the dynamic registration URL must carry (/lti/register?key=…); "
        "required in production (the service refuses to start without it).",
    )
    dynamic_registration_max_pending: int = Field(
        default=20,
        ge=0,
        description="Platforms registered dynamically and not yet activated that may wait at "
        "once; further registrations are refused (and nothing stored) until an administrator "
        "activates or removes some.",
    )
    dynamic_registration_rate_limit_per_minute: int = Field(
        default=10,
        ge=0,
        description="Dynamic registrations per client IP and minute; 0 turns the limit off.",
    )
    # outbound requests (service/outbound.py, docs/security.md)
    outbound_allow_private: bool | None = Field(
        default=None,
        description="Whether outbound requests (registration, key sets, LMS, deliveries, "
        "verify --allow-network) may reach private, loopback and link-local addresses. Unset: "
        "refused in production, allowed in development and test.",
    )
    outbound_allowed_networks: str = Field(
        default="",
        description="Space-separated networks outbound requests may reach even when private "
        "addresses are refused, e.g. an on-premises LMS: 10.20.0.0/16 192.168.5.10/32.",
    )
    outbound_max_bytes: int = Field(
        default=5_000_000, ge=1024, description="Largest answer read from any outbound request."
    )
    outbound_deadline_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Total time one outbound request may take (connect, send, whole answer).",
    )

    @field_validator("outbound_allowed_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        for net in value.replace(",", " ").split():
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ValueError(
                    f"{net!r} is not a network; write addresses or CIDR ranges such as "
                    "10.20.0.0/16, separated by spaces"
                ) from None
        return value

    @property
    def outbound_private_allowed(self) -> bool:
        if self.outbound_allow_private is not None:
            return self.outbound_allow_private
        return self.environment != "production"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'microcred.db').as_posix()}"

    @property
    def public_base_url(self) -> str:
        return self.base_url.rstrip("/")


@functools.cache
def get_settings() -> Settings:
    return Settings()
