"""Templates of the demo LMS (its own look, apart from the tool's)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

__all__ = ["autopost", "render"]

_env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = _env.get_template(name).render(**context)
    return HTMLResponse(html, status_code=status_code, headers={"Cache-Control": "no-store"})


def autopost(action: str, fields: dict[str, str], *, label: str) -> HTMLResponse:
    """A page that POSTs ``fields`` to ``action`` at once (the LTI form_post hop)."""
    return render("autopost.html", action=action, fields=fields, label=label)
