"""``python -m service.cli``: the ``microcred`` command."""

from service.cli import main

main()
