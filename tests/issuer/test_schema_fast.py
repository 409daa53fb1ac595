"""The schema check's fast path (jsonschema-rs) never calls valid what the python
``jsonschema`` validator rejects, so its verdict is the python validator's.

Every credential shape the issuer builds (``varied.cases``, signed) validates against the
bundled OB 3.0 AchievementCredential schema; random mutations of them (a key removed, a
value of another type, a string the schema's patterns and enums refuse, an object wrapped
in a list) are judged the same by both validators where the fast one says valid.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from service.issuer import build, service, verify
from tests.issuer import varied

STRINGS = ("", "ext:", "ext:Foo", "EN", "en", "en\n", "en-GB", "x" * 300, "2026-13-45", "é", "1")
VALUES: tuple[Any, ...] = (None, True, 0, -1, 2.5, [], {}, ["x"], {"id": "x"}, *STRINGS)


def _signed_cases(seed: int, n: int) -> list[dict[str, Any]]:
    ring = varied.keyring()
    return [
        service._signed(
            build.build_credential(**case), ring, base=varied.BASE, now=case["valid_from"]
        )
        for case in varied.cases(seed, n)
    ]


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*path, i))
    return out


def _mutate(doc: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(_paths(doc)[1:])
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        kind = rng.random()
        if kind < 0.3:
            del parent[last]
        elif kind < 0.5 and isinstance(parent[last], str):
            parent[last] = rng.choice(STRINGS)
        elif kind < 0.6:
            parent[last] = [parent[last]]
        elif kind < 0.7 and isinstance(parent[last], list) and parent[last]:
            parent[last] = parent[last][0]
        else:
            parent[last] = copy.deepcopy(rng.choice(VALUES))
    return doc


def _python_valid(doc: Any) -> bool:
    return not any(True for _ in verify._schema_validator().iter_errors(doc))


@pytest.fixture(scope="module")
def signed() -> list[dict[str, Any]]:
    return _signed_cases(7, 40)


def test_every_issued_shape_validates_with_both(signed: list[dict[str, Any]]) -> None:
    for doc in signed:
        assert verify._fast_schema_validator().is_valid(doc)
        assert _python_valid(doc)
        assert verify._check_schema(doc).ok


def test_fast_path_never_accepts_what_python_rejects(signed: list[dict[str, Any]]) -> None:
    rng = random.Random(18)
    rejected = 0
    for i in range(600):
        doc = _mutate(signed[i % len(signed)], rng)
        fast = verify._fast_schema_validator().is_valid(doc)
        slow = _python_valid(doc)
        if fast:
            assert slow, doc
        rejected += not slow
        assert verify._check_schema(doc).ok == slow
    assert rejected > 200  # the mutations do break the schema


def test_a_rejected_credential_keeps_the_python_message(signed: list[dict[str, Any]]) -> None:
    doc = copy.deepcopy(signed[0])
    doc["credentialSubject"]["achievement"]["inLanguage"] = "EN"
    check = verify._check_schema(doc)
    assert not check.ok
    assert check.detail.startswith(
        "the OB 3.0 JSON Schema fails at credentialSubject/achievement/inLanguage: "
        "'EN' does not match"
    ), check.detail


def test_values_the_fast_validator_cannot_read_go_to_python(signed: list[dict[str, Any]]) -> None:
    doc = copy.deepcopy(signed[0])
    doc["credentialSubject"]["x-bytes"] = b"raw"  # not JSON: jsonschema-rs refuses to read it
    assert verify._check_schema(doc).ok == _python_valid(doc)
