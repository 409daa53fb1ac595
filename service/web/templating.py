"""Server-rendered pages: one Jinja2 environment, autoescaped, shared by every feature."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from service.assessment.types import percent

_TEMPLATES = Path(__file__).parent / "templates"

env = Environment(
    loader=FileSystemLoader(_TEMPLATES),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
    # Templates ship with the package; checking their mtime on every render is wasted work.
    auto_reload=False,
)
# Scores as the rules' reasons write them (truncated to the hundredth): one number per score.
env.filters["percent"] = percent


def render(
    request: Request | None, name: str, status_code: int = 200, **context: Any
) -> HTMLResponse:
    html = env.get_template(name).render(request=request, status_code=status_code, **context)
    return HTMLResponse(html, status_code=status_code)
