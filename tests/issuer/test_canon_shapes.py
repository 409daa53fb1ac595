"""The canonicalisation shortcut for documents of one shape (``canon.canonicalize(...,
shapes=True)``, what signing uses) gives pyld's full path byte for byte.

Compared on many varied credentials (unicode names, levels, evidence counts, EU elements
present or absent), on the same shapes again with other values (the shape's RDF reused),
and on documents where the shortcut must stand aside: a value in a ``@vocab`` position, a
string pyld rewrites as an ``xsd:double``, a value equal to an IRI of the skeleton, a value
holding the placeholder characters.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from service.issuer import build, canon, contexts, limits
from tests.issuer import varied

LOADER = contexts.loader_for(varied.BASE)
PIECES = (
    "Zoë",
    "李小龍",
    "🎓",
    'say "hi"',
    "back\\slash",
    "new\nline",
    "tab\t",
    "",
    " ",
    "a b: c",  # a colon after something that cannot be a scheme
    "12:30",
    "e\u0301",
    "\u202eright-to-left",
)


def _full(doc: dict[str, Any]) -> str:
    return canon.canonicalize(doc, LOADER)


def _short(doc: dict[str, Any]) -> str:
    return canon.canonicalize(doc, LOADER, shapes=True)


def _took_shortcut(doc: dict[str, Any]) -> bool:
    return canon._SHAPES.find(doc, LOADER, limits.DEFAULT) is not None


def _revalue(doc: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """``doc`` with every replaceable string changed, distinct strings kept distinct and
    equal ones equal (the same shape)."""
    _, marks, _ = canon._skeleton(doc)
    new: dict[str, str] = {}
    for i, (value, mark) in enumerate(marks.items()):
        if mark.startswith("https://"):
            new[value] = f"https://example.org/{i}/{rng.choice(('x', 'ü', '%20', 'a#b', '?q=1'))}"
        else:
            new[value] = f"{i} " + " ".join(rng.choice(PIECES) for _ in range(rng.randint(0, 3)))

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            return new.get(node, node)
        if isinstance(node, dict):
            return {k: v if k.startswith("@") or k == "type" else walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    out: dict[str, Any] = walk(doc)
    return out


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return [build.build_credential(**case) for case in varied.cases(31, 120)]


def test_varied_credentials_canonicalize_the_same_both_ways(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        assert _took_shortcut(doc)
        assert _short(doc) == _full(doc)


def test_the_same_shape_with_other_values_reuses_it_and_agrees(
    docs: list[dict[str, Any]],
) -> None:
    rng = random.Random(5)
    for doc in docs[:40]:
        _short(doc)
        shapes = len(canon._SHAPES._cache)
        for _ in range(3):
            other = _revalue(doc, rng)
            assert other != doc
            assert _took_shortcut(other)
            assert _short(other) == _full(other)
        assert len(canon._SHAPES._cache) == shapes  # no new shape: the RDF was reused


def test_equal_values_that_become_different_make_another_shape(
    docs: list[dict[str, Any]],
) -> None:
    doc = copy.deepcopy(docs[0])
    doc["name"] = doc["credentialSubject"]["achievement"]["name"] + " (copy)"
    assert _short(doc) == _full(doc)


def _with_context(extra: dict[str, Any], **values: Any) -> dict[str, Any]:
    return {
        "@context": [contexts.VC_V2, extra],
        "id": "https://tool.example/credentials/x",
        "type": ["VerifiableCredential"],
        "issuer": "did:web:tool.example",
        "validFrom": "2026-11-28T12:00:00Z",
        "credentialSubject": {"id": "https://tool.example/people/1", **values},
    }


def test_a_string_pyld_rewrites_as_a_double_stands_aside() -> None:
    doc = _with_context(
        {
            "score": {
                "@id": "https://ex.test/score",
                "@type": "http://www.w3.org/2001/XMLSchema#double",
            }
        },
        score="3.50",
    )
    assert not _took_shortcut(doc)
    assert _short(doc) == _full(doc)
    assert "3.5E0" in _full(doc)


def test_a_string_in_a_vocab_position_stands_aside() -> None:
    doc = _with_context(
        {
            "kind": {"@id": "https://ex.test/kind", "@type": "@vocab"},
            "Gold": "https://ex.test/levels#gold",
        },
        kind="Gold",
    )
    assert not _took_shortcut(doc)
    assert _short(doc) == _full(doc)
    assert "<https://ex.test/levels#gold>" in _full(doc)


def test_an_iri_term_in_a_vocab_position_stands_aside() -> None:
    # a term spelled as an absolute IRI: in a @vocab position the value is that term
    term = "https://ex.test/levels#gold"
    doc = _with_context(
        {"kind": {"@id": "https://ex.test/kind", "@type": "@vocab"}, term: {"@id": term}},
        kind=term,
    )
    assert not _took_shortcut(doc)
    assert _short(doc) == _full(doc)


def test_a_value_equal_to_an_iri_of_the_skeleton_stands_aside() -> None:
    # a node id equal to the IRI a compact IRI expands to: JSON-LD merges the two nodes
    doc = _with_context(
        {"ex": "https://ex.test/", "friend": {"@id": "https://ex.test/friend", "@type": "@id"}},
        friend=[{"id": "ex:bob", "name": "Bob"}, {"id": "https://ex.test/bob", "name": "Bob"}],
    )
    assert not _took_shortcut(doc)
    assert _short(doc) == _full(doc)


def test_relative_ids_and_undefined_terms_fail_the_same_way() -> None:
    relative = _with_context({}, **{})
    relative["credentialSubject"]["id"] = "people/1"
    with pytest.raises(canon.UndefinedTermError, match="people/1"):
        _short(relative)
    undefined = _with_context({}, nickname="Bo")
    with pytest.raises(canon.UndefinedTermError, match="nickname"):
        _short(undefined)


def test_values_holding_placeholder_characters_stand_aside(docs: list[dict[str, Any]]) -> None:
    for text in ("\ue000", "\ue001", "\ue0000\ue001", "https://\ue0000\ue001"):
        doc = copy.deepcopy(docs[1])
        doc["description"] = text
        assert _short(doc) == _full(doc)
        doc["credentialSubject"]["achievement"]["tag"] = [text, "x"]
        assert _short(doc) == _full(doc)


def test_a_list_of_values_keeps_its_duplicates_rule(docs: list[dict[str, Any]]) -> None:
    doc = copy.deepcopy(docs[2])
    doc["credentialSubject"]["achievement"]["tag"] = ["same", "same", "other"]
    assert _short(doc) == _full(doc)
    doc["credentialSubject"]["achievement"]["tag"] = ["same", "other", "other2"]
    assert _short(doc) == _full(doc)


def test_both_rdfc_branches_are_taken_and_agree(docs: list[dict[str, Any]]) -> None:
    # unique first-degree hashes: the shape's own RDFC-1.0; alike blank nodes (two equal
    # evidence entries): pyld's n-degree hashing over the shape's dataset
    alike = copy.deepcopy(docs[3])
    alike["evidence"] = [{"type": ["Evidence"], "name": "Quiz"}] * 2 + [
        {"type": ["Evidence"], "name": "Quiz", "description": "same"}
    ] * 2
    simple = 0
    for doc in [*docs, alike]:
        found = canon._SHAPES.find(doc, LOADER, limits.DEFAULT)
        assert found is not None
        shape, real = found
        own = shape.canonical(real)
        if own is not None:
            simple += 1
            assert own == _full(doc)
        assert _short(doc) == _full(doc)
    assert 0 < simple < len(docs) + 1
    shape, real = canon._SHAPES.find(alike, LOADER, limits.DEFAULT) or (None, None)
    assert shape is not None and real is not None
    assert shape.canonical(real) is None
