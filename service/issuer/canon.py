"""RDF Dataset Canonicalization (RDFC-1.0 = pyld's URDNA2015) with a safe-mode check.

pyld has no "safe mode": a JSON key that no context defines, or an ``id`` that is not an
absolute IRI, is silently dropped from the RDF dataset and therefore not covered by a
signature (reference/credentials.md §6.2), while safe-mode verifiers (DCC verifier-core)
reject the credential. :func:`canonicalize` refuses both, loudly, so nothing unsigned
can hide in a signed credential.

Signing (``shapes=True``) reuses the RDF of earlier credentials of the same shape
(:class:`_Shapes`, at the end of this module); the canonical form is the same either way.
"""

from __future__ import annotations

import functools
import hashlib
import json
import operator
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from pyld import jsonld as _pyld
from pyld.canon import URDNA2015, permutations
from pyld.identifier_issuer import IdentifierIssuer
from pyld.jsonld import JsonLdError, JsonLdProcessor
from pyld.nquads import escape as _nquad_escape

from service.errors import BadInput
from service.issuer import limits
from service.issuer.contexts import DocumentLoader

__all__ = ["UndefinedTermError", "canonicalize"]


class UndefinedTermError(BadInput):
    """A document uses a term no context defines (it would be dropped unsigned)."""

    code = "undefined_term"
    title = "The credential uses a term no JSON-LD context defines"


class _Dropped(Exception):
    def __init__(self, term: str | None) -> None:
        super().__init__(term)
        self.term = term


def _on_dropped(term: str | None) -> None:
    raise _Dropped(term)


_ABSOLUTE_IRI = re.compile(r"^([A-Za-z][A-Za-z0-9+-.]*|_):[^\s]*$")
_MISSING = object()


def _is_absolute_iri(v: Any) -> Any:
    # pyld's own test with the pattern compiled once (it looks the pattern up per call).
    return isinstance(v, str) and _ABSOLUTE_IRI.match(v)


_pyld._is_absolute_iri = _is_absolute_iri


class _Processor(JsonLdProcessor):  # type: ignore[misc]
    """pyld with processed contexts memoised across documents.

    pyld caches a processed context per active context, but every type-scoped context
    (OB 3.0 scopes one per type: Achievement, Profile, Result, ...) is processed against a
    fresh clone with a new identity, so each document re-processes every context: ~70 % of
    the time of canonicalizing a credential. Context processing is a pure function of the
    active context and the local context, so its result is memoised here, keyed on the
    active context object (kept alive by the memo, so ids are never reused while cached)
    and the JSON of the local context. Returned contexts are never mutated by pyld beyond
    its own caches, which makes sharing them safe; tests compare the output with plain
    pyld on the vectors and on issued credentials.
    """

    _memo: OrderedDict[tuple[Any, ...], tuple[Any, Any]] = OrderedDict()
    _lock = threading.Lock()
    _MAX = 4096

    def _process_context(
        self,
        active_ctx: Any,
        local_ctx: Any,
        options: Any,
        override_protected: bool = False,
        propagate: bool = True,
        validate_scoped: bool = True,
        cycles: Any = None,
    ) -> Any:
        try:
            local_key = json.dumps(local_ctx, sort_keys=True)
        except TypeError:
            local_key = None
        if local_key is None:
            return super()._process_context(
                active_ctx,
                local_ctx,
                options,
                override_protected,
                propagate,
                validate_scoped,
                cycles,
            )
        key = (
            id(active_ctx),
            local_key,
            override_protected,
            propagate,
            validate_scoped,
            options.get("base"),
            options.get("processingMode"),
            id(options["documentLoader"]),
        )
        with self._lock:
            hit = self._memo.get(key)
            if hit is not None:
                self._memo.move_to_end(key)
                return hit[1]
        result = super()._process_context(
            active_ctx, local_ctx, options, override_protected, propagate, validate_scoped, cycles
        )
        with self._lock:
            self._memo[key] = (active_ctx, result)
            if len(self._memo) > self._MAX:
                self._memo.popitem(last=False)
        return result

    def _expand_iri(
        self,
        active_ctx: Any,
        value: Any,
        base: Any = None,
        vocab: bool = False,
        local_ctx: Any = None,
        defined: Any = None,
    ) -> Any:
        # Fast path for the common case, identical to pyld's branch for it: outside
        # context processing, a term the active context maps expands to its @id.
        if vocab and local_ctx is None and isinstance(value, str) and value[:1] != "@":
            mapping = active_ctx["mappings"].get(value, _MISSING)
            if mapping is not _MISSING:
                return None if mapping is None else mapping["@id"]
        return super()._expand_iri(active_ctx, value, base, vocab, local_ctx, defined)


class _Urdna2015(URDNA2015):  # type: ignore[misc]
    """RDFC-1.0 on a work budget (``limits``), otherwise pyld's algorithm unchanged.

    Hash N-Degree Quads (RDFC-1.0 §4.8) is written out here, step for step as the spec and
    pyld have it (same permutation order, same choice among equal paths, so the same
    canonical form), with the work counted and the issuer copied without ``deepcopy``;
    the rest is pyld's.
    """

    def __init__(self, work: limits.Work, bounds: limits.Limits) -> None:
        super().__init__()
        self.work = work
        self.bounds = bounds

    def modify_first_degree_component(self, id_: str, component: Any, key: str) -> Any:
        # a shallow copy where pyld deep-copies a flat term dict (same result)
        if component["type"] != "blank node":
            return component
        return {**component, "value": "_:a" if component["value"] == id_ else "_:z"}

    def hash_n_degree_quads(self, id_: str, issuer: IdentifierIssuer) -> dict[str, Any]:
        work = self.work
        if work.budget is None:
            # first call: step 5 of the main algorithm has issued canonical ids to every
            # blank node with a unique first-degree hash; the rest are the hard ones
            alike = len(self.blank_node_info) - len(self.canonical_issuer.existing)
            work.budget = self.bounds.work_budget(alike)
        work.charge(1 + len(self.blank_node_info[id_]["quads"]))
        # 1-3) hashes of the related blank nodes
        hash_to_related = self.create_hash_to_related(id_, issuer)
        # 4) data to hash
        md = self.create_hash()
        # 5) each related hash, in order
        for related_hash, blank_nodes in sorted(hash_to_related.items()):
            md.update(related_hash.encode("utf8"))
            chosen_path = ""
            chosen_issuer = None
            # 5.4) every permutation of the blank nodes with that hash
            for permutation in permutations(blank_nodes):
                work.charge(len(permutation) + len(issuer.order))
                issuer_copy = _copy_issuer(issuer)
                path = ""
                recursion_list = []
                skip = False
                for related in permutation:
                    if self.canonical_issuer.has_id(related):
                        path += self.canonical_issuer.get_id(related)
                    else:
                        if not issuer_copy.has_id(related):
                            recursion_list.append(related)
                        path += issuer_copy.get_id(related)
                    if chosen_path and len(path) >= len(chosen_path) and path > chosen_path:
                        skip = True
                        break
                if skip:
                    continue
                # 5.4.5) recurse into the blank nodes first met on this path
                for related in recursion_list:
                    result = self.hash_n_degree_quads(related, issuer_copy)
                    path += issuer_copy.get_id(related)
                    path += "<" + result["hash"] + ">"
                    issuer_copy = result["issuer"]
                    if chosen_path and len(path) >= len(chosen_path) and path > chosen_path:
                        skip = True
                        break
                if skip:
                    continue
                # 5.4.6) keep the least path (the first one found among equals)
                if not chosen_path or path < chosen_path:
                    chosen_path = path
                    chosen_issuer = issuer_copy
            # 5.5-5.6)
            md.update(chosen_path.encode("utf8"))
            issuer = chosen_issuer
        # 6)
        return {"hash": md.hexdigest(), "issuer": issuer}


def _copy_issuer(issuer: IdentifierIssuer) -> IdentifierIssuer:
    """What ``copy.deepcopy`` makes of an issuer (its state is strings and ints)."""
    twin = IdentifierIssuer(issuer.prefix)
    twin.counter = issuer.counter
    twin.existing = dict(issuer.existing)
    twin.order = list(issuer.order)
    return twin


def _is_absolute(iri: str) -> bool:
    scheme, sep, _ = iri.partition(":")
    return bool(sep) and scheme.isascii() and scheme[:1].isalpha()


def _check_iris(node: Any, path: str) -> None:
    """Every ``@id``/``@type`` left after expansion must be absolute or a blank node."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            _check_iris(item, f"{path}[{i}]")
        return
    if not isinstance(node, dict):
        return
    ident = node.get("@id")
    if isinstance(ident, str) and not (ident.startswith("_:") or _is_absolute(ident)):
        raise UndefinedTermError(
            f"{path}: id {ident!r} is not an absolute IRI, so it would not be signed",
            hint="Use a full URL, urn: or did: identifier.",
        )
    types = node.get("@type")
    if "@value" not in node:
        for t in types if isinstance(types, list) else [types] if types else []:
            if not _is_absolute(t):
                raise UndefinedTermError(
                    f"{path}: type {t!r} is not defined by any context",
                    hint="Add the type to a context the document lists, or remove it.",
                )
    for key, value in node.items():
        if key not in ("@id", "@type", "@value", "@language", "@direction"):
            _check_iris(value, f"{path}/{key}")


def canonicalize(
    document: Mapping[str, Any],
    loader: DocumentLoader,
    *,
    bounds: limits.Limits = limits.DEFAULT,
    work: limits.Work | None = None,
    shapes: bool = False,
) -> str:
    """Canonical N-Quads (RDFC-1.0) of a JSON-LD document, refusing undefined terms.

    Args:
        document: compacted JSON-LD (e.g. a credential without its proof).
        loader: the offline document loader (``contexts.loader_for``).
        bounds: the most quads, blank nodes and blank-node work allowed.
        work: a counter that receives the blank-node work done (for callers that report
            it; a fresh one is used otherwise).
        shapes: reuse the RDF of an earlier document of the same shape (:class:`_Shapes`;
            the issuer's own credentials). The result is the same either way.

    Returns:
        The canonical N-Quads text.

    Raises:
        UndefinedTermError: a property, type or id would be dropped by JSON-LD.
        limits.LimitExceeded: the dataset is too large, or its blank nodes too alike to
            order within the work budget.
        BadInput: the document is not valid JSON-LD (unknown context, bad syntax).
    """
    nquads: str | None
    dataset = None
    if shapes:
        found = _SHAPES.find(document, loader, bounds)
        if found is not None:
            shape, real = found
            nquads = shape.canonical(real)
            if nquads is not None:
                return nquads
            dataset = shape.dataset(real)
    if dataset is None:
        dataset = _dataset(document, loader, bounds)
    try:
        nquads = _Urdna2015(work or limits.Work(), bounds).main(
            dataset, {"format": "application/n-quads"}
        )
    except RecursionError:
        raise limits.LimitExceeded(
            "its blank nodes chain too deeply to put in canonical order"
        ) from None
    assert nquads is not None
    return nquads


def _dataset(
    document: Mapping[str, Any], loader: DocumentLoader, bounds: limits.Limits
) -> dict[str, list[dict[str, Any]]]:
    """The RDF dataset of a JSON-LD document (pyld's expansion and toRDF), checked."""
    options: dict[str, Any] = {
        "documentLoader": loader,
        "base": None,
        "processingMode": "json-ld-1.1",
        "extractAllScripts": True,
        "produceGeneralizedRdf": False,
    }
    processor = _Processor(on_property_dropped=_on_dropped)
    try:
        expanded = processor.expand(dict(document), options)
    except _Dropped as exc:
        raise UndefinedTermError(
            f"property {exc.term!r} is not defined by any context, so it would not be signed",
            hint="Define it in a context the document lists (microcred-eu-v1 for EU "
            "elements), or remove it.",
        ) from None
    except JsonLdError as exc:
        raise BadInput(f"not valid JSON-LD: {_jsonld_reason(exc)}") from exc
    except (ValueError, TypeError) as exc:
        # pyld's IRI resolver raises bare ValueErrors (an empty or relative @context IRI)
        raise BadInput(f"not valid JSON-LD: {exc}") from exc
    except RecursionError:
        raise limits.LimitExceeded("its JSON-LD nests too deeply to expand") from None
    _check_merge_cost(expanded, bounds)
    _check_iris(expanded, "$")
    issuer = IdentifierIssuer("_:b")
    node_map: dict[str, Any] = {"@default": {}}
    processor._create_node_map(expanded, node_map, "@default", issuer)
    dataset = {}
    for name, graph in sorted(node_map.items()):
        if name == "@default" or _is_absolute(name):
            dataset[name] = processor._graph_to_rdf(graph, issuer, options)
    _check_size(dataset, bounds)
    return dataset


def _check_merge_cost(expanded: Any, bounds: limits.Limits) -> None:
    """Refuse a document whose node map would cost too many comparisons.

    pyld adds each value of a property to its node only after comparing it with every value
    already there (no duplicates), so n values of one property of one node cost n²/2
    comparisons: 2,000 alignments took seconds. Values that land on the same node (the same
    ``@id`` in several places) are counted together.
    """
    counts: dict[tuple[Any, str], int] = {}
    stack = [expanded]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict) or "@value" in node:
            continue
        ident = node.get("@id")
        owner = ident if isinstance(ident, str) else id(node)
        for prop, value in node.items():
            if prop == "@id":
                continue
            values = value if isinstance(value, list) else [value]
            counts[owner, prop] = counts.get((owner, prop), 0) + len(values)
            stack.extend(values)
    cost = sum(n * n for n in counts.values())
    if cost > bounds.max_merge_work:
        worst = max(counts.values())
        raise limits.LimitExceeded(
            f"one of its objects has {worst} values for one property; a verifier compares "
            f"at most {bounds.max_merge_work} pairs of values"
        )


def _check_size(dataset: Mapping[str, list[Any]], bounds: limits.Limits) -> None:
    """Refuse a dataset over the quad or blank-node limit before canonicalizing it."""
    quads = sum(len(triples) for triples in dataset.values())
    if quads > bounds.max_quads:
        raise limits.LimitExceeded(
            f"it makes {quads} RDF statements; a verifier processes at most {bounds.max_quads}"
        )
    blank = {
        term["value"]
        for triples in dataset.values()
        for triple in triples
        for term in (triple["subject"], triple["object"])
        if term["type"] == "blank node"
    }
    if len(blank) > bounds.max_blank_nodes:
        raise limits.LimitExceeded(
            f"it has {len(blank)} blank nodes (objects without an id); a verifier processes "
            f"at most {bounds.max_blank_nodes}"
        )


def _jsonld_reason(exc: BaseException) -> str:
    parts = []
    cur: BaseException | None = exc
    while cur is not None:
        parts.append(str(getattr(cur, "message", None) or cur).split("\n")[0])
        cur = cur.__cause__
    return " <- ".join(dict.fromkeys(p for p in parts if p))


# --- documents of one shape ---------------------------------------------------------------------
#
# An issuer's credentials differ in their values (names, ids, dates, salts, hashes), far less
# in their shape (keys, types, contexts, how many evidence items). JSON-LD gives a string in
# a literal position the same treatment whatever it says, and an absolute http(s) IRI in an
# IRI position too, so the RDF of a document is the RDF of its *skeleton* (those strings
# replaced by placeholders, equal strings by the same one) with the placeholders replaced
# back. _Shapes keeps the skeleton's RDF per shape and checks, per shape and per document,
# every condition that argument needs; when one fails, the document takes the full path.
# tests/issuer/test_canon_shapes.py compares the two paths on many varied credentials.

_OPEN, _CLOSE = "\ue000", "\ue001"  # private-use characters around a placeholder's number
_HTTP = ("https://", "http://")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")
_XSD_DOUBLE = "http://www.w3.org/2001/XMLSchema#double"  # pyld rewrites such strings
_XSD_STRING = "http://www.w3.org/2001/XMLSchema#string"
_RDF_LANGSTRING = "http://www.w3.org/1999/02/22-rdf-syntax-ns#langString"


class _NoShape(Exception):
    """The document (or its shape) cannot use the shortcut: take the full path."""


class _Shape:
    """A skeleton's RDF with the placeholders' places, and the term values that a
    document's own values must not equal (a collision would merge what the skeleton kept
    apart)."""

    __slots__ = (
        "blank",
        "fixed",
        "iris",
        "kinds",
        "lines",
        "literals",
        "templates",
        "terms",
        "triples",
    )

    def __init__(
        self,
        triples: list[tuple[Any, ...]],
        fixed: frozenset[tuple[str, ...]],
        kinds: dict[str, tuple[tuple[str, ...], ...]],
        terms: frozenset[str],
    ) -> None:
        self.triples = triples
        self.fixed = fixed  # the skeleton's own terms: (value, type, datatype, language)
        self.kinds = kinds  # placeholder -> the (type, datatype, language) it stands as
        self.terms = terms  # every key of its contexts
        # each triple as its N-Quad pieces: text, or (kind, blank node / placeholder)
        self.lines = [_pieces(triple) for triple in triples]
        # blank node -> the lines it is in
        self.blank: dict[str, list[int]] = {}
        for i, pieces in enumerate(self.lines):
            labels = [p[1] for p in pieces if isinstance(p, tuple) and p[0] == _BN]
            for label in dict.fromkeys(labels):
                self.blank.setdefault(label, []).append(i)
        # each line as a str.format template and what fills it (filled in C, not per piece)
        self.templates = [_template(pieces) for pieces in self.lines]
        keys = {p for pieces in self.lines for p in pieces if isinstance(p, tuple)}
        self.iris = {mark for kind, mark in keys if kind == _IRI}
        self.literals = {mark for kind, mark in keys if kind == _LIT}

    def dataset(self, real: Mapping[str, str]) -> dict[str, list[dict[str, Any]]]:
        """The document's RDF dataset (fresh terms: RDFC-1.0 relabels blank nodes in place)."""
        return {"@default": [_fill(triple, real) for triple in self.triples]}

    def canonical(self, real: Mapping[str, str]) -> str | None:
        """RDFC-1.0 of the document when every blank node has a unique first-degree hash
        (§4.4 steps 1-5 then 7: canonical ids in the order of those hashes), else None
        (pyld's algorithm then runs, with the n-degree hashing)."""
        values: dict[tuple[int, str], str] = {}
        iris, literals = self.iris, self.literals
        for mark, value in real.items():
            if mark in iris:
                values[(_IRI, mark)] = value
            if mark in literals:
                values[(_LIT, mark)] = _nquad_escape(value)
        # a blank node's first-degree hash: itself "_:a", every other blank node "_:z"
        for label in self.blank:
            values[(_BN, label)] = "_:z"
        templates = self.templates
        hashes = {}
        for label, lines in self.blank.items():
            values[(_BN, label)] = "_:a"
            text = sorted(templates[i][0].format(*templates[i][1](values)) for i in lines)
            values[(_BN, label)] = "_:z"
            hashes[label] = hashlib.sha256("".join(text).encode("utf-8")).hexdigest()
        if len(set(hashes.values())) != len(hashes):
            return None
        for n, label in enumerate(sorted(hashes, key=hashes.__getitem__)):
            values[(_BN, label)] = f"_:c14n{n}"
        return "".join(sorted(template.format(*fill(values)) for template, fill in templates))

    def collides(self, real: Mapping[str, str]) -> bool:
        """Whether a document value would be a term the skeleton has already, or an http(s)
        value a term of its contexts."""
        fixed = self.fixed
        for mark, value in real.items():
            for kind in self.kinds[mark]:
                if (value, *kind) in fixed:
                    return True
        return not self.terms.isdisjoint(
            value for mark, value in real.items() if mark.startswith("https://")
        )


class _Shapes:
    _MAX = 512

    def __init__(self) -> None:
        self._cache: OrderedDict[tuple[Any, ...], _Shape | None] = OrderedDict()
        self._lock = threading.Lock()

    def find(
        self, document: Mapping[str, Any], loader: DocumentLoader, bounds: limits.Limits
    ) -> tuple[_Shape, dict[str, str]] | None:
        """The document's shape and its values (placeholder -> value), or None when the
        shortcut does not apply (use the full path)."""
        try:
            skeleton, values, emitted = _skeleton(document)
        except (_NoShape, RecursionError):
            return None
        text = json.dumps(skeleton, ensure_ascii=False, separators=(",", ":"))
        if text.count(_OPEN) != emitted:
            return None  # the document itself holds a placeholder character
        key = (text, loader, bounds)
        with self._lock:
            shape = self._cache.get(key, _MISSING)
            if shape is not _MISSING:
                self._cache.move_to_end(key)
        if shape is _MISSING:
            shape = _build_shape(skeleton, values, loader, bounds)
            with self._lock:
                self._cache[key] = shape
                if len(self._cache) > self._MAX:
                    self._cache.popitem(last=False)
        if shape is None:
            return None
        assert isinstance(shape, _Shape)
        real = {ph: value for value, ph in values.items()}
        if shape.collides(real):
            return None
        return shape, real


def _skeleton(document: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str], int]:
    """The document with its replaceable strings as placeholders, value -> placeholder, and
    how many placeholders it holds.

    Replaceable: a string with no ``:``, or whose text before the first ``:`` cannot be an
    IRI scheme or a prefix (JSON-LD keeps it as it is in any position but a ``@vocab`` one,
    where the placeholder shows it), and an absolute http(s) IRI (kept as it is in any
    position; a term named like it is checked per document). Values under ``type`` and
    keywords (``@context``, ``@type``, ...) stay: they choose contexts and meanings.
    """
    marks: dict[str, str] = {}
    emitted = [0]

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            mark = marks.get(node)
            if mark is not None:
                emitted[0] += 1
                return mark
            if _CLOSE in node:
                raise _NoShape
            if node.startswith(_HTTP) and _is_absolute_iri(node):
                mark = f"https://{_OPEN}{len(marks)}{_CLOSE}"
            elif ":" not in node or (node[0] != "_" and not _SCHEME.match(node.split(":", 1)[0])):
                mark = f"{_OPEN}{len(marks)}{_CLOSE}"
            else:
                return node
            marks[node] = mark
            emitted[0] += 1
            return mark
        if isinstance(node, dict):
            if not all(isinstance(key, str) for key in node):
                raise _NoShape
            return {
                key: value if key.startswith("@") or key == "type" else walk(value)
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [walk(value) for value in node]
        if node is None or isinstance(node, bool | int | float):
            return node
        raise _NoShape  # not JSON: pyld decides what it means

    if not isinstance(document, Mapping):
        raise _NoShape
    skeleton = walk(dict(document))
    return skeleton, marks, emitted[0]


def _build_shape(
    skeleton: dict[str, Any],
    values: Mapping[str, str],
    loader: DocumentLoader,
    bounds: limits.Limits,
) -> _Shape | None:
    """The skeleton's RDF, if every placeholder came through whole and replaceable."""
    try:
        dataset = _dataset(skeleton, loader, bounds)
        terms = _context_terms(json.dumps(skeleton.get("@context"), sort_keys=True), loader)
    except Exception:  # the real document will say what is wrong, on the full path
        return None
    if list(dataset) != ["@default"]:
        return None
    marks = set(values.values())
    kinds: dict[str, set[tuple[str, ...]]] = {}
    fixed: set[tuple[str, ...]] = set()
    triples = []
    for triple in dataset["@default"]:
        parts = []
        for position in ("subject", "predicate", "object"):
            term = triple[position]
            value = term["value"]
            if any(_OPEN in str(v) for k, v in term.items() if k != "value"):
                return None
            kind = (term["type"], term.get("datatype", ""), term.get("language", ""))
            if _OPEN not in value:
                if term["type"] != "blank node":
                    fixed.add((value, *kind))
                parts.append((term, None))
                continue
            if value not in marks or position == "predicate" or term["type"] == "blank node":
                return None  # a placeholder inside another value, or where it cannot be
            if term["type"] == "IRI" and not value.startswith("https://" + _OPEN):
                return None  # a string that became a (relative or @vocab) IRI
            if term["type"] == "literal" and term.get("datatype") == _XSD_DOUBLE:
                return None
            kinds.setdefault(value, set()).add(kind)
            parts.append((term, value))
        triples.append(tuple(parts))
    if set(kinds) != marks:
        return None  # a value that left no trace as itself
    return _Shape(
        triples, frozenset(fixed), {m: tuple(k) for m, k in kinds.items()}, frozenset(terms)
    )


def _fill(triple: tuple[Any, ...], real: Mapping[str, str]) -> dict[str, Any]:
    """A fresh triple of the shape with the document's values (RDFC-1.0 relabels blank
    nodes in place, so those terms are fresh too)."""
    out = {}
    for position, (term, mark) in zip(("subject", "predicate", "object"), triple, strict=True):
        if mark is not None:
            term = {**term, "value": real[mark]}
        elif term["type"] == "blank node":
            term = dict(term)
        out[position] = term
    return out


_BN, _IRI, _LIT = 0, 1, 2


def _pieces(triple: tuple[Any, ...]) -> list[Any]:
    """One triple as pyld's ``serialize_nquad`` writes it (default graph), split where a
    blank node or a placeholder goes."""
    out: list[Any] = []
    for position, (term, mark) in zip(("subject", "predicate", "object"), triple, strict=True):
        kind = term["type"]
        if kind == "blank node":
            out.append((_BN, term["value"]))
        elif kind == "IRI":
            out += ["<", (_IRI, mark) if mark else term["value"], ">"]
        else:
            out += ['"', (_LIT, mark) if mark else _nquad_escape(term["value"]), '"']
            if term["datatype"] == _RDF_LANGSTRING:
                if term.get("language"):
                    out.append("@" + term["language"])
            elif term["datatype"] != _XSD_STRING:
                out.append("^^<" + term["datatype"] + ">")
        out.append(" " if position != "object" else " .\n")
    # join neighbouring text
    merged: list[Any] = []
    for piece in out:
        if isinstance(piece, str) and merged and isinstance(merged[-1], str):
            merged[-1] += piece
        else:
            merged.append(piece)
    return merged


def _template(pieces: list[Any]) -> tuple[str, Callable[[Mapping[Any, str]], tuple[str, ...]]]:
    """A line's pieces as a ``str.format`` template (its text with braces doubled, a ``{}``
    per blank node or placeholder) and the function that reads those values, in order."""
    keys = [p for p in pieces if not isinstance(p, str)]
    text = "".join(
        p.replace("{", "{{").replace("}", "}}") if isinstance(p, str) else "{}" for p in pieces
    )
    if len(keys) == 1:
        key = keys[0]
        return text, lambda values: (values[key],)
    if not keys:
        return text, lambda _values: ()
    return text, operator.itemgetter(*keys)


@functools.lru_cache(maxsize=64)
def _context_terms(context_json: str, loader: DocumentLoader) -> frozenset[str]:
    """Every key of the document's contexts, scoped ones included (a superset of its
    terms): an http(s) value equal to one may expand as that term in a @vocab position."""
    context = json.loads(context_json)
    terms: set[str] = set()
    loaded: set[str] = set()
    stack: list[tuple[Any, bool]] = [(context, True)]
    while stack:
        node, is_context = stack.pop()
        if isinstance(node, str):
            if is_context and node not in loaded:
                loaded.add(node)
                stack.append((loader(node, None)["document"], False))
        elif isinstance(node, list):
            stack.extend((item, is_context) for item in node)
        elif isinstance(node, dict):
            terms.update(node)
            stack.extend((value, key == "@context") for key, value in node.items())
    return frozenset(terms)


_SHAPES = _Shapes()
