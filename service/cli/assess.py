"""``microcred evaluate``: a policy against evidence files, no database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from service.cli.common import app


@app.command()
def evaluate(
    policy: Annotated[
        Path, typer.Option("--policy", help="Policy file, JSON or YAML (docs/policies.md).")
    ],
    evidence: Annotated[
        Path, typer.Option("--evidence", help="Evidence file, JSON or YAML (docs/policies.md).")
    ],
    now: Annotated[
        str | None,
        typer.Option(
            "--now",
            help="Evaluation time, ISO 8601 (default: the evidence file's 'now', else the "
            "current time).",
        ),
    ] = None,
) -> None:
    """Dry-run of the rules engine: JSON decisions with reasons (exit 2: a file is invalid)."""
    from service.policies import dryrun, files

    try:
        result = dryrun.run(policy, evidence, now=now)
    except files.FileError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
