"""Policy commands: ``microcred policy institution ...``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from service.cli.common import _bootstrap, _db, group

policy_app = group("policy", "Institution policies: defaults and bounds.")
institution_app = group(
    "institution",
    "The institution's default thresholds and the bounds instructors move them in.",
    parent=policy_app,
)


@institution_app.command("show")
def policy_institution_show(
    fmt: Annotated[str, typer.Option("--format", help="yaml or json.")] = "yaml",
) -> None:
    """The current version: who saved it and when, then its defaults and bounds."""
    from service.policies import files
    from service.policies import service as policies

    settings = _bootstrap(migrate=True)
    with _db(settings) as s:
        row, _, _ = policies.institution_layers(s)
        doc = policies.export_institution(s)
    typer.echo(f"# version {row.version}, saved {row.created_at:%Y-%m-%d %H:%M} by {row.author}")
    typer.echo(files.dump(doc, "json" if fmt == "json" else "yaml"), nl=False)


@institution_app.command("export")
def policy_institution_export(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (default: print).")
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="yaml or json (default: from --output, else yaml).")
    ] = "",
) -> None:
    """The institution defaults and bounds as a policy file `policy institution import` reads."""
    from service.policies import files
    from service.policies import service as policies

    settings = _bootstrap(migrate=True)
    with _db(settings) as s:
        doc = policies.export_institution(s)
    chosen = fmt or ("json" if output is not None and output.suffix == ".json" else "yaml")
    text = files.dump(doc, chosen)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}")


@institution_app.command("import")
def policy_institution_import(
    file: Annotated[Path, typer.Argument(help="A JSON or YAML file (docs/policies.md).")],
    note: Annotated[str, typer.Option(help="Why it changes (kept with the version).")] = "",
) -> None:
    """Save a file's defaults and bounds as the next version; refused, with the courses at
    fault, if a course's thresholds would fall outside the new bounds."""
    from service.policies import service as policies

    settings = _bootstrap(migrate=True)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        typer.echo(f"error: {file} cannot be read: {exc}", err=True)
        raise typer.Exit(2) from None
    fmt = "json" if file.suffix.lower() == ".json" else "yaml"
    with _db(settings, write=True) as s:
        row = policies.import_institution(s, text=text, fmt=fmt, author="cli", note=note)
        s.commit()
        version = row.version
    typer.echo(f"institution policy version {version} saved")
