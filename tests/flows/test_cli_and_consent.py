"""`microcred course reevaluate ID --sync` and the learner's consent per repository."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlmodel import select
from typer.testing import CliRunner

from service import cli, evaluation
from service.db.engine import session as db_session
from service.db.models import Award, OutboxMessage, Person, SourceConnection
from service.db.types import utcnow
from service.delivery import repositories
from service.flows import evaluation_queue
from tests.flows.conftest import Live, launch, pull

pytestmark = pytest.mark.db


def test_course_reevaluate_syncs_and_reports_what_it_did(live: Live, runner: CliRunner) -> None:
    first = runner.invoke(cli.app, ["course", "reevaluate", str(live.course_id), "--sync"])
    assert first.exit_code == 0, first.output
    assert (
        "5 learners, 10 decisions (10 new, 0 unchanged): 9 issued" in first.output
    )  # 6 levels + 3 stacks
    again = runner.invoke(cli.app, ["course", "reevaluate", str(live.course_id)])
    assert again.exit_code == 0, again.output
    assert "(0 new, 10 unchanged): 0 issued, 0 upgraded" in again.output
    missing = runner.invoke(cli.app, ["course", "reevaluate", "999"])
    assert missing.exit_code == 2 and "no course 999" in missing.output


def test_a_repository_that_asks_waits_for_the_learners_consent(live: Live) -> None:
    with db_session(live.engine, write=True) as s:
        repo = repositories.create(
            s,
            kind="badgr",
            name="Career portfolio",
            config={"base_url": "http://127.0.0.1:9", "issuer_id": "i1"},
            secret="s",
            consent_policy="ask",
        )
        s.commit()
        repo_id = repo.id
    tab = launch(live, "u-learn-2")
    pull(live)  # the worker's scheduled sync awards Lucas
    page = tab.get("/app/me")
    assert "Send your name, e-mail and this credential to Career portfolio?" in page.text
    csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
    assert csrf
    with db_session(live.engine) as s:
        lucas = s.exec(select(Person).where(Person.sub == "u-learn-2")).one()
        award = s.exec(
            select(Award).where(
                Award.person_id == lucas.id, Award.line_key == "competency:data-investigation"
            )
        ).one()
        held = s.exec(
            select(OutboxMessage).where(
                OutboxMessage.credential_id == award.delivery_key,
                OutboxMessage.repository_id == repo_id,
            )
        ).one()
        assert held.status == "held"
    answer = tab.post(
        "/app/me/consent",
        {
            "credential_id": award.delivery_key,
            "repository_id": str(repo_id),
            "granted": "true",
        },
        csrf=csrf.group(1),
    )
    assert answer.status_code == 303
    with db_session(live.engine) as s:
        row = s.get(OutboxMessage, held.id)
        assert row is not None and row.status == "pending"
    assert (
        "Send your name" not in tab.get("/app/me").text.split("Investigating with data (")[1][:2000]
    )


def test_a_csv_import_from_the_cli_evaluates_and_issues(
    live: Live, runner: CliRunner, tmp_path: Path
) -> None:
    rows = tmp_path / "proctored.csv"
    rows.write_text(
        "sub,kind,item_id,criterion_id,score,max_score\n"
        "u-learn-5,quiz,21,,18,20\n"
        "u-learn-5,rubric_criterion,11,1,3,4\n"
        "u-learn-5,rubric_criterion,11,2,3,4\n"
    )
    done = runner.invoke(cli.app, ["import", "csv", "--course", str(live.course_id), str(rows)])
    assert done.exit_code == 0, done.output
    assert "imported (run" in done.output
    assert f"evaluated course {live.course_id}: " in done.output
    with db_session(live.engine) as s:
        person = s.exec(select(Person).where(Person.sub == "u-learn-5")).one()
        awards = s.exec(select(Award).where(Award.person_id == person.id)).all()
    assert {(a.line_key, a.level, a.state) for a in awards} >= {
        ("competency:data-investigation", "intermediate", "issued")
    }
    again = runner.invoke(
        cli.app, ["import", "csv", "--course", str(live.course_id), str(rows), "--no-evaluate"]
    )
    assert again.exit_code == 0 and "evaluated course" not in again.output


def test_a_sync_from_the_cli_uses_the_courses_source_and_evaluates(
    live: Live, runner: CliRunner
) -> None:
    done = runner.invoke(cli.app, ["sync", "--course", str(live.course_id)])
    assert done.exit_code == 0, done.output
    assert re.search(rf"evaluated course {live.course_id}: 5 learners, 9 issued", done.output)
    with db_session(live.engine) as s:
        source = s.exec(select(SourceConnection)).one()
    named = runner.invoke(
        cli.app, ["sync", "--course", str(live.course_id), "--source", source.name]
    )
    assert named.exit_code == 0 and "0 new, 0 updated, 27 unchanged" in named.output
    assert "evaluated course" not in named.output  # nothing changed: nothing to evaluate
    lost = runner.invoke(cli.app, ["sync", "--course", "999"])
    assert lost.exit_code == 2 and "course 999 is not connected to an LMS source" in lost.output


def _lucas_award_the_webhook_holds(live: Live) -> Award:
    """Lucas's data-investigation award, its webhook delivery marked delivered (the
    receiver has it, so a revocation must be sent there)."""
    with db_session(live.engine, write=True) as s:
        lucas = s.exec(select(Person).where(Person.sub == "u-learn-2")).one()
        award = s.exec(
            select(Award).where(
                Award.person_id == lucas.id, Award.line_key == "competency:data-investigation"
            )
        ).one()
        sent = s.exec(
            select(OutboxMessage).where(
                OutboxMessage.credential_id == award.delivery_key,
                OutboxMessage.kind == "webhook.credential_issued",
            )
        ).one()
        sent.status = "delivered"
        s.add(sent)
        s.commit()
        s.refresh(award)
        s.expunge(award)
    return award


def test_credential_revoke_on_the_command_line_reaches_the_repositories(
    live: Live, runner: CliRunner
) -> None:
    from service.db.models import AuditEvent, Credential

    synced = runner.invoke(cli.app, ["course", "reevaluate", str(live.course_id), "--sync"])
    assert synced.exit_code == 0, synced.output
    award = _lucas_award_the_webhook_holds(live)
    uuid = award.credential_uuid
    assert uuid is not None
    done = runner.invoke(cli.app, ["credential", "revoke", uuid, "--reason", "Awarded in error"])
    assert done.exit_code == 0, done.output
    with db_session(live.engine) as s:
        cred = s.exec(select(Credential).where(Credential.uuid == uuid)).one()
        assert cred.revoked and cred.revocation_reason == "Awarded in error"
        revoke = s.exec(
            select(OutboxMessage).where(
                OutboxMessage.credential_id == award.delivery_key,
                OutboxMessage.kind == "webhook.credential_revoked",
            )
        ).one()
        assert revoke.status == "pending" and revoke.payload["reason"] == "Awarded in error"
        # Rows that had not gone out are stopped rather than sent.
        gradebook = s.exec(
            select(OutboxMessage.status).where(
                OutboxMessage.credential_id == award.delivery_key,
                OutboxMessage.kind == "ags.post_score",
            )
        ).all()
        assert set(gradebook) <= {"cancelled"}
        events = s.exec(
            select(AuditEvent.action).where(AuditEvent.subject == f"credential:{uuid}")
        ).all()
        assert "credential.revoked" in events
        line = s.get(Award, award.id)
        assert line is not None and line.state == "revoked" and line.reaward_blocked
    # A re-evaluation does not issue it again.
    again = runner.invoke(cli.app, ["course", "reevaluate", str(live.course_id)])
    assert again.exit_code == 0 and "0 issued" in again.output, again.output
    assert "1 held back by a revocation" in again.output
    # Nor does the command line undo it (it did, leaving the repositories' copies revoked).
    undo = runner.invoke(cli.app, ["credential", "unrevoke", uuid, "--reason", "oops"])
    assert undo.exit_code == 1, undo.output
    assert "revocation is final" in undo.output and "Allow re-award" in undo.output
    with db_session(live.engine) as s:
        assert s.exec(select(Credential.revoked).where(Credential.uuid == uuid)).one()


def test_a_course_is_connected_from_the_command_line_and_reports_its_health(
    live: Live, runner: CliRunner
) -> None:
    from service.flows import wiring

    assert "connect" in runner.invoke(cli.app, ["course", "--help"]).output
    with db_session(live.engine, write=True) as s:
        wiring.connect_source(
            s,
            course_id=live.course_id,
            connection_id=None,
            lms_course_id="",
            actor="t",
            now=utcnow(),
        )
        s.commit()
        source = s.exec(select(SourceConnection)).one()
    unknown = runner.invoke(cli.app, ["course", "connect", str(live.course_id), "--source", "x"])
    assert unknown.exit_code == 2 and "no source connection named 'x'" in unknown.output
    done = runner.invoke(
        cli.app,
        [
            "course",
            "connect",
            str(live.course_id),
            "--source",
            source.name,
            "--lms-course-id",
            "101",
            "--interval",
            "120",
        ],
    )
    assert done.exit_code == 0, done.output
    assert "then every 120 s" in done.output
    status = runner.invoke(cli.app, ["course", "status", str(live.course_id)])
    assert "Results have not been pulled from the LMS yet." in status.output
    assert "a pull is queued" in status.output
    [outcome] = pull(live)
    assert outcome.error == ""
    status = runner.invoke(cli.app, ["course", "status", str(live.course_id)])
    assert "Results last pulled from the LMS just now." in status.output
    assert "roster: 6 members" in status.output


def test_the_api_revokes_like_the_command_line_and_refuses_to_undo_an_award(
    live: Live, api_headers: Callable[..., dict[str, str]]
) -> None:
    # POST /api/credentials/{id}/revoke set only the status bit: Credly and the webhook
    # receiver kept the badge, and the next evaluation issued it again.
    pull(live)  # the worker's scheduled sync awards the course
    award = _lucas_award_the_webhook_holds(live)
    uuid, key, award_id = award.credential_uuid, award.delivery_key, award.id
    headers = api_headers("credentials:write")
    with httpx.Client(base_url=live.tool_url, headers=headers) as api:
        done = api.post(f"/api/credentials/{uuid}/revoke", json={"reason": "Awarded in error"})
        assert done.status_code == 200 and done.json()["revoked"] is True, done.text
        undo = api.post(f"/api/credentials/{uuid}/unrevoke", json={"reason": "oops"})
        assert undo.status_code == 409 and "Allow re-award" in undo.text
    with db_session(live.engine) as s:
        revoke = s.exec(
            select(OutboxMessage).where(
                OutboxMessage.credential_id == key,
                OutboxMessage.kind == "webhook.credential_revoked",
            )
        ).one()
        assert revoke.payload["reason"] == "Awarded in error"
        line = s.get(Award, award_id)
        assert line is not None and line.state == "revoked" and line.reaward_blocked
    with db_session(live.engine, write=True) as s:  # the instructor's Re-evaluate
        evaluation.enqueue(s, course_id=live.course_id, reason="t")
        s.commit()
    while evaluation_queue.run_evaluation_jobs(live.engine, settings=live.settings)[0]:
        pass
    with db_session(live.engine) as s:
        issued = s.exec(
            select(Award).where(
                Award.person_id == award.person_id,
                Award.line_key == "competency:data-investigation",
                Award.state == "issued",
            )
        ).all()
        assert issued == []  # the revocation holds back the re-award
