"""The administrator's settings pages (issue #17): platform name, repositories with a
connection test the worker runs, institution thresholds checked against every course
before they are saved, and the signing keys.

Sessions come from real launches of a platform that signs real tokens
(``tests.lti.platform``), as an institution Administrator.
"""

from __future__ import annotations

import datetime as dt
import json
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlmodel import select

from service import audit
from service.assessment import bounds as bounds_mod
from service.assessment import parse
from service.assessment.types import Level
from service.db.engine import session as db_session
from service.db.models import (
    AuditEvent,
    Course,
    DeliveryPause,
    DeliveryRepository,
    Deployment,
    Platform,
    PolicyVersion,
    RepositoryCheck,
)
from service.db.types import utcnow
from service.delivery import checks, repositories
from service.delivery.providers import badgr
from service.lti import jwks
from service.policies import service as policies
from service.web.auth import SESSION_COOKIE
from tests import factories
from tests.delivery.conftest import provider_module
from tests.lti.platform import MEMBERSHIP, FakePlatform, Network

pytestmark = pytest.mark.db

ADMIN = ["http://purl.imsglobal.org/vocab/lis/v2/institution/person#Administrator"]
SECRET = "s3cret-org-token-do-not-show"


@pytest.fixture
def moodle(app: FastAPI, engine: Engine) -> Iterator[FakePlatform]:
    jwks.forget_memory_cache()
    platform = FakePlatform()
    with db_session(engine, write=True) as s:
        row = platform.register(s)
        dep = s.exec(select(Deployment).where(Deployment.platform_id == row.id)).one()
        factories.course(s, dep, context_id="course-7", title="Biology")
        factories.competency(s, "stats")
        s.commit()
    app.state.lti_http = Network(platform).client()
    yield platform
    app.state.lti_http.close()
    jwks.forget_memory_cache()


class FakeCredly:
    """Credly's badge-template list on loopback: answers ``answer``, notes each request."""

    def __init__(self) -> None:
        self.answer: tuple[int, dict[str, object]] = (200, {"data": []})
        self.seen: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.seen.append(f"GET {self.path.split('?', 1)[0]}")
                status, body = fake.answer
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def credly() -> Iterator[FakeCredly]:
    fake = FakeCredly()
    yield fake
    fake.close()


def _session(client: TestClient, moodle: FakePlatform, roles: list[str] = ADMIN) -> str:
    resp = moodle.full_launch(client, roles=roles, sub="admin-1")
    assert resp.status_code == 303, resp.text
    token = client.cookies[SESSION_COOKIE]
    client.cookies.clear()
    return token


def _get(client: TestClient, token: str, path: str) -> httpx.Response:
    return client.get(path, params={"mc_session": token})


def _post(client: TestClient, token: str, path: str, **data: str) -> httpx.Response:
    return client.post(path, data={"mc_session": token} | data, follow_redirects=False)


def _add_credly(client: TestClient, token: str, **extra: str) -> httpx.Response:
    form = {
        "kind": "credly",
        "name": "Credly (Example University)",
        "organization_id": "org-1",
        "environment": "sandbox",
        "secret": SECRET,
        "templates": "stats:advanced = T1",
    }
    return _post(client, token, "/app/admin/repositories", **(form | extra))


def test_an_administrator_adds_a_repository_whose_secret_is_never_shown_back(
    client: TestClient, moodle: FakePlatform, engine: Engine
) -> None:
    token = _session(client, moodle)
    resp = _add_credly(client, token)
    assert resp.status_code == 303, resp.text
    page = client.get(resp.headers["location"])
    assert "Repository added" in page.text
    assert "Credly (Example University)" in page.text and "org-1" in page.text
    assert SECRET not in page.text
    with db_session(engine) as s:
        repo = s.exec(select(DeliveryRepository)).one()
        assert repo.secret == SECRET  # read through the secret box
        stored = s.execute(text("SELECT secret FROM delivery_repository")).scalar_one()
    assert SECRET not in stored  # encrypted at rest
    overview = _get(client, token, "/app/admin").text
    assert "Repository added" in overview and "repository Credly (Example University)" in overview


def test_a_repository_form_with_a_mistake_keeps_what_was_typed_but_the_secret(
    client: TestClient, moodle: FakePlatform, engine: Engine
) -> None:
    token = _session(client, moodle)
    resp = _add_credly(client, token, templates="stats:expert = T1")
    assert resp.status_code == 422
    assert "a level among beginning, intermediate, advanced" in resp.text
    assert "stats:expert = T1" in resp.text and "org-1" in resp.text
    assert SECRET not in resp.text
    with db_session(engine) as s:
        assert s.exec(select(DeliveryRepository)).first() is None


def test_a_new_secret_replaces_the_old_one_and_an_empty_box_keeps_it(
    client: TestClient, moodle: FakePlatform, engine: Engine
) -> None:
    token = _session(client, moodle)
    _add_credly(client, token)
    with db_session(engine) as s:
        uuid = s.exec(select(DeliveryRepository.uuid)).one()
    resp = _post(client, token, f"/app/admin/repositories/{uuid}", consent="ask", enabled="on")
    assert resp.status_code == 303, resp.text
    with db_session(engine) as s:
        repo = s.exec(select(DeliveryRepository)).one()
        assert (repo.secret, repo.consent_policy, repo.enabled) == (SECRET, "ask", True)
    _post(client, token, f"/app/admin/repositories/{uuid}", secret="new-token")
    with db_session(engine) as s:
        repo = s.exec(select(DeliveryRepository)).one()
        assert (repo.secret, repo.enabled) == ("new-token", False)  # unticked: off


def test_test_connection_is_queued_for_the_worker_and_the_page_shows_the_result(
    client: TestClient, moodle: FakePlatform, engine: Engine, credly: FakeCredly
) -> None:
    credly.answer = (200, {"data": [{"id": "T9", "state": "active"}], "metadata": {}})
    seen = credly.seen
    token = _session(client, moodle)
    _add_credly(client, token, base_url=credly.url)
    with db_session(engine) as s:
        uuid = s.exec(select(DeliveryRepository.uuid)).one()
    # The request only queues the test (the app has no route to Credly: any call would
    # fail); asking twice while it waits queues one test.
    for _ in range(2):
        resp = _post(client, token, f"/app/admin/repositories/{uuid}/test")
        assert resp.status_code == 303, resp.text
    with db_session(engine) as s:
        queued = s.exec(select(RepositoryCheck)).all()
    assert [c.status for c in queued] == ["queued"]
    waiting = client.get(resp.headers["location"]).text
    assert "Testing…" in waiting and 'http-equiv="refresh"' in waiting

    assert checks.run_due(engine, worker="w1") == 1
    assert checks.run_due(engine, worker="w1") == 0  # nothing more waits
    assert seen == ["GET /v1/organizations/org-1/badge_templates"]
    done = _get(client, token, "/app/admin/repositories").text
    assert "Connection works, but" in done and "1 active badge template(s)" in done
    assert "stats:advanced: template T1 is not an active badge template" in done
    assert 'http-equiv="refresh"' not in done


def test_a_rate_limit_on_one_platforms_gradebook_shows_on_the_repositories_page(
    client: TestClient, moodle: FakePlatform, engine: Engine
) -> None:
    token = _session(client, moodle)
    later = utcnow() + dt.timedelta(minutes=5)
    with db_session(engine, write=True) as s:
        book = repositories.create(s, kind="ags", name="Gradebook", config={})
        platform = s.exec(select(Platform)).one()
        platform.name = "Moodle (Example University)"
        s.add(platform)
        scope = f"platform:{platform.id}"
        s.add(
            DeliveryPause(
                repository_id=book.id,
                scope=scope,
                paused_until=later,
                paused_reason="429 from the LMS",
            )
        )
        s.commit()
    page = _get(client, token, "/app/admin/repositories").text
    assert "for Moodle (Example University) until" in page
    assert "(rate limit: 429 from the LMS); the rest goes on" in page


def test_a_test_dropped_by_its_worker_is_claimed_again_later(engine: Engine) -> None:
    with db_session(engine, write=True) as s:
        repo = DeliveryRepository(kind="webhook", name="HR", config={"url": "https://hr.test"})
        s.add(repo)
        s.flush()
        row = checks.request(s, repository_id=repo.id or 0, actor="cli", now=utcnow())
        s.commit()
    assert checks.run_due(engine, worker="w1") == 1
    with db_session(engine, write=True) as s:
        done = s.get(RepositoryCheck, row.id)
        assert done is not None and done.status == "done" and done.ok is False
        assert done.summary == "webhook 'HR' has no signing secret"
        done.status, done.started_at = "running", utcnow().replace(year=2020)
        s.add(done)
        s.commit()
    assert checks.run_due(engine, worker="w2") == 1  # the stale one, run again


def _institution(engine: Engine) -> None:
    with db_session(engine, write=True) as s:
        policies.save_institution(
            s,
            defaults={
                "levels": {
                    "beginning": {"threshold": "50%"},
                    "intermediate": {"threshold": "65%"},
                    "advanced": {"threshold": "85%"},
                }
            },
            bounds={"levels": {"intermediate": {"threshold": {"min": "55%", "max": "80%"}}}},
            author="test",
        )
        course = s.exec(select(Course)).one()
        comp = policies.competency(s, "stats")
        policies.attach(s, course_id=course.id or 0, competency_row=comp)
        policies.save_competency_override(
            s,
            course_id=course.id or 0,
            competency_row=comp,
            document={"levels": {"intermediate": {"threshold": "70%"}}},
            author="test",
        )
        s.commit()


def _levels(**typed: str) -> dict[str, str]:
    base = {
        "threshold_beginning": "50%",
        "threshold_intermediate": "65%",
        "threshold_advanced": "85%",
        "min_intermediate": "55%",
        "max_intermediate": "80%",
    }
    return base | typed


def test_thresholds_that_break_a_course_are_refused_naming_it_and_nothing_is_saved(
    client: TestClient, moodle: FakePlatform, engine: Engine
) -> None:
    """The issue's first item, from the administrator's page: a bound below a course's
    threshold is refused before it is stored."""
    _institution(engine)
    token = _session(client, moodle)
    page = _get(client, token, "/app/admin/thresholds").text
    assert 'name="max_intermediate" value="80%"' in page
    resp = _post(client, token, "/app/admin/thresholds", **_levels(max_intermediate="66%"))
    assert resp.status_code == 422
    assert "Courses these values would break" in resp.text
    assert "<strong>Biology</strong>, Stats: the Intermediate threshold 70% is above" in resp.text
    assert 'name="max_intermediate" value="66%"' in resp.text  # what was typed stays
    with db_session(engine) as s:
        assert (
            len(s.exec(select(PolicyVersion).where(PolicyVersion.scope == "institution")).all())
            == 1
        )


def test_thresholds_that_fit_every_course_are_saved_audited_and_re_evaluated(
    client: TestClient, moodle: FakePlatform, engine: Engine
) -> None:
    _institution(engine)
    token = _session(client, moodle)
    resp = _post(
        client,
        token,
        "/app/admin/thresholds",
        **_levels(threshold_intermediate="0.6", note="senate"),
    )
    assert resp.status_code == 303, resp.text
    with db_session(engine) as s:
        row, _, _ = policies.institution_layers(s)
        assert row.version == 2 and row.note == "senate"
        assert row.document["levels"]["intermediate"] == {"threshold": "60%"}
        assert row.bounds == {
            "levels": {"intermediate": {"threshold": {"min": "55%", "max": "80%"}}}
        }
        actions = set(s.exec(select(AuditEvent.action)).all())
    assert "policy.institution_changed" in actions
    overview = _get(client, token, "/app/admin").text
    assert "Institution thresholds changed" in overview


def test_a_default_outside_the_new_range_is_refused_in_words(
    client: TestClient, moodle: FakePlatform, engine: Engine
) -> None:
    _institution(engine)
    token = _session(client, moodle)
    resp = _post(client, token, "/app/admin/thresholds", **_levels(threshold_intermediate="82%"))
    assert resp.status_code == 422
    assert "Intermediate, score from:" in resp.text
    resp = _post(client, token, "/app/admin/thresholds", **_levels(min_intermediate="lots"))
    assert "Intermediate, lowest instructors may set: must be a percentage" in resp.text
    resp = _post(
        client,
        token,
        "/app/admin/thresholds",
        **_levels(min_intermediate="70", max_intermediate="60"),
    )
    assert (  # as typed on the page: percentages, not fractions (0.7)
        "Intermediate, lowest instructors may set: the minimum 70% is above the maximum 60%"
        in resp.text
    )


def test_a_least_sitting_written_with_the_min_verification_alias_shows_and_is_changed(
    client: TestClient, moodle: FakePlatform, engine: Engine
) -> None:
    """A bounds file may say ``min_verification`` (or ``{min: ...}``) for ``verification``
    (``bounds.read_bounds`` reads them all): both pages show that least sitting, and the
    thresholds page changes it without leaving the alias beside the new key."""
    with db_session(engine, write=True) as s:
        policies.save_institution(
            s,
            defaults={
                "levels": {
                    "beginning": {"threshold": "50%"},
                    "intermediate": {"threshold": "65%", "verification": "authenticated"},
                    "advanced": {"threshold": "85%", "verification": "supervised"},
                }
            },
            bounds={
                "levels": {
                    "intermediate": {"min_verification": {"min": "authenticated"}},
                    "advanced": {"min_verification": "supervised"},
                }
            },
            author="test",
        )
        s.commit()
    token = _session(client, moodle)
    page = _get(client, token, "/app/admin/thresholds").text
    assert '<option value="supervised" selected>' in page
    assert '<option value="authenticated" selected>' in page
    overview = _get(client, token, "/app/admin").text
    assert 'data-label="At least" class="meta">supervised without an identity check<' in overview
    resp = _post(
        client,
        token,
        "/app/admin/thresholds",
        threshold_beginning="50%",
        threshold_intermediate="65%",
        threshold_advanced="85%",
        least_intermediate="authenticated",
        least_advanced="supervised",
    )
    assert resp.status_code == 303, resp.text
    with db_session(engine) as s:
        row, _, _ = policies.institution_layers(s)
    assert row.bounds == {
        "levels": {
            "intermediate": {"verification": "authenticated"},
            "advanced": {"verification": "supervised"},
        }
    }


# What every spelling below means, in canonical form: a policy with fields the page does
# not edit (aggregation, attempts, floors, items, recency, a note) and bounds with some.
_MEANT_DEFAULTS = """
name: Thresholds 2026
description: Senate rules of 2026
aggregation: {method: n_mastery, n: 3}
levels:
  beginning: {threshold: 50%}
  intermediate: {threshold: 65%, verification: authenticated, floor: 40%}
  advanced: {threshold: 85%, verification: supervised, floors: {q1: 70%, q2: Proficient}}
minimum_score: 30%
items: [q1, {item: q2, label: Essay}]
required: all
max_attempts: 4
recency_days: 730
"""
_MEANT_BOUNDS = """
levels:
  intermediate: {threshold: {min: 55%, max: 80%}, verification: authenticated}
  advanced: {verification: supervised}
max_attempts: {max: 5}
aggregation: [n_mastery, weighted_average]
"""

# The same two documents in spellings ``read_layer`` and ``read_bounds`` accept
# (``microcred policy institution import`` stores a file as it is written).
_SPELLINGS = {
    "bands": (
        _MEANT_DEFAULTS.replace("\nlevels:", "\nbands:"),
        _MEANT_BOUNDS.replace("\nlevels:", "\nbands:"),
    ),
    "capitalised": (
        """
        Title: Thresholds 2026
        Notes: Senate rules of 2026
        Aggregation: {Method: N-Mastery, N: 3}
        Levels:
          Beginning: {Threshold: 50%}
          Intermediate: {Threshold: 65%, Verification: authenticated, Floor: 40%}
          ADVANCED: {Threshold: 85%, Verification: Supervised, Floors: {q1: 70%, q2: Proficient}}
        Minimum Score: 30%
        Items: [q1, {Item: q2, Label: Essay}]
        Required: All
        Max-Attempts: 4
        Recency: 2 years
        """,
        """
        Levels:
          Intermediate: {Threshold: {Min: 55%, Max: 80%}, Min-Verification: authenticated}
          Advanced: {Min Verification: supervised}
        Max Attempts: {Max: 5}
        Aggregation: [N-Mastery, weighted_average]
        """,
    ),
    "bare values, side by side": (
        """
        title: Thresholds 2026
        note: Senate rules of 2026
        calculation_method: n_mastery
        mastery_times: 3
        levels:
          intermediate: 0.65
          advanced: {at_least: 85%, item_floors: {q1: 70, q2: Proficient}}
        thresholds: {beginning: 50}
        verification: {intermediate: lms, advanced: 3}
        floors_by_level: {intermediate: 40%}
        min_score: 0.3
        mapped_items: {q1: null, q2: Essay}
        required_items: all
        attempts: {max: 4}
        recency: P2Y
        """,
        """
        levels:
          intermediate: {threshold: {from: 55%, to: 80%}, min_verification: {at_least: lms}}
          advanced: {min_verification: {min: supervised}}
        attempts: {at_most: 5}
        methods: [n_mastery, weighted_average]
        """,
    ),
    # the old page left ``Advanced`` (and its least sitting) when it cleared ``advanced``
    "one bounds level capitalised": (
        _MEANT_DEFAULTS,
        _MEANT_BOUNDS.replace("advanced: {verification:", "Advanced: {Min-Verification:"),
    ),
    "list form, synonyms": (
        """
        name: Thresholds 2026
        description: Senate rules of 2026
        aggregation: n_mastery
        n: 3
        level_bands:
          - {level: beginning, from: 50%}
          - {name: Intermediate, min_score: 65%, supervision: signed-in, min_each: 40%}
          - {level: advanced, score: 85%, requires_verification: supervised,
             criteria: {q1: 70%, q2: Proficient}}
        overall_minimum: 30%
        evidence_items: [q1, {id: q2, title: Essay}]
        requires: all
        max_attempts: 4
        max_age: 730
        """,
        """
        bands:
          intermediate: {threshold: {minimum: 55%, maximum: 80%}, verification: {min: lms}}
          advanced: {verification: supervised}
        attempts: {max: 5}
        aggregations: [n_mastery, weighted_average]
        """,
    ),
}


@pytest.mark.parametrize("spelling", list(_SPELLINGS))
def test_the_page_saves_what_was_typed_whatever_spelling_the_stored_policy_uses(
    client: TestClient, moodle: FakePlatform, engine: Engine, spelling: str
) -> None:
    """An institution file loaded with the CLI may spell its keys and levels any way the
    readers accept: the page shows its values, saves exactly what was typed (a new
    threshold, range and least sitting, a cleared one) and keeps every other field's
    meaning, and then shows what it saved."""
    defaults, bounds = (textwrap.dedent(doc) for doc in _SPELLINGS[spelling])
    with db_session(engine, write=True) as s:
        policies.import_institution(
            s, text=f"defaults:\n{_indent(defaults)}\nbounds:\n{_indent(bounds)}", author="cli"
        )
        s.commit()
    with db_session(engine) as s:  # the spellings mean what the canonical documents say
        _, layer, limits = policies.institution_layers(s)
    assert layer == parse.read_layer(yaml.safe_load(_MEANT_DEFAULTS))
    assert limits == bounds_mod.read_bounds(yaml.safe_load(_MEANT_BOUNDS))
    token = _session(client, moodle)
    page = _get(client, token, "/app/admin/thresholds").text
    assert 'name="threshold_intermediate" value="65%"' in page
    assert 'name="min_intermediate" value="55%"' in page
    assert '<option value="supervised" selected>' in page
    typed = {
        "threshold_beginning": "45",
        "min_beginning": "40%",
        "max_beginning": "0.6",
        "threshold_intermediate": "0.6",
        "min_intermediate": "50%",
        "max_intermediate": "75%",
        "least_intermediate": "authenticated",
        "threshold_advanced": "85%",
        "least_advanced": "",  # cleared: no least sitting for advanced any more
    }
    resp = _post(client, token, "/app/admin/thresholds", **typed)
    assert resp.status_code == 303, resp.text
    with db_session(engine) as s:
        row, _, _ = policies.institution_layers(s)
    meant = yaml.safe_load(_MEANT_DEFAULTS)
    meant["levels"]["beginning"]["threshold"] = "45%"
    meant["levels"]["intermediate"]["threshold"] = "60%"
    assert parse.read_layer(row.document) == parse.read_layer(meant)
    assert bounds_mod.read_bounds(row.bounds) == bounds_mod.read_bounds(
        {
            "levels": {
                "beginning": {"threshold": {"min": "40%", "max": "60%"}},
                "intermediate": {
                    "threshold": {"min": "50%", "max": "75%"},
                    "verification": "authenticated",
                },
                "advanced": {},  # still listed: courses must keep the level
            },
            "max_attempts": {"max": 5},
            "aggregation": ["n_mastery", "weighted_average"],
        }
    )
    page = _get(client, token, "/app/admin/thresholds").text  # shows what it saved
    for box, value in (
        ("threshold_beginning", "45%"),
        ("min_beginning", "40%"),
        ("max_beginning", "60%"),
        ("threshold_intermediate", "60%"),
        ("min_intermediate", "50%"),
        ("max_intermediate", "75%"),
        ("threshold_advanced", "85%"),
        ("min_advanced", ""),
    ):
        assert f'name="{box}" value="{value}"' in page
    assert '<option value="supervised" selected>' not in page


def test_a_threshold_is_saved_and_shown_as_typed_not_rounded(
    client: TestClient, moodle: FakePlatform, engine: Engine
) -> None:
    """66.66667% stays 66.66667%: it was stored rounded to 66.6667% and shown truncated
    to 66.66%, so saving the page unchanged moved the threshold again."""
    _institution(engine)
    token = _session(client, moodle)
    resp = _post(
        client, token, "/app/admin/thresholds", **_levels(threshold_intermediate="66.66667")
    )
    assert resp.status_code == 303, resp.text
    with db_session(engine) as s:
        _, layer, _ = policies.institution_layers(s)
    assert layer["levels"][Level.INTERMEDIATE]["threshold"] == parse.parse_fraction("66.66667%", "")
    page = _get(client, token, "/app/admin/thresholds").text
    assert 'name="threshold_intermediate" value="66.66667%"' in page


def test_a_level_the_defaults_leave_out_shows_empty_and_stays_out(
    client: TestClient, moodle: FakePlatform, engine: Engine
) -> None:
    """Defaults may define only some levels: the page shows the others empty (it failed
    with a server error) and saving without a threshold for them adds none."""
    with db_session(engine, write=True) as s:
        policies.import_institution(
            s, text="defaults: {levels: {intermediate: 65%, advanced: 85%}}", author="cli"
        )
        s.commit()
    token = _session(client, moodle)
    page = _get(client, token, "/app/admin/thresholds")
    assert page.status_code == 200
    assert 'name="threshold_beginning" value=""' in page.text
    assert 'name="threshold_intermediate" value="65%"' in page.text
    resp = _post(
        client,
        token,
        "/app/admin/thresholds",
        threshold_intermediate="60%",
        threshold_advanced="85%",
    )
    assert resp.status_code == 303, resp.text
    with db_session(engine) as s:
        _, layer, limits = policies.institution_layers(s)
    assert layer == {
        "levels": {Level.INTERMEDIATE: {"threshold": 0.6}, Level.ADVANCED: {"threshold": 0.85}}
    }
    assert limits == bounds_mod.Bounds()


def _indent(doc: str) -> str:
    return textwrap.indent(doc.strip(), "  ")


def test_the_platform_is_renamed_and_the_audit_log_says_so(
    client: TestClient, moodle: FakePlatform, engine: Engine
) -> None:
    token = _session(client, moodle)
    page = _get(client, token, "/app/admin/platform").text
    assert "<code>https://moodle.test</code>" in page and "Courses" in page
    resp = _post(client, token, "/app/admin/platform-name", name="  Moodle of  Example U ")
    assert resp.status_code == 303
    with db_session(engine) as s:
        assert s.exec(select(Platform.name)).one() == "Moodle of Example U"
    assert "Platform renamed" in _get(client, token, "/app/admin").text


def test_the_audit_log_shows_the_platforms_own_rows_and_no_other_platforms(
    client: TestClient, moodle: FakePlatform, engine: Engine
) -> None:
    """The overview's audit log: the deployment's rows and the rows of its platform that no
    deployment holds (registered, activated), newest first; another platform's are not."""
    token = _session(client, moodle)
    with db_session(engine, write=True) as s:
        own = s.exec(select(Platform).where(Platform.issuer == moodle.issuer)).one()
        dep = s.exec(select(Deployment).where(Deployment.platform_id == own.id)).one()
        other = factories.platform(s, issuer="https://other-lms.test", name="Other LMS")
        audit.record(s, audit.Scope(deployment_id=dep.id), actor="cli", action="policy.saved")
        for row, action in ((own, "platform.activated"), (other, "platform.renamed")):
            scope = audit.Scope(platform_id=row.id)
            audit.record(s, scope, actor="cli", action=action, subject=f"platform:{row.id}")
        s.commit()
    page = _get(client, token, "/app/admin").text
    assert "Platform renamed" not in page and "Other LMS" not in page
    assert "Rules saved" in page and "Platform activated" in page
    assert page.index("Platform activated") < page.index("Rules saved")  # newest first


def test_the_keys_page_lists_keys_and_says_how_they_are_rotated(
    client: TestClient, moodle: FakePlatform
) -> None:
    token = _session(client, moodle)
    page = _get(client, token, "/app/admin/keys").text
    assert "microcred issuer rotate-keys" in page and "microcred keys rotate" in page
    assert "PRIVATE KEY" not in page


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/app/admin/platform"),
        ("get", "/app/admin/repositories"),
        ("get", "/app/admin/thresholds"),
        ("get", "/app/admin/keys"),
        ("post", "/app/admin/repositories"),
        ("post", "/app/admin/thresholds"),
        ("post", "/app/admin/platform-name"),
    ],
)
@pytest.mark.parametrize("role", ["Instructor", "Learner", "Administrator"])
def test_course_roles_open_none_of_the_settings_pages(
    client: TestClient, moodle: FakePlatform, engine: Engine, method: str, path: str, role: str
) -> None:
    # (a context Administrator is a course-level role, not an institution one)
    token = _session(client, moodle, roles=[MEMBERSHIP + role])
    resp = _get(client, token, path) if method == "get" else _post(client, token, path, kind="x")
    assert resp.status_code == 403
    with db_session(engine) as s:
        assert s.exec(select(DeliveryRepository)).first() is None
        assert s.exec(select(Platform.name)).one() == "moodle"


def test_a_failed_test_says_why_once(
    client: TestClient, moodle: FakePlatform, engine: Engine, credly: FakeCredly
) -> None:
    credly.answer = (401, {"message": "expired"})
    token = _session(client, moodle)
    _add_credly(client, token, base_url=credly.url)
    with db_session(engine) as s:
        uuid = s.exec(select(DeliveryRepository.uuid)).one()
    _post(client, token, f"/app/admin/repositories/{uuid}/test")
    assert checks.run_due(engine, worker="w1") == 1
    page = _get(client, token, "/app/admin/repositories").text
    assert "<strong>Connection failed</strong>" in page and "was refused" in page
    assert "not working" not in page


def test_a_webhook_is_tested_with_a_signed_ping_from_the_worker(
    client: TestClient, moodle: FakePlatform, engine: Engine
) -> None:
    with db_session(engine, write=True) as s:
        hook = repositories.create(
            s, kind="webhook", name="HR", secret="x", config={"url": "http://127.0.0.1:9/h"}
        )
        book = repositories.create(s, kind="ags", name="Gradebook", config={})
        s.commit()
        hook_uuid, book_uuid = hook.uuid, book.uuid
    token = _session(client, moodle)
    page = _get(client, token, "/app/admin/repositories").text
    assert f'action="/app/admin/repositories/{hook_uuid}/test"' in page
    assert "Sends the receiver a signed ping event" in page
    assert f'action="/app/admin/repositories/{book_uuid}/test"' not in page  # no test
    _post(client, token, f"/app/admin/repositories/{hook_uuid}/test")
    assert checks.run_due(engine, worker="w1") == 1
    page = _get(client, token, "/app/admin/repositories").text
    assert "<strong>Connection failed</strong>" in page  # nothing listens on port 9


PIGEON = """
from service.delivery.types import Provider, Secret, Setting
from service.errors import BadInput


class PigeonProvider(Provider):
    kind = "pigeon"
    title = "Carrier pigeon"
    secret = Secret("loft key", "the loft key (pigeon)", "loft's key")
    settings = (
        Setting("loft", "Loft address", placeholder="e.g. 1 Dove Lane"),
        Setting("speed", "Speed", choices=(("fast", "fast"), ("slow", "slow")), default="slow"),
    )
    issue_kind = "pigeon.fly"

    def check_config(self, config):
        if not config.get("loft"):
            raise BadInput("a pigeon repository needs config.loft")
        return config

    def describe(self, config):
        return "Loft", config["loft"], f" · {config['speed']}"

    def connector(self, deps):
        return None


PROVIDER = PigeonProvider()
"""


def test_a_provider_added_as_one_module_is_offered_and_added_on_the_page(
    client: TestClient, moodle: FakePlatform, engine: Engine, tmp_path: Path
) -> None:
    token = _session(client, moodle)
    with provider_module(tmp_path, "pigeon", PIGEON):
        page = _get(client, token, "/app/admin/repositories").text
        assert '<option value="pigeon">Carrier pigeon</option>' in page
        assert "<legend>Carrier pigeon</legend>" in page
        assert '<label>Loft address <input name="loft" maxlength="200" value="" ' in page
        assert 'placeholder="e.g. 1 Dove Lane"' in page
        assert '<select name="speed"><option value="fast">fast</option>' in page
        assert "the signing secret (webhook) or the loft key (pigeon) <input" in page
        form = {"kind": "pigeon", "name": "Pigeon post", "loft": " 1 Dove Lane", "url": "x"}
        resp = _post(client, token, "/app/admin/repositories", **form)
        assert resp.status_code == 422 and "secret: give the loft&#39;s key" in resp.text
        assert 'value=" 1 Dove Lane"' in resp.text  # what was typed comes back
        resp = _post(client, token, "/app/admin/repositories", **form, secret="k3y")
        assert resp.status_code == 303, resp.text
        page = client.get(resp.headers["location"]).text
        assert "<dt>Loft</dt><dd><code>1 Dove Lane</code> · slow</dd>" in page
        assert "No connection test for Carrier pigeon yet" in page
    with db_session(engine) as s:
        repo = s.exec(select(DeliveryRepository)).one()
        assert (repo.kind, repo.name, repo.secret) == ("pigeon", "Pigeon post", "k3y")
        assert repo.config == {"loft": "1 Dove Lane", "speed": "slow"}  # its settings only


def _token_url(engine: Engine, name: str) -> str:
    """The URL the Badgr connector asks for a token of the repository ``name``."""
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        return httpx.Response(200, json={"access_token": "a", "expires_in": 3600})

    with db_session(engine) as s:
        repo = next(r for r in repositories.list_all(s) if r.name == name)
        snapshot = repositories.snapshots(s, [repo.id or 0])[repo.id or 0]
    conn = badgr.BadgrConnector(
        httpx.Client(transport=httpx.MockTransport(answer)), clock=lambda: utcnow()
    )
    try:
        assert conn.check_connection(snapshot) == (0, [])
    finally:
        conn.close()
    [url] = asked
    return url


def test_a_badgr_account_added_on_the_page_goes_to_the_region_chosen(
    client: TestClient, moodle: FakePlatform, engine: Engine
) -> None:
    """An EU institution's account is on Badgr's EU server: the page asks which region
    (nothing is chosen until the administrator picks one), stores it, and the deliveries
    and the list go there."""
    token = _session(client, moodle)
    page = _get(client, token, "/app/admin/repositories").text
    assert '<select name="region"><option value="">choose where the account is</option>' in page
    assert '<option value="eu">Europe (api.eu.badgr.io)</option>' in page
    form = {"kind": "badgr", "name": "Badges EU", "username": "me@x.test", "region": "eu"}
    resp = _post(client, token, "/app/admin/repositories", **form, templates="stats:expert = B")
    assert resp.status_code == 422  # another mistake: the region chosen comes back chosen
    assert '<option value="eu" selected>Europe (api.eu.badgr.io)</option>' in resp.text
    # Credly's environment, in the same form, is not the region
    resp = _post(
        client, token, "/app/admin/repositories", **form, environment="sandbox", secret="pw"
    )
    assert resp.status_code == 303, resp.text
    with db_session(engine) as s:
        repo = s.exec(select(DeliveryRepository)).one()
    assert repo.config == {"region": "eu", "username": "me@x.test"}
    assert _token_url(engine, "Badges EU") == "https://api.eu.badgr.io/o/token"
    assert "me@x.test · region eu (api.eu.badgr.io)" in client.get(resp.headers["location"]).text
    # a base URL replaces the region's host: no region is needed, the page names the host
    form |= {"name": "Own host", "region": "", "base_url": "https://api.badges.parchment.eu"}
    resp = _post(client, token, "/app/admin/repositories", **form, secret="pw")
    assert resp.status_code == 303, resp.text
    assert (
        "me@x.test · https://api.badges.parchment.eu<" in client.get(resp.headers["location"]).text
    )
    assert _token_url(engine, "Own host") == "https://api.badges.parchment.eu/o/token"


@pytest.mark.parametrize(
    ("region", "refusal"),
    [
        ("", "region: choose the Canvas Credentials region the account is in"),
        ("mars", "region: Canvas Credentials has no region &#39;mars&#39;; choose one of us,"),
    ],
)
def test_a_badgr_account_without_a_region_badgr_has_is_refused_and_nothing_stored(
    client: TestClient, moodle: FakePlatform, engine: Engine, region: str, refusal: str
) -> None:
    """Left alone, the page used to store no region: learners' data went to the US server."""
    token = _session(client, moodle)
    form = {"kind": "badgr", "name": "Badges", "username": "me@x.test", "region": region}
    resp = _post(client, token, "/app/admin/repositories", **form, secret="pw")
    assert resp.status_code == 422, resp.text
    assert refusal in resp.text
    assert 'value="me@x.test"' in resp.text  # what was typed comes back
    with db_session(engine) as s:
        assert s.exec(select(DeliveryRepository)).first() is None
