"""The JSON API (/api/outbox…, consent, destinations, mismatches) and the CLI commands."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from typer.testing import CliRunner

from service.cli import app as cli_app
from service.db.engine import session as db_session
from service.delivery import awards, outbox, status
from service.settings import Settings
from tests import factories
from tests.delivery.conftest import snapshot

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def client(client: TestClient, api_headers: Callable[..., dict[str, str]]) -> TestClient:
    """The test client, authenticated with a delivery administrator's API token."""
    client.headers.update(api_headers("delivery:admin"))
    return client


def test_delivery_api_needs_the_delivery_scope(
    client: TestClient, api_headers: Callable[..., dict[str, str]]
) -> None:
    anonymous = TestClient(client.app, base_url="https://tool.test")
    assert anonymous.get("/api/outbox").status_code == 401
    assert anonymous.get("/api/outbox", headers=api_headers("evidence:write")).status_code == 403


def _credly(client: TestClient, **kw: object) -> dict[str, object]:
    resp = client.post(
        "/api/delivery/repositories",
        json={
            "kind": "credly",
            "name": "Credly",
            "secret": "org-token-secret",
            "config": {"organization_id": "org", "environment": "sandbox"},
        }
        | kw,
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def test_outbox_api_lists_acts_and_explains_conflicts(client: TestClient, engine: Engine) -> None:
    repo = _credly(
        client, secret_expires_at=(dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).isoformat()
    )
    assert repo["has_secret"] is True and "org-token-secret" not in json.dumps(repo)
    with db_session(engine, write=True) as s:
        [row] = awards.enqueue_issue(s, snapshot=snapshot(1))
        s.commit()
    body = client.get("/api/outbox").json()
    assert "expires on" in body["warnings"][0]
    assert [i["kind"] for i in body["items"]] == ["credly.issue_badge"]
    assert client.get("/api/outbox", params={"status": "dead"}).json()["items"] == []
    detail = client.get(f"/api/outbox/{row.uuid}").json()
    assert detail["status"] == "pending" and detail["attempt_log"] == []
    resp = client.post(f"/api/outbox/{row.uuid}/redeliver")
    assert resp.status_code == 409 and resp.json()["error"] == "conflict"
    assert "pending" in resp.json()["detail"]
    assert client.post(f"/api/outbox/{row.id}/cancel").json()["status"] == "cancelled"
    resp = client.get("/api/outbox/nope-<script>")
    assert resp.status_code == 404 and "<script>" not in resp.headers.get("content-type", "")
    repos = client.get("/api/delivery/repositories").json()
    assert repos[0]["warning"] and "expires on" in repos[0]["warning"]
    bad = client.post("/api/delivery/repositories", json={"kind": "ftp", "name": "x"})
    assert bad.status_code == 422
    assert all(k in bad.json()["detail"] for k in ("credly", "badgr", "webhook", "ags"))


def test_consent_destinations_and_mismatch_api(client: TestClient, engine: Engine) -> None:
    repo = _credly(client, consent_policy="ask")
    cid = snapshot(2).credential_id
    with db_session(engine, write=True) as s:
        awards.enqueue_issue(s, snapshot=snapshot(2, person_id=7))
        s.commit()
    [dest] = client.get(f"/api/credentials/{cid}/consent").json()
    assert dest["state"] == "waiting_for_consent" and dest["consent"] == "asked"
    [dest] = client.post(
        f"/api/credentials/{cid}/consent", json={"repository_id": repo["id"], "granted": True}
    ).json()
    assert dest["state"] == "queued" and dest["consent"] == "granted"
    with db_session(engine, write=True) as s:
        [job] = outbox.claim(
            s.get_bind(),
            kinds=["credly.issue_badge"],  # type: ignore[arg-type]
            now=dt.datetime.now(dt.UTC),
        )
    done = outbox.Outcome(job, outbox.AttemptRecord(NOW), NOW, result={"badge_id": "b1"})
    outbox.finish_many(engine, [done])
    [dest] = client.get(f"/api/credentials/{cid}/destinations").json()
    assert dest["state"] == "delivered"
    with db_session(engine, write=True) as s:
        status.detect_email_change(s, person_id=7, new_email="new@example.edu")
        s.commit()
    [m] = client.get("/api/delivery/email-mismatches").json()
    assert (
        m["delivered_email"] == "learner2@example.edu" and m["current_email"] == "new@example.edu"
    )
    row = client.post(f"/api/delivery/email-mismatches/{m['id']}/resend").json()
    assert row["kind"] == "credly.issue_badge" and row["status"] == "pending"
    assert client.get("/api/delivery/email-mismatches").json() == []
    assert client.post(f"/api/delivery/email-mismatches/{m['id']}/resend").status_code == 409


def test_cli_outbox_commands(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    mp = monkeypatch
    mp.setenv("MICROCRED_DATABASE_URL", settings.resolved_database_url)
    mp.setenv("MICROCRED_SECRET_KEY", settings.secret_key.get_secret_value())  # type: ignore[union-attr]
    mp.setenv("MICROCRED_DATA_DIR", str(settings.data_dir))
    mp.setenv("MICROCRED_REPOSITORY_SECRET", "tok")
    from service.settings import get_settings

    get_settings.cache_clear()
    with db_session(engine, write=True) as s:
        factories.competency(s, "py")
        s.commit()
    try:
        runner = CliRunner()
        r = runner.invoke(
            cli_app,
            [
                "repository",
                "add",
                "--kind",
                "credly",
                "--name",
                "Credly",
                "--org-id",
                "org",
                "--environment",
                "sandbox",
                "--template",
                "py:beginning=T1",
            ],
        )
        assert r.exit_code == 0, r.output
        repo_id = r.output.split()[-2]
        r = runner.invoke(
            cli_app,
            ["repository", "add", "--kind", "credly", "--name", "X", "--template", "nonsense"],
        )
        assert r.exit_code == 2 and "must look like" in r.output
        with db_session(engine, write=True) as s:
            [row] = awards.enqueue_issue(s, snapshot=snapshot(3))
            s.commit()
        r = runner.invoke(cli_app, ["outbox", "list"])
        assert r.exit_code == 0 and "credly.issue_badge" in r.output and "pending" in r.output
        r = runner.invoke(cli_app, ["outbox", "retry", str(row.id)])
        assert r.exit_code == 0 and "pending" in r.output
        r = runner.invoke(cli_app, ["outbox", "cancel", row.uuid])
        assert r.exit_code == 0 and "cancelled" in r.output
        r = runner.invoke(cli_app, ["outbox", "cancel", row.uuid])
        assert r.exit_code == 1 and "is cancelled" in r.output
        r = runner.invoke(cli_app, ["outbox", "list", "--json", "--status", "cancelled"])
        assert json.loads(r.output)["items"][0]["uuid"] == row.uuid
        r = runner.invoke(cli_app, ["outbox", "show", row.uuid])
        assert r.exit_code == 0 and "status=cancelled" in r.output
        r = runner.invoke(cli_app, ["outbox", "retry", "999999"])
        assert r.exit_code == 1 and "no outbox row" in r.output
        r = runner.invoke(cli_app, ["repository", "list"])
        assert "Credly" in r.output and "token-expires=" in r.output
        mp.setenv("MICROCRED_REPOSITORY_SECRET", "rotated-token")
        r = runner.invoke(
            cli_app,
            [
                "repository",
                "update",
                repo_id,
                "--new-secret",
                "--template",
                "py:advanced=T3",
                "--consent",
                "ask",
            ],
        )
        assert r.exit_code == 0, r.output
        from service.delivery import repositories

        with db_session(engine) as s:
            repo = repositories.get(s, repo_id)
            assert repo.secret == "rotated-token" and repo.consent_policy == "ask"
            assert repo.config["templates"] == {"py:beginning": "T1", "py:advanced": "T3"}
            assert repo.secret_expires_at is not None
        r = runner.invoke(cli_app, ["repository", "update", repo_id, "--consent", "never"])
        assert r.exit_code == 2 and "automatic" in r.output
    finally:
        get_settings.cache_clear()


def test_a_rate_limited_repository_shows_its_pause(client: TestClient, engine: Engine) -> None:
    from service.delivery.errors import RateLimited

    _credly(client)
    with db_session(engine, write=True) as s:
        awards.enqueue_issue(s, snapshot=snapshot(2))
        s.commit()
    now = dt.datetime.now(dt.UTC)
    [job] = outbox.claim(engine, kinds=["credly.issue_badge"], now=now)
    limited = RateLimited("POST /badges answered 429: slow down", status=429, retry_after=120)
    outbox.finish_many(engine, [outbox.Outcome(job, outbox.AttemptRecord(now), now, error=limited)])
    [shown] = client.get("/api/delivery/repositories").json()
    until = dt.datetime.fromisoformat(shown["paused_until"])
    assert until == now + dt.timedelta(seconds=120)
    assert "429" in shown["paused_reason"] and "slow down" in shown["paused_reason"]


def test_a_rate_limit_on_one_lms_gradebook_shows_as_a_pause_of_that_lms(
    client: TestClient, engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.delivery import repositories
    from service.delivery.errors import RateLimited
    from service.settings import get_settings

    with db_session(engine, write=True) as s:
        repositories.create(s, kind="ags", name="Gradebook", config={})
        ags = {"platform_id": 3, "lineitem": "https://lms3/li/1", "user": "sub-2"}
        awards.enqueue_issue(s, snapshot=snapshot(2, ags=ags))
        s.commit()
    now = dt.datetime.now(dt.UTC)
    [job] = outbox.claim(engine, kinds=["ags.post_score"], now=now)
    limited = RateLimited("LMS answered 429", status=429, retry_after=120)
    outbox.finish_many(engine, [outbox.Outcome(job, outbox.AttemptRecord(now), now, error=limited)])
    [shown] = client.get("/api/delivery/repositories").json()
    assert shown["paused_until"] is None  # the other LMSs' gradebooks go on
    [part] = shown["paused_parts"]
    assert part["scope"] == "platform:3" and "429" in part["paused_reason"]
    assert dt.datetime.fromisoformat(part["paused_until"]) == now + dt.timedelta(seconds=120)
    monkeypatch.setenv("MICROCRED_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("MICROCRED_SECRET_KEY", settings.secret_key.get_secret_value())  # type: ignore[union-attr]
    monkeypatch.setenv("MICROCRED_DATA_DIR", str(settings.data_dir))
    get_settings.cache_clear()
    try:
        r = CliRunner().invoke(cli_app, ["repository", "list"])
    finally:
        get_settings.cache_clear()
    assert r.exit_code == 0 and "platform:3 paused until" in r.output, r.output


def test_cli_badgr_region_defaults_to_the_connectors_and_refuses_an_unknown_one(
    runner: CliRunner, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`repository add --kind badgr` without --environment used to store Credly's default
    ("production") as the region, which the connector then refused at every delivery."""
    from service.delivery import repositories
    from service.delivery.providers import badgr

    monkeypatch.setenv("MICROCRED_REPOSITORY_SECRET", "pw")
    add = ["repository", "add", "--kind", "badgr", "--username", "admin@uni.example"]
    r = runner.invoke(cli_app, [*add, "--name", "Badgr"])
    assert r.exit_code == 0, r.output
    with db_session(engine) as s:
        repo = repositories.get(s, r.output.split()[-2])
        assert "region" not in repo.config  # the connector's default, us
        # the administrator's page lists it in the region its deliveries go to
        where = badgr.PROVIDER.describe(repo.config)[2]
        assert where == "admin@uni.example · region us (api.badgr.io)"
    r = runner.invoke(cli_app, [*add, "--name", "EU", "--environment", "eu"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli_app, [*add, "--name", "Bad", "--environment", "production"])
    assert r.exit_code == 2, r.output
    assert "no region 'production'; choose one of us, eu, ca, au, sg, test" in r.output
    credly = ["repository", "add", "--kind", "credly", "--name", "C", "--org-id", "o"]
    r = runner.invoke(cli_app, credly)
    assert r.exit_code == 2 and "sandbox or production" in r.output, r.output


@pytest.mark.parametrize(("region", "host"), [("ca", "api.ca.badgr.io"), ("au", "api.au.badgr.io")])
def test_cli_adds_a_badgr_account_in_canada_or_australia_and_delivers_there(
    runner: CliRunner, engine: Engine, monkeypatch: pytest.MonkeyPatch, region: str, host: str
) -> None:
    """Canvas Credentials' regional servers besides the US and the EU (Instructure's
    developer docs, "Environments"): their accounts used to be refused as unknown regions."""
    from service.delivery import repositories
    from service.delivery.providers import badgr

    monkeypatch.setenv("MICROCRED_REPOSITORY_SECRET", "pw")
    add = ["repository", "add", "--kind", "badgr", "--username", "admin@uni.example"]
    r = runner.invoke(cli_app, [*add, "--name", "Regional", "--environment", region])
    assert r.exit_code == 0, r.output
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        return httpx.Response(200, json={"access_token": "a", "expires_in": 3600})

    with db_session(engine) as s:
        repo_id = repositories.get(s, r.output.split()[-2]).id or 0
        repo = repositories.snapshots(s, [repo_id])[repo_id]
    assert repo.config["region"] == region
    client = httpx.Client(transport=httpx.MockTransport(answer))
    assert badgr.BadgrConnector(client, clock=lambda: NOW).check_connection(repo) == (0, [])
    assert asked == [f"https://{host}/o/token"]
