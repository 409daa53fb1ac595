"""Help as people read it (plain paragraphs and upper-case metavars), and one place that
turns a ``ServiceError`` into its message and exit 2."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Annotated, Any

import typer

from service.cli.common import _fail
from service.errors import ServiceError

_METAVARS = {int: "N", float: "NUMBER", Path: "PATH"}


class _PlainCommand(typer.core.TyperCommand):
    """Arguments shown by their metavar alone (``REF``, ``[REF]``), without a type label; a
    ``ServiceError`` a command does not handle itself ends it with its detail, its hint and
    exit 2."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ServiceError as exc:
            raise _fail(exc) from exc

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = param.metavar or str(param.name).upper()
                pieces.append(name if param.required else f"[{name}]")
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        args: list[tuple[str, str]] = []
        opts: list[tuple[str, str]] = []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                args.append((param.metavar or str(param.name).upper(), record[1]))
            else:
                opts.append(record)
        for title, rows in (("Arguments", args), ("Options", opts)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def _plain_help(typer_app: typer.Typer) -> None:
    """Help as people read it: plain paragraphs re-wrapped to the terminal (not the
    docstrings' line breaks), and upper-case metavars (``--name TEXT``, ``REF``) instead of
    the ``<str>``/``<bool>`` type labels recent Typer versions print for every option."""
    typer_app.rich_markup_mode = None
    for info in typer_app.registered_commands:
        if info.callback is None:
            continue
        if info.cls in (None, typer.core.TyperCommand):
            info.cls = _PlainCommand
        hints = typing.get_type_hints(info.callback, include_extras=True)
        for pname, hint in hints.items():
            if typing.get_origin(hint) is not Annotated:
                continue
            base, *meta = typing.get_args(hint)
            for m in meta:
                if not isinstance(m, typer.models.ParameterInfo) or m.metavar is not None:
                    continue
                inner = [a for a in typing.get_args(base) if a is not type(None)] or [base]
                many = typing.get_origin(inner[0]) is list
                if isinstance(m, typer.models.ArgumentInfo):
                    m.metavar = pname.upper() + ("..." if many else "")
                elif inner[0] is not bool:
                    m.metavar = _METAVARS.get(inner[0], "TEXT")
        # Keep the evaluated annotations: re-reading the strings would build fresh infos.
        info.callback.__annotations__ = hints
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _plain_help(group.typer_instance)
