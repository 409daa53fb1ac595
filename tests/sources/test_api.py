"""The JSON API: bearer tokens, push batches, CSV upload, reading evidence."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import select

from service import apitoken
from service.db.engine import session
from service.db.models import ApiToken, Evidence, ImportRun
from tests.sources.helpers import NOW, World, world

WRITE = ("evidence:write",)


def token(engine: Engine, name: str = "proctor", scopes: tuple[str, ...] = WRITE) -> str:
    with session(engine, write=True) as s:
        _row, plaintext = apitoken.create(s, name=name, scopes=list(scopes), actor="t", now=NOW)
        s.commit()
    return plaintext


def auth(t: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {t}"}


def batch(w: World, **extra: Any) -> dict[str, Any]:
    return {
        "course_id": w.course_id,
        "results": [
            {
                "learner": {"sub": "u-ada"},
                "kind": "quiz",
                "item_id": "exam-1",
                "score": 17,
                "max_score": 20,
                "attempt": 1,
                "graded_at": "2026-11-20T10:00:00+01:00",
                "verification": "supervised-online-verified",
                "asserted_by": "proctoring",
            },
            {
                "learner": {"lms_user_id": "42"},
                "kind": "rubric_criterion",
                "item_id": "essay",
                "criterion_id": "c1",
                "level": {"id": "L2", "name": "Developing", "points": 1},
                "scale": [
                    {"id": "L3", "name": "Proficient", "points": 2},
                    {"id": "L2", "name": "Developing", "points": 1},
                ],
            },
        ],
        "verifications": [
            {
                "learner": {"email": "bob@example.edu"},
                "item_id": "essay",
                "sitting_id": "room-4",
                "level": "supervised-onsite-verified",
                "occurred_at": "2026-11-20T09:00:00Z",
            }
        ],
        **extra,
    }


def test_token_is_hashed_at_rest_and_shown_once(engine: Engine) -> None:
    t = token(engine)
    with session(engine) as s:
        [row] = s.exec(select(ApiToken)).all()
    assert t.startswith("mct_") and t not in row.token_hash and row.prefix in t
    assert len(row.token_hash) == 64 and row.last_used_at is None


def test_push_requires_a_valid_token_with_scope(client: TestClient, engine: Engine) -> None:
    w = world(engine)
    reader = token(engine, "reader", ("evidence:read",))
    r = client.post("/api/evidence", json=batch(w))
    assert r.status_code == 401 and r.json()["error"] == "unauthenticated"
    r = client.post("/api/evidence", json=batch(w), headers=auth("mct_abcdefghijkl_" + "x" * 43))
    assert r.status_code == 401 and "not valid" in r.json()["detail"]
    r = client.post("/api/evidence", json=batch(w), headers=auth(reader))
    assert r.status_code == 403 and "evidence:write" in r.json()["detail"]
    with session(engine) as s:
        assert s.exec(select(Evidence)).all() == []


def test_push_batch_is_idempotent_and_events_apply(client: TestClient, engine: Engine) -> None:
    w = world(engine)
    t = token(engine)
    first = client.post("/api/evidence", json=batch(w), headers=auth(t))
    assert first.status_code == 200, first.text
    assert first.json()["report"] | {"import_run_id": None} == {
        "new": 2,
        "updated": 0,
        "unchanged": 0,
        "verification_events": 1,
        "rejected": [],
        "applied": True,
        "import_run_id": None,
    }
    again = client.post("/api/evidence", json=batch(w), headers=auth(t))
    assert again.json()["report"]["unchanged"] == 2
    read = token(engine, "reader", ("evidence:read",))
    listing = client.get(f"/api/courses/{w.course_id}/evidence", headers=auth(read)).json()
    rows = {e["item_id"]: e for e in listing["evidence"]}
    assert len(listing["evidence"]) == 2
    assert rows["exam-1"]["origin"] == "push:proctor"
    assert rows["exam-1"]["graded_at"] == "2026-11-20T09:00:00+00:00"
    assert rows["essay"]["verification"] == "supervised-onsite-verified"
    assert [s["id"] for s in rows["essay"]["scale"]] == ["L2", "L3"]
    assert "email" not in str(listing)


def test_push_rejects_unknown_learner_whole_batch_unless_partial(
    client: TestClient, engine: Engine
) -> None:
    w = world(engine)
    t = token(engine)
    body = batch(w)
    body["results"][1]["learner"] = {"sub": "nobody"}
    r = client.post("/api/evidence", json=body, headers=auth(t))
    assert r.status_code == 422
    assert r.json()["report"]["rejected"][0]["where"] == "results[1]"
    with session(engine) as s:
        assert s.exec(select(Evidence)).all() == []
        assert [x.status for x in s.exec(select(ImportRun)).all()] == ["rejected"]
    r = client.post("/api/evidence?partial=true", json=body, headers=auth(t))
    assert r.status_code == 200 and r.json()["report"]["new"] == 1


def test_push_schema_errors_name_the_field(client: TestClient, engine: Engine) -> None:
    w = world(engine)
    t = token(engine)
    body = batch(w)
    body["results"][0]["score"] = 25
    body["verifications"][0]["occurred_at"] = "2026-11-20T09:00:00"  # no zone
    r = client.post("/api/evidence", json=body, headers=auth(t))
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert "results.0" in detail and "above max_score" in detail
    assert "verifications.0.occurred_at" in detail and "timezone" in detail


def test_csv_upload_all_or_nothing_dry_run_and_partial(client: TestClient, engine: Engine) -> None:
    w = world(engine)
    t = token(engine)
    csv = b"sub,kind,item_id,score,max_score\nu-ada,quiz,q1,3,4\n42,quiz,q1,5,4\n"
    url = f"/api/courses/{w.course_id}/evidence/import"
    files = {"file": ("results.csv", csv, "text/csv")}
    r = client.post(url, files=files, headers=auth(t))
    assert r.status_code == 422
    [p] = r.json()["report"]["rejected"]
    assert (p["where"], p["field"]) == ("line 3", "score")
    r = client.post(url + "?mode=dry_run", files=files, headers=auth(t))
    assert r.status_code == 200 and r.json()["report"]["applied"] is False
    r = client.post(url + "?mode=partial", files=files, headers=auth(t))
    assert r.status_code == 200 and r.json()["report"]["new"] == 1
    r = client.post(url + "?mode=partial", files=files, headers=auth(t))
    assert r.json()["report"]["unchanged"] == 1
    with session(engine) as s:
        assert len(s.exec(select(Evidence)).all()) == 1
        runs = s.exec(select(ImportRun).order_by(ImportRun.id)).all()  # type: ignore[arg-type]
    assert [x.status for x in runs] == ["rejected", "applied", "applied"]
    assert runs[1].filename == "results.csv"


def test_the_csv_upload_checks_the_token_before_it_parses_the_body(
    client: TestClient, engine: Engine
) -> None:
    w = world(engine)
    url = f"/api/courses/{w.course_id}/evidence/import"
    broken = {"content-type": "multipart/form-data; boundary=x"}
    body = b"--x\r\nContent-Type: text/csv\r\n\r\nsub\r\n--x--\r\n"  # no Content-Disposition
    assert client.post(url, content=body, headers=broken).status_code == 401
    reader = token(engine, "reader", ("evidence:read",))
    assert client.post(url, content=body, headers=broken | auth(reader)).status_code == 403
    writer = auth(token(engine))
    assert client.post(url, content=body, headers=broken | writer).status_code == 400
    r = client.post(url, data={"other": "x"}, headers=writer)
    assert r.status_code == 422 and "body.file" in r.json()["detail"], r.json()
    schema = client.get("/openapi.json").json()["paths"]["/api/courses/{course_id}/evidence/import"]
    form = schema["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["properties"]["file"]["format"] == "binary"


def test_unknown_course_is_404_json(client: TestClient, engine: Engine) -> None:
    world(engine)
    t = token(engine, "rw", ("evidence:write", "evidence:read"))
    r = client.get("/api/courses/999/evidence", headers=auth(t))
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = client.post("/api/evidence", json={"course_id": 999}, headers=auth(t))
    assert r.status_code == 404


def test_a_write_records_when_the_token_was_last_used(client: TestClient, engine: Engine) -> None:
    w = world(engine)
    t = token(engine)
    assert client.post("/api/evidence", json=batch(w), headers=auth(t)).status_code == 200
    with session(engine) as s:
        [row] = s.exec(select(ApiToken)).all()
    assert row.last_used_at is not None
