"""The JSON API under /api/policies, as a client uses it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from service.db.engine import session as db_session
from tests import factories

DEFAULTS: dict[str, Any] = {
    "levels": {
        "beginning": "50%",
        "intermediate": "65%",
        "advanced": {"threshold": "85%", "verification": "supervised"},
    }
}
BOUNDS: dict[str, Any] = {"levels": {"intermediate": {"threshold": {"min": "60%"}}}}


@pytest.fixture
def client(client: TestClient, api_headers: Callable[..., dict[str, str]]) -> TestClient:
    """The test client, authenticated with an administrator's API token."""
    client.headers.update(api_headers("policies:admin"))
    return client


def test_policy_api_needs_the_policies_scope(
    client: TestClient, api_headers: Callable[..., dict[str, str]]
) -> None:
    anonymous = TestClient(client.app, base_url="https://tool.test")
    assert anonymous.get("/api/policies/competencies").status_code == 401
    wrong = anonymous.get("/api/policies/competencies", headers=api_headers("evidence:read"))
    assert wrong.status_code == 403


def make_course(engine: Engine) -> int:
    with db_session(engine, write=True) as s:
        plat = factories.platform(s)
        course = factories.course(s, factories.deployment(s, plat))
        s.commit()
        assert course.id is not None
        return course.id


def test_catalogue_routes(client: TestClient) -> None:
    r = client.post(
        "/api/policies/competencies",
        json={"key": "data/cleaning", "name": "Data cleaning", "framework_name": "ESCO"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["key"] == "data/cleaning"
    assert (
        client.post(
            "/api/policies/competencies", json={"key": "data/cleaning", "name": "x"}
        ).status_code
        == 409
    )
    r = client.put(
        "/api/policies/competencies/data/cleaning/levels/advanced",
        json={"eqf_level": 5, "validity_days": 365, "language": "fr"},
    )
    assert r.status_code == 200 and r.json()["level"] == "advanced"
    assert client.get("/api/policies/competencies/data/cleaning/levels").json()[0]["eqf_level"] == 5
    r = client.patch("/api/policies/competencies/data/cleaning", json={"name": "Cleaning data"})
    assert r.json()["name"] == "Cleaning data" and r.json()["levels"][0]["language"] == "fr"
    assert [c["key"] for c in client.get("/api/policies/competencies").json()] == ["data/cleaning"]
    missing = client.get("/api/policies/competencies/nope")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    bad = client.put(
        "/api/policies/competencies/data/cleaning/levels/advanced", json={"eqf_level": 12}
    )
    assert bad.status_code == 422 and "eqf_level" in bad.json()["detail"]


def test_policy_routes(client: TestClient, engine: Engine) -> None:
    course_id = make_course(engine)
    assert client.get("/api/policies/institution").status_code == 404
    r = client.put("/api/policies/institution", json={"defaults": DEFAULTS, "bounds": BOUNDS})
    assert r.status_code == 200 and r.json()["version"] == 1
    bad = client.put("/api/policies/institution", json={"defaults": {"levels": {"beginning": "x"}}})
    assert bad.status_code == 422
    assert bad.json() == {
        "error": "invalid_policy",
        "detail": "defaults.levels.beginning: must be a percentage such as 70% or 0.7, not 'x'",
    }
    client.post("/api/policies/competencies", json={"key": "stats", "name": "Statistics"})

    low = client.put(
        f"/api/policies/courses/{course_id}", json={"document": {"levels": {"intermediate": 55}}}
    )
    assert low.status_code == 422
    assert "minimum the institution allows" in low.json()["detail"]
    ok = client.put(
        f"/api/policies/courses/{course_id}/competencies/stats",
        json={"document": {"levels": {"intermediate": 70}}, "note": "harder"},
    )
    assert ok.status_code == 200 and ok.json()["scope"] == "course_competency"

    effective = client.get(f"/api/policies/courses/{course_id}/effective/stats").json()
    assert effective["version"] == 1 and effective["competency"] == "stats"
    assert effective["policy"]["levels"]["intermediate"] == {"threshold": "70%"}
    assert len(effective["policy_hash"]) == 64

    course = client.get(f"/api/policies/courses/{course_id}").json()
    assert course["course"] is None and course["competencies"]["stats"]["note"] == "harder"

    exported = client.get(f"/api/policies/courses/{course_id}/export")
    assert exported.headers["content-type"].startswith("application/yaml")
    doc = yaml.safe_load(exported.text)
    assert doc["policies"] == {"stats": {"levels": {"intermediate": 70}}}
    as_json = client.get(f"/api/policies/courses/{course_id}/export?format=json").json()
    assert as_json == doc

    doc["policies"]["stats"] = {"levels": {"intermediate": 75}}
    r = client.post(
        f"/api/policies/courses/{course_id}/import",
        content=yaml.safe_dump(doc),
        headers={"content-type": "text/plain"},
    )
    assert r.status_code == 200, r.text
    assert [v["version"] for v in r.json()] == [2]
    r = client.post(
        f"/api/policies/courses/{course_id}/import",
        content="policies:\n  stats:\n    levels: {intermediate: 50}\n",
        headers={"content-type": "text/plain"},
    )
    assert r.status_code == 422 and 'line 3, field "policies.stats.levels' in r.json()["detail"]

    assert client.get("/api/policies/courses/9999").status_code == 404
    assert len(client.get("/api/policies/institution/versions").json()) == 1
    inst = client.get("/api/policies/institution/export?format=json").json()
    assert inst == {"defaults": DEFAULTS, "bounds": BOUNDS}
    r = client.post(
        "/api/policies/institution/import?format=json",
        content='{"defaults": {"levels": {"beginning": 40}}}',
        headers={"content-type": "text/plain"},
    )
    assert r.status_code == 200 and r.json()["version"] == 2
    assert client.get("/api/policies/decisions/1").status_code == 404
