"""`microcred learner find/export/erase`: a learner's data request, answered on the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import col, select
from typer.testing import CliRunner

from service import cli
from service.db.engine import session as db_session
from service.db.models import (
    AuditEvent,
    Award,
    Credential,
    Decision,
    Enrolment,
    Evidence,
    OutboxMessage,
    Person,
    StatusList,
)
from service.issuer import statuslist
from tests.flows.conftest import Live, launch

pytestmark = pytest.mark.db


def _issued(live: Live, runner: CliRunner) -> tuple[Person, list[str]]:
    """Lucas (u-learn-2) after a launch and a synced evaluation, with his webhook delivered."""
    launch(live, "u-learn-2")
    done = runner.invoke(cli.app, ["course", "reevaluate", str(live.course_id), "--sync"])
    assert done.exit_code == 0, done.output
    with db_session(live.engine, write=True) as s:
        lucas = s.exec(select(Person).where(Person.sub == "u-learn-2")).one()
        uuids = [c.uuid for c in s.exec(select(Credential).where(Credential.person_id == lucas.id))]
        assert uuids
        for row in s.exec(
            select(OutboxMessage).where(
                OutboxMessage.person_id == lucas.id,
                OutboxMessage.kind == "webhook.credential_issued",
            )
        ):
            row.status = "delivered"  # the webhook receiver has it
            s.add(row)
        s.commit()
    return lucas, uuids


def test_find_then_export_gives_everything_held_about_the_learner(
    live: Live, runner: CliRunner, tmp_path: Path
) -> None:
    lucas, uuids = _issued(live, runner)
    assert lucas.email
    found = runner.invoke(cli.app, ["learner", "find", "--email", lucas.email.upper()])
    assert found.exit_code == 0, found.output
    assert found.output.split("\t")[0] == str(lucas.id)
    out = tmp_path / "lucas.json"
    done = runner.invoke(cli.app, ["learner", "export", str(lucas.id), "--output", str(out)])
    assert done.exit_code == 0, done.output
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    data = json.loads(out.read_text())
    assert data["person"]["email"] == lucas.email and data["person"]["sub"] == "u-learn-2"
    assert {c["uuid"] for c in data["credentials"]} == set(uuids)
    assert all(c["document"]["proof"] for c in data["credentials"])
    assert data["evidence"] and data["decisions"] and data["enrolments"]
    assert data["enrolments"][0]["course"]["title"]
    assert {d["repository"]["name"] for d in data["deliveries"]} >= {"Demo LMS webhook"}
    assert data["web_sessions"] and "id" not in data["web_sessions"][0]
    assert data["held_elsewhere"] and all(
        h["repository"] == "Demo LMS webhook" and "operator" in h["how_to_ask"]
        for h in data["held_elsewhere"]
    )
    # Another learner's rows are not in it.
    with db_session(live.engine) as s:
        others = s.exec(select(Credential.uuid).where(Credential.person_id != lucas.id)).all()
    assert others and not set(others) & {c["uuid"] for c in data["credentials"]}

    missing = runner.invoke(cli.app, ["learner", "export", "999999"])
    assert missing.exit_code == 2 and "no person 999999" in missing.output


def test_erase_removes_personal_data_and_credentials_stay_verifiable(
    live: Live, runner: CliRunner, tmp_path: Path
) -> None:
    lucas, uuids = _issued(live, runner)
    email, name = lucas.email, lucas.name
    dry = runner.invoke(cli.app, ["learner", "erase", str(lucas.id)])
    assert dry.exit_code == 1 and "--yes" in dry.output
    with db_session(live.engine) as s:
        assert s.get(Person, lucas.id).email == email  # type: ignore[union-attr]

    done = runner.invoke(cli.app, ["learner", "erase", str(lucas.id), "--yes"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["deleted"]["evidence"] > 0 and report["deleted"]["decision"] > 0
    assert set(report["credentials_kept"]) == set(uuids) and report["revoked"] == []
    assert [h["repository"] for h in report["held_elsewhere"]] == ["Demo LMS webhook"] * len(
        report["held_elsewhere"]
    )

    with db_session(live.engine) as s:
        person = s.get(Person, lucas.id)
        assert person is not None
        assert (person.name, person.email, person.given_name, person.family_name) == ("",) * 4
        assert person.sub.startswith("erased:")
        for model in (Evidence, Decision, Enrolment):
            assert s.exec(select(model).where(model.person_id == lucas.id)).all() == []  # type: ignore[attr-defined]
        rows = s.exec(select(OutboxMessage).where(OutboxMessage.person_id == lucas.id)).all()
        assert rows and not {r.status for r in rows} & {"pending", "held"}
        text = json.dumps([r.payload for r in rows] + [r.result for r in rows])
        assert email not in text and name not in text
        events = s.exec(select(AuditEvent.action)).all()
        assert "person.erased" in events
        awards = s.exec(select(Award).where(Award.person_id == lucas.id)).all()
        assert awards and all(a.decision_id is None for a in awards)

    # Each credential still verifies and stays revocable.
    for uuid in uuids:
        with db_session(live.engine) as s:
            doc = s.exec(select(Credential.document).where(Credential.uuid == uuid)).one()
        path = tmp_path / f"{uuid}.json"
        path.write_text(json.dumps(doc))
        checked = runner.invoke(cli.app, ["verify", str(path)])
        assert checked.exit_code == 0, checked.output
    revoked = runner.invoke(
        cli.app, ["credential", "revoke", uuids[0], "--reason", "asked by the learner"]
    )
    assert revoked.exit_code == 0, revoked.output
    with db_session(live.engine) as s:
        cred = s.exec(select(Credential).where(Credential.uuid == uuids[0])).one()
        bits = s.get(StatusList, cred.status_list_id)
        assert bits is not None and statuslist.get_bit(bits.bits, cred.status_index)

    # Again: nothing more to erase, the same person row.
    again = runner.invoke(cli.app, ["learner", "erase", str(lucas.id), "--yes"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["deleted"]["evidence"] == 0


def test_erase_with_revoke_revokes_every_credential(live: Live, runner: CliRunner) -> None:
    lucas, uuids = _issued(live, runner)
    done = runner.invoke(cli.app, ["learner", "erase", str(lucas.id), "--revoke", "--yes"])
    assert done.exit_code == 0, done.output
    with db_session(live.engine) as s:
        creds = s.exec(select(Credential).where(col(Credential.uuid).in_(uuids))).all()
    assert creds and all(c.revoked for c in creds)
