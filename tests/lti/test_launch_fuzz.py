"""Mutation fuzzing of valid launches (security.md S3, CI-sized): a changed security claim is
always refused, and no mutation of any claim or header ever produces a 5xx."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.lti.platform import C, FakePlatform

pytestmark = pytest.mark.usefixtures("registered")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
SECURITY = [
    "iss",
    "aud",
    "nonce",
    C + "deployment_id",
    C + "version",
    C + "target_link_uri",
    C + "message_type",
]
OTHER = [
    "exp",
    "iat",
    "sub",
    "azp",
    C + "roles",
    C + "resource_link",
    C + "context",
    "name",
    C + "custom",
    C + "launch_presentation",
]
FUZZ = settings(
    max_examples=40,
    deadline=None,
    # (too_slow: what each example costs depends on the host, tests/conftest.py)
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _post(
    client: TestClient,
    moodle: FakePlatform,
    claims: dict[str, Any],
    header: dict[str, Any] | None = None,
) -> int:
    state = claims.pop("__state")
    token = moodle.token(claims, **(header or {}))
    return moodle.launch(client, token, state).status_code


def _fresh(client: TestClient, moodle: FakePlatform) -> dict[str, Any]:
    state, nonce, _ = moodle.login(client)
    return moodle.claims(nonce) | {"__state": state}


@FUZZ
@given(key=st.sampled_from(SECURITY), value=json_values, drop=st.booleans())
def test_changed_security_claims_are_refused(
    client: TestClient, moodle: FakePlatform, key: str, value: Any, drop: bool
) -> None:
    claims = _fresh(client, moodle)
    original = claims[key]
    if drop:
        del claims[key]
    else:
        if value == original or value == [original]:
            value = {"not": "it"}
        claims[key] = value
    status = _post(client, moodle, claims)
    assert 400 <= status < 500, (key, value, status)


@FUZZ
@given(key=st.sampled_from(OTHER), value=json_values, drop=st.booleans())
def test_any_claim_mutation_is_handled(
    client: TestClient, moodle: FakePlatform, key: str, value: Any, drop: bool
) -> None:
    claims = _fresh(client, moodle)
    if drop:
        claims.pop(key, None)
    else:
        claims[key] = value
    status = _post(client, moodle, claims)
    assert status == 303 or 400 <= status < 500, (key, value, status)


@FUZZ
@given(name=st.sampled_from(["alg", "kid", "typ", "jku", "crit", "x5u"]), value=json_values)
def test_header_mutations_never_fail_badly(
    client: TestClient, moodle: FakePlatform, name: str, value: Any
) -> None:
    claims = _fresh(client, moodle)
    status = _post(client, moodle, claims, {name: value})
    accepted_ok = name in ("typ", "jku", "crit", "x5u")  # ignored headers, key from JWKS only
    assert (status == 303 and accepted_ok) or 400 <= status < 500, (name, value, status)
