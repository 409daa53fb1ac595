"""OpenAPI describes what the API really sends (the fuzzer, tests/test_api_fuzz.py, checks
every answer against it)."""

from __future__ import annotations

from collections.abc import Callable

import jsonschema
import pytest
from fastapi.testclient import TestClient


def test_the_documented_422_body_is_the_one_the_api_sends(
    client: TestClient, api_headers: Callable[..., dict[str, str]]
) -> None:
    doc = client.get("/openapi.json").json()
    resp = client.post(
        "/api/credentials", json={"nonsense": 1}, headers=api_headers("credentials:write")
    )
    assert resp.status_code == 422
    documented = doc["paths"]["/api/credentials"]["post"]["responses"]["422"]
    schema = documented["content"]["application/json"]["schema"]
    jsonschema.validate(resp.json(), {"components": doc["components"], **schema})
    assert resp.json()["error"] == "bad_input" and "learner" in resp.json()["detail"]


def test_verify_documents_the_bodies_it_reads(client: TestClient) -> None:
    body = client.get("/openapi.json").json()["paths"]["/verify"]["post"]["requestBody"]
    assert set(body["content"]) == {"application/json", "text/plain"}


@pytest.mark.postgres
def test_a_nul_character_the_database_cannot_store_is_a_clear_422(
    client: TestClient, api_headers: Callable[..., dict[str, str]]
) -> None:
    # found by the fuzz lanes on PostgreSQL, whose text cannot hold NUL (SQLite's can)
    resp = client.get("/api/credentials/a%00b", headers=api_headers("credentials:write"))
    assert resp.status_code == 422, resp.text
    assert "NUL character" in resp.json()["detail"]
