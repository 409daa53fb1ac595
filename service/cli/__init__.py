"""The ``microcred`` command. Each command is one transaction boundary.

One module per command group; each registers its commands on ``common.app`` when imported.
"""

from __future__ import annotations

# The command modules, imported in the order `microcred --help` lists their commands.
# isort: off
from service.cli import server  # noqa: F401
from service.cli import platforms  # noqa: F401
from service.cli import assess  # noqa: F401
from service.cli import credentials  # noqa: F401
from service.cli import delivery  # noqa: F401
from service.cli import sources  # noqa: F401
from service.cli import policy  # noqa: F401
from service.cli import courses  # noqa: F401
from service.cli import learners  # noqa: F401
from service.cli import demo  # noqa: F401

# isort: on
from service.cli.common import app
from service.cli.help import _plain_help

_plain_help(app)


def main() -> None:
    app()
