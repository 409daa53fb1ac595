"""Property-based fuzzing of every operation in the OpenAPI document (security.md F1), in
process, once per role: anonymous and an API token of each scope.

Each operation gets ``MICROCRED_API_FUZZ_EXAMPLES`` (default 100) schemathesis examples, valid
and invalid, from the role that may use it: anonymous for the public routes, the token with the
operation's scope for the JSON API. Every other role gets ``MICROCRED_API_FUZZ_GATE`` (default
10) examples, which must all be refused (401 without a token, 403 with the wrong scope) when
the operation needs a scope. No response may be a 5xx. CI (``HYPOTHESIS_PROFILE=ci``) runs a
fixed seed; raise the two numbers to explore (security.md F1 asks 1,000 per operation nightly).

Routes that OpenAPI does not describe (LTI login and launch, the pages under /app, dynamic
registration) are listed in ``HIDDEN`` with where they are fuzzed or tested instead.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from service.apitoken import SCOPES
from service.app import create_app
from service.settings import Settings

pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("MICROCRED_API_FUZZ_EXAMPLES", "100"))
GATE_EXAMPLES = int(os.environ.get("MICROCRED_API_FUZZ_GATE", "10"))
ANONYMOUS = "anonymous"
ROLES = [ANONYMOUS, *sorted(SCOPES)]


def _openapi() -> dict[str, Any]:
    """The app's OpenAPI document; building it needs no database."""
    with tempfile.TemporaryDirectory(prefix="microcred-openapi-") as folder:
        app = create_app(
            Settings(
                environment="test",
                data_dir=folder,
                database_url=f"sqlite:///{folder}/unused.db",
                base_url="https://tool.test",
                secret_key="test-master-key-" + "0" * 32,
            )
        )
        document = app.openapi()
        app.state.engine.dispose()
    return document


OPENAPI = _openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)
# The other roles only need to be turned away: random requests, without the coverage phase's
# hundreds of boundary cases per operation (those run for the operation's own role).
gate_schema = schemathesis.openapi.from_dict(
    OPENAPI, config=schemathesis.Config.from_dict({"phases": {"coverage": {"enabled": False}}})
)

# The authorization table of the JSON API: the scope each operation needs. Everything else in
# OpenAPI is public. test_every_api_operation_is_in_the_table keeps it complete.
_DELIVERY = [
    ("GET", "/api/outbox"),
    ("GET", "/api/outbox/{ref}"),
    ("POST", "/api/outbox/{ref}/retry"),
    ("POST", "/api/outbox/{ref}/redeliver"),
    ("POST", "/api/outbox/{ref}/cancel"),
    ("GET", "/api/delivery/repositories"),
    ("POST", "/api/delivery/repositories"),
    ("GET", "/api/credentials/{credential_id}/consent"),
    ("POST", "/api/credentials/{credential_id}/consent"),
    ("GET", "/api/credentials/{credential_id}/destinations"),
    ("GET", "/api/delivery/email-mismatches"),
    ("POST", "/api/delivery/email-mismatches/{mismatch_id}/resend"),
    ("POST", "/api/delivery/email-mismatches/{mismatch_id}/dismiss"),
]
_CREDENTIALS = [
    ("POST", "/api/credentials"),
    ("GET", "/api/credentials/{credential_id}"),
    ("POST", "/api/credentials/{credential_id}/revoke"),
    ("POST", "/api/credentials/{credential_id}/unrevoke"),
]
NEEDS: dict[tuple[str, str], str] = {
    **dict.fromkeys(_DELIVERY, "delivery:admin"),
    **dict.fromkeys(_CREDENTIALS, "credentials:write"),
    ("POST", "/api/evidence"): "evidence:write",
    ("POST", "/api/courses/{course_id}/evidence/import"): "evidence:write",
    ("GET", "/api/courses/{course_id}/evidence"): "evidence:read",
    **{
        (method.upper(), path): "policies:admin"
        for path, ops in OPENAPI["paths"].items()
        if path.startswith("/api/policies/")
        for method in ops
    },
}

# Routes OpenAPI leaves out, and why; each is fuzzed or tested another way.
HIDDEN = {
    "/lti/login (GET, POST)": "OIDC login initiation, a form post from the LMS: "
    "tests/lti/test_launch_mutations.py",
    "/lti/launch": "id_token form posts: tests/lti/test_launch_mutations.py",
    "/lti/launch/confirm": "platform-storage tickets, not fuzzed: "
    "tests/lti/test_platform_storage.py",
    "/lti/register": "dynamic registration, a browser flow, not fuzzed: "
    "tests/lti/test_registration.py",
    "/app/course/*, /app/setup/*, /app/me/*": "the instructor's and learner's forms, behind the "
    "launch's session and CSRF token: tests/flows/test_app_fuzz.py",
    "/app, /app/admin/*, /app/deep-link": "not fuzzed: tests/flows/test_access.py, "
    "tests/lti/test_deep_linking.py",
    "/did.json": "the same document as /.well-known/did.json",
    "/static/*": "files from service/web/static",
    "/docs, /redoc, /openapi.json": "FastAPI's own pages",
}


def test_every_api_operation_is_in_the_table() -> None:
    """A new JSON API route must say which scope it needs before the fuzzer can run as it."""
    operations = {
        (method.upper(), path) for path, ops in OPENAPI["paths"].items() for method in ops
    }
    api = {op for op in operations if op[1].startswith("/api/")}
    assert api == set(NEEDS)
    assert set(NEEDS.values()) <= set(SCOPES)
    # what needs a token says so in OpenAPI, and nothing else does
    secured = {
        (method.upper(), path)
        for path, ops in OPENAPI["paths"].items()
        for method, op in ops.items()
        if op.get("security")
    }
    assert secured == set(NEEDS)


@pytest.fixture
def tokens(api_headers: Callable[..., dict[str, str]]) -> dict[str, dict[str, str]]:
    """The Authorization header of each role (anonymous has none)."""
    return {ANONYMOUS: {}} | {scope: api_headers(scope) for scope in SCOPES}


@pytest.fixture
def fuzz_client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url="https://tool.test") as client:
        yield client


def _request(case: schemathesis.Case, role: str, headers: dict[str, str]) -> dict[str, Any]:
    """The case as keyword arguments of httpx (the test client), sent as ``role``."""
    kwargs = case.as_transport_kwargs(base_url="https://tool.test")
    sent = {str(k): str(v) for k, v in (kwargs.get("headers") or {}).items()}
    if role != ANONYMOUS:  # anonymous keeps the fuzzer's own (made-up) Authorization
        sent = {k: v for k, v in sent.items() if k.lower() != "authorization"} | headers
    cookies = kwargs.get("cookies") or {}
    if cookies:
        sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    out: dict[str, Any] = {
        "method": kwargs["method"],
        "url": kwargs["url"],
        "headers": sent,
        "params": kwargs.get("params") or None,
    }
    if "json" in kwargs:
        out["json"] = kwargs["json"]
    data = kwargs.get("data")
    if isinstance(data, bytes | str):
        out["content"] = data
    elif data:
        out["data"] = data
    if kwargs.get("files"):
        out["files"] = [(name, _file(part)) for name, part in kwargs["files"]]
    return out


def _file(part: Any) -> Any:
    """A multipart part as httpx takes it: the content as bytes or text."""
    if isinstance(part, tuple) and len(part) >= 2 and not isinstance(part[1], bytes | str):
        return (part[0], json.dumps(part[1]), *part[2:])
    return part


def _operation(case: schemathesis.Case) -> tuple[str, str]:
    return case.operation.method.upper(), case.operation.path


def _own_role(case: schemathesis.Case) -> str:
    """The role that may use the operation: its scope's token, or anonymous if it is public."""
    return NEEDS.get(_operation(case), ANONYMOUS)


FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _refused_before_auth(response: Any) -> bool:
    """Refused before the token is looked at, revealing nothing: a body that is not JSON or
    not a form (FastAPI parses it first), or a path no route matches (e.g. a newline in it:
    the router's own 404, ``http_404``, not a "no such object" answer)."""
    answer = response.json()
    detail = str(answer.get("detail", ""))
    return (
        (response.status_code == 422 and detail.endswith("JSON decode error"))
        or (response.status_code == 400 and detail == "There was an error parsing the body")
        or (response.status_code == 404 and answer.get("error") == "http_404")
    )


@schema.parametrize()
@settings(FUZZ, max_examples=EXAMPLES)
def test_operation_as_its_own_role(
    case: schemathesis.Case, fuzz_client: TestClient, tokens: dict[str, dict[str, str]]
) -> None:
    """Valid and invalid requests from the role that may use the operation: no 5xx, and JSON
    bodies match the schema OpenAPI gives them. (Status codes and media types that OpenAPI does
    not list yet, such as 404 or application/ld+json, are security.md F2: tracked, not gated.)"""
    role = _own_role(case)
    response = fuzz_client.request(**_request(case, role, tokens[role]))
    response.request.read()  # a multipart body is a stream until read
    case.validate_response(
        response,
        checks=[not_a_server_error, response_schema_conformance],
    )


@gate_schema.parametrize()
@settings(FUZZ, max_examples=GATE_EXAMPLES)
def test_operation_as_every_other_role(
    case: schemathesis.Case, fuzz_client: TestClient, tokens: dict[str, dict[str, str]]
) -> None:
    """Every other role: refused (401 anonymous, 403 another scope) when the operation needs a
    scope, whatever the request holds; and never a 5xx."""
    needed = NEEDS.get(_operation(case))
    for role in ROLES:
        if role == _own_role(case):
            continue
        response = fuzz_client.request(**_request(case, role, tokens[role]))
        response.request.read()
        if needed is None:
            case.validate_response(response, checks=[not_a_server_error])
        elif case.method.upper() != _operation(case)[0]:
            # the fuzzer also tries methods the path does not have
            assert response.status_code == 405, (role, case.method, response.text)
        elif _refused_before_auth(response):
            pass
        else:
            expected = 401 if role == ANONYMOUS else 403
            assert response.status_code == expected, (role, response.text)
