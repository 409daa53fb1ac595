"""Learner data (GDPR/FERPA requests; docs/operations.md "Personal data"):
``microcred learner find|export|erase``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from service.cli.common import _bootstrap, _db, _identity, group
from service.db.types import utcnow

learner_app = group("learner", "One learner's personal data: find, export, erase.")


@learner_app.command("find")
def learner_find(
    email: Annotated[str | None, typer.Option(help="The learner's e-mail address.")] = None,
    sub: Annotated[str | None, typer.Option(help="The learner's LMS user id (LTI sub).")] = None,
) -> None:
    """Print the person ids that match an e-mail address or LMS user id."""
    from service import learnerdata

    if (email is None) == (sub is None):
        typer.echo("error: give --email or --sub (one of them)", err=True)
        raise typer.Exit(2)
    settings = _bootstrap()
    with _db(settings) as s:
        found = learnerdata.find(s, email=email, sub=sub)
        if not found:
            typer.echo("no person matches", err=True)
            raise typer.Exit(1)
        for p in found:
            typer.echo(f"{p.id}\tplatform {p.platform_id}\t{p.sub}\t{p.name}\t{p.email}")


@learner_app.command("export")
def learner_export(
    person_id: Annotated[int, typer.Argument(help="The person id (microcred learner find).")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the JSON here, not to stdout.")
    ] = None,
) -> None:
    """Everything held about one learner, as JSON (GDPR Art. 15/20, FERPA inspection)."""
    from service import learnerdata

    settings = _identity(_bootstrap(), strict=False)
    with _db(settings) as s:
        data = learnerdata.export(s, settings=settings, person_id=person_id, now=utcnow())
    text = json.dumps(data, indent=2, ensure_ascii=False)
    if output is None:
        typer.echo(text)
        return
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
    typer.echo(f"wrote {output} (personal data: keep it private, send it to the learner only)")


@learner_app.command("erase")
def learner_erase(
    person_id: Annotated[int, typer.Argument(help="The person id (microcred learner find).")],
    revoke: Annotated[
        bool,
        typer.Option(
            "--revoke", help="Also revoke every credential issued to them (and tell repositories)."
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do it (without: say what would go).")] = False,
) -> None:
    """Erase one learner's personal data; issued credentials stay verifiable and revocable."""
    from service import learnerdata

    settings = _identity(_bootstrap())
    with _db(settings, write=True) as s:
        if not yes:
            data = learnerdata.export(s, settings=settings, person_id=person_id, now=utcnow())
            typer.echo(
                f"would erase person {person_id}: {len(data['evidence'])} evidence rows, "
                f"{len(data['decisions'])} decisions, {len(data['enrolments'])} enrolments; "
                f"{len(data['credentials'])} credentials stay verifiable"
                + (" and are revoked" if revoke else "")
                + ". Run again with --yes to do it."
            )
            raise typer.Exit(1)
        report = learnerdata.erase(
            s, settings=settings, person_id=person_id, actor="cli", now=utcnow(), revoke=revoke
        )
        s.commit()
    typer.echo(json.dumps(report.as_dict(), indent=2))
    if report.held_elsewhere:
        typer.echo(
            f"{len(report.held_elsewhere)} copies are held outside microcred: ask each "
            "repository as held_elsewhere says.",
            err=True,
        )
