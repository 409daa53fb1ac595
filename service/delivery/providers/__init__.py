"""The registry of repository providers: every module of this package holds one
``PROVIDER`` (a ``service.delivery.types.Provider``), found here, so adding a provider is
adding a module (docs/delivery.md, "Adding a repository provider")."""

from __future__ import annotations

import functools
import importlib
import pkgutil

from service.delivery.types import Provider
from service.errors import BadInput

__all__ = ["get", "kinds", "of_row", "registered"]


@functools.cache
def registered() -> tuple[Provider, ...]:
    """Every provider, by module name (imported on first use: the providers import the
    outbox, which asks this registry which rows wait for consent)."""
    found = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        provider = importlib.import_module(f"{__name__}.{info.name}").PROVIDER
        if not isinstance(provider, Provider):
            raise TypeError(f"{__name__}.{info.name}.PROVIDER is not a Provider")
        found.append(provider)
    return tuple(found)


def kinds() -> tuple[str, ...]:
    """The repository kinds, e.g. ``("ags", "badgr", "credly", "webhook")``."""
    return tuple(p.kind for p in registered())


def get(kind: str) -> Provider:
    """The provider of a repository kind; an unknown kind is refused naming the known."""
    for p in registered():
        if p.kind == kind:
            return p
    raise BadInput(f"repository kind must be one of {', '.join(kinds())}, not {kind!r}")


def of_row(row_kind: str) -> Provider:
    """The provider of an outbox row kind (``credly.issue_badge`` -> Credly)."""
    return get(row_kind.partition(".")[0])
