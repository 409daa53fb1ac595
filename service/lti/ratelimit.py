"""Per-IP rate limit on the OIDC login and launch endpoints (reference/security.md §4.1,
W9): a token bucket per client address, ``MICROCRED_LTI_RATE_LIMIT_PER_MINUTE`` tokens that
refill evenly over a minute; an empty bucket answers 429 with ``Retry-After``. The buckets
are ``service.ratelimit``'s, shared with ``POST /verify``.
"""

from __future__ import annotations

from fastapi import Request

from service import ratelimit
from service.errors import TooManyRequests

__all__ = ["limit_lti", "limit_registration"]


async def limit_lti(request: Request) -> None:
    """Dependency of the login and launch routes."""
    per_minute = request.app.state.settings.lti_rate_limit_per_minute
    wait = ratelimit.wait(request, "lti_buckets", per_minute)
    if wait:
        raise TooManyRequests(
            f"Too many sign-ins from your network in the last minute; try again in {wait} s.",
            retry_after=wait,
            hint="If a whole class starts at once, the administrator can raise "
            "MICROCRED_LTI_RATE_LIMIT_PER_MINUTE.",
        )


async def limit_registration(request: Request) -> None:
    """Per-IP limit on dynamic registration (``/lti/register``): each one makes microcred
    call two URLs the caller chose, so far fewer are allowed than sign-ins."""
    per_minute = request.app.state.settings.dynamic_registration_rate_limit_per_minute
    wait = ratelimit.wait(request, "registration_buckets", per_minute)
    if wait:
        raise TooManyRequests(
            f"Too many registrations from your network in the last minute; try again in {wait} s.",
            retry_after=wait,
            hint="The administrator can raise "
            "MICROCRED_DYNAMIC_REGISTRATION_RATE_LIMIT_PER_MINUTE.",
        )
