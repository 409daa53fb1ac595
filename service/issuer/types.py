"""Value types of the issuer shared by verification, pages and the API."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Check", "VerificationReport"]


@dataclass(frozen=True)
class Check:
    """One verification step: ``name`` is stable (proof, issuer_key, status, dates, schema,
    contexts, format), ``detail`` is a sentence a verifier can read."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class VerificationReport:
    """The outcome of verifying one credential. ``valid`` only when every check is ok."""

    valid: bool
    checks: tuple[Check, ...]
    format: Literal["ldp", "jwt", "unknown"] = "unknown"
    credential_id: str | None = None
    issuer: str | None = None
    credential: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def reasons(self) -> list[str]:
        """Why it is invalid: the details of the failed checks."""
        return [c.detail for c in self.checks if not c.ok]

    def as_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "format": self.format,
            "credential_id": self.credential_id,
            "issuer": self.issuer,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
        }
