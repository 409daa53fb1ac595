from __future__ import annotations

from fastapi.testclient import TestClient


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_reports_migration(client: TestClient) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["status"] == "ready"
    assert r.json()["migration"]


def test_unknown_page_is_a_friendly_404_without_reflection(client: TestClient) -> None:
    r = client.get("/nope<script>", headers={"accept": "text/html"})
    assert r.status_code == 404
    assert "<script>" not in r.text


def test_api_errors_are_json(client: TestClient) -> None:
    r = client.get("/api/nothing-here")
    assert r.status_code == 404
    assert r.json()["error"] == "http_404"
