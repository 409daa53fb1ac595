"""The one place microcred leans on a library's internals: service/issuer/canon.py subclasses
pyld's processor and RDFC-1.0 canonicalizer (a processed-context memo and its limits; signing
speed in bench/README.md, Sign). pyld is capped below 3.4 in pyproject.toml; this test says
clearly what moved when a newer pyld breaks the seam, before any vector test fails on it."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest
from pyld import canon as pyld_canon
from pyld import jsonld as pyld_jsonld
from pyld.identifier_issuer import IdentifierIssuer

# (owner, name, the leading parameters canon.py passes or overrides)
METHODS: list[tuple[Any, str, tuple[str, ...]]] = [
    (
        pyld_jsonld.JsonLdProcessor,
        "_process_context",
        (
            "self",
            "active_ctx",
            "local_ctx",
            "options",
            "override_protected",
            "propagate",
            "validate_scoped",
            "cycles",
        ),
    ),
    (
        pyld_jsonld.JsonLdProcessor,
        "_expand_iri",
        ("self", "active_ctx", "value", "base", "vocab", "local_ctx", "defined"),
    ),
    (
        pyld_jsonld.JsonLdProcessor,
        "_create_node_map",
        ("self", "input_", "graph_map", "active_graph", "issuer"),
    ),
    (pyld_jsonld.JsonLdProcessor, "_graph_to_rdf", ("self", "graph", "issuer", "options")),
    (pyld_canon.URDNA2015, "hash_n_degree_quads", ("self", "id_", "issuer")),
    (pyld_canon.URDNA2015, "modify_first_degree_component", ("self", "id_", "component", "key")),
    (pyld_canon.URDNA2015, "create_hash_to_related", ("self", "id_", "issuer")),
    (pyld_canon.URDNA2015, "create_hash", ("self",)),
]


def _params(fn: Callable[..., Any]) -> tuple[str, ...]:
    return tuple(inspect.signature(fn).parameters)


@pytest.mark.parametrize(("owner", "name", "expected"), METHODS, ids=[m[1] for m in METHODS])
def test_the_pyld_internals_canon_overrides_are_still_there(
    owner: Any, name: str, expected: tuple[str, ...]
) -> None:
    found = getattr(owner, name, None)
    assert callable(found), (
        f"pyld {owner.__name__}.{name} is gone: service/issuer/canon.py overrides or calls it. "
        "Keep pyld below the version that removed it (pyproject.toml) or update canon.py."
    )
    got = _params(found)
    assert got[: len(expected)] == expected, (
        f"pyld {owner.__name__}.{name} now takes {got}, canon.py expects {expected}: "
        "update service/issuer/canon.py for this pyld, or keep the cap in pyproject.toml."
    )


def test_the_module_level_helpers_canon_replaces_or_uses_are_still_there() -> None:
    assert callable(getattr(pyld_jsonld, "_is_absolute_iri", None)), (
        "pyld.jsonld._is_absolute_iri is gone: service/issuer/canon.py replaces it with a "
        "precompiled test. Drop that replacement for this pyld, or keep the cap."
    )
    assert callable(getattr(pyld_canon, "permutations", None)), (
        "pyld.canon.permutations is gone: service/issuer/canon.py's bounded "
        "hash_n_degree_quads iterates it."
    )
    issuer = IdentifierIssuer("_:c14n")
    for attribute in ("prefix", "counter", "existing", "order"):
        assert hasattr(issuer, attribute), (
            f"pyld IdentifierIssuer has no {attribute!r}: canon._copy_issuer copies it."
        )


def test_the_nquads_writer_canon_shapes_copies_is_still_the_same() -> None:
    # canon._Shape writes N-Quads itself (the shape path's RDFC-1.0) with pyld's escape and
    # pyld's layout: a literal's escapes and a datatype / language suffix as serialize_nquad
    # writes them, which test_canon_shapes.py compares byte for byte.
    from pyld import nquads

    assert nquads.escape('a"b\\c\nd\te\rf') == 'a\\"b\\\\c\\nd\\te\\rf'
    quad = {
        "subject": {"type": "blank node", "value": "_:b0"},
        "predicate": {"type": "IRI", "value": "https://ex.test/p"},
        "object": {"type": "literal", "value": "x", "datatype": "https://ex.test/t"},
    }
    assert nquads.serialize_nquad(quad) == '_:b0 <https://ex.test/p> "x"^^<https://ex.test/t> .\n'
