"""Reading policy and evidence files (JSON or YAML) and pointing at the line at fault.

``load`` returns the data and a ``Loaded`` helper that turns the dotted field path of an
``AssessmentError`` (``levels.advanced.verification``, ``evidence[3].score``) into the
line of the file where that field is written.

A key written twice in one mapping is refused with its line and field: JSON and YAML
parsers keep the last value, which would silently drop the first (a second
``intermediate:`` in a policy, a learner written twice under ``learners:``).

The node tree that maps fields to lines is built only when an error asks for a line:
parsing is the whole cost of a valid file (libyaml's parser where PyYAML has it).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

__all__ = ["FileError", "Loaded", "dump", "load", "load_text"]


class FileError(ValueError):
    """A file that cannot be read or parsed; ``line`` is 1-based when known."""

    def __init__(
        self, source: str, message: str, *, line: int | None = None, field: str = ""
    ) -> None:
        where = source if line is None else f"{source}, line {line}"
        if field:
            where += f', field "{field}"'
        super().__init__(f"{where}: {message}")
        self.source = source
        self.line = line
        self.field = field
        self.message = message


_SEGMENT = re.compile(r"\[(\d+)\]|([^.\[\]]+)")


class Loaded:
    """A loaded file: its data, and (built on first use) its node tree for finding lines."""

    def __init__(self, source: str, data: Any, text: str) -> None:
        self.source = source
        self.data = data
        self._text = text

    @functools.cached_property
    def tree(self) -> yaml.Node | None:
        """The YAML node tree of the text (None where it is JSON that YAML cannot read)."""
        return _tree(self._text)

    def line_of(self, field: str) -> int | None:
        """The 1-based line of ``field`` (a dotted path), or of its nearest parent found."""
        if self.tree is None:
            return None
        node = self.tree
        line = node.start_mark.line + 1
        tokens = [(m[1], m[2]) for m in _SEGMENT.finditer(field)]
        i = 0
        while i < len(tokens):
            index, key = tokens[i]
            if isinstance(node, yaml.SequenceNode) and index is not None:
                position = int(index)
                if position >= len(node.value):
                    break
                node = node.value[position]
                line = node.start_mark.line + 1
                i += 1
                continue
            if not isinstance(node, yaml.MappingNode) or key is None:
                break
            # Keys may contain dots ("essay.argument"): try the longest run of tokens first.
            for end in range(len(tokens), i, -1):
                run = tokens[i:end]
                if any(idx is not None for idx, _ in run):
                    continue
                name = ".".join(k for _, k in run)
                match = next((kv for kv in node.value if str(kv[0].value) == name), None)
                if match is not None:
                    line = match[0].start_mark.line + 1
                    node = match[1]
                    i = end
                    break
            else:
                break
        return line

    def error(self, field: str, message: str) -> FileError:
        """A ``FileError`` for ``field`` with its line."""
        return FileError(self.source, message, line=self.line_of(field), field=field)


class _DuplicateKey(Exception):
    """A mapping repeats a key; the caller finds where in the node tree."""


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        raise _DuplicateKey
    return data


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """PyYAML's safe loader (libyaml's parser where available) refusing repeated keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = [k.value for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"]
        if len(set(keys)) != len(keys):
            raise _DuplicateKey
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def _duplicates(node: yaml.Node, path: str) -> Iterator[tuple[str, str, int, int]]:
    """(field, key, first line, repeated line) for each key repeated in a mapping."""
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _duplicates(item, f"{path}[{i}]")
    elif isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key, value in node.value:
            name = str(key.value)
            field = f"{path}.{name}" if path else name
            line = key.start_mark.line + 1
            if name in first and key.tag != "tag:yaml.org,2002:merge":
                yield field, name, first[name], line
            first.setdefault(name, line)
            yield from _duplicates(value, field)


def _duplicate_error(source: str, text: str) -> FileError:
    tree = _tree(text)
    found = None if tree is None else next(_duplicates(tree, ""), None)
    if found is None:  # JSON that YAML cannot read (tabs): no line to point at
        return FileError(source, "a key is written twice in one object; keep one")
    field, name, first, line = found
    return FileError(
        source,
        f"{name!r} is written twice (first on line {first}); keep one: only the last would count",
        line=line,
        field=field,
    )


def _tree(text: str) -> yaml.Node | None:
    try:
        # libyaml's composer where PyYAML has it: the same nodes and marks, twice as fast
        return yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        return None  # some valid JSON is not YAML (tabs); lines are then unknown


def load_text(text: str, source: str, *, fmt: str = "") -> Loaded:
    """Parse JSON or YAML text (``fmt`` "json"/"yaml", or guessed from the text).

    Raises:
        FileError: the text is not valid JSON/YAML, with the line of the syntax error, or
            a mapping repeats a key (the line and field of the repeat).
    """
    fmt = fmt or ("json" if text.lstrip()[:1] in ("{", "[") else "yaml")
    if fmt == "json":
        try:
            data = json.loads(text, object_pairs_hook=_refuse_duplicates)
        except json.JSONDecodeError as exc:
            raise FileError(source, f"not valid JSON: {exc.msg}", line=exc.lineno) from None
        except _DuplicateKey:
            raise _duplicate_error(source, text) from None
        return Loaded(source, data, text)
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a safe loader
    except _DuplicateKey:
        raise _duplicate_error(source, text) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = None if mark is None else mark.line + 1
        raise FileError(
            source, f"not valid YAML: {exc.problem or exc.context}", line=line
        ) from None
    except yaml.YAMLError as exc:  # pragma: no cover - PyYAML marks its parse errors
        raise FileError(source, f"not valid YAML: {exc}") from None
    if data is None:
        raise FileError(source, "the file is empty")
    return Loaded(source, data, text)


def load(path: Path) -> Loaded:
    """Read a JSON (``.json``) or YAML (``.yaml``, ``.yml``) file.

    Raises:
        FileError: missing, unreadable, or not valid JSON/YAML.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise FileError(str(path), "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FileError(str(path), f"cannot be read: {exc}") from None
    suffix = path.suffix.lower()
    fmt = "json" if suffix == ".json" else "yaml" if suffix in (".yaml", ".yml") else ""
    return load_text(text, str(path), fmt=fmt)


def dump(data: Any, fmt: str) -> str:
    """``data`` as JSON (indented) or YAML (block style, keys in the given order)."""
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
